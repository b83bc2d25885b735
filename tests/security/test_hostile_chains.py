"""Hostile certificate chains against albatross-tls-endpoint, and delegation end to end.

Each hostile chain is presented over real TLS 1.3 on 127.0.0.1 to the
in-process endpoint in front of a real albatrossd (``tls_stack`` of the
endpoint's integration tests) and must be refused with a clear reason: a TLS
alert plus the endpoint's log line when OpenSSL refuses the handshake, or a
final ``Failure "refused: ..."`` when the chain verifies but does not yield an
acceptable request.  Afterwards albatrossd's policies, its unikernels and its
state file must be exactly as before.

The certificates the tooling refuses to make are built here with
``cryptography`` directly (:func:`make_cert`).

The last part is the delegation story end to end with every daemon
(albatrossd, console, stats, log, the TLS endpoint): the operator delegates
to a tenant, the tenant works from its own files with ``albatross-client
--destination`` (separate processes), and delegates further with
``albatross-client sign``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from albatross_py.client import certs
from albatross_py.daemons.stats import StatsDaemon
from albatross_py.transport import bind_unix, socket_path
from albatross_py.wire import der
from albatross_py.wire.cert import command_extension
from albatross_py.wire.messages import (
    Command,
    Failure,
    PolicyAdd,
    PolicyInfoQuery,
    ReplyPolicies,
    ReplyString,
    ReplyUnikernelInfo,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfoQuery,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import Policy
from tests.integration.stack import stack
from tests.integration.test_client_remote import start_endpoint
from tests.integration.test_tls_endpoint import TENANT_POLICY, Env, tls_stack

TIMEOUT = 30
SMALL = Policy(1, frozenset({0}), 64, None, frozenset())  # fits in TENANT_POLICY
GREEDY = Policy(5, frozenset({0}), 1024, 10, frozenset())  # exceeds TENANT_POLICY
UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.99999.7")
NOW = dt.datetime.now(dt.UTC)
PAST = (NOW - dt.timedelta(days=3), NOW - dt.timedelta(days=2))
FUTURE = (NOW + dt.timedelta(days=2), NOW + dt.timedelta(days=3))

Key = certs.PrivateKey
Chain = tuple[list[x509.Certificate], Key]


def make_cert(
    cn: str | None,
    issuer: tuple[x509.Certificate, Key] | None,
    command: Command | None,
    *,
    ca: bool,
    validity: tuple[dt.datetime, dt.datetime] | None = None,
    critical_extra: bool = False,
    albatross_critical: bool = False,
    key_usage: x509.KeyUsage | None = None,
) -> tuple[x509.Certificate, Key]:
    """A certificate shaped like albatross's (``d_exts`` or ``l_exts``), with no checks.

    ``issuer=None`` makes it self-signed.  ``critical_extra`` adds an unknown
    critical extension; ``albatross_critical`` marks albatross's own
    extension critical (which no verifier knows either).
    """
    key = certs.generate_key()
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else [])
    issuer_cert, issuer_key = issuer if issuer is not None else (None, key)
    start, end = validity or (now - dt.timedelta(minutes=1), now + dt.timedelta(hours=1))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if command is not None:
        builder = builder.add_extension(command_extension(command), critical=albatross_critical)
    if critical_extra:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), critical=True
        )
    if ca:
        builder = builder.add_extension(key_usage or certs._CA_KEY_USAGE, critical=True)
    else:
        builder = builder.add_extension(
            key_usage or certs._END_KEY_USAGE, critical=True
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=True)
    return builder.sign(issuer_key, None), key


def _tlvs(content: bytes) -> list[tuple[int, bytes, bytes]]:
    """The TLVs one after another in ``content``: (tag, content, whole TLV)."""
    out, pos, view = [], 0, memoryview(content)
    while pos < len(view):
        start = pos
        tag, inner, pos = der.read_tlv(view, pos)
        out.append((tag, bytes(inner), bytes(view[start:pos])))
    return out


def _sign(key: Key, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def with_extensions(
    cert: x509.Certificate, issuer_key: Key, edit: Callable[[list[bytes]], list[bytes]]
) -> x509.Certificate:
    """``cert`` with its extensions (DER, in order) edited and re-signed by its
    issuer: what ``cryptography``'s builder refuses to make (an extension
    twice, general names it cannot parse)."""
    ((_, body, _),) = _tlvs(cert.public_bytes(serialization.Encoding.DER))
    tbs, algorithm, _ = _tlvs(body)
    fields = _tlvs(tbs[1])
    tag, explicit, _ = fields[-1]
    assert tag == 0xA3, "extensions are the last field of the TBS certificate"
    ((_, sequence, _),) = _tlvs(explicit)
    extensions = edit([whole for _, _, whole in _tlvs(sequence)])
    new_tbs = der.tlv(
        0x30,
        b"".join(whole for _, _, whole in fields[:-1])
        + der.tlv(0xA3, der.tlv(0x30, b"".join(extensions))),
    )
    signature = der.tlv(0x03, b"\x00" + _sign(issuer_key, new_tbs))
    return x509.load_der_x509_certificate(der.tlv(0x30, new_tbs + algorithm[2] + signature))


_ALBATROSS_OID_DER = der.tlv(0x06, bytes.fromhex("2b0601040183852c2a"))  # 1.3.6.1.4.1.49836.42
#: subjectAltName with an ediPartyName, a GeneralName ``cryptography`` does not support.
_EDI_PARTY_SAN = der.tlv(
    0x30,
    der.tlv(0x06, bytes.fromhex("551d11"))
    + der.tlv(0x04, der.tlv(0x30, der.tlv(0xA5, der.tlv(0xA1, der.tlv(0x0C, b"abc"))))),
)


def _albatross_extension_twice(env: Env) -> Chain:
    """Issue 13: the leaf carries the albatross extension twice (DuplicateExtension)."""
    cert, key = leaf_of(_tenant(env), "vm", UnikernelDestroy())

    def twice(extensions: list[bytes]) -> list[bytes]:
        ours = [e for e in extensions if _ALBATROSS_OID_DER in e]
        assert len(ours) == 1
        return [*extensions, *ours]

    return [with_extensions(cert, env.tenant_key, twice), env.tenant], key


def _unsupported_general_name(env: Env) -> Chain:
    cert, key = leaf_of(_tenant(env), "vm", UnikernelDestroy())
    return [with_extensions(cert, env.tenant_key, lambda e: [*e, _EDI_PARTY_SAN]), env.tenant], key


# -- attempts and state ------------------------------------------------------------


@dataclass
class Outcome:
    handshake_error: str | None  # the client's SSLError text when the handshake failed
    replies: list[object]  # the payloads received otherwise


async def attempt(env: Env, chain: Sequence[x509.Certificate], key: Key) -> Outcome:
    leaf = env.write_leaf(chain[0], key, chain[1:])
    try:
        wires = await env.talk(leaf)
    except (ssl.SSLError, ConnectionError, EOFError) as exc:
        await env.idle()
        return Outcome(f"{type(exc).__name__}: {exc}", [])
    await env.idle()
    return Outcome(None, [w.payload for w in wires])


async def snapshot(env: Env) -> tuple[object, ...]:
    """albatrossd's policies, unikernels (with their configs) and state file."""
    policies = await env.s.call(":", PolicyInfoQuery())
    info = await env.s.call(":", UnikernelInfoQuery())
    assert isinstance(policies, ReplyPolicies) and isinstance(info, ReplyUnikernelInfo)
    state = env.s.dbdir / "state"
    return (
        sorted((str(e.name), repr(e.policy)) for e in policies.entries),
        sorted((str(n), repr(i)) for n, i in info.entries),
        state.read_bytes() if state.exists() else None,
    )


