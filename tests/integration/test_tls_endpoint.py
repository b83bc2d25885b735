"""albatross-tls-endpoint over real TLS 1.3 on loopback, with albatrossd and the console
(and, for the event tests, albatross-log).

The client side is the standard library's blocking ``ssl`` client in a worker
thread (TLS 1.3 only, the leaf plus its CA chain, the server verified against
the CA, TCP_NODELAY), so the endpoint is tested against a client that shares
no code with it.  Certificates are made with :mod:`albatross_py.client.certs`;
the ones a well-behaved signer refuses to make (escalating, over-policy,
expired) are built directly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from albatross_py.client import certs
from albatross_py.daemons.tls_endpoint import (
    EXIT_INETD_LOGGING,
    StartupError,
    TlsEndpoint,
    main,
    make_server_context,
    tcp_listen_socket,
)
from albatross_py.transport.guard import Limits
from albatross_py.wire import events as ev
from albatross_py.wire import frame
from albatross_py.wire.cert import command_extension
from albatross_py.wire.codec import decode_wire
from albatross_py.wire.messages import (
    BlockAdd,
    BlockDump,
    BlockSet,
    Command,
    ConsoleSubscribe,
    DataBlock,
    DataConsole,
    DataEvent,
    EventsRecord,
    EventsSubscribe,
    Failure,
    Header,
    PolicyAdd,
    PolicyInfoQuery,
    ReplyBlockDeviceImage,
    ReplyPolicies,
    ReplyString,
    ReplyUnikernelInfo,
    StatsSubscribe,
    UnikernelCreate,
    UnikernelInfoQuery,
    Wire,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import Policy
from tests.integration.stack import Stack, stack
from tests.integration.test_event_log import subscribe
from tests.threads import in_thread

TIMEOUT = 30
TENANT_POLICY = Policy(2, frozenset({0}), 128, 10, frozenset())


# -- certificates the signer would refuse to make ------------------------------------


def build_cert(
    cn: str,
    issuer: x509.Certificate,
    issuer_key: certs.PrivateKey,
    command: Command,
    *,
    ca: bool,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> tuple[x509.Certificate, certs.PrivateKey]:
    """A certificate with albatross's extensions and no policy checks at all."""
    key = certs.generate_key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(minutes=1))
        .not_valid_after(not_after or now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(command_extension(command), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(certs._CA_KEY_USAGE, critical=True)
    else:
        builder = builder.add_extension(certs._END_KEY_USAGE, critical=True).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=True
        )
    return builder.sign(issuer_key, None), key


# -- a blocking TLS client (runs in a worker thread) ---------------------------------


class Conn:
    """One TLS connection speaking albatross framing, stdlib ``ssl`` only."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tls = ctx.wrap_socket(raw, server_hostname="127.0.0.1")

    def _exact(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            data = self.tls.recv(n - len(buf))
            if not data:
                if buf:
                    raise EOFError("closed in the middle of a frame")
                return None
            buf += data
        return buf

    def read_chunk(self) -> bytes | None:
        head = self._exact(4)
        if head is None:
            return None
        (length,) = struct.unpack(">I", head)
        return self._exact(length) if length else b""

    def read_wire(self) -> Wire | None:
        chunk = self.read_chunk()
        return decode_wire(chunk) if chunk else None

    def read_all(self) -> list[Wire]:
        wires = []
        while (wire := self.read_wire()) is not None:
            wires.append(wire)
        return wires

    def send_chunk(self, data: bytes) -> None:
        self.tls.sendall(frame(data))

    def close(self) -> None:
        self.tls.close()


@dataclass
class Leaf:
    chain: Path
    key: Path


@dataclass
class Env:
    s: Stack
    tmp: Path
    port: int
    endpoint: TlsEndpoint
    ca: x509.Certificate
    ca_key: certs.PrivateKey
    tenant: x509.Certificate
    tenant_key: certs.PrivateKey
    _n: itertools.count[int] = field(default_factory=itertools.count)

    def write_leaf(self, cert: x509.Certificate, key: certs.PrivateKey,
                   chain: Sequence[x509.Certificate]) -> Leaf:  # fmt: skip
        n = next(self._n)
        leaf = Leaf(self.tmp / f"leaf{n}.pem", self.tmp / f"leaf{n}.key")
        certs.write_certs(leaf.chain, [cert, *chain])
        certs.write_key(leaf.key, key)
        return leaf

    def leaf(self, label: str | None, command: Command) -> Leaf:
        """A 5-minute tenant leaf, as ``albatross-client --destination`` makes it."""
        name = Name((), label)
        cert, key = certs.sign_leaf_on_the_fly(self.tenant, self.tenant_key, name, command)
        return self.write_leaf(cert, key, [self.tenant])

    def context(self, leaf: Leaf) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(cafile=str(self.tmp / "cacert.pem"))
        ctx.load_cert_chain(str(leaf.chain), str(leaf.key))
        return ctx

    async def in_thread(self, fn: Callable[[], Any]) -> Any:
        with trio.fail_after(TIMEOUT):
            return await in_thread(fn)

    async def talk(self, leaf: Leaf, upload: Sequence[bytes] | None = None) -> list[Wire]:
        """Connect, optionally stream raw chunks (plus the end chunk), read until closed."""
        ctx = self.context(leaf)

        def run() -> list[Wire]:
            conn = Conn(self.port, ctx)
            try:
                if upload is not None:
                    for chunk in upload:
                        conn.send_chunk(chunk)
                    conn.send_chunk(b"")
                return conn.read_all()
            finally:
                conn.close()

        return await self.in_thread(run)

    async def final(self, leaf: Leaf, upload: Sequence[bytes] | None = None) -> object:
        """The one final payload of a single-reply command, checking its header."""
        wires = await self.talk(leaf, upload)
        assert len(wires) == 1, wires
        assert wires[0].header.sequence == 0
        return wires[0].payload

    async def refused_handshake(self, leaf: Leaf) -> BaseException:
        ctx = self.context(leaf)

        def run() -> BaseException:
            try:
                conn = Conn(self.port, ctx)
                conn.read_chunk()  # TLS 1.3: the client hears of the refusal on read
            except (ssl.SSLError, ConnectionError, EOFError) as exc:
                return exc
            raise AssertionError("the endpoint accepted the connection")

        return await self.in_thread(run)

    async def idle(self) -> None:
        with trio.fail_after(TIMEOUT):
            while self.endpoint.active:
                await trio.sleep(0.01)


@asynccontextmanager
async def tls_stack(
    tmp_path: Path, *, log: bool = False, limits: Limits | None = None
) -> AsyncIterator[Env]:
    """albatrossd's stack behind the endpoint; ``limits`` apply to every daemon."""
    ca, ca_key = certs.generate_ca("root")
    server, server_key = certs.generate_server(
        ca, ca_key, name="localhost", ip_addresses=["127.0.0.1", "::1"]
    )
    csr, tenant_key = certs.make_csr("tenant", PolicyAdd(TENANT_POLICY))
    tenant = certs.sign_csr(ca, ca_key, csr)
    pki = tmp_path / "pki"
    pki.mkdir()
    certs.write_certs(pki / "cacert.pem", [ca])
    certs.write_certs(pki / "server.pem", [server])
    certs.write_key(pki / "server.key", server_key)
    context = make_server_context(pki / "cacert.pem", pki / "server.pem", pki / "server.key")
    async with stack(tmp_path, log=log, limits=limits) as s:
        endpoint = TlsEndpoint(context, s.tmpdir, s.dbdir, limits=limits)
        listener = trio.SocketListener(
            trio.socket.from_stdlib_socket(tcp_listen_socket("127.0.0.1", 0))
        )
        port = listener.socket.getsockname()[1]
        await s.nursery.start(endpoint.serve, listener)
        yield Env(s, pki, port, endpoint, ca, ca_key, tenant, tenant_key)


def running(env: Env, name: str) -> bool:
    return env.s.sup.resources.find_unikernel(Name.of_string(name)) is not None


# -- the tests ------------------------------------------------------------------------------


async def test_info_at_tenant_path_gives_relative_names(tmp_path: Path) -> None:
    async with tls_stack(tmp_path) as env:
        s = env.s
        created = await s.call("tenant:web", UnikernelCreate(s.config()))
        assert created == ReplyString("created unikernel")
        assert await s.call("other:x", UnikernelCreate(s.config())) == created
        wires = await env.talk(env.leaf(None, UnikernelInfoQuery()))
        assert len(wires) == 1
        header, info = wires[0].header, wires[0].payload
        assert (header.version, header.sequence, str(header.name)) == (5, 0, "tenant:")
        assert isinstance(info, ReplyUnikernelInfo)
        assert [str(n) for n, _ in info.entries] == [":web"]  # not other:x, not tenant:web
        await env.idle()


async def test_create_inline_and_streamed_image(tmp_path: Path) -> None:
    async with tls_stack(tmp_path) as env:
        s = env.s
        cfg = s.config()
        reply = await env.final(env.leaf("web", UnikernelCreate(cfg)))
        assert reply == ReplyString("created unikernel")
        assert running(env, "tenant:web")
        # the certificate carries no image: it follows as raw chunks
        empty = dataclasses.replace(cfg, image=b"")
        image = cfg.image
        parts = [image[:100], image[100:1000], image[1000:]]
        reply = await env.final(env.leaf("streamed", UnikernelCreate(empty)), upload=parts)
        assert reply == ReplyString("created unikernel")
        assert running(env, "tenant:streamed")
        assert (s.tmpdir / "tenant:streamed.img").read_bytes() == image
        # the chain's delegation was uploaded to albatrossd before the command
        policies = await s.call("tenant:", PolicyInfoQuery())
        assert isinstance(policies, ReplyPolicies)
        assert [(str(e.name), e.policy) for e in policies.entries] == [(":", TENANT_POLICY)]
        # a third VM exceeds the tenant's two
        third = await env.final(env.leaf("third", UnikernelCreate(cfg)))
        assert isinstance(third, Failure) and "tenant" in third.message, third


async def test_create_over_tenant_policy_is_refused(tmp_path: Path) -> None:
    async with tls_stack(tmp_path) as env:
        big = dataclasses.replace(env.s.config(), memory=512)  # the tenant has 128 MB
        cert, key = build_cert("big", env.tenant, env.tenant_key, UnikernelCreate(big), ca=False)
        reply = await env.final(env.write_leaf(cert, key, [env.tenant]))
        assert isinstance(reply, Failure)
        assert "policy at path 'tenant:'" in reply.message and "memory" in reply.message, reply
        assert not running(env, "tenant:big")


async def test_escalating_intermediate_is_refused(tmp_path: Path) -> None:
    async with tls_stack(tmp_path) as env:
        s = env.s
        # the tenant's own policy is on albatrossd already (any command uploads it)
        assert isinstance(await env.final(env.leaf(None, UnikernelInfoQuery())), ReplyUnikernelInfo)
        greedy = Policy(5, frozenset({0}), 1024, 10, frozenset())
        team, team_key = build_cert("team", env.tenant, env.tenant_key, PolicyAdd(greedy), ca=True)
        leaf, leaf_key = certs.sign_leaf_on_the_fly(
            team, team_key, Name((), "vm"), UnikernelCreate(s.config())
        )
        reply = await env.final(env.write_leaf(leaf, leaf_key, [team, env.tenant]))
        assert isinstance(reply, Failure)
        assert "policy at path 'tenant:'" in reply.message, reply
        assert "policy above allows 2 unikernels" in reply.message, reply
        assert not running(env, "tenant:team:vm")
        stored = await s.call("tenant:", PolicyInfoQuery())
        assert isinstance(stored, ReplyPolicies)
        assert [str(e.name) for e in stored.entries] == [":"]  # no tenant:team


async def test_foreign_ca_leaf_fails_the_handshake(tmp_path: Path) -> None:
    async with tls_stack(tmp_path) as env:
        foreign, foreign_key = certs.generate_ca("root")  # same name, other key
        cert, key = certs.sign_leaf_on_the_fly(
            foreign, foreign_key, Name((), "x"), UnikernelInfoQuery()
        )
        exc = await env.refused_handshake(env.write_leaf(cert, key, [foreign]))
        assert isinstance(exc, ssl.SSLError), exc
        assert "unknown ca" in str(exc).lower(), exc  # the alert reached the client
        await env.idle()


async def test_expired_leaf_fails_the_handshake(tmp_path: Path) -> None:
    async with tls_stack(tmp_path) as env:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
        cert, key = build_cert(
            "old", env.tenant, env.tenant_key, UnikernelInfoQuery(), ca=False,
            not_before=past, not_after=past + dt.timedelta(hours=1),
        )  # fmt: skip
        exc = await env.refused_handshake(env.write_leaf(cert, key, [env.tenant]))
        assert isinstance(exc, ssl.SSLError), exc
        assert "expired" in str(exc).lower(), exc


async def test_revoked_sub_ca_is_refused_with_a_message(tmp_path: Path) -> None:
    async with tls_stack(tmp_path) as env:
        leaf = env.leaf(None, UnikernelInfoQuery())
        assert isinstance(await env.final(leaf), ReplyUnikernelInfo)
        crl = certs.make_crl(env.ca, env.ca_key, [env.tenant.serial_number])
        (env.s.dbdir / "crl").mkdir()
        (env.s.dbdir / "crl" / "root.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        wires = await env.talk(leaf)
        assert len(wires) == 1
        reply = wires[0].payload
        assert isinstance(reply, Failure) and "revoked" in reply.message, reply
        assert "tenant" in reply.message
        assert str(wires[0].header.name) == ":"


async def test_forbidden_leaf_command_is_refused(tmp_path: Path) -> None:
    async with tls_stack(tmp_path) as env:
        small = Policy(1, frozenset({0}), 64, None, frozenset())
        reply = await env.final(env.leaf(None, PolicyAdd(small)))
        assert reply == Failure("refused: unexpected command")
        policies = await env.s.call(":", PolicyInfoQuery())
        assert isinstance(policies, ReplyPolicies)
        assert [str(e.name) for e in policies.entries] == [":"]  # nothing was uploaded


async def test_console_subscription_streams_and_ends(tmp_path: Path) -> None:
    async with tls_stack(tmp_path) as env:
        cfg = env.s.config("--lines=100000", "--interval=0.02")
        assert await env.final(env.leaf("chatty", UnikernelCreate(cfg))) == ReplyString(
            "created unikernel"
        )
        ctx = env.context(env.leaf("chatty", ConsoleSubscribe(count=10)))

        def subscribe(stop_politely: bool) -> tuple[Wire, list[Wire], list[Wire]]:
            conn = Conn(env.port, ctx)
            try:
                first = conn.read_wire()
                assert first is not None
                lines: list[Wire] = []  # past the solo5 banner, three lines of the VM's own
                while sum(b"standin: line" in w.payload.line for w in lines) < 3:  # type: ignore[attr-defined]
                    wire = conn.read_wire()
                    assert wire is not None and isinstance(wire.payload, DataConsole), wire
                    lines.append(wire)
                rest: list[Wire] = []
                if stop_politely:
                    conn.send_chunk(b"bye")
                    rest = conn.read_all()
                return first, lines, rest
            finally:
                conn.close()

        first, lines, _ = await env.in_thread(lambda: subscribe(False))
        assert first.payload in (ReplyString("subscribed"), ReplyString("waiting for VM"))
        for wire in lines:
            assert isinstance(wire.payload, DataConsole)
            assert wire.header.sequence == 0
            assert str(wire.header.name) == "tenant:chatty"
        # the client closed: the endpoint closes its console connection and is idle
        await env.idle()
        # a client that sends anything is unsubscribed with a proper final message
        _, _, rest = await env.in_thread(lambda: subscribe(True))
        final = rest[-1]
        assert final.payload == ReplyString("unsubscribed")
        assert (final.header.sequence, str(final.header.name)) == (0, "tenant:chatty")
        assert all(isinstance(w.payload, DataConsole) for w in rest[:-1])
        await env.idle()


async def test_block_set_and_dump_stream_raw_data(tmp_path: Path) -> None:
    async with tls_stack(tmp_path) as env:
        added = await env.final(env.leaf("disk", BlockAdd(1)))
        assert added == ReplyString("added block device")
        data = os.urandom(300_000)
        parts = [data[:1], data[1:100_000], data[100_000:]]
        reply = await env.final(env.leaf("disk", BlockSet(False)), upload=parts)
        assert reply == ReplyString("set block device")
        wires = await env.talk(env.leaf("disk", BlockDump(0)))
        assert wires[0].payload == ReplyBlockDeviceImage(False)
        assert wires[-1].payload == DataBlock(None) and wires[-1].header.sequence == 0
        chunks = [w.payload for w in wires[1:-1]]
        assert all(isinstance(c, DataBlock) and c.chunk for c in chunks)
        dumped = b"".join(c.chunk for c in chunks)  # type: ignore[union-attr,misc]
        assert dumped[: len(data)] == data
        assert dumped[len(data) :] == bytes(1024 * 1024 - len(data))
        # a block set for a block that does not exist: albatrossd's failure comes back
        reply = await env.final(env.leaf("nodisk", BlockSet(False)), upload=[b"x" * 1000])
        assert isinstance(reply, Failure), reply


async def test_unreachable_service_gives_a_failure(tmp_path: Path) -> None:
    async with tls_stack(tmp_path) as env:  # the stack runs no stats daemon
        assert await env.final(env.leaf(None, StatsSubscribe())) == Failure(
            "couldn't reach service"
        )


# -- the event log: logins, logouts, tenant subscriptions ----------------------------------


def _local_addr(conn: Conn) -> str:
    host, port = conn.tls.getsockname()[:2]
    return f"{host}:{port}"


async def test_login_and_logout_events(tmp_path: Path) -> None:
    async with tls_stack(tmp_path, log=True) as env:
        tenant = Name.of_string("tenant:")
        async with subscribe(env.s.tmpdir, ":", count=0) as root:
            # a refused chain logs nobody in; a leaf may not forge events
            forged = EventsRecord(ev.Login(Name.of_string("other:vm"), "192.0.2.1:1"))
            assert await env.final(env.leaf(None, forged)) == Failure("refused: unexpected command")
            ctx = env.context(env.leaf(None, UnikernelInfoQuery()))

            def command() -> tuple[str, list[Wire]]:
                conn = Conn(env.port, ctx)
                try:
                    return _local_addr(conn), conn.read_all()
                finally:
                    conn.close()

            addr, wires = await env.in_thread(command)
            assert [type(w.payload) for w in wires] == [ReplyUnikernelInfo]
            got = await root.until(lambda e: isinstance(e, ev.Logout))
            sessions = [e for e in got if isinstance(e, ev.Login | ev.Logout)]
            assert sessions == [ev.Login(tenant, addr), ev.Logout(tenant, addr)]
            assert not any("other:vm" in str(e.subject) for e in got)

            # a connection that ends in an unexpected error still logs out
            async def boom(*_: object) -> None:
                raise RuntimeError("boom")

            env.endpoint._serve_request = boom  # type: ignore[method-assign]
            addr2, wires = await env.in_thread(command)
            # the connection guard tells the client, with the final header
            failure = Failure("internal error (RuntimeError); the connection is closed")
            assert wires == [Wire(Header(5, 0, tenant), failure)]
            got = await root.until(lambda e: isinstance(e, ev.Logout))
            sessions = [e for e in got if isinstance(e, ev.Login | ev.Logout)]
            assert sessions == [ev.Login(tenant, addr2), ev.Logout(tenant, addr2)]
            await env.idle()
        # the same lines in albatross-log's file
        text = (tmp_path / "log" / "events.log").read_text()
        for kind, address in (("login", addr), ("logout", addr), ("logout", addr2)):
            assert f" {kind} tenant: address={address}\n" in text, text


async def test_tenant_subscribes_to_its_own_subtree(tmp_path: Path) -> None:
    async with tls_stack(tmp_path, log=True) as env:
        s = env.s
        created = ReplyString("created unikernel")
        ctx = env.context(env.leaf(None, EventsSubscribe(count=20)))

        async def create_inside_and_outside() -> None:
            assert await s.call("other:x", UnikernelCreate(s.config())) == created
            assert await s.call("tenant:web", UnikernelCreate(s.config())) == created

        def watch() -> tuple[str, Wire, list[Wire], list[Wire]]:
            conn = Conn(env.port, ctx)
            try:
                first = conn.read_wire()
                assert first is not None
                trio.from_thread.run(create_inside_and_outside)
                seen: list[Wire] = []
                while not seen or not isinstance(seen[-1].payload.event, ev.UnikernelStarted):  # type: ignore[attr-defined]
                    wire = conn.read_wire()
                    assert wire is not None and isinstance(wire.payload, DataEvent), wire
                    seen.append(wire)
                conn.send_chunk(b"bye")
                return _local_addr(conn), first, seen, conn.read_all()
            finally:
                conn.close()

        addr, first, seen, rest = await env.in_thread(watch)
        assert first.payload == ReplyString("subscribed")
        # only the tenant's subtree, named relative to its path: its own login
        # (history or live, depending on who was first) and its VM
        events = [w.payload.event for w in seen]  # type: ignore[attr-defined]
        started = events[-1]
        assert isinstance(started, ev.UnikernelStarted) and started.name == Name((), "web")
        assert events[:-1] in ([], [ev.Login(Name(), addr)]), events
        assert [w.header.name for w in seen][-1] == Name((), "web")
        assert all(w.header.sequence == 0 for w in seen)
        final = rest[-1]
        assert final.payload == ReplyString("unsubscribed")
        assert (final.header.sequence, str(final.header.name)) == (0, "tenant:")
        assert all(isinstance(w.payload, DataEvent) for w in rest[:-1])
        # other:x really was logged, before tenant:web: the filter kept it out
        assert s.events is not None
        names = [str(e.name) for _, e in s.events.state.ring.entries()
                 if isinstance(e, ev.UnikernelStarted)]  # fmt: skip
        assert names == ["other:x", "tenant:web"]
        await env.idle()


# -- startup and the executable --------------------------------------------------------


def test_ca_file_must_hold_exactly_one_certificate(tmp_path: Path) -> None:
    ca, ca_key = certs.generate_ca("root")
    other, _ = certs.generate_ca("other")
    server, server_key = certs.generate_server(ca, ca_key)
    certs.write_certs(tmp_path / "two.pem", [ca, other])
    certs.write_certs(tmp_path / "server.pem", [server])
    certs.write_key(tmp_path / "server.key", server_key)
    with pytest.raises(StartupError, match="exactly one certificate, found 2"):
        make_server_context(tmp_path / "two.pem", tmp_path / "server.pem", tmp_path / "server.key")


def test_inetd_needs_syslog_or_quiet(tmp_path: Path) -> None:
    assert main(["ca", "cert", "key", "--inetd"]) == EXIT_INETD_LOGGING


def _pki(tmp_path: Path) -> tuple[Path, Leaf]:
    ca, ca_key = certs.generate_ca("root")
    server, server_key = certs.generate_server(ca, ca_key, ip_addresses=["127.0.0.1"])
    leaf, leaf_key = certs.sign_leaf_on_the_fly(ca, ca_key, Name((), "x"), UnikernelInfoQuery())
    certs.write_certs(tmp_path / "cacert.pem", [ca])
    certs.write_certs(tmp_path / "server.pem", [server])
    certs.write_key(tmp_path / "server.key", server_key)
    certs.write_certs(tmp_path / "leaf.pem", [leaf])
    certs.write_key(tmp_path / "leaf.key", leaf_key)
    return tmp_path, Leaf(tmp_path / "leaf.pem", tmp_path / "leaf.key")


def _client_ctx(pki: Path, leaf: Leaf) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cafile=str(pki / "cacert.pem"))
    ctx.load_cert_chain(str(leaf.chain), str(leaf.key))
    return ctx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command(pki: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "albatross_py.daemons.tls_endpoint",
        str(pki / "cacert.pem"), str(pki / "server.pem"), str(pki / "server.key"),
        "--tmpdir", str(pki / "no-daemons"), "--dbdir", str(pki / "db"), "--user", "", *extra,
    ]  # fmt: skip


async def test_executable_listens_dual_stack(tmp_path: Path) -> None:
    """``main`` on ``::`` serves an IPv4 client; no daemons: "couldn't reach service"."""
    pki, leaf = _pki(tmp_path)
    port = _free_port()
    proc = subprocess.Popen(_command(pki, "--port", str(port)), stdout=subprocess.DEVNULL)
    ctx = _client_ctx(pki, leaf)

    def talk() -> list[Wire]:
        for _ in range(200):
            try:
                conn = Conn(port, ctx)
                break
            except ConnectionRefusedError:
                trio.from_thread.run(trio.sleep, 0.05)
        else:
            raise AssertionError("the endpoint never listened")
        try:
            return conn.read_all()
        finally:
            conn.close()

    try:
        with trio.fail_after(TIMEOUT):
            wires = await in_thread(talk)
    finally:
        proc.terminate()
        proc.wait(10)
    assert [w.payload for w in wires] == [Failure("couldn't reach service")]
    assert str(wires[0].header.name) == ":x"


async def test_executable_inetd_mode(tmp_path: Path) -> None:
    pki, leaf = _pki(tmp_path)
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(_command(pki, "--inetd", "-q"), stdin=theirs, stdout=theirs)
    theirs.close()
    ctx = _client_ctx(pki, leaf)

    def talk() -> list[Wire]:
        ours.settimeout(TIMEOUT)
        conn = Conn.__new__(Conn)
        conn.tls = ctx.wrap_socket(ours, server_hostname="127.0.0.1")
        try:
            return conn.read_all()
        finally:
            conn.close()

    try:
        with trio.fail_after(TIMEOUT):
            wires = await in_thread(talk)
            assert await in_thread(proc.wait) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [w.payload for w in wires] == [Failure("couldn't reach service")]


async def test_executable_inetd_mode_delivers_its_events(tmp_path: Path) -> None:
    """The one --inetd connection's login and logout reach albatross-log before the exit."""
    pki, leaf = _pki(tmp_path)
    async with stack(tmp_path, log=True) as s:
        assert s.events is not None
        ours, theirs = socket.socketpair()
        argv = _command(pki, "--inetd", "-q", "--tmpdir", str(s.tmpdir))
        proc = subprocess.Popen(argv, stdin=theirs, stdout=theirs)
        theirs.close()
        ctx = _client_ctx(pki, leaf)

        def talk() -> list[Wire]:
            ours.settimeout(TIMEOUT)
            conn = Conn.__new__(Conn)
            conn.tls = ctx.wrap_socket(ours, server_hostname="127.0.0.1")
            try:
                return conn.read_all()
            finally:
                conn.close()

        try:
            with trio.fail_after(TIMEOUT):
                wires = await in_thread(talk)
                assert await in_thread(proc.wait) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert [type(w.payload) for w in wires] == [ReplyUnikernelInfo]
        with trio.fail_after(TIMEOUT):  # albatross-log reads what the process sent
            while True:
                sessions = [e for _, e in s.events.state.ring.entries()
                            if isinstance(e, ev.Login | ev.Logout)]  # fmt: skip
                if len(sessions) == 2:
                    break
                await trio.sleep(0.01)
        assert [type(e) for e in sessions] == [ev.Login, ev.Logout]
        assert all(str(e.name) == ":x" for e in sessions)  # type: ignore[attr-defined]
