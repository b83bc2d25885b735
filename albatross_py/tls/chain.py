"""From a verified client certificate chain to (name, version, command, policies).

This is albatross's ``Vmm_tls.handle`` (spec 4.3), plus a revocation check that
albatross does not have (spec 4.6).

What this module does **not** do: verify signatures along the chain, validity
periods (expired or not-yet-valid certificates), key usages, basic constraints
or the trust anchor.  OpenSSL does all of that during the TLS handshake
(``verify_mode=CERT_REQUIRED`` against the one CA), and the endpoint passes the
chain OpenSSL *verified* (leaf first, possibly ending with the root) to
:func:`handle_chain`.  The conformance vectors are expired certificates for
exactly this reason: the derivation below ignores time.

The derivation: intermediates are read root-most first; each one carrying a
``policy add`` extension appends its (lower-cased, label-validated) CN to the
path and contributes ``(path, policy)``; certificates without the extension
(the root CA) are skipped.  The leaf's CN is the label under that path (or
``"."``/``":"``/absent for the path itself) and its extension is the command.

:func:`peer_verified_chain` reads that verified chain off an ``ssl`` object
after the handshake (no IO); :func:`check_revocation` and :func:`load_crls`
add CRLs.

OpenSSL's verification does not mean ``cryptography`` can read everything in
a certificate: an extension that appears twice passes the handshake and then
raises ``DuplicateExtension`` (not a ``ValueError``) on first access.  Every
public function here turns whatever ``cryptography`` raises for a
certificate or CRL (:data:`CERT_ERRORS`) into a :class:`ChainError` with the
reason, so the client gets a ``Failure`` saying why.
"""

from __future__ import annotations

import _ssl
import logging
import ssl
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path as FsPath

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import NameOID

from albatross_py.wire.cert import command_of_certificate
from albatross_py.wire.errors import WireError
from albatross_py.wire.grammar import command_to_raw
from albatross_py.wire.messages import (
    BlockAdd,
    BlockAddOld,
    BlockDump,
    BlockInfoQuery,
    BlockRemove,
    BlockSet,
    BlockSetOld,
    Command,
    ConsoleListInactive,
    ConsoleSubscribe,
    EventsSubscribe,
    PolicyAdd,
    PolicyInfoQuery,
    PolicyRemove,
    StatsSubscribe,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfoQuery,
    UnikernelRestart,
)
from albatross_py.wire.names import Name, NameError_, Path, label_of_string
from albatross_py.wire.types import Policy

log = logging.getLogger(__name__)

#: albatross refuses chains of 10 or more certificates (``Vmm_tls.handle``).
#: Nine allows a root, seven delegation levels and a leaf; deeper trees are
#: not an albatross use case and a bound keeps per-connection work small.
MAX_CHAIN = 9

#: Commands a leaf certificate may carry (spec 4.3 step 6).  Everything that
#: changes daemon-internal state (console/stats add, policy add/remove, and
#: our events record: only albatrossd and the endpoint produce events) is
#: only for albatrossd's own daemons or for intermediates.  ``events
#: subscribe`` (ours) is a tenant watching its own subtree: the subscription
#: is at the request's name, whose path comes from the chain.
_LEAF_COMMANDS: tuple[type[Command], ...] = (
    ConsoleSubscribe,
    ConsoleListInactive,
    StatsSubscribe,
    EventsSubscribe,
    UnikernelDestroy,
    UnikernelCreate,
    UnikernelGet,
    UnikernelRestart,
    UnikernelInfoQuery,
    PolicyInfoQuery,
    BlockInfoQuery,
    BlockAdd,
    BlockRemove,
    BlockAddOld,
    BlockSetOld,
    BlockDump,
    BlockSet,
)


class ChainError(ValueError):
    """The client's certificate chain does not yield an acceptable request."""


#: What ``cryptography`` raises for a certificate, CRL or key it cannot parse
#: or use; several are not ``ValueError``.
CERT_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    x509.InvalidVersion,
    UnsupportedAlgorithm,
)


