"""Certificate tooling of albatross-client: keys, CA, server, CSRs, signing, CRLs.

Mirrors ``client/albatross_client.ml`` (spec 4.2):

* :func:`generate_ca` / :func:`generate_server`: ``albatross-client generate``;
* :func:`make_csr`: ``--csr`` (CN = name, albatross extension requested);
* :func:`sign_csr`: ``albatross-client sign``: a ``policy add`` request becomes a
  delegation CA (``d_exts``, 365 days), anything else a command leaf
  (``l_exts``, 1 day), a request without the extension a server certificate;
* :func:`sign_leaf_on_the_fly`: ``--destination`` (5-minute leaf, fresh key);
* :func:`make_crl`: revocation lists for the endpoint (our addition, spec 4.6);
* PEM helpers.

Everything here is synchronous and file-free except the PEM helpers.
Policy refusals raise :class:`~albatross_py.core.policy.PolicyError`; other
refusals raise :class:`CertError`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from pathlib import Path as FsPath
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from albatross_py.core.policy import fine_with_policy, is_smaller, usable
from albatross_py.wire.cert import command_extension, command_of_certificate, command_of_csr
from albatross_py.wire.messages import (
    Command,
    PolicyAdd,
    PolicyInfoQuery,
    PolicyRemove,
    UnikernelCreate,
)
from albatross_py.wire.names import Name, path_to_string
from albatross_py.wire.types import Policy

KeyType = Literal["rsa2048", "rsa4096", "ed25519", "p256", "p384", "p521"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

KEY_TYPES: tuple[KeyType, ...] = ("rsa2048", "rsa4096", "ed25519", "p256", "p384", "p521")
#: albatross-client's ``--key-type`` default.
DEFAULT_KEY_TYPE: KeyType = "ed25519"

#: Default validities in days (``--days``/``--server-days`` and ``sign``).
CA_DAYS = 3650
SERVER_DAYS = 365
INTERMEDIATE_DAYS = 365
LEAF_DAYS = 1
#: On-the-fly leaves live five minutes (``timestamps 300``) ...
ON_THE_FLY_SECONDS = 300
#: ... and start 10 s in the past so client and server clocks need not agree.
CLOCK_SKEW_SECONDS = 10
#: TLS carries a certificate in a 24-bit length field (RFC 8446 4.4.2).
MAX_CERT_DER = 1 << 24


class CertError(ValueError):
    """A certificate cannot be generated or signed as asked."""


# -- keys ------------------------------------------------------------------------


def generate_key(key_type: KeyType = DEFAULT_KEY_TYPE) -> PrivateKey:
    match key_type:
        case "rsa2048":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        case "rsa4096":
            return rsa.generate_private_key(public_exponent=65537, key_size=4096)
        case "ed25519":
            return ed25519.Ed25519PrivateKey.generate()
        case "p256":
            return ec.generate_private_key(ec.SECP256R1())
        case "p384":
            return ec.generate_private_key(ec.SECP384R1())
        case "p521":
            return ec.generate_private_key(ec.SECP521R1())
    raise CertError(f"unknown key type {key_type!r} (one of {', '.join(KEY_TYPES)})")


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm | None:
    # Ed25519 signs without a separate hash; ocaml-x509 uses SHA-256 otherwise.
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


# -- extension sets (albatross_client.ml) ---------------------------------------

_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=True,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
_END_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _d_exts(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    return builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True
    ).add_extension(_CA_KEY_USAGE, critical=True)


def _end_exts(
    builder: x509.CertificateBuilder, purpose: x509.ObjectIdentifier
) -> x509.CertificateBuilder:
    return (
        builder.add_extension(_END_KEY_USAGE, critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=True)
    )


def _key_ids(
    builder: x509.CertificateBuilder, subject_key: object, issuer_key: object
) -> x509.CertificateBuilder:
    return builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(subject_key),  # type: ignore[arg-type]
        critical=False,
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key),  # type: ignore[arg-type]
        critical=False,
    )


def _cn(name: str) -> x509.Name:
    try:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    except ValueError as exc:
        raise CertError(f"invalid common name {name!r}: {exc}") from exc


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _validity(
    builder: x509.CertificateBuilder, seconds: int, now: dt.datetime | None = None
) -> x509.CertificateBuilder:
    now = now or _now()
    return builder.not_valid_before(now - dt.timedelta(seconds=CLOCK_SKEW_SECONDS)).not_valid_after(
        now + dt.timedelta(seconds=seconds)
    )


def _base(subject: x509.Name, issuer: x509.Name, public_key: object) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
    )


def _sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    cert = builder.sign(key, _hash_for(key))
    if len(cert.public_bytes(serialization.Encoding.DER)) > MAX_CERT_DER:
        raise CertError("certificate too big for TLS")
    return cert


def _check_key_pair(cert: x509.Certificate, key: PrivateKey) -> None:
    def spki(k: object) -> bytes:
        return k.public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    if spki(cert.public_key()) != spki(key.public_key()):
        raise CertError("Public key of certificate doesn't match private key")


def policy_of_certificate(cert: x509.Certificate) -> Policy | None:
    """The delegated policy of a CA certificate (``extract_policy``), if it has one."""
    found = command_of_certificate(cert)
    if found is not None and isinstance(found[1], PolicyAdd):
        return found[1].policy
    return None


def _check_against_issuer(ca_cert: x509.Certificate, cmd: Command) -> None:
    """The client-side policy checks albatross does before signing."""
    issuer_policy = policy_of_certificate(ca_cert)
    if issuer_policy is None:
        return  # the root CA limits nothing; albatrossd checks at use
    match cmd:
        case UnikernelCreate(config):  # create and force-create
            fine_with_policy(issuer_policy, config)
        case PolicyAdd(policy):
            is_smaller(issuer_policy, policy)


# -- root CA and server ----------------------------------------------------------


def generate_ca(
    name: str, days: int = CA_DAYS, key_type: KeyType = DEFAULT_KEY_TYPE
) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed root CA (``cacert.pem``) with ``d_exts`` and no albatross extension.

    We add a SubjectKeyIdentifier, which albatross omits: it is non-critical,
    and OpenSSL's strict verification (Python 3.13's default) wants it on CAs.
    """
    key = generate_key(key_type)
    subject = _cn(name)
    builder = _validity(_base(subject, subject, key.public_key()), days * 86400)
    builder = _d_exts(builder).add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
    )
    return _sign(builder, key), key


