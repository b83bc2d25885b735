"""A small trio client for QEMU's machine protocol (QMP) on a unix socket.

The supervisor needs little from QMP: whether a VM still runs (a KVM
emulation failure leaves QEMU alive with the VM paused, run state
``internal-error``, see HOST-FACTS), a polite ``system_powerdown``, and the
KVM counters of ``query-stats``.  QMP is line-delimited JSON: a greeting,
``qmp_capabilities`` to leave negotiation mode, then commands answered in
order, with asynchronous events (``STOP``, ``SHUTDOWN``, ...) in between.

One operation runs at a time on a connection (a lock orders them), and the
reader that waits for a command's answer keeps the events it passes in
:attr:`QmpClient.events`; so there is no background task and nothing to
leak.  Every wait on QEMU is bounded by a timeout.  QEMU serves one QMP
client per socket at a time: a second connection waits until the first
closes.
"""

from __future__ import annotations

import collections
import errno
import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

#: QEMU creates its socket during startup; the first connect may come before.
CONNECT_TIMEOUT = 5.0
#: A QMP command normally answers in milliseconds; one that takes seconds
#: means a wedged QEMU, which the caller should treat as failed.
COMMAND_TIMEOUT = 10.0
#: Largest message we accept: replies we use are a few KiB (``query-stats``
#: with every KVM counter is ~5 KiB); bounding it keeps a confused peer from
#: growing our buffer without end.
MAX_MESSAGE = 1 << 20
#: Events kept for :meth:`QmpClient.wait_event`; older ones are dropped.
MAX_EVENTS = 256
_CONNECT_RETRY = 0.01
_READ_CHUNK = 65536


class QmpError(Exception):
    """The QMP connection failed or QEMU sent something we cannot read."""


class QmpTimeout(QmpError):
    """QEMU did not answer in time."""


class QmpCommandError(QmpError):
    """QEMU answered a command with an error."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        super().__init__(f"{command}: {error_class}: {desc}")
        self.command = command
        self.error_class = error_class
        self.desc = desc


@dataclass(frozen=True, slots=True)
class StatsResult:
    """One entry of ``query-stats``: a provider's counters for the VM or one vCPU."""

    provider: str
    qom_path: str | None
    values: dict[str, Any]