@contextmanager
def _refusing(what: str) -> Iterator[None]:
    """Turn ``cryptography``'s refusals into a :class:`ChainError` about ``what``."""
    try:
        yield
    except ChainError:
        raise
    except CERT_ERRORS as exc:
        raise ChainError(f"{what}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ChainRequest:
    """What a verified chain asks for.

    ``policies`` are the delegations found in the intermediates, deepest first
    (albatross builds the list by prepending); the endpoint uploads each one to
    albatrossd before the command.
    """

    name: Name
    version: int
    command: Command
    policies: list[tuple[Path, Policy]]


def _common_name(cert: x509.Certificate) -> str | None:
    # ocaml-x509's Distinguished_name.common_name takes the first CN.
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _command(cert: x509.Certificate) -> tuple[int, Command] | None:
    try:
        return command_of_certificate(cert)
    except (WireError, ValueError) as exc:
        raise ChainError(f"couldn't parse albatross extension: {exc}") from exc


def _empty_name_error(cmd: Command) -> str | None:
    """albatross's ``cert_name`` refusal for a command whose CN is missing."""
    match cmd:
        case PolicyAdd():
            return "policy add may not have an empty name"
        case PolicyRemove():
            return "policy remove may not have an empty name"
        case BlockAdd():
            return "block add may not have an empty name"
        case BlockAddOld():
            return "old block add may not have an empty name"
        case BlockRemove():
            return "block remove may not have an empty name"
        case BlockSet():
            return "block set may not have an empty name"
        case BlockSetOld():
            return "old block set may not have an empty name"
        case BlockDump():
            return "block dump may not have an empty name"
    return None


def _cert_name(cert: x509.Certificate) -> str | None:
    """The CN that names something, or None (albatross's ``cert_name``).

    Certificates without the extension never contribute a name.
    """
    found = _command(cert)
    if found is None:
        return None
    cn = _common_name(cert)
    if cn is not None:
        return cn
    message = _empty_name_error(found[1])
    if message is not None:
        raise ChainError(message)
    return None


def _describe(cmd: Command) -> str:
    group, (alternative, _) = command_to_raw(cmd)
    return f"{group} {alternative}"


def _label(cn: str) -> str:
    try:
        return label_of_string(cn)
    except NameError_ as exc:
        raise ChainError(f"invalid name in certificate: {exc}") from exc


def _extract_policies(
    intermediates: Iterable[x509.Certificate],
) -> tuple[Path, list[tuple[Path, Policy]]]:
    path: Path = ()
    policies: list[tuple[Path, Policy]] = []
    for cert in intermediates:
        found = _command(cert)
        if found is None:
            continue  # e.g. the root CA: no name, no policy
        _, cmd = found
        if not isinstance(cmd, PolicyAdd):
            raise ChainError(f"unexpected wire {_describe(cmd)}")
        cn = _cert_name(cert)  # raises for a missing CN
        if cn is not None:
            path = (*path, _label(cn))
        policies.insert(0, (path, cmd.policy))
    return path, policies


def handle_chain(certs: Sequence[x509.Certificate]) -> ChainRequest:
    """The request a verified chain (leaf first) stands for; :class:`ChainError` if none."""
    if len(certs) > MAX_CHAIN:
        raise ChainError("certificate chain too long")
    if not certs:
        raise ChainError("empty chain")
    with _refusing("unusable certificate"):
        return _handle_chain(certs)


def _handle_chain(certs: Sequence[x509.Certificate]) -> ChainRequest:
    leaf, rest = certs[0], list(reversed(certs[1:]))
    path, policies = _extract_policies(rest)
    cn = _cert_name(leaf)
    name = Name.of_path(path) if cn in (None, ".", ":") else Name(path, _label(cn))
    found = _command(leaf)
    if found is None:
        raise ChainError("leaf certificate does not contain an albatross extension")
    version, cmd = found
    if not isinstance(cmd, _LEAF_COMMANDS):
        raise ChainError("unexpected command")
    return ChainRequest(name=name, version=version, command=cmd, policies=policies)


# -- revocation (our addition) -------------------------------------------------


def _issuer_of(
    cert: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    for candidate in candidates:
        if candidate.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return candidate
    return None


def check_revocation(
    chain: Sequence[x509.Certificate],
    crls: Iterable[x509.CertificateRevocationList],
    anchors: Sequence[x509.Certificate] = (),
) -> None:
    """Raise :class:`ChainError` if a certificate of ``chain`` is revoked.

    A CRL counts for a certificate only when it names the certificate's issuer
    *and* its signature verifies with that issuer's public key (the issuer is
    found in the chain or in ``anchors``, usually the root CA, which OpenSSL's
    verified chain already contains).  Every CA, tenants included, can thus
    revoke what it signed; revoking an intermediate cuts off its whole subtree
    because the intermediate is part of every chain below it.

    A CRL with the issuer's name but a bad signature is never trusted: it is
    ignored with a warning.  Failing the connection instead would let one
    tenant's CRL (CNs are not unique across paths: ``a:x`` and ``b:x`` are both
    "x") lock out another tenant's users.  CRL ``nextUpdate`` is not checked:
    a revocation stays a revocation when the list is stale.
    """
    crl_list = list(crls)
    if not crl_list:
        return
    with _refusing("cannot check revocation"):
        _check_revocation(chain, crl_list, [*chain, *anchors])


def _check_revocation(
    chain: Sequence[x509.Certificate],
    crl_list: list[x509.CertificateRevocationList],
    candidates: list[x509.Certificate],
) -> None:
    for cert in chain:
        issuer = _issuer_of(cert, candidates)
        if issuer is None:
            continue  # the anchor itself, or a chain we cannot place: nothing to check
        for crl in crl_list:
            if crl.issuer != cert.issuer:
                continue
            if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                log.warning(
                    "ignoring CRL claiming issuer %s: signature does not verify",
                    crl.issuer.rfc4514_string(),
                )
                continue
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                cn = _common_name(cert)
                raise ChainError(f"certificate {cn} (serial {cert.serial_number:x}) is revoked")


_PEM_CRL_BEGIN = b"-----BEGIN X509 CRL-----"
_PEM_CRL_END = b"-----END X509 CRL-----"


def _parse_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    if _PEM_CRL_BEGIN not in data:
        return [x509.load_der_x509_crl(data)]
    # cryptography loads one PEM CRL at a time; a file may hold several.
    crls = []
    for chunk in data.split(_PEM_CRL_BEGIN)[1:]:
        body, sep, _ = chunk.partition(_PEM_CRL_END)
        if not sep:
            raise ValueError("unterminated PEM CRL")
        crls.append(x509.load_pem_x509_crl(_PEM_CRL_BEGIN + body + _PEM_CRL_END + b"\n"))
    return crls


def load_crls(directory: str | FsPath) -> list[x509.CertificateRevocationList]:
    """Every CRL in ``directory`` (``<dbdir>/crl``): ``*.pem`` and ``*.crl``, PEM or DER.

    A missing directory means no CRLs.  An unreadable file raises
    :class:`ChainError` naming it: the operator put it there to revoke
    something, so silently skipping it would un-revoke.
    """
    root = FsPath(directory)
    if not root.is_dir():
        return []
    crls: list[x509.CertificateRevocationList] = []
    for path in sorted(root.iterdir()):
        if path.suffix not in (".pem", ".crl") or not path.is_file():
            continue
        try:
            crls.extend(_parse_crls(path.read_bytes()))
        except (OSError, *CERT_ERRORS) as exc:
            raise ChainError(f"cannot read CRL {path}: {exc}") from exc
    return crls


# -- reading the verified chain from an ssl object ------------------------------


def peer_verified_chain(tls: ssl.SSLSocket | ssl.SSLObject) -> list[x509.Certificate]:
    """The client chain as OpenSSL verified it (leaf first, ending with the anchor).

    Python 3.13 has the public ``get_verified_chain()`` (DER bytes).  Python
    3.10-3.12 have it only on the private ``_sslobj`` (``_ssl.Certificate``
    objects).  We never fall back to the chain the client *sent*
    (``getpeercert`` / ``get_unverified_chain``): it may hold extra
    certificates that are not on the verified path, for example a forged
    ``policy add`` CA, and every one of them would widen the derived name.
    """
    getter = getattr(tls, "get_verified_chain", None)
    if getter is None:
        getter = getattr(getattr(tls, "_sslobj", None), "get_verified_chain", None)
    if getter is None:
        raise ChainError("this Python's ssl module cannot report the verified chain")
    chain = getter() or []
    with _refusing("unreadable certificate"):
        return [
            x509.load_der_x509_certificate(
                c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER)
            )
            for c in chain
        ]
