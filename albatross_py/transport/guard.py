"""The connection guard: how every listener of every daemon serves its clients.

albatross serves each connection in a task and trusts it: an exception that
escapes a handler takes the listener (and with it the daemon's socket) down,
and a client that connects and sends nothing keeps its connection forever.
Here no daemon accepts a connection itself; :func:`serve` does, for all of
them, and runs each connection's handler under the same rules:

* **No exception leaves a connection.**  Whatever the handler raises (an
  ``Exception`` or an ``ExceptionGroup`` from a nursery inside it) is logged
  with its traceback, the client gets a failure reply where the protocol has
  one (:class:`Replies`: albatross's ``Failure`` with the request's header
  when it is known, HTTP 500 for the exporter), the connection is closed and
  the accept loop carries on.  Only cancellation (and KeyboardInterrupt /
  SystemExit) passes through, as trio needs it to.  A ``WireError`` (bad
  input, or a client too slow) that a handler leaves to the guard is the
  client's fault: it is answered with its own message, and logged without
  a traceback; a broken connection is a client that went away (logged,
  nobody to answer).
* **Slow clients are dropped.**  The handler reads through
  :meth:`Connection.framed`, whose reads carry :class:`Limits`' timeouts
  (see :class:`~albatross_py.transport.framed.Expect`): a request must
  arrive whole within ``request_timeout``; upload data may not stall for
  longer than ``stall_timeout``; legitimately quiet peers (subscribers,
  albatrossd's console link, event producers) say so per read.  A client
  that is too slow gets a ``Failure`` naming the timeout.
* **Greedy clients are capped.**  At most ``max_connections`` connections
  per listening socket are served at once; the next one gets a failure
  reply (``Failure`` or HTTP 503) and is closed at once, so a flood of
  connections costs one file descriptor for a moment each, not one for as
  long as the client likes.

Usage (a daemon)::

    async def handler(conn: Connection) -> None:
        framed = conn.framed(max_frame=MAX_COMMAND_FRAME)
        wire = await framed.read_wire()          # Expect.REQUEST
        ...

    await serve([listener], handler, service="console.sock", limits=limits,
                task_status=task_status)

:func:`guard_connection` runs one already-accepted stream under the same
rules (``--inetd``).  :func:`add_limit_options` and :func:`limits_from_args`
give every daemon the same flags.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from albatross_py.transport.framed import FramedStream, ReadTimeouts
from albatross_py.wire import MAX_FRAME_SIZE, WireError, encode_wire, frame
from albatross_py.wire.messages import Failure, Header, Wire
from albatross_py.wire.names import Name

log = logging.getLogger("albatross.guard")

#: Default for ``--request-timeout``: a client must deliver each request
#: frame whole within this many seconds.  albatross has no such bound.  The
#: albatross clients and the TLS endpoint send a request as soon as they are
#: connected; 30 s leaves room for a loaded host and for a 64 MiB image sent
#: inline at 2 MB/s, and is what the TLS endpoint always allowed a handshake.
DEFAULT_REQUEST_TIMEOUT = 30.0
#: Default for ``--stall-timeout``: longest silence within an upload (block
#: set data between chunks).  The TLS endpoint allows its remote clients 120 s
#: between chunks (CLIENT_IDLE_TIMEOUT); albatrossd must not give up first.
DEFAULT_STALL_TIMEOUT = 120.0
#: Default for ``--max-connections``: connections served at once per
#: listening socket.  Far above what a host's clients use (albatrossd's
#: links, a few CLI calls, the endpoint's proxied requests, console and stats
#: subscribers), far below the file descriptors the daemons may open (the
#: soft limit is raised to the hard one, 524,288 under systemd).
DEFAULT_MAX_CONNECTIONS = 1024

#: Longest the reply to a refused or failed connection may take: it is a
#: few bytes into a socket buffer, and a client that does not read it must
#: not hold the accept loop or a connection slot.
REPLY_TIMEOUT = 1.0
#: After a refusal or a failure reply, how long (and how many bytes) we read
#: and discard what the client is still sending before closing: a client that
#: writes its request before reading must not get "broken pipe" (or, on TCP,
#: a reset that discards our reply) instead of the reason.
LINGER = 1.0
LINGER_BYTES = 1 << 20

#: accept() errors that mean "out of resources for now", not "listener
#: broken" (trio.serve_listeners' list): wait a little and accept again.
TRANSIENT_ACCEPT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
#: Pause after a transient accept error (trio.serve_listeners waits 100 ms too).
ACCEPT_RETRY = 0.1

#: The header of a reply to a connection whose request is unknown.
UNKNOWN_HEADER = Header(name=Name())


@dataclass(frozen=True, slots=True)
class Limits:
    """The guard's bounds for one listening socket (seconds; connections)."""

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if not self.request_timeout > 0 or not self.stall_timeout > 0:
            raise ValueError("timeouts must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")

    @property
    def read_timeouts(self) -> ReadTimeouts:
        return ReadTimeouts(self.request_timeout, self.stall_timeout)