def generate_server(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    name: str = "server",
    days: int = SERVER_DAYS,
    key_type: KeyType = DEFAULT_KEY_TYPE,
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
) -> tuple[x509.Certificate, PrivateKey]:
    """The endpoint's certificate (``s_exts``), with a SAN for ``name`` and extras.

    albatross sets no SAN (its client does not check the host name); we add one
    so that clients which do check can.
    """
    _check_key_pair(ca_cert, ca_key)
    key = generate_key(key_type)
    builder = _validity(_base(_cn(name), ca_cert.subject, key.public_key()), days * 86400)
    builder = _key_ids(
        _end_exts(builder, ExtendedKeyUsageOID.SERVER_AUTH), key.public_key(), ca_key.public_key()
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in (name, *dns_names)]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return _sign(builder, ca_key), key


# -- CSRs and signing ------------------------------------------------------------


def make_csr(
    name: str, command: Command, key_type: KeyType = DEFAULT_KEY_TYPE
) -> tuple[x509.CertificateSigningRequest, PrivateKey]:
    """A request for CN ``name`` carrying ``command`` (``--csr``)."""
    key = generate_key(key_type)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_cn(name))
        .add_extension(command_extension(command), critical=False)
        .sign(key, _hash_for(key))
    )
    return csr, key


def sign_csr(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    csr: x509.CertificateSigningRequest,
    days: int | None = None,
) -> x509.Certificate:
    """``albatross-client sign``: issue the certificate a CSR asks for.

    A ``policy add`` request must be usable and fit inside the issuer's own
    policy (if the issuer has one); it becomes a delegation CA.  A create
    request must fit the issuer's policy.  The albatross extension is
    re-encoded at our wire version, whatever version the request used.
    """
    _check_key_pair(ca_cert, ca_key)
    if not csr.is_signature_valid:
        raise CertError("CSR signature does not verify")
    if not csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise CertError("couldn't find name (no common name in CSR subject)")
    requested = command_of_csr(csr)
    public_key = csr.public_key()
    builder = _base(csr.subject, ca_cert.subject, public_key)
    if requested is None:
        # albatross signs a request without the extension as a host certificate.
        builder = _validity(builder, (days or SERVER_DAYS) * 86400)
        builder = _end_exts(builder, ExtendedKeyUsageOID.SERVER_AUTH)
    else:
        _, cmd = requested
        if isinstance(cmd, PolicyAdd):
            usable(cmd.policy)
            builder = _d_exts(_validity(builder, (days or INTERMEDIATE_DAYS) * 86400))
        else:
            builder = _validity(builder, (days or LEAF_DAYS) * 86400)
            builder = _end_exts(builder, ExtendedKeyUsageOID.CLIENT_AUTH)
        _check_against_issuer(ca_cert, cmd)
        # Non-critical: OpenSSL and ocaml-x509 reject unknown critical extensions.
        builder = builder.add_extension(command_extension(cmd), critical=False)
    builder = _key_ids(builder, public_key, ca_key.public_key())
    return _sign(builder, ca_key)


