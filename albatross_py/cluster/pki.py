"""Certificates for the cluster's etcd: a cluster CA, member and client certificates.

etcd is reached only over mutual TLS (``--client-cert-auth``,
``--peer-client-cert-auth``): members prove themselves to each other and to
clients with a certificate from the cluster CA, and every client (agent,
controller) presents one too.  A member certificate carries both
``serverAuth`` and ``clientAuth``: etcd's JSON gateway dials the member's own
gRPC server as a client, and peers dial each other.  Keys are ECDSA P-256
(Go's TLS and Python's ``ssl`` both take them; RSA would cost 50 ms a key).

:func:`write_cluster_pki` lays out a directory the tests, CI and the demo
share: ``ca.pem``, ``ca.key``, ``<member>.pem``/``.key`` per member, and
``<client>.pem``/``.key`` per client name.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 365
_SKEW = dt.timedelta(minutes=5)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(
    cn: str = "albatross cluster CA",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed cluster CA."""
    key = _key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    cn: str,
    *,
    server: bool,
    ips: Iterable[str] = (),
    dns: Iterable[str] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf signed by the CA: ``clientAuth``, plus ``serverAuth`` and SANs for a member."""
    key = _key()
    now = _now()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The files one party needs: its certificate and key, and the CA to trust."""

    ca: Path
    cert: Path
    key: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_pair(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(key_path, key_pem, 0o600)
    return cert_path, key_path


def write_cluster_pki(
    directory: Path,
    members: Iterable[str],
    clients: Iterable[str],
    *,
    member_ips: Iterable[str] = ("127.0.0.1",),
    ca_cn: str = "albatross cluster CA",
) -> dict[str, TlsFiles]:
    """Make a CA and certificates for ``members`` and ``clients`` under ``directory``.

    Returns the files per name (members and clients alike).  Member certificates
    name ``member_ips`` and ``localhost`` in their SAN.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = make_ca(ca_cn)
    ca_path, _ = _write_pair(directory, "ca", ca_cert, ca_key)
    ips = tuple(member_ips)
    out: dict[str, TlsFiles] = {}
    for m in members:
        cert, key = make_leaf(ca_cert, ca_key, m, server=True, ips=ips, dns=("localhost",))
        out[m] = TlsFiles(ca_path, *_write_pair(directory, m, cert, key))
    for c in clients:
        cert, key = make_leaf(ca_cert, ca_key, c, server=False)
        out[c] = TlsFiles(ca_path, *_write_pair(directory, c, cert, key))
    return out
