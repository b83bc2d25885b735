"""albatrossd's connections to its helper daemons (spec 2.4, 3.8).

* :class:`ConsoleLink`: one persistent connection to albatross-console;
  ``Console_add`` before every start, each with the next sequence number,
  the reply must carry the same one.  albatross dies when the console is not
  up; we keep serving, reconnect on the next create and refuse that create
  with a message saying what is missing.
* :class:`StatsLink`: albatross-stats connects to *us* and sends
  ``Stats_initial``; from then on we send ``Stats_add``/``Stats_remove`` on
  that connection and it answers.  Without a stats daemon stats messages are
  dropped ("ignoring stat"), as in albatross.  ``Stats_add``'s ``vmmdev``
  is ``""`` for solo5 (as albatross on Linux) and ``"qmp:<absolute path>"``
  for QEMU, naming the VM's QMP socket (see :func:`stats_vmmdev` and
  :mod:`albatross_py.daemons.stats`).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

import trio

from albatross_py.transport import FramedStream, connect_unix
from albatross_py.virt.base import Prepared
from albatross_py.virt.qemu import QemuPrepared
from albatross_py.wire import WireError
from albatross_py.wire.messages import (
    Command,
    ConsoleAdd,
    ConsoleSubscribe,
    DataConsole,
    Failure,
    Header,
    ReplyEmpty,
    StatsAdd,
    StatsRemove,
    Wire,
)
from albatross_py.wire.names import Name

log = logging.getLogger("albatrossd")

#: Console lines quoted when a VM exits on its own or fails to start.
TAIL_LINES = 5
#: Bounds reading them (a local round trip; the history is sent in one write).
TAIL_TIMEOUT = 1.0
TAIL_QUIET = 0.05

#: ``vmmdev`` prefix of a QEMU VM in ``Stats_add``: the rest is its QMP socket.
QMP_VMMDEV_PREFIX = "qmp:"


def stats_vmmdev(prepared: Prepared) -> str:
    """``Stats_add``'s ``vmmdev`` for a VM: ``"qmp:<absolute QMP socket path>"``
    for QEMU, ``""`` otherwise (albatross sends ``""`` on Linux)."""
    if not isinstance(prepared, QemuPrepared):
        return ""
    vmmdev = QMP_VMMDEV_PREFIX + os.path.abspath(prepared.qmp_socket)
    try:
        vmmdev.encode("utf-8")  # the wire's UTF8String
    except UnicodeEncodeError:
        return ""
    return vmmdev


#: How long albatrossd waits for a helper daemon's answer.
PEER_TIMEOUT = 10.0


class PeerError(Exception):
    """A helper daemon could not be reached or refused; the message says which."""


class _Link:
    def __init__(self) -> None:
        self.stream: FramedStream | None = None
        self.sequence = 1
        self.lock = trio.Lock()
        self.released = trio.Event()

    async def _request(self, name: Name, cmd: Command) -> object:
        assert self.stream is not None
        seq = self.sequence
        self.sequence += 1
        with trio.fail_after(PEER_TIMEOUT):
            await self.stream.write_wire(Wire(Header(sequence=seq, name=name), cmd))
            reply = await self.stream.read_wire()
        if reply is None:
            raise PeerError("connection closed")
        if reply.header.sequence != seq:
            raise PeerError("wrong sequence number received")
        if isinstance(reply.payload, Failure):
            raise PeerError(reply.payload.message)
        return reply.payload

    async def close(self) -> None:
        if self.stream is not None:
            stream, self.stream = self.stream, None
            with trio.move_on_after(1):
                await stream.aclose()
        self.released.set()


class ConsoleLink(_Link):
    def __init__(self, socket: Path) -> None:
        super().__init__()
        self.socket = socket

    async def connect(self) -> None:
        try:
            self.stream = FramedStream(await connect_unix(self.socket))
        except OSError as exc:
            raise PeerError(
                f"albatross-console is not running (cannot connect to {self.socket}: "
                f"{exc.strerror or exc})"
            ) from None

    async def add(self, name: Name, limit: int) -> None:
        """Ask the console daemon to open the VM's FIFO (before the VM starts)."""
        async with self.lock:
            for attempt in (1, 2):
                if self.stream is None:
                    await self.connect()
                try:
                    await self._request(name, ConsoleAdd(limit))
                    return
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                        WireError) as exc:  # fmt: skip
                    await self.close()  # a stale connection: reconnect once
                    if attempt == 2:
                        raise PeerError(f"albatross-console failed: {exc}") from None
                except (PeerError, trio.TooSlowError) as exc:
                    await self.close()
                    msg = "no answer" if isinstance(exc, trio.TooSlowError) else str(exc)
                    raise PeerError(f"albatross-console: {msg}") from None

    async def tail(self, name: Name, since: datetime, count: int = TAIL_LINES) -> list[str]:
        """The VM's last ``count`` console lines since ``since`` (its tender's
        stderr included), or [] if albatross-console cannot say.  A
        subscription on a connection of its own: the history comes in one
        write right after the reply."""
        lines: list[str] = []
        with trio.move_on_after(TAIL_TIMEOUT):
            try:
                stream = FramedStream(await connect_unix(self.socket))
                async with stream:
                    cmd = ConsoleSubscribe(since=since)
                    await stream.write_wire(Wire(Header(name=name), cmd))
                    reply = await stream.read_wire()
                    if reply is None or isinstance(reply.payload, Failure):
                        return lines
                    while True:
                        with trio.move_on_after(TAIL_QUIET):
                            data = await stream.read_wire()
                            if data is None:
                                break
                            if isinstance(data.payload, DataConsole):
                                lines.append(data.payload.line.decode("utf-8", "replace"))
                            continue
                        break
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, WireError):
                pass
        return lines[-count:]


class StatsLink(_Link):
    """The connection albatross-stats opened; absent until it does."""

    async def attach(self, stream: FramedStream, header: Header) -> None:
        """Adopt a ``Stats_initial`` connection: reply, then replace any previous one."""
        async with self.lock:
            await self.close()
            await stream.write_wire(Wire(header, ReplyEmpty()))
            self.stream = stream
            self.sequence = header.sequence + 1
            self.released = trio.Event()
        log.info("albatross-stats connected")

    async def wait_released(self) -> None:
        """Until the adopted connection is dropped or replaced (its server task
        must live that long: trio closes a handler's stream when it returns)."""
        await self.released.wait()

    @property
    def connected(self) -> bool:
        return self.stream is not None

    async def _send(self, name: Name, cmd: Command) -> None:
        if self.stream is None:
            log.debug("ignoring stat for %s: albatross-stats is not connected", name)
            return
        async with self.lock:
            try:
                await self._request(name, cmd)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                    trio.TooSlowError, WireError, PeerError) as exc:  # fmt: skip
                log.warning("albatross-stats: %s; dropping its connection", exc)
                await self.close()

    async def add(
        self, name: Name, pid: int, network: list[tuple[str, str]], vmmdev: str = ""
    ) -> None:
        await self._send(name, StatsAdd(vmmdev, pid, tuple(network)))

    async def remove(self, name: Name) -> None:
        await self._send(name, StatsRemove())