def peer_of(stream: trio.abc.Stream) -> str:
    """``host:port`` of a TCP peer (``[v6]:port``), for log lines and login events."""
    sock = getattr(stream, "socket", None)
    if sock is None:
        return "unknown peer"
    try:
        addr = sock.getpeername()
    except OSError:
        return "unknown peer"
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        with contextlib.suppress(ValueError):  # a dual-stack socket's ::ffff:a.b.c.d
            mapped = getattr(ipaddress.ip_address(host), "ipv4_mapped", None)
            if mapped is not None:
                host = str(mapped)
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr) or "unix peer"


class Connection:
    """One accepted connection as its handler sees it."""

    def __init__(self, stream: trio.abc.Stream, service: str, limits: Limits) -> None:
        self.stream = stream
        self.service = service
        self.limits = limits
        self._peer: str | None = None
        self._timeouts = limits.read_timeouts
        #: The header a failure reply carries; set it when the handler knows
        #: better than the last message read (the TLS endpoint's final header).
        self.header: Header | None = None
        #: The framed stream failures are written to (see :meth:`framed`).
        self.replies_to: FramedStream | None = None

    @property
    def peer(self) -> str:
        """The client's address (see :func:`peer_of`), looked up when first asked."""
        if self._peer is None:
            self._peer = peer_of(self.stream)
        return self._peer

    def framed(
        self, stream: trio.abc.Stream | None = None, *, max_frame: int = MAX_FRAME_SIZE
    ) -> FramedStream:
        """A framed stream over the connection (or over ``stream`` wrapping it,
        e.g. TLS) whose reads carry the limits' timeouts; failures go to it."""
        framed = FramedStream(stream or self.stream, max_frame, self._timeouts)
        self.replies_to = framed
        return framed

    def reply_header(self) -> Header:
        if self.header is not None:
            return self.header
        if self.replies_to is not None and self.replies_to.last_header is not None:
            return self.replies_to.last_header
        return UNKNOWN_HEADER


Handler = Callable[[Connection], Awaitable[None]]


class Replies(Protocol):
    """How a protocol tells a client that its connection failed or was refused."""

    async def failure(self, conn: Connection, reason: str) -> None:
        """The handler failed unexpectedly: say so, if the protocol can."""

    async def busy(self, stream: trio.abc.Stream, reason: str) -> None:
        """Over the connection cap: say so before the close, if the protocol can."""


class WireReplies:
    """albatross's protocol: a ``Failure`` frame.

    ``plain=False`` is for a protocol under TLS: nothing can be said before
    the handshake (a refused connection is just closed), and a failure is
    only written to the framed stream the handler made over its TLS stream.
    """

    def __init__(self, *, plain: bool = True) -> None:
        self.plain = plain

    async def failure(self, conn: Connection, reason: str) -> None:
        target = conn.replies_to
        if target is None:
            if not self.plain:
                return
            target = FramedStream(conn.stream)
        await target.write_wire(Wire(conn.reply_header(), Failure(reason)))

    async def busy(self, stream: trio.abc.Stream, reason: str) -> None:
        if self.plain:
            await stream.send_all(frame(encode_wire(Wire(UNKNOWN_HEADER, Failure(reason)))))


