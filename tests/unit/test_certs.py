"""Certificate tooling and chain derivation on generated delegation trees.

root CA -> tenant (policy) -> subtenant (policy) -> leaf.  Time validity is
not tested here: OpenSSL checks it during the handshake, and ``handle_chain``
ignores it by design.  The handshake tests at the end run the generated
chains through real OpenSSL (TLS 1.3, client certificates required).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import ssl
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from albatross_py.client import certs
from albatross_py.client.certs import (
    CertError,
    PrivateKey,
    generate_ca,
    generate_server,
    make_crl,
    make_csr,
    sign_csr,
    sign_leaf_on_the_fly,
)
from albatross_py.core.policy import PolicyError
from albatross_py.tls.chain import (
    MAX_CHAIN,
    ChainError,
    check_revocation,
    handle_chain,
    load_crls,
    peer_verified_chain,
)
from albatross_py.wire.cert import ALBATROSS_OID, command_extension, command_of_certificate
from albatross_py.wire.messages import (
    BlockAdd,
    ConsoleAdd,
    ConsoleSubscribe,
    PolicyAdd,
    PolicyInfoQuery,
    UnikernelCreate,
    UnikernelDestroy,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import Policy, UnikernelConfig

TENANT_POLICY = Policy(
    unikernels=10, cpuids=frozenset({0, 1}), memory=1024, block=100, bridges=frozenset({"service"})
)
SUB_POLICY = Policy(
    unikernels=5, cpuids=frozenset({1}), memory=512, block=50, bridges=frozenset({"service"})
)


@dataclass
class Pki:
    root: x509.Certificate
    root_key: PrivateKey
    tenant: x509.Certificate
    tenant_key: PrivateKey
    sub: x509.Certificate
    sub_key: PrivateKey


def build_pki(key_type: certs.KeyType = "ed25519") -> Pki:
    root, root_key = generate_ca("root", key_type=key_type)
    csr, tenant_key = make_csr("Tenant", PolicyAdd(TENANT_POLICY), key_type)
    tenant = sign_csr(root, root_key, csr)
    csr, sub_key = make_csr("subtenant", PolicyAdd(SUB_POLICY), key_type)
    sub = sign_csr(tenant, tenant_key, csr)
    return Pki(root, root_key, tenant, tenant_key, sub, sub_key)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return build_pki()


def leaf_chain(pki: Pki, name: str = "label", cmd=None) -> list[x509.Certificate]:
    leaf, _ = sign_leaf_on_the_fly(
        pki.sub, pki.sub_key, Name.of_string(name), cmd or ConsoleSubscribe(count=5)
    )
    return [leaf, pki.sub, pki.tenant]


def raw_cert(
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    cn: str | None,
    cmd=None,
    ca: bool = False,
) -> x509.Certificate:
    """A certificate with exactly the subject and extension given (for hostile shapes)."""
    key = certs.generate_key("ed25519")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if cmd is not None:
        builder = builder.add_extension(command_extension(cmd), critical=False)
    return builder.sign(issuer_key, None)


# -- issuance -------------------------------------------------------------------


def test_root_ca_extensions(pki: Pki) -> None:
    root = pki.root
    assert root.subject == root.issuer
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    ku = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign
    assert ku.value.digital_signature and ku.value.content_commitment
    assert command_of_certificate(root) is None
    assert (root.not_valid_after_utc - root.not_valid_before_utc).days == 3650


def test_intermediate_carries_policy_at_version_5(pki: Pki) -> None:
    found = command_of_certificate(pki.tenant)
    assert found == (5, PolicyAdd(TENANT_POLICY))
    ext = pki.tenant.extensions.get_extension_for_oid(ALBATROSS_OID)
    assert not ext.critical
    assert pki.tenant.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ski = pki.tenant.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = pki.sub.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    days = (pki.tenant.not_valid_after_utc - pki.tenant.not_valid_before_utc).days
    assert days == 365


def test_sign_csr_leaf_has_l_exts_and_one_day(pki: Pki) -> None:
    csr, _ = make_csr("web", UnikernelDestroy())
    leaf = sign_csr(pki.sub, pki.sub_key, csr)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(days=1, seconds=10)
    request = handle_chain([leaf, pki.sub, pki.tenant, pki.root])
    assert str(request.name) == "tenant:subtenant:web"
    assert request.command == UnikernelDestroy()


def test_sign_csr_refuses_escalating_policy(pki: Pki) -> None:
    bigger = Policy(5, frozenset({1}), 2048, 50, frozenset({"service"}))
    csr, _ = make_csr("greedy", PolicyAdd(bigger))
    with pytest.raises(PolicyError, match="allows 512 MB memory, which is fewer than 2048 MB"):
        sign_csr(pki.sub, pki.sub_key, csr)


def test_sign_csr_refuses_unusable_policy(pki: Pki) -> None:
    csr, _ = make_csr("tiny", PolicyAdd(Policy(1, frozenset({1}), 8, None, frozenset())))
    with pytest.raises(PolicyError, match="Unusable policy with memory 8 MB"):
        sign_csr(pki.root, pki.root_key, csr)


def test_sign_csr_checks_create_against_the_issuer(pki: Pki) -> None:
    csr, _ = make_csr("big", UnikernelCreate(UnikernelConfig(memory=4096, cpuids=frozenset({1}))))
    with pytest.raises(PolicyError, match="exceeds policy"):
        sign_csr(pki.sub, pki.sub_key, csr)


def test_sign_csr_refuses_a_mismatched_ca_key(pki: Pki) -> None:
    csr, _ = make_csr("x", UnikernelDestroy())
    with pytest.raises(CertError, match="doesn't match"):
        sign_csr(pki.sub, pki.tenant_key, csr)


def test_on_the_fly_leaf() -> None:
    pki = build_pki()
    leaf, key = sign_leaf_on_the_fly(pki.sub, pki.sub_key, Name.of_string("label"), ConsoleAdd(1))
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "label"
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(seconds=310)
    assert leaf.public_key() == key.public_key()
    root_leaf, _ = sign_leaf_on_the_fly(pki.sub, pki.sub_key, Name(), PolicyInfoQuery())
    assert root_leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "."


def test_on_the_fly_refuses_non_root_path(pki: Pki) -> None:
    with pytest.raises(CertError, match="non-empty path"):
        sign_leaf_on_the_fly(pki.sub, pki.sub_key, Name.of_string("a:b"), UnikernelDestroy())


def test_on_the_fly_checks_policy(pki: Pki) -> None:
    too_big = UnikernelCreate(UnikernelConfig(memory=513, cpuids=frozenset({1})), force=True)
    with pytest.raises(PolicyError, match="513 MB memory"):
        sign_leaf_on_the_fly(pki.sub, pki.sub_key, Name.of_string("x"), too_big)
    with pytest.raises(PolicyError, match="CPUids 0"):
        sign_leaf_on_the_fly(
            pki.sub,
            pki.sub_key,
            Name(),
            PolicyAdd(Policy(1, frozenset({0}), 64, None, frozenset())),
        )


# -- chain derivation -----------------------------------------------------------


def test_generated_chain_name_and_policies(pki: Pki) -> None:
    request = handle_chain(leaf_chain(pki))
    assert str(request.name) == "tenant:subtenant:label"
    assert request.version == 5
    assert request.command == ConsoleSubscribe(count=5)
    assert request.policies == [
        (("tenant", "subtenant"), SUB_POLICY),
        (("tenant",), TENANT_POLICY),
    ]
    # With the root (as OpenSSL's verified chain has it) nothing changes.
    assert handle_chain([*leaf_chain(pki), pki.root]) == request


def test_leaf_dot_names_the_path(pki: Pki) -> None:
    leaf, _ = sign_leaf_on_the_fly(pki.sub, pki.sub_key, Name(), UnikernelDestroy())
    request = handle_chain([leaf, pki.sub, pki.tenant])
    assert request.name == Name.of_path(("tenant", "subtenant"))


def test_leaf_with_forbidden_command(pki: Pki) -> None:
    for cmd in (PolicyAdd(SUB_POLICY), ConsoleAdd(3)):
        leaf, _ = sign_leaf_on_the_fly(pki.sub, pki.sub_key, Name(), cmd)
        with pytest.raises(ChainError, match=r"^unexpected command$"):
            handle_chain([leaf, pki.sub, pki.tenant])


def test_chain_of_ten_refused(pki: Pki) -> None:
    chain = leaf_chain(pki)
    padded = [*chain, *[pki.root] * (MAX_CHAIN - len(chain))]
    assert len(padded) == 9
    handle_chain(padded)  # roots carry no extension: skipped
    with pytest.raises(ChainError, match="certificate chain too long"):
        handle_chain([*padded, pki.root])
    with pytest.raises(ChainError, match="empty chain"):
        handle_chain([])


def test_colon_in_common_names_refused(pki: Pki) -> None:
    csr, _ = make_csr("a:b", ConsoleSubscribe(count=1))
    leaf = sign_csr(pki.sub, pki.sub_key, csr)
    with pytest.raises(ChainError, match="invalid name"):
        handle_chain([leaf, pki.sub, pki.tenant])
    evil = raw_cert(pki.root, pki.root_key, "x:y", PolicyAdd(SUB_POLICY), ca=True)
    ok_leaf = raw_cert(evil, pki.root_key, "foo", ConsoleSubscribe(count=1))
    with pytest.raises(ChainError, match="invalid name"):
        handle_chain([ok_leaf, evil])


def test_intermediate_shapes(pki: Pki) -> None:
    no_cn = raw_cert(pki.root, pki.root_key, None, PolicyAdd(SUB_POLICY), ca=True)
    leaf = raw_cert(no_cn, pki.root_key, "foo", ConsoleSubscribe(count=1))
    with pytest.raises(ChainError, match="policy add may not have an empty name"):
        handle_chain([leaf, no_cn])
    wrong = raw_cert(pki.root, pki.root_key, "mid", UnikernelDestroy(), ca=True)
    with pytest.raises(ChainError, match="unexpected wire unikernel destroy"):
        handle_chain([leaf, wrong])
    upper = raw_cert(pki.root, pki.root_key, "MiXed", PolicyAdd(SUB_POLICY), ca=True)
    assert str(handle_chain([leaf, upper]).name) == "mixed:foo"


def test_leaf_shapes(pki: Pki) -> None:
    server, _ = generate_server(pki.root, pki.root_key)
    with pytest.raises(ChainError, match="leaf certificate does not contain an albatross"):
        handle_chain([server])
    nameless = raw_cert(pki.sub, pki.sub_key, None, BlockAdd(10))
    with pytest.raises(ChainError, match="block add may not have an empty name"):
        handle_chain([nameless, pki.sub, pki.tenant])
    nameless_info = raw_cert(pki.sub, pki.sub_key, None, PolicyInfoQuery())
    assert handle_chain([nameless_info, pki.sub]).name == Name.of_path(("subtenant",))


# -- revocation -----------------------------------------------------------------


def test_crl_revoking_sub_ca_cuts_off_its_leaves(pki: Pki) -> None:
    chain = [*leaf_chain(pki), pki.root]
    crl = make_crl(pki.tenant, pki.tenant_key, [pki.sub.serial_number])
    with pytest.raises(
        ChainError, match=rf"certificate subtenant \(serial {pki.sub.serial_number:x}\)"
    ):
        check_revocation(chain, [crl])
    # Another leaf under the same sub-CA, and one issued by sign_csr: also cut off.
    csr, _ = make_csr("other", UnikernelDestroy())
    other = [sign_csr(pki.sub, pki.sub_key, csr), pki.sub, pki.tenant]
    with pytest.raises(ChainError, match="is revoked"):
        check_revocation(other, [crl], anchors=[pki.root])
    # The tenant's own leaves are fine.
    tenant_leaf, _ = sign_leaf_on_the_fly(pki.tenant, pki.tenant_key, Name(), UnikernelDestroy())
    check_revocation([tenant_leaf, pki.tenant, pki.root], [crl])


def test_crl_revoking_a_leaf(pki: Pki) -> None:
    chain = leaf_chain(pki)
    crl = make_crl(pki.sub, pki.sub_key, [chain[0].serial_number, 12345])
    with pytest.raises(ChainError, match="certificate label"):
        check_revocation(chain, [crl])


def test_crl_with_bad_signature_is_not_trusted(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    chain = [*leaf_chain(pki), pki.root]
    # Same issuer name ("tenant"), different key: a forgery or another "tenant".
    fake, fake_key = generate_ca("Tenant")
    assert fake.subject == pki.tenant.subject
    forged = make_crl(fake, fake_key, [pki.sub.serial_number])
    # A genuine CRL whose signature was damaged.
    der = bytearray(
        make_crl(pki.tenant, pki.tenant_key, [pki.sub.serial_number]).public_bytes(
            serialization.Encoding.DER
        )
    )
    der[-1] ^= 0x01
    damaged = x509.load_der_x509_crl(bytes(der))
    with caplog.at_level(logging.WARNING, logger="albatross_py.tls.chain"):
        check_revocation(chain, [forged, damaged])
    assert sum("signature does not verify" in r.getMessage() for r in caplog.records) == 2


def test_unrelated_crl_has_no_effect(pki: Pki) -> None:
    chain = [*leaf_chain(pki), pki.root]
    other, other_key = generate_ca("someone-else")
    # Even listing the very serial numbers of our chain.
    crl = make_crl(other, other_key, [c.serial_number for c in chain])
    check_revocation(chain, [crl], anchors=[other])
    check_revocation(chain, [])


def test_load_crls(tmp_path: Path, pki: Pki) -> None:
    crl_dir = tmp_path / "crl"
    assert load_crls(crl_dir) == []
    crl_dir.mkdir()
    a = make_crl(pki.tenant, pki.tenant_key, [1])
    b = make_crl(pki.sub, pki.sub_key, [2])
    (crl_dir / "both.pem").write_bytes(
        a.public_bytes(serialization.Encoding.PEM) + b.public_bytes(serialization.Encoding.PEM)
    )
    (crl_dir / "one.crl").write_bytes(a.public_bytes(serialization.Encoding.DER))
    (crl_dir / "notes.txt").write_text("ignored")
    loaded = load_crls(crl_dir)
    assert [c.issuer for c in loaded] == [pki.tenant.subject, pki.sub.subject, pki.tenant.subject]
    (crl_dir / "junk.crl").write_bytes(b"not a crl")
    with pytest.raises(ChainError, match=r"junk\.crl"):
        load_crls(crl_dir)


# -- PEM files ------------------------------------------------------------------


def test_pem_helpers(tmp_path: Path, pki: Pki) -> None:
    key_file = tmp_path / "ca.key"
    certs.write_key(key_file, pki.sub_key)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o400
    with pytest.raises(FileExistsError):
        certs.write_key(key_file, pki.sub_key)
    loaded = certs.load_key(key_file)
    assert loaded.public_key() == pki.sub_key.public_key()
    chain_file = tmp_path / "ca.pem"
    certs.write_certs(chain_file, certs.issued_chain(pki.sub, pki.tenant))
    assert certs.load_chain(chain_file) == [pki.sub, pki.tenant]
    assert certs.issued_chain(pki.tenant, pki.root) == [pki.tenant]
    csr, _ = make_csr("req", UnikernelDestroy())
    certs.write_csr(tmp_path / "req.req", csr)
    assert certs.load_csr(tmp_path / "req.req") == csr


@pytest.mark.parametrize("key_type", ["rsa2048", "p384", "p521"])
def test_other_key_types_sign(key_type: certs.KeyType) -> None:
    pki = build_pki(key_type)
    assert str(handle_chain(leaf_chain(pki)).name) == "tenant:subtenant:label"


# -- the real handshake ---------------------------------------------------------


def _handshake(
    tmp_path: Path, pki: Pki, client_chain: list[x509.Certificate], client_key: PrivateKey
) -> list[x509.Certificate]:
    """Mutual TLS 1.3 over a socketpair; returns the server's verified client chain."""
    server_cert, server_key = generate_server(pki.root, pki.root_key, "server")
    files = {
        "root.pem": certs.certs_to_pem([pki.root]),
        "server.pem": certs.certs_to_pem([server_cert]),
        "server.key": certs.key_to_pem(server_key),
        "client.pem": certs.certs_to_pem(client_chain),
        "client.key": certs.key_to_pem(client_key),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = server_ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    # Python 3.13's default; make sure our certificates pass it on 3.11 too.
    server_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    server_ctx.load_verify_locations(cafile=tmp_path / "root.pem")
    server_ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")

    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    client_ctx.load_verify_locations(cafile=tmp_path / "root.pem")
    client_ctx.load_cert_chain(tmp_path / "client.pem", tmp_path / "client.key")

    a, b = socket.socketpair()
    result: dict[str, object] = {}

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                result["chain"] = peer_verified_chain(s)
                s.sendall(b"ok")
        except Exception as exc:  # reported to the test thread
            result["error"] = exc

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname="server") as c:
            c.settimeout(10)
            reply = c.recv(2)
    except (ssl.SSLError, OSError) as exc:
        result.setdefault("client_error", exc)
        reply = b""
    finally:
        t.join(10)
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    assert reply == b"ok"
    return result["chain"]  # type: ignore[return-value]