class QmpClient:
    """A negotiated QMP connection; make one with :func:`connect` or :func:`open_qmp`."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._lock = trio.StrictFIFOLock()
        self._next_id = 0
        self.greeting: dict[str, Any] = {}
        #: Events received so far (oldest first), each QEMU's JSON object.
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_EVENTS)

    # -- wire ---------------------------------------------------------------------

    async def _receive(self) -> dict[str, Any]:
        while True:
            nl = self._buffer.find(b"\n")
            if nl >= 0:
                line = bytes(self._buffer[: nl + 1])
                del self._buffer[: nl + 1]
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError as e:
                    raise QmpError(f"QMP sent invalid JSON: {line[:200]!r}") from e
                if not isinstance(msg, dict):
                    raise QmpError(f"QMP sent a non-object: {line[:200]!r}")
                return msg
            if len(self._buffer) > MAX_MESSAGE:
                raise QmpError(f"QMP message longer than {MAX_MESSAGE} bytes")
            try:
                data = await self._stream.receive_some(_READ_CHUNK)
            except (trio.BrokenResourceError, OSError) as e:
                raise QmpError(f"QMP connection failed: {e}") from e
            if not data:
                raise QmpError("QMP connection closed (QEMU exited?)")
            self._buffer += data

    async def _send(self, msg: Mapping[str, Any]) -> None:
        try:
            await self._stream.send_all(json.dumps(msg).encode() + b"\r\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            raise QmpError(f"QMP connection failed: {e}") from e

    async def _negotiate(self) -> None:
        greeting = await self._receive()
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {greeting!r}")
        self.greeting = greeting["QMP"]
        await self._command("qmp_capabilities", None)

    async def _command(self, command: str, arguments: Mapping[str, Any] | None) -> Any:
        self._next_id += 1
        ident = self._next_id
        msg: dict[str, Any] = {"execute": command, "id": ident}
        if arguments:
            msg["arguments"] = dict(arguments)
        await self._send(msg)
        while True:
            reply = await self._receive()
            if "event" in reply:
                self.events.append(reply)
                continue
            if reply.get("id") != ident:
                continue  # an answer to a command whose waiter was cancelled
            if "error" in reply:
                err = reply["error"] if isinstance(reply["error"], dict) else {}
                raise QmpCommandError(
                    command, str(err.get("class", "?")), str(err.get("desc", reply["error"]))
                )
            return reply.get("return")

    # -- commands -----------------------------------------------------------------

    async def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float = COMMAND_TIMEOUT,
    ) -> Any:
        """Run one QMP command and return its ``return`` value."""
        try:
            with trio.fail_after(timeout):
                async with self._lock:
                    return await self._command(command, arguments)
        except trio.TooSlowError as e:
            raise QmpTimeout(f"QMP {command}: no answer within {timeout} s") from e

    async def query_status(self, *, timeout: float = COMMAND_TIMEOUT) -> str:
        """The run state: ``running``, ``paused``, ``internal-error``, ``shutdown``, ..."""
        reply = await self.execute("query-status", timeout=timeout)
        return str(reply["status"])

    async def system_powerdown(self, *, timeout: float = COMMAND_TIMEOUT) -> None:
        """Ask the guest to power off (ACPI power button); it may ignore it."""
        await self.execute("system_powerdown", timeout=timeout)

    async def quit(self, *, timeout: float = COMMAND_TIMEOUT) -> None:
        """Make QEMU exit at once (status 0), whatever the guest does."""
        try:
            await self.execute("quit", timeout=timeout)
        except (QmpCommandError, QmpTimeout):
            raise
        except QmpError:
            pass  # QEMU may close the socket before its answer is read

    async def query_stats(
        self, target: str = "vm", *, timeout: float = COMMAND_TIMEOUT
    ) -> list[StatsResult]:
        """``query-stats`` for the VM (``target="vm"``) or every vCPU (``"vcpu"``)."""
        reply = await self.execute("query-stats", {"target": target}, timeout=timeout)
        out = []
        for entry in reply or ():
            values = {s["name"]: s["value"] for s in entry.get("stats", ())}
            out.append(StatsResult(entry.get("provider", "?"), entry.get("qom-path"), values))
        return out

    async def wait_event(self, name: str, *, timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        """Return (and forget) the oldest event ``name``, waiting for one if needed."""
        try:
            with trio.fail_after(timeout):
                async with self._lock:
                    while True:
                        for ev in self.events:
                            if ev.get("event") == name:
                                self.events.remove(ev)
                                return ev
                        msg = await self._receive()
                        if "event" in msg:
                            self.events.append(msg)
        except trio.TooSlowError as e:
            raise QmpTimeout(f"no QMP event {name} within {timeout} s") from e

    async def aclose(self) -> None:
        await self._stream.aclose()


async def connect(path: str | os.PathLike[str], *, timeout: float = CONNECT_TIMEOUT) -> QmpClient:
    """Connect (retrying while the socket is not there yet) and negotiate."""
    try:
        with trio.fail_after(timeout):
            while True:
                try:
                    stream = await trio.open_unix_socket(os.fspath(path))
                    break
                except OSError as e:
                    if e.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                        raise QmpError(f"cannot connect to QMP at {path}: {e}") from e
                await trio.sleep(_CONNECT_RETRY)
            client = QmpClient(stream)
            try:
                await client._negotiate()
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            return client
    except trio.TooSlowError as e:
        raise QmpTimeout(f"no QMP at {path} within {timeout} s") from e


@asynccontextmanager
async def open_qmp(
    path: str | os.PathLike[str], *, timeout: float = CONNECT_TIMEOUT
) -> AsyncIterator[QmpClient]:
    client = await connect(path, timeout=timeout)
    try:
        yield client
    finally:
        await trio.aclose_forcefully(client._stream)


__all__ = [
    "COMMAND_TIMEOUT",
    "CONNECT_TIMEOUT",
    "QmpClient",
    "QmpCommandError",
    "QmpError",
    "QmpTimeout",
    "StatsResult",
    "connect",
    "open_qmp",
]
