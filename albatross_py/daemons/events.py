"""``albatross-log``: the event log (spec 6.2's historical albatross-log, 2.8's event service).

albatrossd (and the TLS endpoint) send every lifecycle event here; we keep
the last :data:`~albatross_py.core.eventlog.RING_SIZE` in memory, append
each to a text file, one line per event (default
``/var/log/albatross/events.log``; SIGHUP reopens it, for logrotate), and
stream them to subscribers.  The story of a connection to
``<tmpdir>/util/log.sock``:

* ``EventsRecord event`` (producers): **fire-and-forget**, no reply.  A
  producer keeps one connection open and sends records back to back; the
  event is stamped on arrival, written to the file, kept in the ring and
  queued for every matching subscriber.  Not replying means a producer never
  waits for us: it only writes.  A frame that does not decode gets a
  ``Failure`` and the connection is closed.  The first record must come
  within the request timeout (the connection guard's); after it a producer
  may be quiet for as long as nothing happens.
* ``EventsSubscribe (since|count)`` at a name or path: ``Success (String
  "subscribed")``, the history (``Data event``, header {subscriber's
  version, sequence 0, name relative to the subscriber's path}), then live
  events, until the client sends anything or goes away.  At most
  :data:`~albatross_py.core.eventlog.MAX_SUBSCRIBERS_PER_NAME` per name
  (the oldest is closed); a subscriber whose queue of
  :data:`SUBSCRIBER_QUEUE` events fills up is too slow and is closed.
* anything else: ``Failure`` and close.

Our own startup is the first event.  Who sees which event, the history rules
and the line format are in :mod:`albatross_py.core.eventlog`.  File writes
are small appends done in the event loop; a failing write (disk full) is
logged and the event still goes to the ring and the subscribers.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import trio

from albatross_py.core.eventlog import RING_SIZE, EventLog, line, relative_event, relative_name
from albatross_py.daemons.common import (
    Subscriber,
    daemon_parser,
    drop_root,
    listen,
    serve_until_signalled,
    setup_logging,
)
from albatross_py.transport import Expect, FramedStream, guard
from albatross_py.wire import WireError, encode_wire, frame
from albatross_py.wire import events as ev
from albatross_py.wire.messages import (
    DataEvent,
    EventsRecord,
    EventsSubscribe,
    Failure,
    Header,
    ReplyString,
    Wire,
)

log = logging.getLogger("albatross.log")

DEFAULT_LOGFILE = "/var/log/albatross/events.log"

#: Largest frame we read: an event is at most a few hundred bytes.
MAX_FRAME = 64 * 1024

#: Events queued per subscriber before it counts as too slow and is closed.
SUBSCRIBER_QUEUE = 1024

#: Longest a single write to a subscriber may take before we give up on it.
WRITE_TIMEOUT = 60.0

SUBSCRIBED = "subscribed"


class _TaskStatus(Protocol):
    def started(self, value: None = None) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


class LogFile:
    """The text log: opened ``O_APPEND`` (parent directory created), reopened on SIGHUP."""

    def __init__(self, path: str | Path, mode: int = 0o640) -> None:
        self.path = Path(path)
        self.mode = mode
        self._fd: int | None = None
        self._failing = False

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOCTTY
        return os.open(self.path, flags, self.mode)

    def open(self) -> None:
        """Open the file (raises OSError: at startup a bad path is fatal)."""
        fd = self._open()
        self.close()
        self._fd = fd

    def reopen(self) -> bool:
        """Open the path afresh (after a rotation); on failure keep writing the old file."""
        try:
            fd = self._open()
        except OSError as exc:
            log.error("reopening %s failed (%s); still writing the old file", self.path, exc)
            return False
        self.close()
        self._fd = fd
        self._failing = False
        log.info("reopened %s", self.path)
        return True

    def write(self, text: str) -> None:
        if self._fd is None:
            return
        data = text.encode("utf-8", "backslashreplace")
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            if not self._failing:
                log.error("writing %s: %s (events are still kept in memory)", self.path, exc)
            self._failing = True
            return
        if self._failing:
            log.info("writing %s works again", self.path)
            self._failing = False

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class EventsDaemon:
    """The event log over a listener; state in :class:`~albatross_py.core.eventlog.EventLog`."""

    def __init__(
        self,
        logfile: LogFile | None = None,
        *,
        ring_size: int = RING_SIZE,
        queue_size: int = SUBSCRIBER_QUEUE,
        clock: Callable[[], datetime] = _now,
        program: str = "albatross-log",
        limits: guard.Limits | None = None,
    ) -> None:
        self.logfile = logfile
        self.limits = limits or guard.Limits()
        self.state: EventLog[Subscriber] = EventLog(ring_size)
        self.queue_size = queue_size
        self.program = program
        self._clock = clock

    # -- events ---------------------------------------------------------------------
    def record(self, event: ev.Event) -> None:
        """Stamp ``event``; to the file, the ring and every matching subscriber."""
        timestamp = self._clock()
        if self.logfile is not None:
            self.logfile.write(line(timestamp, event))
        for sub, name, seen in self.state.record(timestamp, event):
            if not sub.offer(Wire(Header(sub.version, 0, name), DataEvent(timestamp, seen))):
                log.info("dropping a slow subscriber at %s", sub.name)
                self.state.unsubscribe(sub.name, sub)
                sub.close()

    def reopen(self) -> None:
        """What SIGHUP does: reopen the log file (logrotate has moved it)."""
        if self.logfile is not None:
            self.logfile.reopen()

    # -- serving ------------------------------------------------------------------------
    async def serve(
        self, listener: trio.SocketListener, *, task_status: _TaskStatus = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Record our startup, then accept connections until cancelled."""
        self.record(ev.Startup(self.program))
        await guard.serve(
            [listener],
            self._connection,
            service="log.sock",
            limits=self.limits,
            task_status=task_status,
        )

    async def _connection(self, connection: guard.Connection) -> None:
        conn = connection.framed(max_frame=MAX_FRAME)
        # The first message must come at once; a producer then sends records
        # whenever something happens, and may be quiet for hours in between.
        expect = Expect.REQUEST
        try:
            while True:
                try:
                    wire = await conn.read_wire(expect)
                except WireError as exc:
                    log.warning("bad input: %s", exc)
                    await self._send(conn, Wire(Header(), Failure(str(exc))))
                    return
                if wire is None:
                    return
                match wire.payload:
                    case EventsRecord(event):
                        self.record(event)
                        expect = Expect.QUIET
                    case EventsSubscribe() as cmd:
                        await self._subscribe(conn, wire.header, cmd)
                        return
                    case other:
                        kind = type(other).__name__
                        log.warning("unexpected %s from %s", kind, wire.header.name)
                        failure = Failure(f"unexpected {kind}: not an events command")
                        await self._send(conn, Wire(wire.header, failure))
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.info("connection lost: %s", exc)

    async def _send(self, conn: FramedStream, *wires: Wire) -> bool:
        """Write wires in one go; False when the peer is gone or too slow to take them."""
        data = b"".join(frame(encode_wire(wire)) for wire in wires)
        with trio.move_on_after(WRITE_TIMEOUT):
            try:
                await conn.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
            return True
        log.info("write to a subscriber at %s timed out", wires[0].header.name if wires else "?")
        return False

    # -- subscriptions ----------------------------------------------------------------------
    async def _subscribe(self, conn: FramedStream, header: Header, cmd: EventsSubscribe) -> None:
        at = header.name
        queue, pending = trio.open_memory_channel[Wire](self.queue_size)
        sub = Subscriber(at, header.version, queue)
        outcome = self.state.subscribe(at, sub, count=cmd.count, since=cmd.since)
        for kicked in outcome.kicked:
            log.info("too many subscribers at %s: closing the oldest", at)
            kicked.close()
        try:
            with sub.scope:
                history = [
                    Wire(
                        Header(header.version, 0, relative_name(at, event.subject)),
                        DataEvent(ts, relative_event(at, event)),
                    )
                    for ts, event in outcome.history
                ]
                if not await self._send(conn, Wire(header, ReplyString(SUBSCRIBED)), *history):
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, conn, pending, nursery.cancel_scope)
                    await _until_client_speaks(conn)
                    nursery.cancel_scope.cancel()
        finally:
            self.state.unsubscribe(at, sub)
            queue.close()
            pending.close()

    async def _pump(
        self, conn: FramedStream, pending: trio.MemoryReceiveChannel[Wire], done: trio.CancelScope
    ) -> None:
        """The subscriber's writer: queued live events to the socket, in order, batched."""
        async for wire in pending:
            batch = [wire]
            with contextlib.suppress(trio.WouldBlock):
                while len(batch) < self.queue_size:
                    batch.append(pending.receive_nowait())
            if not await self._send(conn, *batch):
                break
        done.cancel()


