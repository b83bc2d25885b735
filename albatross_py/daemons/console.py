"""``albatross-console``: buffer unikernel consoles and stream them (spec 6.1, 3.8).

The story of a connection to ``<tmpdir>/util/console.sock``:

* ``Console_add n`` (albatrossd, on one persistent connection): open
  ``<tmpdir>/fifo/<name>`` non-blocking, start a reader task, reply
  ``Success empty`` (or ``Failure "opening"``), and read the next command
  (which may come much later: that connection may be quiet for as long as
  no VM is created);
* ``Console_subscribe``: reply, send the history, then live lines until the
  client sends anything or goes away;
* ``Console_list_inactive``: reply and close.

Every reply reuses the request's header; data lines carry {subscriber's
version, sequence 0, name}.  All decisions live in
:mod:`albatross_py.core.console`; this module only moves bytes.

A slow subscriber never holds anyone up: the FIFO reader hands each line to
a bounded per-subscriber queue without waiting, a writer task per subscriber
drains it, and a subscriber whose queue is full is closed.  One nursery (in
:meth:`ConsoleDaemon.serve`) owns the connection guard's accept loop (with
its connection cap and request timeout) and every FIFO reader.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import stat
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import trio

from albatross_py.core.console import (
    DEFAULT_MAX_SUBSCRIBERS,
    ConsoleError,
    ConsoleState,
    LineSplitter,
)
from albatross_py.daemons.common import (
    Subscriber,
    daemon_parser,
    drop_root,
    listen,
    serve_until_signalled,
    setup_logging,
)
from albatross_py.host.limits import raise_nofile_limit
from albatross_py.transport import Expect, FramedStream, guard
from albatross_py.wire import WireError, encode_wire, frame
from albatross_py.wire.codec import encode_header, encode_timestamp, frame_console_line
from albatross_py.wire.messages import (
    ConsoleAdd,
    ConsoleListInactive,
    ConsoleSubscribe,
    Failure,
    Header,
    ReplyConsoles,
    ReplyEmpty,
    ReplyString,
    Wire,
)
from albatross_py.wire.names import Name

log = logging.getLogger("albatross.console")

#: Largest frame we read.  Console commands are tens of bytes; the wire
#: layer's default (64 MiB, sized for images) would let any local client make
#: us allocate that much.
MAX_COMMAND_FRAME = 64 * 1024

#: FIFO read size.  albatross reads 512 bytes at a time (``Lwt_io.read
#: ~count:512``); the lines that come out do not depend on it (the splitter
#: is tested for that), but every read wakes every subscriber's writer, so a
#: chatty VM with five subscribers spent its time in task switches.  Reading
#: what the pipe holds (its buffer is 64 KiB) amortises that over many lines.
READ_SIZE = 64 * 1024

#: Lines queued per subscriber before it counts as too slow and is closed.
SUBSCRIBER_QUEUE = 1024

#: Longest a single write to a client may take before we give up on it.
WRITE_TIMEOUT = 60.0


class _TaskStatus(Protocol):
    """``nursery.start``'s task status (``trio.TaskStatus`` is public only from trio 0.23)."""

    def started(self, value: None = None) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