async def baseline(env: Env) -> None:
    """A lived-in albatrossd: the tenant's policy and VM, and VMs outside the tenant."""
    s = env.s
    created = ReplyString("created unikernel")
    assert await s.call(":vm", UnikernelCreate(s.config())) == created  # the operator's
    assert await s.call("other:vm", UnikernelCreate(s.config())) == created
    reply = await env.final(env.leaf("web", UnikernelCreate(s.config())))
    assert reply == created  # also stores the tenant's policy (uploaded from the chain)
    await env.idle()


def sub_ca(env: Env, cn: str | None = "sub", policy: Policy = SMALL,
           **kw: Any) -> tuple[x509.Certificate, Key]:  # fmt: skip
    """A delegation CA signed by the tenant (shape and validity as given, no checks)."""
    return make_cert(cn, (env.tenant, env.tenant_key), PolicyAdd(policy), ca=True, **kw)


def leaf_of(issuer: tuple[x509.Certificate, Key], cn: str | None = "x",
            command: Command | None = None, **kw: Any) -> tuple[x509.Certificate, Key]:  # fmt: skip
    return make_cert(cn, issuer, command or UnikernelInfoQuery(), ca=False, **kw)


# -- the hostile chains ------------------------------------------------------------------
#
# Each case: (build the chain, where it is refused, what the reason says).
# "handshake": OpenSSL refuses; the client sees an alert, the endpoint logs the
# verification error.  "refused": the chain verified, the endpoint answers
# Failure("refused: ...") with the reason.