class HttpReplies:
    """HTTP/1.1: 500 for a failure, 503 when over the cap."""

    @staticmethod
    def response(status: str, text: str) -> bytes:
        body = (text + "\n").encode("utf-8", "replace")
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode("latin-1") + body

    async def failure(self, conn: Connection, reason: str) -> None:
        await conn.stream.send_all(self.response("500 Internal Server Error", reason))

    async def busy(self, stream: trio.abc.Stream, reason: str) -> None:
        await stream.send_all(self.response("503 Service Unavailable", reason))


#: The replies of the local albatross sockets.
WIRE = WireReplies()
#: albatross over TLS (the endpoint).
WIRE_OVER_TLS = WireReplies(plain=False)
#: The exporter's HTTP.
HTTP = HttpReplies()


def _split(exc: BaseException) -> tuple[BaseException | None, BaseException | None]:
    """(what the guard reports, what must pass through: cancellation, exit)."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(Exception)
    if isinstance(exc, Exception):
        return exc, None
    return None, exc


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _type_name(exc: BaseException) -> str:
    kind = type(exc)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


async def _quietly(what: str, service: str, send: Awaitable[None]) -> None:
    """Run a best-effort reply: bounded in time, never raising."""
    try:
        with trio.move_on_after(REPLY_TIMEOUT):
            await send
    except Exception as exc:  # the client is gone or broken: nothing more to say
        log.debug("%s: %s reply not sent: %r", service, what, exc)


async def _close(stream: trio.abc.Stream) -> None:
    with contextlib.suppress(Exception):
        await trio.aclose_forcefully(stream)


async def _linger_close(stream: trio.abc.Stream) -> None:
    """Half-close, let the client finish its write (bounded), then close."""
    try:
        with trio.move_on_after(LINGER):
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            drained = 0
            while drained < LINGER_BYTES:
                data = await stream.receive_some(64 * 1024)
                if not data:
                    break
                drained += len(data)
    except Exception:  # broken already: closing is all that is left
        pass
    await _close(stream)


async def _run_guarded(conn: Connection, handler: Handler, replies: Replies) -> None:
    try:
        await handler(conn)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.info("%s: %s went away: %s", conn.service, conn.peer, exc)  # nobody to tell
    except WireError as exc:  # bad input (or too slow) the handler left to us
        log.warning("%s: %s: %s", conn.service, conn.peer, exc)
        with trio.CancelScope(shield=True):
            await _quietly("failure", conn.service, replies.failure(conn, str(exc)))
            await _linger_close(conn.stream)
    except BaseException as exc:
        unexpected, passthrough = _split(exc)
        if unexpected is not None:
            leaf = _first_leaf(unexpected)
            log.error(
                "%s: unexpected error serving %s, closing the connection",
                conn.service, conn.peer, exc_info=unexpected,
            )  # fmt: skip
            reason = f"internal error ({_type_name(leaf)}); the connection is closed"
            with trio.CancelScope(shield=passthrough is None):
                await _quietly("failure", conn.service, replies.failure(conn, reason))
                await _linger_close(conn.stream)
        if passthrough is not None:
            if passthrough is exc:
                raise
            raise passthrough from None
    finally:
        await _close(conn.stream)  # aclose_forcefully: immediate, even when cancelled


async def guard_connection(
    stream: trio.abc.Stream,
    handler: Handler,
    *,
    service: str,
    limits: Limits | None = None,
    replies: Replies = WIRE,
) -> None:
    """Serve one stream (not from a listener, e.g. ``--inetd``) under the guard."""
    await _run_guarded(Connection(stream, service, limits or Limits()), handler, replies)


class _Gate:
    """The connection count of one :func:`serve` call."""

    def __init__(self, service: str, limit: int) -> None:
        self.service = service
        self.limit = limit
        self.active = 0
        self.refused = 0
        #: refused connections still being told so (at most ``limit`` too)
        self.refusing = 0
        self._warned = False

    def admit(self) -> bool:
        if self.active >= self.limit:
            self.refused += 1
            if not self._warned:
                log.warning(
                    "%s: %d connections open (--max-connections): refusing more",
                    self.service, self.limit,
                )  # fmt: skip
                self._warned = True
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1
        if self._warned and self.active < self.limit:
            log.warning("%s: accepting connections again (%d refused)", self.service, self.refused)
            self._warned = False


async def _accept_loop(
    listener: trio.abc.Listener[trio.abc.Stream],
    nursery: trio.Nursery,
    gate: _Gate,
    handler: Handler,
    limits: Limits,
    replies: Replies,
) -> None:
    async def one(stream: trio.abc.Stream) -> None:
        try:
            await _run_guarded(Connection(stream, gate.service, limits), handler, replies)
        finally:
            gate.leave()

    async def refuse(stream: trio.abc.Stream) -> None:
        reason = f"too many connections to {gate.service} (limit {gate.limit}); try again later"
        try:
            await _quietly("busy", gate.service, replies.busy(stream, reason))
            await _linger_close(stream)
        finally:
            gate.refusing -= 1

    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno not in TRANSIENT_ACCEPT:
                raise
            log.error("%s: accept failed (%s), retrying", gate.service, exc)
            await trio.sleep(ACCEPT_RETRY)
            continue
        if gate.admit():
            nursery.start_soon(one, stream)
        elif gate.refusing < gate.limit:
            gate.refusing += 1
            nursery.start_soon(refuse, stream)
        else:  # a flood: not even a reply
            await _close(stream)


async def serve(
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    handler: Handler,
    *,
    service: str,
    limits: Limits | None = None,
    replies: Replies = WIRE,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept on every listener until cancelled, each connection under the guard.

    ``service`` names the socket in log lines and refusals; the connection
    cap counts the connections of all ``listeners`` together (one service on
    several addresses).  Listeners are closed at the end.
    """
    limits = limits or Limits()
    gate = _Gate(service, limits.max_connections)
    async with contextlib.AsyncExitStack() as stack:
        for listener in listeners:
            await stack.enter_async_context(listener)
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(_accept_loop, listener, nursery, gate, handler, limits, replies)
            task_status.started()


