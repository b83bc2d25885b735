"""Slow and greedy clients against the real daemons (issue 13 item 4).

The issue's test: 500 idle connections to albatrossd at once, then a valid
``info`` answers within 1 s (and every idle one is dropped after the request
timeout, told why).  Then: a client sending a byte at a time is dropped
although it never stops sending; every local socket drops an idle client and
caps its connections; and the connections that are quiet by nature survive
far longer than the request timeout: console, stats and event subscriptions,
albatrossd's console link and event producer, the adopted stats connection,
block data between chunks (a stall timeout instead), and subscriptions
proxied by the TLS endpoint, whose half-open handshakes time out.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import trio

from albatross_py.daemons.stats import StatsDaemon
from albatross_py.host.limits import raise_nofile_limit
from albatross_py.transport import FramedStream, bind_unix, connect_unix, socket_path
from albatross_py.transport.guard import Limits
from albatross_py.wire import encode_wire, frame
from albatross_py.wire.messages import (
    BlockAdd,
    BlockSet,
    ConsoleSubscribe,
    DataConsole,
    DataEvent,
    DataStatistics,
    EventsSubscribe,
    Failure,
    Header,
    ReplyString,
    ReplyUnikernelInfo,
    StatsSubscribe,
    UnikernelCreate,
    UnikernelInfoQuery,
    Wire,
)
from albatross_py.wire.names import Name
from tests.integration.stack import Stack, stack
from tests.integration.test_tls_endpoint import Conn, tls_stack

TIMEOUT = 30
IDLE_CONNECTIONS = 500


def info_frame(seq: int = 0) -> bytes:
    return frame(encode_wire(Wire(Header(sequence=seq, name=Name()), UnikernelInfoQuery())))


async def read_failure(conn: FramedStream) -> str:
    """The Failure a dropped client is told, then the close."""
    with trio.fail_after(TIMEOUT):
        wire = await conn.read_wire()
        assert wire is not None and isinstance(wire.payload, Failure), wire
        assert await conn.read_wire() is None
    return wire.payload.message


async def test_500_idle_connections_then_info_answers_within_a_second(tmp_path: Path) -> None:
    raise_nofile_limit()  # both ends of 500 connections live in this process
    limits = Limits(request_timeout=5)
    async with stack(tmp_path, limits=limits) as s:
        path = socket_path(s.tmpdir, "vmmd")
        with trio.fail_after(TIMEOUT):
            idle = [FramedStream(await connect_unix(path)) for _ in range(IDLE_CONNECTIONS)]
        started = trio.current_time()
        reply = await s.call(":", UnikernelInfoQuery())
        elapsed = trio.current_time() - started
        assert isinstance(reply, ReplyUnikernelInfo)
        assert elapsed < 1.0, f"info took {elapsed:.2f} s with {IDLE_CONNECTIONS} idle clients"
        for conn in idle:  # each is dropped after the request timeout, with the reason
            message = await read_failure(conn)
            assert message == "request timeout: no complete request within 5 s", message
            await conn.aclose()


async def test_a_byte_at_a_time_is_dropped_while_it_is_still_sending(tmp_path: Path) -> None:
    async with stack(tmp_path, limits=Limits(request_timeout=1)) as s:
        request = info_frame() * 3  # longer than the timeout allows at this pace
        raw = await connect_unix(socket_path(s.tmpdir, "vmmd"))
        conn = FramedStream(raw)
        sent = 0

        async def trickle() -> None:
            nonlocal sent
            for byte in request:
                try:
                    await raw.send_all(bytes([byte]))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                sent += 1
                await trio.sleep(0.1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            message = await read_failure(conn)
            nursery.cancel_scope.cancel()
        assert message.startswith("request timeout"), message
        assert sent < len(info_frame()), "the first frame was complete: nothing was tested"
        assert isinstance(await s.call(":", UnikernelInfoQuery()), ReplyUnikernelInfo)


@pytest.mark.parametrize("service", ["vmmd", "console", "stats", "log"])
async def test_every_local_socket_drops_idle_clients_and_caps_connections(
    tmp_path: Path, service: str
) -> None:
    limits = Limits(request_timeout=0.5, max_connections=4)
    async with stack(tmp_path, log=True, limits=limits) as s:
        if service == "stats":
            daemon = StatsDaemon(s.tmpdir, limits=limits)
            await s.nursery.start(daemon.serve, bind_unix(socket_path(s.tmpdir, "stats")))
        path = socket_path(s.tmpdir, service)
        # one more than the cap (albatrossd's event producer holds one on the log)
        conns = [FramedStream(await connect_unix(path)) for _ in range(limits.max_connections + 1)]
        told = [await read_failure(conn) for conn in conns]
        busy = f"too many connections to {path.name} (limit 4); try again later"
        assert told.count(busy) in (1, 2), told
        timed_out = [t for t in told if t != busy]
        assert timed_out and all(
            t == "request timeout: no complete request within 0.5 s" for t in timed_out
        ), told
        for conn in conns:
            await conn.aclose()


async def subscribe(path: Path, payload: object, name: str = ":") -> FramedStream:
    conn = FramedStream(await connect_unix(path))
    await conn.write_wire(Wire(Header(name=Name.of_string(name)), payload))  # type: ignore[arg-type]
    with trio.fail_after(TIMEOUT):
        reply = await conn.read_wire()
    assert reply is not None and isinstance(reply.payload, ReplyString), reply
    return conn


async def next_of(conn: FramedStream, kind: type, *, what: str, name: str | None = None) -> Wire:
    """The next ``kind`` message (about ``name``, if given) of a subscription."""
    with trio.fail_after(TIMEOUT):
        while True:
            wire = await conn.read_wire()
            assert wire is not None, f"the {what} subscription was closed"
            if isinstance(wire.payload, kind) and name in (None, str(wire.header.name)):
                return wire


async def block_set(s: Stack, name: str, chunks: list[bytes], pause: float) -> object:
    conn = FramedStream(await connect_unix(socket_path(s.tmpdir, "vmmd")))
    async with conn:
        await conn.write_wire(Wire(Header(name=Name.of_string(name)), BlockSet()))
        try:
            for chunk in chunks:
                await trio.sleep(pause)
                await conn.write_chunk(chunk)
            await conn.write_end()
        except trio.BrokenResourceError:
            pass  # dropped: the reply says why
        with trio.fail_after(TIMEOUT):
            reply = await conn.read_wire()
    assert reply is not None
    return reply.payload


async def test_quiet_connections_outlive_the_request_timeout(tmp_path: Path) -> None:
    timeout = 0.5
    quiet = 3 * timeout
    limits = Limits(request_timeout=timeout, stall_timeout=2 * timeout)
    async with stack(tmp_path, log=True, limits=limits) as s:
        stats = StatsDaemon(s.tmpdir, interval=0.2, limits=limits)
        await s.nursery.start(stats.run, bind_unix(socket_path(s.tmpdir, "stats")))
        with trio.fail_after(TIMEOUT):
            while not s.sup.stats.connected:  # albatross-stats was adopted
                await trio.sleep(0.02)
        # the first VM: albatrossd's console link sends its first Console_add
        assert await s.call(":first", UnikernelCreate(s.config())) == ReplyString(
            "created unikernel"
        )
        console = await subscribe(
            socket_path(s.tmpdir, "console"), ConsoleSubscribe(count=0), ":vm"
        )
        statistics = await subscribe(socket_path(s.tmpdir, "stats"), StatsSubscribe())
        events = await subscribe(socket_path(s.tmpdir, "log"), EventsSubscribe(count=0))
        await trio.sleep(quiet)  # everyone is quiet for three request timeouts
        assert s.sup.stats.connected
        cfg = s.config("--lines=50", "--interval=0.05")
        assert await s.call(":vm", UnikernelCreate(cfg)) == ReplyString("created unikernel")
        # each subscription is still open: it delivers what happened after the quiet time
        line = await next_of(console, DataConsole, what="console")
        assert str(line.header.name) == ":vm"
        await next_of(events, DataEvent, what="event", name=":vm")
        await next_of(statistics, DataStatistics, what="stats", name=":vm")
        # block data: pauses between chunks longer than the request timeout are
        # fine, a stall longer than the stall timeout is not
        assert await s.call(":disk", BlockAdd(1)) == ReplyString("added block device")
        chunks = [b"a" * 1024] * 3
        assert await block_set(s, ":disk", chunks, 1.5 * timeout) == ReplyString("set block device")
        stalled = await block_set(s, ":disk", chunks, 3 * timeout)
        assert isinstance(stalled, Failure) and stalled.message.startswith("stall timeout")
        for conn in (console, statistics, events):
            await conn.aclose()


async def test_tls_endpoint_drops_half_open_handshakes_and_keeps_subscriptions(
    tmp_path: Path,
) -> None:
    timeout = 0.5
    limits = Limits(request_timeout=timeout, max_connections=3)
    async with tls_stack(tmp_path, limits=limits) as env:

        def half_open() -> bytes:
            raw = socket.create_connection(("127.0.0.1", env.port), timeout=TIMEOUT)
            with raw:
                raw.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then silence
                return raw.recv(100)

        assert await env.in_thread(half_open) == b""  # closed by the endpoint
        ctx = env.context(env.leaf("vm", ConsoleSubscribe(count=0)))

        def subscription_outlives_the_timeout() -> object:
            conn = Conn(env.port, ctx)
            try:
                first = conn.read_wire()
                conn.tls.settimeout(3 * timeout)
                try:
                    conn.read_wire()  # the VM does not exist: nothing comes
                except TimeoutError:
                    pass
                else:
                    raise AssertionError("the endpoint closed a quiet subscription")
                conn.tls.settimeout(TIMEOUT)
                conn.send_chunk(b"stop")  # the client ends it
                return first, conn.read_wire()
            finally:
                conn.close()

        first, final = await env.in_thread(subscription_outlives_the_timeout)
        assert first is not None and first.payload == ReplyString("waiting for VM"), first
        assert final is not None and final.payload == ReplyString("unsubscribed"), final

        def over_the_cap() -> list[str]:
            """Three subscribers hold the endpoint's three slots; a fourth is closed
            before any handshake; once one subscriber leaves, a client is served."""
            ctx = env.context(env.leaf("vm", ConsoleSubscribe(count=0)))
            info = env.context(env.leaf(None, UnikernelInfoQuery()))
            held = [Conn(env.port, ctx) for _ in range(3)]
            seen = []
            try:
                for conn in held:
                    wire = conn.read_wire()
                    assert wire is not None and wire.payload == ReplyString("waiting for VM")
                try:
                    Conn(env.port, info).read_wire()
                    seen.append("served")
                except (ssl.SSLError, OSError) as exc:
                    seen.append(f"refused ({type(exc).__name__})")
            finally:
                held.pop().close()
            while True:  # the freed slot
                try:
                    conn = Conn(env.port, info)
                except (ssl.SSLError, OSError):
                    continue
                wire = conn.read_wire()
                conn.close()
                seen.append(type(wire.payload).__name__ if wire else "closed")
                break
            for conn in held:
                conn.close()
            return seen

        refused, served = await env.in_thread(over_the_cap)
        assert refused.startswith("refused"), refused
        assert served == "ReplyUnikernelInfo", served