async def _until_client_speaks(conn: FramedStream) -> None:
    """A subscription lasts until the client sends anything (a whole frame) or goes away."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, WireError):
        await conn.read_chunk(Expect.QUIET)


# -- the executable ---------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = daemon_parser(
        "albatross-log",
        "Keeps the lifecycle events of albatrossd and the TLS endpoint: the "
        f"latest {RING_SIZE} in memory for subscribers, and every one as a line of a text "
        "file (SIGHUP reopens it, for log rotation).",
        "example: albatross-log --tmpdir /run/albatross --logfile /var/log/albatross/events.log",
    )
    parser.add_argument(
        "--logfile", default=DEFAULT_LOGFILE, help="event log file (default %(default)s)"
    )
    return parser.parse_args(argv)


async def run(
    tmpdir: str,
    logfile: str,
    systemd: bool,
    user: str | None = None,
    limits: guard.Limits | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT, reopening the file on SIGHUP; the exit status."""
    listener = listen("log", tmpdir, systemd)
    if listener is None:
        return 1
    file = LogFile(logfile)
    try:
        file.open()  # before dropping root: /var/log/albatross may need it
    except OSError as exc:
        log.error("cannot open the event log %s: %s", logfile, exc)
        return 1
    drop_root(user)
    daemon = EventsDaemon(file, limits=limits)
    try:
        await serve_until_signalled(daemon.serve, listener, on_hup=daemon.reopen)
    finally:
        file.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("albatross-log", args.verbose, args.quiet)
    return trio.run(
        run,
        args.tmpdir,
        args.logfile,
        args.systemd_socket_activation,
        args.user,
        guard.limits_from_args(args),
    )


if __name__ == "__main__":
    sys.exit(main())
