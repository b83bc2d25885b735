"""albatross-console in-process over real unix sockets and FIFOs (spec 6.1, 3.8).

The test plays albatrossd (mkfifo, Console_add on one persistent connection,
then write to the FIFO as the VM would) and the clients (subscribe,
list-inactive).  Every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio

from albatross_py.daemons.console import ConsoleDaemon, parse_args, run
from albatross_py.transport import FramedStream, bind_unix, connect_unix, socket_path
from albatross_py.wire.messages import (
    ConsoleAdd,
    ConsoleListInactive,
    ConsoleSubscribe,
    DataConsole,
    Failure,
    Header,
    Payload,
    ReplyConsoles,
    ReplyEmpty,
    ReplyString,
    Wire,
)
from albatross_py.wire.names import Name

T0 = datetime(2024, 5, 1, tzinfo=UTC)
TIMEOUT = 10


@asynccontextmanager
async def console(tmp_path: Path, **kwargs: object) -> AsyncIterator[ConsoleDaemon]:
    """The daemon, with a clock that ticks one second per FIFO read."""
    (tmp_path / "fifo").mkdir(exist_ok=True)
    ticks = itertools.count(1)
    daemon = ConsoleDaemon(
        tmp_path,
        clock=lambda: T0 + timedelta(seconds=next(ticks)),
        **kwargs,  # type: ignore[arg-type]
    )
    listener = bind_unix(socket_path(tmp_path, "console"))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.serve, listener)
        yield daemon
        nursery.cancel_scope.cancel()


async def connect(tmp_path: Path) -> FramedStream:
    with trio.fail_after(TIMEOUT):
        return FramedStream(await connect_unix(socket_path(tmp_path, "console")))


async def send(conn: FramedStream, name: str, payload: Payload, sequence: int = 0) -> Header:
    header = Header(sequence=sequence, name=Name.of_string(name))
    with trio.fail_after(TIMEOUT):
        await conn.write_wire(Wire(header, payload))
    return header


async def recv(conn: FramedStream) -> Wire | None:
    with trio.fail_after(TIMEOUT):
        return await conn.read_wire()


async def recv_lines(conn: FramedStream, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        wire = await recv(conn)
        assert wire is not None and isinstance(wire.payload, DataConsole), wire
        assert wire.header.sequence == 0
        out.append(wire.payload.line)
    return out


async def wait_until(pred: object) -> None:
    with trio.fail_after(TIMEOUT):
        while not pred():  # type: ignore[operator]
            await trio.sleep(0.005)


def make_fifo(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "fifo" / Name.of_string(name).file_component()
    os.mkfifo(path, 0o640)
    return path


def open_writer(path: Path) -> trio.lowlevel.FdStream:
    """The VM's end of the FIFO (the daemon must already have it open)."""
    return trio.lowlevel.FdStream(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


async def write(vm: trio.lowlevel.FdStream, data: bytes) -> None:
    with trio.fail_after(TIMEOUT):
        await vm.send_all(data)


def ring_lines(daemon: ConsoleDaemon, name: str) -> list[bytes]:
    entry = daemon.state.entry(Name.of_string(name))
    return [] if entry is None or entry.ring is None else [x for _, x in entry.ring.entries()]


async def add(conn: FramedStream, name: str, sequence: int, limit: int = 4) -> None:
    header = await send(conn, name, ConsoleAdd(limit), sequence)
    reply = await recv(conn)
    assert reply == Wire(header, ReplyEmpty())


async def test_add_subscribe_history_live_and_list_inactive(tmp_path: Path) -> None:
    async with console(tmp_path) as daemon:
        fifo1, _ = make_fifo(tmp_path, ":vm1"), make_fifo(tmp_path, ":vm2")
        vmmd = await connect(tmp_path)  # albatrossd's persistent connection
        await add(vmmd, ":vm1", sequence=1)
        await add(vmmd, ":vm2", sequence=2)

        vm = open_writer(fifo1)
        await write(vm, b"l1\nl2\n")
        await wait_until(lambda: ring_lines(daemon, ":vm1") == [b"l1", b"l2"])
        await write(vm, b"\n\nl3\npart")
        await wait_until(lambda: len(ring_lines(daemon, ":vm1")) == 3)

        by_count = await connect(tmp_path)
        header = await send(by_count, ":vm1", ConsoleSubscribe(count=2), sequence=7)
        assert await recv(by_count) == Wire(header, ReplyString("subscribed"))
        assert await recv_lines(by_count, 2) == [b"l2", b"l3"]

        by_since = await connect(tmp_path)
        await send(by_since, ":vm1", ConsoleSubscribe(since=T0 + timedelta(seconds=2)))
        assert (await recv(by_since)).payload == ReplyString("subscribed")  # type: ignore[union-attr]
        history = await recv(by_since)
        assert history == Wire(
            Header(sequence=0, name=Name.of_string(":vm1")),
            DataConsole(T0 + timedelta(seconds=2), b"l3"),
        )

        await write(vm, b"ial\nl4\n")
        assert await recv_lines(by_count, 2) == [b"partial", b"l4"]
        assert await recv_lines(by_since, 2) == [b"partial", b"l4"]

        # the VM exits: the entry turns inactive, ring and subscribers stay
        await vm.aclose()
        entry = daemon.state.entry(Name.of_string(":vm1"))
        await wait_until(lambda: entry is not None and not entry.active)
        lister = await connect(tmp_path)
        header = await send(lister, ":", ConsoleListInactive(), sequence=3)
        assert await recv(lister) == Wire(header, ReplyConsoles((Name.of_string(":vm1"),)))
        assert await recv(lister) is None  # then the daemon closes
        assert len(daemon.state.subscribers(Name.of_string(":vm1"))) == 2

        # restart: same name, same connection, next sequence number
        await add(vmmd, ":vm1", sequence=3)
        vm = open_writer(fifo1)
        await write(vm, b"after restart\n")
        assert await recv_lines(by_count, 1) == [b"after restart"]
        assert await recv_lines(by_since, 1) == [b"after restart"]
        assert ring_lines(daemon, ":vm1")[-2:] == [b"l4", b"after restart"]

        # a subscriber that sends anything is let go
        await by_count.write_chunk(b"bye")
        assert await recv(by_count) is None
        await wait_until(lambda: len(daemon.state.subscribers(Name.of_string(":vm1"))) == 1)
        await vm.aclose()
        for conn in (vmmd, by_count, by_since, lister):
            await conn.aclose()


async def test_slow_subscriber_does_not_block_others(tmp_path: Path) -> None:
    lines = [b"%05d " % i + b"x" * 200 for i in range(3000)]
    async with console(tmp_path, queue_size=64) as daemon:
        fifo = make_fifo(tmp_path, "a:vm")
        vmmd = await connect(tmp_path)
        await add(vmmd, "a:vm", sequence=1)
        slow = await connect(tmp_path)
        await send(slow, "a:vm", ConsoleSubscribe(count=0))
        fast = await connect(tmp_path)
        await send(fast, "a:vm", ConsoleSubscribe(count=0))
        assert (await recv(fast)).payload == ReplyString("subscribed")  # type: ignore[union-attr]
        await wait_until(lambda: len(daemon.state.subscribers(Name.of_string("a:vm"))) == 2)

        got: list[bytes] = []

        async def reader() -> None:
            got.extend(await recv_lines(fast, len(lines)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            vm = open_writer(fifo)
            for line in lines:
                await write(vm, line + b"\n")
        assert got == lines

        # the slow one was dropped: what it got ends early, then the socket closes
        assert len(daemon.state.subscribers(Name.of_string("a:vm"))) == 1
        slow_got = 0
        with trio.fail_after(TIMEOUT):
            while (wire := await slow.read_wire()) is not None:
                slow_got += isinstance(wire.payload, DataConsole)
        assert slow_got < len(lines)
        await vm.aclose()
        for conn in (vmmd, slow, fast):
            await conn.aclose()


async def test_subscriber_limit_waiting_and_errors(tmp_path: Path) -> None:
    async with console(tmp_path, max_subscribers=2) as daemon:
        name = Name.of_string("b:vm")
        subs = []
        for _ in range(3):
            c = await connect(tmp_path)
            await send(c, "b:vm", ConsoleSubscribe(count=5))
            assert (await recv(c)).payload == ReplyString("waiting for VM")  # type: ignore[union-attr]
            subs.append(c)
        assert await recv(subs[0]) is None  # the oldest was kicked
        assert len(daemon.state.subscribers(name)) == 2

        # a path where a name belongs, a name where a path belongs
        c = await connect(tmp_path)
        header = await send(c, "b:", ConsoleSubscribe(count=1))
        assert await recv(c) == Wire(header, Failure("path used instead of name"))
        c = await connect(tmp_path)
        header = await send(c, "b:vm", ConsoleListInactive())
        assert await recv(c) == Wire(header, Failure("name used"))
        # no FIFO: "opening", and the connection stays usable
        vmmd = await connect(tmp_path)
        header = await send(vmmd, "b:none", ConsoleAdd(3), sequence=5)
        assert await recv(vmmd) == Wire(header, Failure("opening"))
        make_fifo(tmp_path, "b:vm")
        await add(vmmd, "b:vm", sequence=6)
        for c in (*subs, vmmd):
            await c.aclose()


async def test_garbage_then_still_serving(tmp_path: Path) -> None:
    async with console(tmp_path):
        for junk in (b"\x00\x00\x00\x05hello", b"\x7f\xff\xff\xff"):
            raw = await connect_unix(socket_path(tmp_path, "console"))
            conn = FramedStream(raw)
            with trio.fail_after(TIMEOUT):
                await raw.send_all(junk)
            reply = await recv(conn)
            assert reply is not None and isinstance(reply.payload, Failure)
            assert await recv(conn) is None
            await conn.aclose()
        c = await connect(tmp_path)
        header = await send(c, ":", ConsoleListInactive(), sequence=9)
        assert await recv(c) == Wire(header, ReplyConsoles(()))
        await c.aclose()


async def test_command_line(tmp_path: Path) -> None:
    args = parse_args(["--tmpdir", "/x", "--max-subscribers", "3", "-v"])
    assert (args.tmpdir, args.max_subscribers, args.verbose) == ("/x", 3, 1)
    for bad in ("0", "-2", "many"):
        try:
            parse_args(["--max-subscribers", bad])
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"--max-subscribers {bad} accepted")
    assert await run(str(tmp_path), 5, systemd=True) == 1  # systemd passed no socket
