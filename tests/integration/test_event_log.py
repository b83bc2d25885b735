"""albatross-log with albatrossd in-process: lifecycle events, subscriptions, the file.

The stack starts albatross-log before albatrossd (``stack(log=True)``), so
albatrossd's event link connects at once.  Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import pytest
import trio

from albatross_py.daemons.eventlink import EventLink
from albatross_py.daemons.events import EventsDaemon, LogFile, parse_args
from albatross_py.transport import FramedStream, bind_unix, connect_unix, socket_path
from albatross_py.wire import events as ev
from albatross_py.wire.messages import (
    BlockAdd,
    DataEvent,
    EventsRecord,
    EventsSubscribe,
    Failure,
    Header,
    PolicyAdd,
    ReplyString,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfoQuery,
    Wire,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import NetDevice, Policy, UnikernelConfig
from tests.integration.stack import Stack, stack

TIMEOUT = 15
N = Name.of_string


class Subscription:
    """A client subscribed to the event log; ``next()`` gives the next event seen."""

    def __init__(self, conn: FramedStream, at: Name) -> None:
        self.conn, self.at = conn, at

    async def next(self, timeout: float = TIMEOUT) -> tuple[Name, datetime, ev.Event]:
        with trio.fail_after(timeout):
            wire = await self.conn.read_wire()
        assert wire is not None, "albatross-log closed the subscription"
        assert isinstance(wire.payload, DataEvent), wire.payload
        assert wire.header.sequence == 0 and wire.header.version == 5
        return wire.header.name, wire.payload.timestamp, wire.payload.event

    async def events(self, n: int) -> list[ev.Event]:
        return [(await self.next())[2] for _ in range(n)]

    async def until(self, predicate, limit: int = 50) -> list[ev.Event]:  # type: ignore[no-untyped-def]
        """Events up to and including the first one ``predicate`` accepts."""
        seen = []
        for _ in range(limit):
            event = (await self.next())[2]
            seen.append(event)
            if predicate(event):
                return seen
        raise AssertionError(f"no matching event in {seen}")

    async def nothing_more(self, wait: float = 0.3) -> None:
        with trio.move_on_after(wait):
            wire = await self.conn.read_wire()
            raise AssertionError(f"unexpected {wire}")


@asynccontextmanager
async def subscribe(
    tmpdir: Path, at: str, *, count: int | None = None, since: datetime | None = None
) -> AsyncIterator[Subscription]:
    name = N(at)
    with trio.fail_after(TIMEOUT):
        conn = FramedStream(await connect_unix(socket_path(tmpdir, "log")))
        cmd = EventsSubscribe(count=count) if since is None else EventsSubscribe(since=since)
        await conn.write_wire(Wire(Header(sequence=7, name=name), cmd))
        reply = await conn.read_wire()
    assert reply is not None and reply.payload == ReplyString("subscribed")
    assert reply.header == Header(sequence=7, name=name)
    async with conn:
        yield Subscription(conn, name)


def policy(vms: int, block: int | None = None, bridges: frozenset[str] = frozenset()) -> Policy:
    return Policy(vms, frozenset({0}), 1024, block, bridges)


def file_lines(s: Stack) -> list[str]:
    text = (s.tmpdir.parent / "log" / "events.log").read_text()
    assert text.endswith("\n")
    return text.splitlines()


def kinds(lines: list[str]) -> list[tuple[str, str]]:
    return [tuple(line.split(" ")[1:3]) for line in lines]  # type: ignore[misc]


@pytest.fixture
def bridge() -> Iterator[str | None]:
    """A fresh host bridge for taps, or None where bridges cannot be made."""
    if os.geteuid() != 0:
        yield None
        return
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    name = f"albev{secrets.token_hex(3)}"
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=name, kind="bridge")
    except NetlinkError:
        yield None
        return
    try:
        yield name
    finally:
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=name):
                ipr.link("del", index=index)


async def test_lifecycle_events(tmp_path: Path, bridge: str | None) -> None:
    async with stack(tmp_path, log=True) as s:
        assert s.events is not None
        async with subscribe(s.tmpdir, ":", count=10) as root:
            # history: albatross-log's own startup first, then albatrossd's
            first = await root.events(2)
            assert first == [ev.Startup("albatross-log"), ev.Startup("albatrossd")]
            async with subscribe(s.tmpdir, "a:", count=10) as sub_a:
                bridges = frozenset({bridge}) if bridge else frozenset()
                assert await s.call("a:", PolicyAdd(policy(2, block=10, bridges=bridges))) == (
                    ReplyString("added policy")
                )
                nets = (NetDevice("service", bridge),) if bridge else ()
                cfg = UnikernelConfig(image=s.image(nets=("service",) if bridge else ()),
                                      bridges=nets)  # fmt: skip
                assert await s.call("a:web", UnikernelCreate(cfg)) == ReplyString(
                    "created unikernel"
                )
                vm = s.sup.resources.find_unikernel(N("a:web"))
                assert vm is not None
                pid, taps = vm.process.pid, vm.taps
                assert await s.call("a:web", UnikernelDestroy()) == ReplyString(
                    "destroyed unikernel"
                )
                assert await s.call("a:disk", BlockAdd(1)) == ReplyString("added block device")
                # outside a: -- a root VM that exits by itself
                assert await s.call("other", UnikernelCreate(s.config("--exit-code=3"))) == (
                    ReplyString("created unikernel")
                )

                got = await root.until(lambda e: isinstance(e, ev.UnikernelExited)
                                       and e.name == N(":other"))  # fmt: skip
                policy_event, started, *stopped = got[:4]
                assert policy_event == ev.PolicyChanged(N("a:"), policy(2, 10, bridges))
                assert isinstance(started, ev.UnikernelStarted)
                assert started.name == N("a:web") and started.pid == pid
                assert started.taps == ((("service", taps[0]),) if bridge else ())
                assert taps == (tuple(t for _, t in started.taps))
                assert started.digest == vm.prepared.digest and started.digest
                # exit and destroy of the same VM may be reported in either order
                assert set(stopped) == {
                    ev.UnikernelExited(N("a:web"), pid, signal=signal.SIGTERM),
                    ev.UnikernelDestroyed(N("a:web")),
                }
                assert got[4] == ev.BlockChanged(N("a:disk"), 1)
                assert isinstance(got[5], ev.UnikernelStarted) and got[5].name == N(":other")
                exited = got[6]
                assert exited == ev.UnikernelExited(N(":other"), got[5].pid, code=3,
                                                    reason=exited.reason)  # fmt: skip
                # it ended on its own: the reason quotes its last console lines
                assert exited.reason is not None, exited
                assert exited.reason.endswith("Solo5: solo5_exit(3) called"), exited
                assert len(got) == 7

                # the subscriber at a: sees only what is below a:, named relative to a:
                rel = await sub_a.events(5)
                assert rel[0] == ev.PolicyChanged(N(":"), policy(2, 10, bridges))
                assert rel[1] == ev.UnikernelStarted(N(":web"), pid, started.taps, (),
                                                     started.digest)  # fmt: skip
                assert set(rel[2:4]) == {
                    ev.UnikernelExited(N(":web"), pid, signal=signal.SIGTERM),
                    ev.UnikernelDestroyed(N(":web")),
                }
                assert rel[4] == ev.BlockChanged(N(":disk"), 1)
                await sub_a.nothing_more()

        # history by count after the fact, for a path: the last 2 below a:
        async with subscribe(s.tmpdir, "a:", count=2) as late:
            names = [(await late.next())[0] for _ in range(2)]
            assert names[-1] == N(":disk")
            await late.nothing_more()
        # since: everything from the policy change on (the two startups are older)
        t_policy = next(t for t, e in s.events.state.ring.entries()
                        if isinstance(e, ev.PolicyChanged))  # fmt: skip
        async with subscribe(s.tmpdir, ":", since=t_policy) as since:
            assert len(await since.events(7)) == 7
            await since.nothing_more()

        # the file: one line per event, in order
        lines = file_lines(s)
        assert len(lines) == 9
        assert kinds(lines)[:3] == [("startup", ":"), ("startup", ":"),
                                    ("policy-changed", "a:")]  # fmt: skip
        assert f"unikernel-started a:web pid={pid} " in lines[3]
        if bridge:
            assert f"taps=service={taps[0]}" in lines[3]
        assert "block-changed a:disk size=1" in lines[-3]
        # an exit nobody asked for quotes the VM's last console lines
        exited = f"unikernel-exited :other pid={got[5].pid} exit-code=3 reason="
        assert exited in lines[-1]
        assert "solo5_exit(3) called" in lines[-1].split(" reason=", 1)[1]


async def test_reopen_after_rotation(tmp_path: Path) -> None:
    async with stack(tmp_path, log=True) as s:
        assert s.events is not None and s.events.logfile is not None
        path = s.events.logfile.path
        async with subscribe(s.tmpdir, ":", count=0) as root:
            assert await s.call("a:", PolicyAdd(policy(1))) == ReplyString("added policy")
            await root.next()
            path.rename(path.with_name("events.log.1"))
            assert await s.call("b:", PolicyAdd(policy(1))) == ReplyString("added policy")
            await root.next()
            s.events.reopen()  # what SIGHUP does
            assert await s.call("c:", PolicyAdd(policy(1))) == ReplyString("added policy")
            await root.next()
        old = path.with_name("events.log.1").read_text().splitlines()
        assert [k for k in kinds(old) if k[0] == "policy-changed"] == [
            ("policy-changed", "a:"),
            ("policy-changed", "b:"),
        ]
        assert kinds(path.read_text().splitlines()) == [("policy-changed", "c:")]


async def test_albatrossd_without_log_daemon(tmp_path: Path) -> None:
    """Nothing listens on log.sock: VMs are created and destroyed as usual."""
    async with stack(tmp_path) as s:
        link = s.sup.events
        assert isinstance(link, EventLink) and not link.connected
        assert await s.call("web", UnikernelCreate(s.config())) == ReplyString("created unikernel")
        assert await s.call("web", UnikernelInfoQuery()) is not None
        assert await s.call("web", UnikernelDestroy()) == ReplyString("destroyed unikernel")
        assert not (s.tmpdir / "util" / "log.sock").exists()


async def test_link_drops_when_full_and_delivers_later(tmp_path: Path) -> None:
    link = EventLink(socket_path(tmp_path, "log"), queue_size=3, retry_interval=0.05)
    for i in range(5):
        link.emit(ev.UnikernelDestroyed(N(f"vm{i}")))  # never blocks
    assert link.dropped == 2
    logfile = LogFile(tmp_path / "events.log")
    logfile.open()
    daemon = EventsDaemon(logfile)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        await trio.sleep(0.2)  # the link retries while nothing listens
        await nursery.start(daemon.serve, bind_unix(socket_path(tmp_path, "log")))
        with trio.fail_after(TIMEOUT):
            while link.sent < 3:
                await trio.sleep(0.02)
        # the log goes away and comes back: the link reconnects
        nursery.cancel_scope.cancel()
    assert [e for _, e in daemon.state.ring.entries()][1:] == [
        ev.UnikernelDestroyed(N(f"vm{i}")) for i in range(3)
    ]
    logfile.close()


async def test_link_reconnects(tmp_path: Path) -> None:
    link = EventLink(socket_path(tmp_path, "log"), retry_interval=0.05)
    async with trio.open_nursery() as outer:
        outer.start_soon(link.run)
        for round_ in range(2):
            daemon = EventsDaemon()
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.serve, bind_unix(socket_path(tmp_path, "log")))
                link.emit(ev.Startup(f"round{round_}"))
                with trio.fail_after(TIMEOUT):
                    while len(daemon.state.ring) < 2:
                        await trio.sleep(0.02)
                nursery.cancel_scope.cancel()
            assert daemon.state.ring.entries()[-1][1] == ev.Startup(f"round{round_}")
        outer.cancel_scope.cancel()


async def test_bad_input_and_foreign_commands(tmp_path: Path) -> None:
    daemon = EventsDaemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.serve, bind_unix(socket_path(tmp_path, "log")))
        for payload in (UnikernelInfoQuery(), None):
            with trio.fail_after(TIMEOUT):
                conn = FramedStream(await connect_unix(socket_path(tmp_path, "log")))
                async with conn:
                    if payload is None:
                        await conn.write_chunk(b"\x30\x03junk")
                    else:
                        await conn.write_wire(Wire(Header(name=N("x")), payload))
                    reply = await conn.read_wire()
                    assert reply is not None and isinstance(reply.payload, Failure)
                    assert await conn.read_wire() is None  # and closed
        # a producer sends several records on one connection, without replies
        with trio.fail_after(TIMEOUT):
            conn = FramedStream(await connect_unix(socket_path(tmp_path, "log")))
            async with conn:
                for i in range(3):
                    await conn.write_wire(Wire(Header(), EventsRecord(ev.Startup(f"p{i}"))))
            while len(daemon.state.ring) < 4:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()


async def test_slow_subscriber_is_dropped(tmp_path: Path) -> None:
    daemon = EventsDaemon(queue_size=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.serve, bind_unix(socket_path(tmp_path, "log")))
        async with subscribe(tmp_path, ":", count=0):
            assert daemon.state.subscriber_count() == 1
            for i in range(10):  # no checkpoint: the writer cannot drain meanwhile
                daemon.record(ev.Startup(f"burst{i}"))
            assert daemon.state.subscriber_count() == 0
        nursery.cancel_scope.cancel()


def test_cli_defaults() -> None:
    args = parse_args(["--tmpdir", "/tmp/x"])
    assert args.logfile == "/var/log/albatross/events.log" and args.tmpdir == "/tmp/x"
    assert not args.systemd_socket_activation


@pytest.mark.slow
def test_sighup_reopens_in_a_subprocess(tmp_path: Path) -> None:
    tmpdir, logfile = tmp_path / "t", tmp_path / "logs" / "events.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "albatross_py.daemons.events", "--tmpdir", str(tmpdir),
         "--logfile", str(logfile), "--user", "", "-v"],
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    try:
        _wait(lambda: socket_path(tmpdir, "log").exists() and logfile.exists())
        logfile.rename(logfile.with_name("events.log.1"))
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: logfile.exists())

        async def send() -> None:
            conn = FramedStream(await connect_unix(socket_path(tmpdir, "log")))
            async with conn:
                await conn.write_wire(Wire(Header(), EventsRecord(ev.Startup("after-hup"))))

        trio.run(send)
        _wait(lambda: "after-hup" in logfile.read_text())
        assert "startup : program=albatross-log" in logfile.with_name("events.log.1").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            assert proc.wait(10) == 0
        if proc.poll() is None:
            proc.kill()


def _wait(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
