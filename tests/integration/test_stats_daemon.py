"""albatross-stats in-process against a fake albatrossd, plus the two exporters.

The fake albatrossd listens on ``<tmp>/util/vmmd.sock``: a connection that
starts with ``Stats_initial`` is the stats conversation (the test then drives
it: ``Stats_add``/``Stats_remove`` with sequence numbers); any other command
gets one canned reply (policy, unikernel and block info, for the Prometheus
exporter).  The VM is a real process: a shell that burns a little CPU, then
``exec``s ``sleep 30`` (same pid, so utime stays > 0).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from albatross_py.daemons.metrics import (
    InfluxExporter,
    PrometheusExporter,
    TcpInflux,
    http_request,
)
from albatross_py.daemons.stats import StatsDaemon
from albatross_py.transport import FramedStream, bind_unix, connect_unix, socket_path
from albatross_py.wire.messages import (
    BlockInfoQuery,
    DataStatistics,
    Failure,
    Header,
    PolicyInfoQuery,
    ReplyBlockDevices,
    ReplyEmpty,
    ReplyPolicies,
    ReplyString,
    ReplyUnikernelInfo,
    StatsAdd,
    StatsInitial,
    StatsRemove,
    StatsSubscribe,
    UnikernelInfoQuery,
    Wire,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import (
    BlockDeviceEntry,
    FailBehaviour,
    NamedPolicy,
    Policy,
    Typ,
    UnikernelInfo,
)

N = Name.of_string
INTERVAL = 0.2
BURN = "i=0; while [ $i -lt 60000 ]; do i=$((i+1)); done; exec sleep 30"


@dataclass(eq=False)
class FakeAlbatrossd:
    tmpdir: Path
    stats_conns: trio.MemorySendChannel[FramedStream] | None = None
    initial_headers: list[Header] = field(default_factory=list)

    async def serve(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        send, self.receive = trio.open_memory_channel[FramedStream](4)
        self.stats_conns = send
        listener = bind_unix(socket_path(self.tmpdir, "vmmd"))
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                nursery.start_soon(self._conn, stream)

    async def _conn(self, stream: trio.abc.Stream) -> None:
        conn = FramedStream(stream)
        wire = await conn.read_wire()
        assert wire is not None
        match wire.payload:
            case StatsInitial():
                self.initial_headers.append(wire.header)
                await conn.write_wire(Wire(wire.header, ReplyEmpty()))
                assert self.stats_conns is not None
                await self.stats_conns.send(conn)  # the test owns it now
                return
            case PolicyInfoQuery():
                pol = Policy(4, frozenset({0}), 1024, 100, frozenset({"service"}))
                reply: object = ReplyPolicies((NamedPolicy(N("a:"), pol),))
            case UnikernelInfoQuery():
                info = UnikernelInfo(Typ.SOLO5, None, FailBehaviour(), frozenset({0}), 64, b"")
                reply = ReplyUnikernelInfo(((N("a:vm"), info),))
            case BlockInfoQuery():
                reply = ReplyBlockDevices((BlockDeviceEntry(N("a:disk"), 10, False),))
            case _:
                reply = Failure("unexpected")
        async with stream:
            await conn.write_wire(Wire(wire.header, reply))  # type: ignore[arg-type]

    async def next_stats_conn(self) -> FramedStream:
        return await self.receive.receive()


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[tuple[FakeAlbatrossd, StatsDaemon]]:
    fake = FakeAlbatrossd(tmp_path)
    daemon = StatsDaemon(tmp_path, interval=INTERVAL)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        await nursery.start(daemon.run, bind_unix(socket_path(tmp_path, "stats")))
        yield fake, daemon
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def vm_process() -> AsyncIterator[trio.Process]:
    proc = await trio.lowlevel.open_process(["sh", "-c", BURN])
    try:
        yield proc
    finally:
        proc.kill()
        await proc.wait()


async def subscribe(tmp_path: Path, name: str) -> FramedStream:
    conn = FramedStream(await connect_unix(socket_path(tmp_path, "stats")))
    header = Header(sequence=3, name=N(name))
    await conn.write_wire(Wire(header, StatsSubscribe()))
    reply = await conn.read_wire()
    assert reply == Wire(header, ReplyString("subscribed"))
    return conn


async def command(conn: FramedStream, header: Header, payload: object) -> Wire | None:
    await conn.write_wire(Wire(header, payload))  # type: ignore[arg-type]
    return await conn.read_wire()


async def drain(conn: FramedStream, quiet: float) -> int:
    """Read data until ``quiet`` seconds pass without any; how many arrived."""
    n = 0
    while True:
        with trio.move_on_after(quiet):
            wire = await conn.read_wire()
            assert wire is not None
            n += 1
            continue
        return n


async def test_stats_end_to_end(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running(tmp_path) as (fake, daemon), vm_process() as proc:
            vmmd = await fake.next_stats_conn()
            assert fake.initial_headers == [Header(5, 0, Name())]
            subs = {
                ":": await subscribe(tmp_path, ":"),
                "a:vm": await subscribe(tmp_path, "a:vm"),
                "a:": await subscribe(tmp_path, "a:"),
            }
            add = Header(sequence=7, name=N("a:vm"))
            network = (("service", "nosuchtap9"),)
            reply = await command(vmmd, add, StatsAdd("", proc.pid, network))
            assert reply == Wire(add, ReplyString("added"))
            assert daemon.table.vm(N("a:vm")).network == ()  # unknown tap dropped

            expect = {":": "a:vm", "a:vm": ":vm", "a:": ":vm"}
            for at, conn in subs.items():
                while True:
                    wire = await conn.read_wire()
                    assert wire is not None and isinstance(wire.payload, DataStatistics)
                    assert wire.header == Header(5, 0, N(expect[at]))
                    st = wire.payload.stats
                    assert st.kinfo_mem is not None and st.kinfo_mem.rss > 0
                    assert st.rusage.maxrss > 0 and st.ifdata == ()
                    cpu = st.rusage.utime.seconds * 10**6 + st.rusage.utime.microseconds
                    if cpu > 0 and st.kinfo_mem.runtime > 0:
                        break

            remove = Header(sequence=8, name=N("a:vm"))
            assert await command(vmmd, remove, StatsRemove()) == Wire(
                remove, ReplyString("removed")
            )
            counts: list[int] = []

            async def quiet_after_remove(conn: FramedStream) -> None:
                await drain(conn, 3 * INTERVAL)  # what was in flight
                counts.append(await drain(conn, 4 * INTERVAL))

            async with trio.open_nursery() as nursery:
                for conn in subs.values():
                    nursery.start_soon(quiet_after_remove, conn)
            assert counts == [0, 0, 0]

            # albatrossd goes away: albatross-stats reconnects with a new Stats_initial.
            await vmmd.aclose()
            vmmd = await fake.next_stats_conn()
            assert len(fake.initial_headers) == 2
            for conn in subs.values():
                await conn.aclose()


async def test_vanished_pid_is_removed(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with running(tmp_path) as (fake, daemon):
            vmmd = await fake.next_stats_conn()
            sub = await subscribe(tmp_path, ":")
            async with vm_process() as proc:
                add = Header(sequence=2, name=N(":gone"))
                assert await command(vmmd, add, StatsAdd("", proc.pid)) == Wire(
                    add, ReplyString("added")
                )
                wire = await sub.read_wire()
                assert wire is not None and wire.header.name == N(":gone")
            # the process is killed and reaped on leaving the block
            while daemon.table.vm(N(":gone")) is not None:
                await trio.sleep(INTERVAL / 2)
            await drain(sub, 2 * INTERVAL)
            assert await drain(sub, 3 * INTERVAL) == 0


async def test_stat_sock_accepts_add_remove_refuses_initial(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with running(tmp_path) as (_, daemon), vm_process() as proc:
            conn = FramedStream(await connect_unix(socket_path(tmp_path, "stats")))
            h = Header(sequence=1, name=N("x:y"))
            assert await command(conn, h, StatsAdd("", proc.pid)) == Wire(h, ReplyString("added"))
            assert daemon.table.vm(N("x:y")) is not None
            h2 = Header(sequence=2, name=N("x:y"))
            got = await command(conn, h2, StatsRemove())
            assert got == Wire(h2, ReplyString("removed"))
            assert daemon.table.vm(N("x:y")) is None
            h3 = Header(sequence=3, name=N("x:"))
            got = await command(conn, h3, StatsAdd("", proc.pid))
            assert got == Wire(h3, Failure("path used instead of name"))
            conn = FramedStream(await connect_unix(socket_path(tmp_path, "stats")))
            got = await command(conn, Header(), StatsInitial())
            assert got == Wire(Header(), Failure("unexpected message initial"))


async def test_influx_exporter_over_tcp(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with running(tmp_path) as (fake, _), vm_process() as proc:
            vmmd = await fake.next_stats_conn()
            add = Header(sequence=1, name=N("a:vm"))
            await command(vmmd, add, StatsAdd("", proc.pid))
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            exporter = InfluxExporter(TcpInflux("127.0.0.1", port))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(exporter.run, tmp_path, Name())
                stream = await listeners[0].accept()
                data = b""
                while data.count(b"\n") < 2:
                    data += await stream.receive_some(65536)
                nursery.cancel_scope.cancel()
            first, second = data.decode().splitlines()[:2]
            assert first.startswith("resource_usage,vm=vm utime=")
            assert ",maxflt=" in first
            assert second.startswith("kinfo_mem,vm=vm vsize=")
            await listeners[0].aclose()


async def test_prometheus_exporter(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with running(tmp_path) as (fake, _), vm_process() as proc:
            vmmd = await fake.next_stats_conn()
            add = Header(sequence=1, name=N("a:vm"))
            await command(vmmd, add, StatsAdd("", proc.pid))
            exporter = PrometheusExporter(tmp_path)
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                await nursery.start(exporter.serve, listeners)
                while True:
                    status, body = await http_request("127.0.0.1", port, "GET", "/metrics")
                    assert status == 200
                    text = body.decode()
                    if 'albatross_vm_up{name="a:vm"} 1' in text:
                        break
                    await trio.sleep(INTERVAL)
                assert 'albatross_policy_max_vms{path="a:"} 4' in text
                assert 'albatross_policy_vms{path="a:"} 1' in text
                assert f'albatross_policy_memory_bytes{{path="a:"}} {64 * 2**20}' in text
                assert f'albatross_policy_block_bytes{{path="a:"}} {10 * 2**20}' in text
                assert "albatross_exporter_albatrossd_up 1" in text
                assert "albatross_exporter_stats_up 1" in text
                status, _ = await http_request("127.0.0.1", port, "GET", "/nope")
                assert status == 404
                status, _ = await http_request("127.0.0.1", port, "POST", "/metrics")
                assert status == 405
                nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 8094)),
        ("influx:9000", ("influx", 9000)),
        ("[::1]:81", ("::1", 81)),
        ("::1", ("::1", 8094)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    from albatross_py.daemons.metrics import parse_host_port

    assert parse_host_port(text, 8094) == expected