class ConsoleDaemon:
    """The console service over a listener; state in :class:`ConsoleState`."""

    def __init__(
        self,
        tmpdir: str | Path,
        *,
        max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS,
        queue_size: int = SUBSCRIBER_QUEUE,
        clock: Callable[[], datetime] = _now,
        limits: guard.Limits | None = None,
    ) -> None:
        self.fifo_dir = Path(tmpdir) / "fifo"
        self.limits = limits or guard.Limits()
        self.state: ConsoleState[Subscriber] = ConsoleState(max_subscribers)
        self.queue_size = queue_size
        self._clock = clock
        self._readers: dict[Name, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    # -- serving ------------------------------------------------------------------
    async def serve(
        self,
        listener: trio.SocketListener,
        *,
        task_status: _TaskStatus = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections until cancelled; closes ``listener`` at the end."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await guard.serve(
                [listener], self._connection, service="console.sock", limits=self.limits
            )

    async def _connection(self, connection: guard.Connection) -> None:
        conn = connection.framed(max_frame=MAX_COMMAND_FRAME)
        # The first request must come at once; after a Console_add the
        # connection is albatrossd's link, quiet until the next VM starts.
        expect = Expect.REQUEST
        try:
            while True:
                try:
                    wire = await conn.read_wire(expect)
                except WireError as exc:
                    log.warning("bad input: %s", exc)
                    await self._send(conn, Wire(Header(), Failure(str(exc))))
                    return
                if wire is None or not await self._dispatch(conn, wire):
                    return
                expect = Expect.QUIET
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.info("connection lost: %s", exc)

    async def _dispatch(self, conn: FramedStream, wire: Wire) -> bool:
        """Handle one request; True to read another one on this connection."""
        header, payload = wire.header, wire.payload
        match payload:
            case ConsoleAdd(limit):
                return await self._add(conn, header, limit)
            case ConsoleSubscribe():
                await self._subscribe(conn, header, payload)
            case ConsoleListInactive():
                try:
                    reply: ReplyConsoles | Failure = ReplyConsoles(
                        self.state.list_inactive(header.name)
                    )
                except ConsoleError as exc:
                    reply = Failure(str(exc))
                await self._send(conn, Wire(header, reply))
            case _:
                log.warning("unexpected %s for %s", type(payload).__name__, header.name)
                failure = Failure(f"unexpected {type(payload).__name__}: not a console command")
                await self._send(conn, Wire(header, failure))
        return False

    async def _send(self, conn: FramedStream, *wires: Wire) -> bool:
        """Write wires in one go; False when the peer is gone or too slow to take them."""
        return await self._send_framed(conn, b"".join(frame(encode_wire(w)) for w in wires))

    async def _send_framed(self, conn: FramedStream, data: bytes) -> bool:
        """Write already framed bytes; False when the peer is gone or too slow.

        All writes on a connection go through here, one at a time, so a
        subscriber catching up gets its backlog in one write, not one per line.
        """
        with trio.move_on_after(WRITE_TIMEOUT):
            try:
                await conn.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
            return True
        log.info("write to a subscriber timed out")
        return False

    # -- Console_add and the FIFO readers -------------------------------------------
    def fifo_path(self, name: Name) -> Path:
        return self.fifo_dir / name.file_component()

    def _open_fifo(self, name: Name) -> int:
        path = self.fifo_path(name)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, f"{path} is not a FIFO")
        except OSError:
            os.close(fd)
            raise
        return fd

    async def _add(self, conn: FramedStream, header: Header, limit: int) -> bool:
        name = header.name
        if name.is_path:
            await self._send(conn, Wire(header, Failure("path used instead of name")))
            return False
        try:
            fd = self._open_fifo(name)
        except OSError as exc:
            log.error("opening the console FIFO of %s: %s", name, exc)
            return await self._send(conn, Wire(header, Failure("opening")))
        outcome = self.state.add(name, limit)
        for dropped in outcome.dropped:
            log.info("dropping the console of %s", dropped)
        for sub in outcome.close:
            sub.close()
        old = self._readers.pop(name, None)
        if old is not None:
            old.cancel()
        scope = trio.CancelScope()
        self._readers[name] = scope
        assert self._nursery is not None
        self._nursery.start_soon(self._read_fifo, name, fd, outcome.generation, scope)
        return await self._send(conn, Wire(header, ReplyEmpty()))

    async def _read_fifo(
        self, name: Name, fd: int, generation: int, scope: trio.CancelScope
    ) -> None:
        splitter = LineSplitter()
        try:
            with scope:
                while True:
                    await trio.lowlevel.wait_readable(fd)
                    try:
                        data = os.read(fd, READ_SIZE)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        log.error("reading the console of %s: %s", name, exc)
                        break
                    if not data:
                        break
                    self._deliver(name, generation, splitter.feed(data))
                self._deliver(name, generation, splitter.flush())
        finally:
            trio.lowlevel.notify_closing(fd)
            os.close(fd)
            if self._readers.get(name) is scope:
                del self._readers[name]
            if self.state.deactivate(name, generation):
                log.info("console of %s closed", name)

    def _deliver(self, name: Name, generation: int, lines: list[bytes]) -> None:
        """Lines of one read: into the ring, and queued for every subscriber."""
        if not lines:
            return
        timestamp = self._clock()
        subscribers = self.state.record(name, generation, timestamp, lines)
        if not subscribers:
            return
        # Encode each line once per header version (in practice: once), not
        # once per subscriber; all lines of one read share their timestamp.
        ts_der = encode_timestamp(timestamp)
        batches: dict[int, bytes] = {}
        for sub in subscribers:
            batch = batches.get(sub.version)
            if batch is None:
                header_der = encode_header(Header(sub.version, 0, name))
                batch = b"".join(frame_console_line(header_der, ts_der, ln) for ln in lines)
                batches[sub.version] = batch
            if not sub.offer(batch):
                log.info("dropping a slow subscriber of %s", name)
                self.state.unsubscribe(name, sub)
                sub.close()

    # -- Console_subscribe -------------------------------------------------------------
    async def _subscribe(self, conn: FramedStream, header: Header, cmd: ConsoleSubscribe) -> None:
        name = header.name
        queue, pending = trio.open_memory_channel[bytes](self.queue_size)
        sub = Subscriber(name, header.version, queue)
        try:
            outcome = self.state.subscribe(name, sub, count=cmd.count, since=cmd.since)
        except ConsoleError as exc:
            await self._send(conn, Wire(header, Failure(str(exc))))
            return
        for kicked in outcome.kicked:
            log.info("too many subscribers of %s: closing the oldest", name)
            kicked.close()
        try:
            with sub.scope:
                data_header = encode_header(Header(header.version, 0, name))
                history = b"".join(
                    frame_console_line(data_header, encode_timestamp(t), line)
                    for t, line in outcome.history
                )
                reply = frame(encode_wire(Wire(header, ReplyString(outcome.reply))))
                if not await self._send_framed(conn, reply + history):
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, conn, pending, nursery.cancel_scope)
                    await self._until_client_speaks(conn)
                    nursery.cancel_scope.cancel()
        finally:
            self.state.unsubscribe(name, sub)
            queue.close()
            pending.close()

    async def _pump(
        self,
        conn: FramedStream,
        pending: trio.MemoryReceiveChannel[bytes],
        done: trio.CancelScope,
    ) -> None:
        """The subscriber's writer: queued live lines to the socket, in order.

        Whatever has queued up meanwhile goes out with the next write, so a
        subscriber that can keep up at all is never outrun by the FIFO reader.
        """
        async for data in pending:
            batch = [data]
            with contextlib.suppress(trio.WouldBlock):
                while len(batch) < self.queue_size:
                    batch.append(pending.receive_nowait())
            if not await self._send_framed(conn, b"".join(batch)):
                break
        done.cancel()

    @staticmethod
    async def _until_client_speaks(conn: FramedStream) -> None:
        """A subscription lasts until the client sends anything or goes away.

        "Anything" is read as a whole frame, as albatross's ``read_wire``: a
        unix socket closed with unread data resets the connection, and the
        client would lose the end of its stream.
        """
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, WireError):
            await conn.read_chunk(Expect.QUIET)