def _tenant(env: Env) -> tuple[x509.Certificate, Key]:
    return env.tenant, env.tenant_key


def _with_tenant(build: Callable[[Env], tuple[x509.Certificate, Key]]) -> Callable[[Env], Chain]:
    def chain(env: Env) -> Chain:
        cert, key = build(env)
        return [cert, env.tenant], key

    return chain


def _via_sub(env: Env, sub: tuple[x509.Certificate, Key], **leaf_kw: Any) -> Chain:
    cert, key = leaf_of(sub, **leaf_kw)
    return [cert, sub[0], env.tenant], key


def _self_signed(env: Env) -> Chain:
    cert, key = make_cert("x", None, UnikernelInfoQuery(), ca=False)
    return [cert], key


def _self_signed_as_root(env: Env) -> Chain:
    """Self-signed with the root's subject name ("root") but another key."""
    cert, key = make_cert("root", None, UnikernelInfoQuery(), ca=False)
    return [cert], key


def _foreign(env: Env) -> Chain:
    foreign = make_cert("root", None, None, ca=True)  # same name as the real root
    tenant = make_cert("tenant", foreign, PolicyAdd(TENANT_POLICY), ca=True)
    cert, key = leaf_of(tenant)
    return [cert, tenant[0], foreign[0]], key


def _leaf_as_ca(env: Env) -> Chain:
    """The tenant's leaf (CA=false, no keyCertSign) signs another leaf."""
    middle = leaf_of(_tenant(env), "middle")
    cert, key = leaf_of(middle, "vm")
    return [cert, middle[0], env.tenant], key


def _escalating(env: Env) -> Chain:
    return _via_sub(env, sub_ca(env, "team", GREEDY), cn="vm",
                    command=UnikernelCreate(env.s.config()))  # fmt: skip


def _leaf_policy_add(env: Env) -> Chain:
    cert, key = leaf_of(_tenant(env), "team", PolicyAdd(GREEDY))
    return [cert, env.tenant], key


def _chain_of(env: Env, intermediates: int, command: Command | None = None) -> Chain:
    """root -> tenant -> ``intermediates`` nested sub-CAs -> leaf."""
    issuer = _tenant(env)
    chain = [env.tenant]
    for i in range(intermediates):
        issuer = (
            sub_ca(env, f"l{i}", SMALL)
            if i == 0
            else make_cert(f"l{i}", issuer, PolicyAdd(SMALL), ca=True)
        )
        chain.insert(0, issuer[0])
    cert, key = leaf_of(issuer, "vm", command or UnikernelDestroy())
    return [cert, *chain], key