# -- the flags every daemon takes -------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _positive_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_limit_options(
    parser: argparse.ArgumentParser,
    *,
    stall: bool = False,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    what: str = "a request frame",
) -> None:
    """``--request-timeout``, ``--max-connections`` (and ``--stall-timeout`` for
    daemons that take uploads) with the guard's defaults."""
    group = parser.add_argument_group("client limits (per listening socket)")
    group.add_argument(
        "--request-timeout",
        type=_positive_seconds,
        default=request_timeout,
        metavar="SECONDS",
        help=f"drop a client that does not deliver {what} whole within this time "
        "(default %(default)g)",
    )
    if stall:
        group.add_argument(
            "--stall-timeout",
            type=_positive_seconds,
            default=DEFAULT_STALL_TIMEOUT,
            metavar="SECONDS",
            help="drop an upload (block data) silent for this long (default %(default)g)",
        )
    group.add_argument(
        "--max-connections",
        type=_positive_count,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="connections served at once; more are refused with an error (default %(default)s)",
    )


def limits_from_args(ns: argparse.Namespace) -> Limits:
    return Limits(
        request_timeout=ns.request_timeout,
        stall_timeout=getattr(ns, "stall_timeout", DEFAULT_STALL_TIMEOUT),
        max_connections=ns.max_connections,
    )


__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_STALL_TIMEOUT",
    "HTTP",
    "WIRE",
    "WIRE_OVER_TLS",
    "Connection",
    "Handler",
    "HttpReplies",
    "Limits",
    "Replies",
    "WireReplies",
    "add_limit_options",
    "guard_connection",
    "limits_from_args",
    "serve",
]
