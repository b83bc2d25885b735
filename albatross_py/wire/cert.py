"""The albatross certificate extension in X.509 certificates and CSRs (spec 4.1).

OID 1.3.6.1.4.1.49836.42, non-critical, value ``SEQUENCE { INTEGER 5,
Command }``.  Leaf certificates carry the command to run; intermediate CAs
carry ``policy add``.  CSRs carry it in their extensionRequest attribute.
This module only converts between ``cryptography`` objects and our
commands; signing and chain logic live with the client and the endpoint.

A certificate's extensions are parsed when first read, and ``cryptography``
refuses bad ones with exceptions of its own that are not ``ValueError``
(``DuplicateExtension`` for an extension that appears twice,
``UnsupportedGeneralNameType``); every one of them becomes a
:class:`~albatross_py.wire.errors.WireError` here, so a hostile certificate
is an ordinary refusal.
"""

from __future__ import annotations

from cryptography import x509

from albatross_py.wire.codec import decode_cert_extension, encode_cert_extension
from albatross_py.wire.errors import WireError
from albatross_py.wire.messages import WIRE_VERSION, Command

ALBATROSS_OID = x509.ObjectIdentifier("1.3.6.1.4.1.49836.42")


def command_extension(cmd: Command, version: int = WIRE_VERSION) -> x509.UnrecognizedExtension:
    """The extension value to add (non-critical) to a certificate or CSR builder."""
    return x509.UnrecognizedExtension(ALBATROSS_OID, encode_cert_extension(cmd, version))


def add_command(
    builder: x509.CertificateBuilder | x509.CertificateSigningRequestBuilder, cmd: Command
) -> x509.CertificateBuilder | x509.CertificateSigningRequestBuilder:
    return builder.add_extension(command_extension(cmd), critical=False)


#: What reading ``.extensions`` of a certificate or CSR raises for bad ones.
_EXTENSION_ERRORS = (ValueError, TypeError, x509.UnsupportedGeneralNameType)


def extensions_of(obj: x509.Certificate | x509.CertificateSigningRequest) -> x509.Extensions:
    """``obj.extensions``, with every parse error a :class:`WireError`."""
    try:
        return obj.extensions
    except x509.DuplicateExtension as exc:
        which = "the albatross extension" if exc.oid == ALBATROSS_OID else "extension"
        raise WireError(f"{which} {exc.oid.dotted_string} appears more than once") from None
    except _EXTENSION_ERRORS as exc:
        raise WireError(f"the extensions cannot be parsed: {exc}") from None


def _extension_value(extensions: x509.Extensions) -> bytes | None:
    try:
        ext = extensions.get_extension_for_oid(ALBATROSS_OID)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - unknown OID
        raise WireError("albatross extension has an unexpected type")
    return value.value


def command_of_certificate(cert: x509.Certificate) -> tuple[int, Command] | None:
    """(version, command) from a certificate, or None when it has no extension."""
    raw = _extension_value(extensions_of(cert))
    return None if raw is None else decode_cert_extension(raw)


def command_of_csr(csr: x509.CertificateSigningRequest) -> tuple[int, Command] | None:
    """(version, command) requested by a CSR, or None when it asks for none."""
    raw = _extension_value(extensions_of(csr))
    return None if raw is None else decode_cert_extension(raw)