def leaf_common_name(name: Name, command: Command) -> str:
    """The CN albatross-client gives a command leaf for ``name``.

    Policy commands carry the path (``Path.to_string``: labels joined by
    ``:``); we write ``"."`` for the root path, where albatross would write an
    empty CN that X.509 libraries refuse.  Other commands need the root path,
    since the path comes from the CA chain: the label, or ``"."`` for none.
    """
    if isinstance(command, PolicyAdd | PolicyInfoQuery | PolicyRemove):
        return ":".join(name.path) or "."
    if name.path:
        raise CertError(f"non-empty path ({path_to_string(name.path)}): it must come from the CA")
    return name.label or "."


def sign_leaf_on_the_fly(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    name: Name,
    command: Command,
    key_type: KeyType = DEFAULT_KEY_TYPE,
) -> tuple[x509.Certificate, PrivateKey]:
    """A fresh key and a 5-minute command leaf signed by the user's CA (``--destination``).

    The client sends ``[leaf, *certificates of the --ca file]``.
    """
    _check_key_pair(ca_cert, ca_key)
    cn = leaf_common_name(name, command)
    _check_against_issuer(ca_cert, command)
    key = generate_key(key_type)
    builder = _validity(_base(_cn(cn), ca_cert.subject, key.public_key()), ON_THE_FLY_SECONDS)
    builder = _end_exts(builder, ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = builder.add_extension(command_extension(command), critical=False)
    builder = _key_ids(builder, key.public_key(), ca_key.public_key())
    return _sign(builder, ca_key), key


def issued_chain(cert: x509.Certificate, ca_cert: x509.Certificate) -> list[x509.Certificate]:
    """What ``sign`` writes to ``<CN>.pem``: the certificate, and its CA unless it is the root."""
    return [cert] if ca_cert.subject == ca_cert.issuer else [cert, ca_cert]


# -- revocation ------------------------------------------------------------------


def make_crl(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    revoked_serials: Iterable[int],
    days: int = 30,
    crl_number: int = 1,
) -> x509.CertificateRevocationList:
    """A CRL by ``ca_cert`` listing ``revoked_serials``, valid for ``days``."""
    _check_key_pair(ca_cert, ca_key)
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(seconds=CLOCK_SKEW_SECONDS))
        .next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    return builder.sign(ca_key, _hash_for(ca_key))


# -- PEM files -------------------------------------------------------------------


def key_to_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certs_to_pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def write_key(path: str | FsPath, key: PrivateKey, mode: int = 0o400) -> None:
    """Write a private key, created with ``mode`` from the start (albatross: 0400).

    Refuses to overwrite: albatross-client reuses an existing key file instead.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(key_to_pem(key))


def write_certs(path: str | FsPath, certs: Sequence[x509.Certificate]) -> None:
    FsPath(path).write_bytes(certs_to_pem(certs))


def write_csr(path: str | FsPath, csr: x509.CertificateSigningRequest) -> None:
    FsPath(path).write_bytes(csr.public_bytes(serialization.Encoding.PEM))


def load_chain(path: str | FsPath) -> list[x509.Certificate]:
    """Every certificate of a PEM file, in file order (leaf first for a chain)."""
    return x509.load_pem_x509_certificates(FsPath(path).read_bytes())


def load_key(path: str | FsPath) -> PrivateKey:
    key = serialization.load_pem_private_key(FsPath(path).read_bytes(), password=None)
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise CertError(f"{path}: unsupported key type {type(key).__name__}")
    return key


def load_csr(path: str | FsPath) -> x509.CertificateSigningRequest:
    return x509.load_pem_x509_csr(FsPath(path).read_bytes())