# -- the executable ---------------------------------------------------------------------


def _max_subscribers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("max subscribers must be greater than or equal to 1")
    return n


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = daemon_parser(
        "albatross-console",
        "Reads the console output of unikernels, keeps the latest 1024 lines "
        "of each in memory, and streams them to subscribed clients.",
        "example: albatross-console --tmpdir /run/albatross --max-subscribers 5",
    )
    parser.add_argument(
        "--max-subscribers",
        type=_max_subscribers,
        default=DEFAULT_MAX_SUBSCRIBERS,
        metavar="N",
        help="maximum subscribers per unikernel console (default %(default)s)",
    )
    return parser.parse_args(argv)


async def run(
    tmpdir: str,
    max_subscribers: int,
    systemd: bool,
    user: str | None = None,
    limits: guard.Limits | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; the exit status."""
    listener = listen("console", tmpdir, systemd)
    if listener is None:
        return 1
    drop_root(user)
    daemon = ConsoleDaemon(tmpdir, max_subscribers=max_subscribers, limits=limits)
    await serve_until_signalled(daemon.serve, listener)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("albatross-console", args.verbose, args.quiet)
    raise_nofile_limit()  # one FIFO per VM
    return trio.run(
        run,
        args.tmpdir,
        args.max_subscribers,
        args.systemd_socket_activation,
        args.user,
        guard.limits_from_args(args),
    )


if __name__ == "__main__":
    sys.exit(main())