@pytest.mark.parametrize("key_type", ["ed25519", "p256"])
def test_openssl_accepts_generated_chain(tmp_path: Path, key_type: certs.KeyType) -> None:
    pki = build_pki(key_type)
    leaf, leaf_key = sign_leaf_on_the_fly(
        pki.sub, pki.sub_key, Name.of_string("label"), ConsoleSubscribe(count=5), key_type
    )
    # An attacker-made "policy add" CA appended to what the client sends: not on
    # the verified path, so it must not show up in the name.
    rogue, rogue_key = generate_ca("rogue")
    stray = raw_cert(rogue, rogue_key, "stray", PolicyAdd(TENANT_POLICY), ca=True)
    verified = _handshake(tmp_path, pki, [leaf, pki.sub, pki.tenant, stray], leaf_key)
    assert verified == [leaf, pki.sub, pki.tenant, pki.root]
    request = handle_chain(verified)
    assert str(request.name) == "tenant:subtenant:label"
    assert [p for p, _ in request.policies] == [("tenant", "subtenant"), ("tenant",)]
    check_revocation(verified, [make_crl(pki.tenant, pki.tenant_key, [])])


def test_openssl_rejects_foreign_leaf(tmp_path: Path) -> None:
    pki = build_pki()
    other, other_key = generate_ca("root")  # same name, different key
    leaf, leaf_key = sign_leaf_on_the_fly(other, other_key, Name.of_string("x"), UnikernelDestroy())
    with pytest.raises(ssl.SSLError):
        _handshake(tmp_path, pki, [leaf], leaf_key)