def _revoked_sub(env: Env) -> Chain:
    """The tenant revokes its own sub-CA (a CRL in <dbdir>/crl), which then signs a leaf."""
    sub = sub_ca(env)
    crl = certs.make_crl(env.tenant, env.tenant_key, [sub[0].serial_number])
    (env.s.dbdir / "crl").mkdir(exist_ok=True)
    (env.s.dbdir / "crl" / "tenant.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return _via_sub(env, sub, cn="vm", command=UnikernelDestroy())


HANDSHAKE = "handshake"
REFUSED = "refused"

CASES: dict[str, tuple[Callable[[Env], Chain], str, str]] = {
    "leaf-expired": (_with_tenant(lambda e: leaf_of(_tenant(e), validity=PAST)),
                     HANDSHAKE, "certificate has expired"),
    "leaf-not-yet-valid": (_with_tenant(lambda e: leaf_of(_tenant(e), validity=FUTURE)),
                           HANDSHAKE, "certificate is not yet valid"),
    "intermediate-expired": (lambda e: _via_sub(e, sub_ca(e, validity=PAST)),
                             HANDSHAKE, "certificate has expired"),
    "intermediate-not-yet-valid": (lambda e: _via_sub(e, sub_ca(e, validity=FUTURE)),
                                   HANDSHAKE, "certificate is not yet valid"),
    "foreign-ca": (_foreign, HANDSHAKE, "self-signed certificate in certificate chain"),
    "self-signed-leaf": (_self_signed, HANDSHAKE, "self-signed certificate"),
    "self-signed-leaf-named-root": (_self_signed_as_root, HANDSHAKE, "self-signed certificate"),
    "leaf-acting-as-ca": (_leaf_as_ca, HANDSHAKE, "invalid CA certificate"),
    "leaf-unknown-critical-extension": (
        _with_tenant(lambda e: leaf_of(_tenant(e), critical_extra=True)),
        HANDSHAKE, "unhandled critical extension"),
    "leaf-albatross-extension-critical": (
        _with_tenant(lambda e: leaf_of(_tenant(e), albatross_critical=True)),
        HANDSHAKE, "unhandled critical extension"),
    "intermediate-unknown-critical-extension": (
        lambda e: _via_sub(e, sub_ca(e, critical_extra=True)),
        HANDSHAKE, "unhandled critical extension"),
    "intermediate-exceeds-parent": (_escalating, REFUSED, "policy above allows 2 unikernels"),
    "leaf-policy-add": (_leaf_policy_add, REFUSED, "refused: unexpected command"),
    "leaf-cn-other-path": (_with_tenant(lambda e: leaf_of(_tenant(e), "other:vm",
                                                          UnikernelDestroy())),
                           REFUSED, "refused: invalid name"),
    "leaf-cn-root-path": (_with_tenant(lambda e: leaf_of(_tenant(e), ":vm", UnikernelDestroy())),
                          REFUSED, "refused: invalid name"),
    "leaf-cn-bad-label": (_with_tenant(lambda e: leaf_of(_tenant(e), "vm/../x",
                                                         UnikernelDestroy())),
                          REFUSED, "refused: invalid name"),
    "leaf-cn-leading-dash": (_with_tenant(lambda e: leaf_of(_tenant(e), "-vm",
                                                            UnikernelDestroy())),
                             REFUSED, "refused: invalid name"),
    "leaf-cn-too-long": (_with_tenant(lambda e: leaf_of(_tenant(e), "a" * 64,
                                                        UnikernelDestroy())),
                         REFUSED, "refused: invalid name"),
    "intermediate-cn-with-colon": (lambda e: _via_sub(e, sub_ca(e, "other:team"), cn="vm",
                                                      command=UnikernelDestroy()),
                                   REFUSED, "refused: invalid name"),
    "intermediate-policy-without-cn": (lambda e: _via_sub(e, sub_ca(e, None)),
                                       REFUSED, "policy add may not have an empty name"),
    "intermediate-other-command": (
        lambda e: _via_sub(e, make_cert("sub", _tenant(e), UnikernelDestroy(), ca=True)),
        REFUSED, "refused: unexpected wire unikernel destroy"),
    "chain-of-10": (lambda e: _chain_of(e, 7), REFUSED, "refused: certificate chain too long"),
    "revoked-intermediate": (_revoked_sub, REFUSED, "is revoked"),
    "leaf-albatross-extension-twice": (_albatross_extension_twice, REFUSED,
                                       "albatross extension 1.3.6.1.4.1.49836.42 appears more"),
    "leaf-unsupported-general-name": (_unsupported_general_name, REFUSED,
                                      "x400Address/EDIPartyName are not supported"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
async def test_hostile_chain_is_refused_without_state_change(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    build, where, reason = CASES[case]
    caplog.set_level(logging.INFO, logger="albatross-tls-endpoint")
    async with tls_stack(tmp_path) as env:
        await baseline(env)
        before = await snapshot(env)
        chain, key = build(env)
        caplog.clear()
        outcome = await attempt(env, chain, key)
        endpoint_log = "\n".join(r.getMessage() for r in caplog.records)
        if where == HANDSHAKE:
            assert outcome.handshake_error is not None, outcome
            assert "TLS handshake with 127.0.0.1:" in endpoint_log, endpoint_log
            assert reason in endpoint_log, endpoint_log
        else:
            assert outcome.handshake_error is None, outcome
            assert len(outcome.replies) == 1, outcome
            reply = outcome.replies[0]
            assert isinstance(reply, Failure) and reason in reply.message, reply
        if where == HANDSHAKE or "refused:" in reason:  # nobody was logged in
            assert "login " not in endpoint_log, endpoint_log
        # a refusal, never an unexpected error with a traceback
        assert not [r for r in caplog.records if r.exc_info], endpoint_log
        assert await snapshot(env) == before


async def test_handshake_alerts_reach_the_client(tmp_path: Path) -> None:
    """What a refused client is told (the endpoint sends OpenSSL's alert)."""
    async with tls_stack(tmp_path) as env:
        expected = {
            "leaf-expired": "certificate expired",
            "foreign-ca": "unknown ca",
            "leaf-unknown-critical-extension": "certificate unknown",
            "self-signed-leaf": "unknown ca",
            "leaf-acting-as-ca": "unknown ca",
        }
        for case, alert in expected.items():
            chain, key = CASES[case][0](env)
            outcome = await attempt(env, chain, key)
            assert outcome.handshake_error is not None, (case, outcome)
            assert alert in outcome.handshake_error.lower(), (case, outcome)


async def test_fresh_albatrossd_keeps_no_policy_of_a_refused_escalation(tmp_path: Path) -> None:
    """Like ``intermediate-exceeds-parent``, on an albatrossd that has not seen the tenant."""
    async with tls_stack(tmp_path) as env:
        before = await snapshot(env)
        chain, key = _escalating(env)
        (reply,) = (await attempt(env, chain, key)).replies
        assert isinstance(reply, Failure) and "policy above allows 2" in reply.message, reply
        after = await snapshot(env)
        still_works = await env.final(env.leaf(None, UnikernelInfoQuery()))
        assert after == before
        assert isinstance(still_works, ReplyUnikernelInfo), still_works


async def test_chain_of_nine_is_the_longest_accepted(tmp_path: Path) -> None:
    async with tls_stack(tmp_path) as env:
        # + the root in OpenSSL's verified chain = 9
        chain, key = _chain_of(env, 6, UnikernelInfoQuery())
        (wire,) = await env.talk(env.write_leaf(chain[0], key, chain[1:]))
        assert isinstance(wire.payload, ReplyUnikernelInfo), wire
        assert str(wire.header.name) == "tenant:" + "".join(f"l{i}:" for i in range(6)) + "vm"
        policies = await env.s.call(":", PolicyInfoQuery())
        assert isinstance(policies, ReplyPolicies)
        assert len(policies.entries) == 1 + 1 + 6  # root, tenant, l0..l5 (all uploaded)


async def test_extra_certificates_sent_do_not_widen_the_name(tmp_path: Path) -> None:
    """A forged ``policy add`` CA sent along (off the verified path) is ignored."""
    async with tls_stack(tmp_path) as env:
        await baseline(env)
        forged = make_cert("other", None, PolicyAdd(GREEDY), ca=True)
        cert, key = leaf_of(_tenant(env), "vm", UnikernelDestroy())
        before = await snapshot(env)
        outcome = await attempt(env, [cert, env.tenant, forged[0]], key)
        (reply,) = outcome.replies
        assert isinstance(reply, Failure), reply  # tenant:vm does not exist
        assert await snapshot(env) == before  # :vm and other:vm untouched


async def test_tenant_cannot_name_anything_outside_its_path(tmp_path: Path) -> None:
    """Whatever the tenant signs lands below ``tenant:``, never at ``:vm`` or ``other:vm``."""
    async with tls_stack(tmp_path) as env:
        await baseline(env)
        s = env.s
        tenant = _tenant(env)
        # CN "vm": tenant:vm, not the operator's :vm
        cert, key = leaf_of(tenant, "vm", UnikernelCreate(s.config()))
        (reply,) = (await attempt(env, [cert, env.tenant], key)).replies
        assert reply == ReplyString("created unikernel"), reply
        for name in ("tenant:vm", ":vm", "other:vm", "tenant:web"):
            assert s.sup.resources.find_unikernel(Name.of_string(name)) is not None, name
        # destroying "vm" destroys tenant:vm only
        cert, key = leaf_of(tenant, "vm", UnikernelDestroy())
        (reply,) = (await attempt(env, [cert, env.tenant], key)).replies
        assert reply == ReplyString("destroyed unikernel"), reply
        assert s.sup.resources.find_unikernel(Name.of_string("tenant:vm")) is None
        assert s.sup.resources.find_unikernel(Name.of_string(":vm")) is not None
        # a sub-CA named "other" is tenant:other, not other:
        other = sub_ca(env, "other")
        cert, key = leaf_of(other, "vm", UnikernelDestroy())
        wires = await env.talk(env.write_leaf(cert, key, [other[0], env.tenant]))
        (wire,) = wires
        assert str(wire.header.name) == "tenant:other:vm"
        assert isinstance(wire.payload, Failure), wire
        assert s.sup.resources.find_unikernel(Name.of_string("other:vm")) is not None
        # "." / ":" / no CN name the tenant's own path; info there never shows :vm or other:vm
        for cn in (".", ":", None):
            cert, key = leaf_of(tenant, cn, UnikernelInfoQuery())
            (wire,) = await env.talk(env.write_leaf(cert, key, [env.tenant]))
            assert str(wire.header.name) == "tenant:"
            assert isinstance(wire.payload, ReplyUnikernelInfo)
            assert [str(n) for n, _ in wire.payload.entries] == [":web"]


# -- delegation end to end ---------------------------------------------------------------


def _client_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "albatross_py.client.cli", *args]


async def _client(cwd: Path, *args: str) -> tuple[int, str, str]:
    with trio.fail_after(TIMEOUT):
        proc = await trio.run_process(
            _client_argv(*args), cwd=cwd, capture_stdout=True, capture_stderr=True, check=False
        )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


async def _follow_until(cwd: Path, marker: str, *args: str) -> tuple[int, str]:
    """Run a following command (console, stats) until ``marker`` is printed, then SIGTERM."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await trio.lowlevel.open_process(
        _client_argv(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    out = b""
    try:
        with trio.fail_after(TIMEOUT):
            assert proc.stdout is not None
            while marker.encode() not in out:
                data = await proc.stdout.receive_some()
                assert data, f"client ended early: {out.decode()}"
                out += data
            proc.send_signal(signal.SIGTERM)
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return code, out.decode()


def _copy(src: Path, dst: Path, *names: str) -> None:
    dst.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(src / name, dst / name)


@pytest.mark.slow
async def test_delegation_end_to_end_with_all_daemons(tmp_path: Path) -> None:
    # the operator: root CA, server certificate, the tenant's sub-CA
    op = tmp_path / "operator"
    op.mkdir()
    with trio.fail_after(TIMEOUT):
        for args in (("generate", "root", "db", "--server", "localhost"),
                     ("add-policy", "tenant", "3", "--mem", "256", "--cpu", "0", "--csr"),
                     ("sign", "cacert.pem", "db", "root.key", "tenant.req")):  # fmt: skip
            code, _, err = await _client(op, *args)
            assert code == 0, (args, err)
    # the tenant's laptop: its sub-CA, its key, the operator's CA; nothing else
    laptop = tmp_path / "laptop"
    _copy(op, laptop, "tenant.pem", "tenant.key", "cacert.pem")
    async with stack(tmp_path, log=True) as s:
        stats = StatsDaemon(s.tmpdir, interval=0.1)
        await s.nursery.start(stats.run, bind_unix(socket_path(s.tmpdir, "stats")))
        pki = tmp_path / "srv"
        _copy(op, pki, "cacert.pem")
        shutil.copy(op / "localhost.pem", pki / "server.pem")
        shutil.copy(op / "localhost.key", pki / "server.key")
        port = await start_endpoint(s, pki)
        s.image()
        shutil.copy(s.bindir / "image.elf", laptop / "unikernel.hvt")
        dest = ["-d", f"127.0.0.1:{port}", "--server-ca", "cacert.pem"]
        as_tenant = [*dest, "--ca", "tenant.pem", "--ca-key", "tenant.key"]

        code, out, err = await _client(laptop, "create", "web", "unikernel.hvt", "--mem", "64",
                                       "--arg=--lines=100000", "--arg=--interval=0.05",
                                       *as_tenant)  # fmt: skip
        assert code == 0 and "created unikernel" in out, err
        assert s.sup.resources.find_unikernel(Name.of_string("tenant:web")) is not None
        code, out, err = await _client(laptop, "info", *as_tenant)
        assert code == 0 and ":web: typ solo5" in out, (out, err)
        code, out = await _follow_until(laptop, "standin: line", "console", "web", "--count",
                                        "5", *as_tenant)  # fmt: skip
        assert code == 0 and "console " in out, out
        code, out = await _follow_until(laptop, "stats:", "stats", *as_tenant)
        assert code == 0, out

        # the tenant delegates to a sub-tenant: 1 unikernel, 64 MB
        sub = tmp_path / "subtenant"
        sub.mkdir()
        _copy(laptop, sub, "cacert.pem")
        code, _, err = await _client(sub, "add-policy", "sub", "1", "--mem", "64", "--cpu", "0",
                                     "--csr")  # fmt: skip
        assert code == 0, err
        shutil.copy(sub / "sub.req", laptop / "sub.req")
        # a request exceeding the tenant's own policy is refused by the tooling
        code, _, err = await _client(sub, "add-policy", "greedy", "9", "--mem", "64", "--cpu",
                                     "0", "--csr")  # fmt: skip
        assert code == 0, err
        shutil.copy(sub / "greedy.req", laptop / "greedy.req")
        code, _, err = await _client(laptop, "sign", "tenant.pem", "db", "tenant.key", "greedy.req")
        assert code != 0, err
        code, _, err = await _client(laptop, "sign", "tenant.pem", "db", "tenant.key", "sub.req")
        assert code == 0, err
        shutil.copy(laptop / "sub.pem", sub / "sub.pem")
        assert len(certs.load_chain(sub / "sub.pem")) == 2  # [sub, tenant]

        shutil.copy(laptop / "unikernel.hvt", sub / "unikernel.hvt")
        as_sub = [*dest, "--ca", "sub.pem", "--ca-key", "sub.key"]
        code, out, err = await _client(sub, "create", "vm", "unikernel.hvt", "--mem", "32",
                                       *as_sub)  # fmt: skip
        assert code == 0 and "created unikernel" in out, err
        assert s.sup.resources.find_unikernel(Name.of_string("tenant:sub:vm")) is not None
        code, out, err = await _client(sub, "info", *as_sub)
        assert code == 0 and ":vm: typ solo5" in out and "web" not in out, (out, err)
        # the sub-tenant's one unikernel is used up (albatrossd enforces the uploaded policy)
        code, _, err = await _client(sub, "create", "vm2", "unikernel.hvt", "--mem", "32",
                                     *as_sub)  # fmt: skip
        assert code == 117, err
        # the tenant sees its sub-tenant's VM below its own path
        code, out, err = await _client(laptop, "info", *as_tenant)
        assert code == 0 and "\nsub:vm: typ solo5" in out and ":web: typ solo5" in out, out
        policies = await s.call(":", PolicyInfoQuery())
        assert isinstance(policies, ReplyPolicies)
        assert sorted(str(e.name) for e in policies.entries) == [":", "tenant:", "tenant:sub:"]

        for cwd, name, who in ((sub, "vm", as_sub), (laptop, "web", as_tenant)):
            code, out, err = await _client(cwd, "destroy", name, *who)
            assert code == 0 and "destroyed unikernel" in out, err
        assert s.sup.resources.find_unikernel(Name.of_string("tenant:sub:vm")) is None
        assert s.sup.resources.find_unikernel(Name.of_string("tenant:web")) is None
