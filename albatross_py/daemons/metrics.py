"""``albatross-influx`` and ``albatross-prometheus``: statistics out to metrics systems.

Both subscribe to albatross-stats (``<tmpdir>/util/stat.sock``, retrying
every :data:`RETRY` seconds, as albatross-influx) and format with the pure
functions of :mod:`albatross_py.daemons.exporters`.

**albatross-influx** (spec 6.4) writes the line protocol either over TCP
(``--influx HOST[:PORT]``, default port 8094: telegraf's ``socket_listener``,
reconnecting every 5 s, ``SO_KEEPALIVE`` on) or with ``--http URL`` to the
InfluxDB 1.x HTTP write API (``POST /write?db=...``; give the whole URL,
e.g. ``http://127.0.0.1:8086/write?db=albatross``; plain HTTP only).  Lines
queue in a bounded buffer; what cannot be delivered while the sink is down
is dropped, never piled up.

**albatross-prometheus** serves ``GET /metrics`` on ``--listen HOST:PORT``
with a minimal HTTP/1.1 server on trio (one request per connection), under
the connection guard (:mod:`albatross_py.transport.guard`): a request head
must arrive within ``--request-timeout`` (408 otherwise), an unexpected error
is a 500, and beyond ``--max-connections`` a 503.  VM
metrics come from a stats subscription at ``:`` (a VM is shown while its
statistics are younger than ``--stale`` seconds); policy limits and usage are
asked from albatrossd on every scrape: ``Policy info``, ``Unikernel info``
and ``Block info`` at ``:``, each on its own connection, one command, one
reply.  ``albatross_exporter_albatrossd_up`` and
``albatross_exporter_stats_up`` say whether either source answered.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import trio

from albatross_py.daemons.common import setup_logging
from albatross_py.daemons.exporters import (
    PROMETHEUS_CONTENT_TYPE,
    PolicyUsage,
    influx_lines,
    influx_vm_name,
    policy_usage,
    prometheus_text,
)
from albatross_py.daemons.privdrop import DEFAULT_USER, drop_privileges
from albatross_py.defaults import DEFAULT_TMPDIR
from albatross_py.transport import FramedStream, connect_unix, guard, socket_path
from albatross_py.wire import WireError
from albatross_py.wire.messages import (
    BlockInfoQuery,
    Command,
    DataStatistics,
    Failure,
    Header,
    PolicyInfoQuery,
    ReplyBlockDevices,
    ReplyPolicies,
    ReplyString,
    ReplyUnikernelInfo,
    StatsSubscribe,
    UnikernelInfoQuery,
    Wire,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import Statistics

log = logging.getLogger("albatross.metrics")

#: albatross-influx retries stat.sock and the Influx connection every 5 s.
RETRY = 5.0

#: telegraf socket_listener's conventional port, albatross's default.
DEFAULT_INFLUX_PORT = 8094

#: Lines (one Data statistics each) buffered while the sink is slow or down.
INFLUX_QUEUE = 1024

#: Bound on one write to Influx (TCP send or HTTP round trip).
INFLUX_TIMEOUT = 10.0

#: Largest frame read from stat.sock or vmmd.sock (an info reply of many VMs).
MAX_FRAME = 16 * 1024 * 1024

#: Bound on each albatrossd query during a scrape.
QUERY_TIMEOUT = 5.0

#: A VM disappears from /metrics when its statistics are older than this.
DEFAULT_STALE = 60.0

DEFAULT_LISTEN = "127.0.0.1:9435"

#: Request head limit and the default read timeout of the tiny HTTP server
#: (``--request-timeout``; Prometheus sends its scrape at once).
MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT = 10.0

OnData = Callable[[Name, Statistics], Awaitable[None]]


class _TaskStatus(Protocol):
    """``nursery.start``'s task status (``trio.TaskStatus`` is public only from trio 0.23)."""

    def started(self, value: None = None) -> None: ...


# -- the stats subscription ----------------------------------------------------------


async def subscribe_stats(
    tmpdir: str | Path,
    name: Name,
    on_data: OnData,
    *,
    retry: float = RETRY,
    on_state: Callable[[bool], None] = lambda up: None,
) -> None:
    """Subscribe at ``name`` and feed every Data statistics to ``on_data``, forever."""
    path = socket_path(tmpdir, "stats")
    while True:
        try:
            stream = await connect_unix(path)
        except OSError as exc:
            log.warning("cannot connect to %s: %s", path, exc)
            await trio.sleep(retry)
            continue
        conn = FramedStream(stream, MAX_FRAME)
        try:
            await conn.write_wire(Wire(Header(name=name), StatsSubscribe()))
            reply = await conn.read_wire()
            if reply is None or not isinstance(reply.payload, ReplyString):
                log.error("stats subscription at %s refused: %s", name, reply)
            else:
                log.info("subscribed to statistics at %s", name)
                on_state(True)
                while (wire := await conn.read_wire()) is not None:
                    if isinstance(wire.payload, DataStatistics):
                        await on_data(wire.header.name, wire.payload.stats)
                    else:
                        log.warning("unexpected %s from albatross-stats", wire.payload)
                log.warning("albatross-stats closed the subscription")
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, WireError) as exc:
            log.warning("stats subscription lost: %s", exc)
        finally:
            on_state(False)
            await trio.aclose_forcefully(stream)
        await trio.sleep(retry)


# -- Influx sinks --------------------------------------------------------------------


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid address {text!r}")
        port = int(rest[1:]) if rest else default_port
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    else:
        host, port = text, default_port
    if not host or not 0 < port < 65536:
        raise ValueError(f"invalid address {text!r}")
    return host, port


async def http_request(
    host: str,
    port: int,
    method: str,
    target: str,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    *,
    max_response: int = 1 << 20,
) -> tuple[int, bytes]:
    """One HTTP/1.1 exchange on a fresh connection (``Connection: close``): status and body."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        head = [f"{method} {target} HTTP/1.1", f"Host: {hostport}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers]
        if body or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(body)}")
        await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        data = bytearray()
        while chunk := await stream.receive_some(65536):
            data += chunk
            if len(data) > max_response:
                raise OSError("HTTP response too large")
    response = bytes(data)
    status_line, _, rest = response.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise OSError(f"not an HTTP response: {status_line[:80]!r}")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(parts[1]), payload


class TcpInflux:
    """Line protocol over one TCP connection (telegraf ``socket_listener``)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._stream: trio.SocketStream | None = None

    def __str__(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    async def write(self, data: bytes) -> None:
        if self._stream is None:
            stream = await trio.open_tcp_stream(self.host, self.port)
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            self._stream = stream
        try:
            await self._stream.send_all(data)
        except BaseException:
            stream, self._stream = self._stream, None
            await trio.aclose_forcefully(stream)
            raise

    async def aclose(self) -> None:
        if self._stream is not None:
            await trio.aclose_forcefully(self._stream)
            self._stream = None


class HttpInflux:
    """InfluxDB 1.x HTTP write API: ``POST /write?db=...`` with the lines as body."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http://HOST[:PORT]/write?db=... URLs are supported: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 8086
        self.target = (parts.path or "/write") + (f"?{parts.query}" if parts.query else "")
        self.url = url

    def __str__(self) -> str:
        return self.url

    async def write(self, data: bytes) -> None:
        status, body = await http_request(
            self.host,
            self.port,
            "POST",
            self.target,
            data,
            [("Content-Type", "text/plain; charset=utf-8")],
        )
        if not 200 <= status < 300:
            raise OSError(f"InfluxDB answered {status}: {body[:200]!r}")

    async def aclose(self) -> None:
        pass


class InfluxExporter:
    """Formats statistics and hands batches to a sink, never waiting on it from the reader."""

    def __init__(
        self,
        sink: TcpInflux | HttpInflux,
        *,
        no_drop_path: bool = False,
        retry: float = RETRY,
        queue_size: int = INFLUX_QUEUE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sink = sink
        self.no_drop_path = no_drop_path
        self.retry = retry
        self.clock = clock
        self._send, self._pending = trio.open_memory_channel[str](queue_size)
        self.dropped = 0
        self.written = 0

    async def on_data(self, name: Name, stats: Statistics) -> None:
        lines = influx_lines(
            influx_vm_name(name, no_drop_path=self.no_drop_path), stats, self.clock()
        )
        try:
            self._send.send_nowait(lines)
        except trio.WouldBlock:
            self.dropped += 1

    async def writer(self) -> None:
        async for lines in self._pending:
            batch = [lines]
            while True:
                try:
                    batch.append(self._pending.receive_nowait())
                except trio.WouldBlock:
                    break
            data = "".join(batch).encode("utf-8", "surrogateescape")
            try:
                with trio.fail_after(INFLUX_TIMEOUT):
                    await self.sink.write(data)
                self.written += len(batch)
            except (OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                self.dropped += len(batch)
                log.warning(
                    "writing to %s failed (%s); retrying in %.0f s", self.sink, exc, self.retry
                )
                await trio.sleep(self.retry)

    async def run(self, tmpdir: str | Path, name: Name) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.writer)
                await subscribe_stats(tmpdir, name, self.on_data, retry=self.retry)
        finally:
            await self.sink.aclose()


# -- Prometheus ------------------------------------------------------------------------


class QueryError(Exception):
    pass


async def query_albatrossd(tmpdir: str | Path, cmd: Command, name: Name | None = None) -> object:
    """One command to vmmd.sock on a fresh connection; the reply payload."""
    stream = await connect_unix(socket_path(tmpdir, "vmmd"))
    async with stream:
        conn = FramedStream(stream, MAX_FRAME)
        await conn.write_wire(Wire(Header(name=name or Name()), cmd))
        reply = await conn.read_wire()
    if reply is None:
        raise QueryError("albatrossd closed the connection")
    if isinstance(reply.payload, Failure):
        raise QueryError(reply.payload.message)
    return reply.payload


class PrometheusExporter:
    """Latest statistics per VM, plus albatrossd's policies, rendered per scrape."""

    def __init__(
        self,
        tmpdir: str | Path,
        *,
        stale_after: float = DEFAULT_STALE,
        page_size: int | None = None,
        limits: guard.Limits | None = None,
    ) -> None:
        self.tmpdir = Path(tmpdir)
        self.limits = limits or guard.Limits(request_timeout=REQUEST_TIMEOUT)
        self.stale_after = stale_after
        self.page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        self.latest: dict[Name, tuple[float, Statistics]] = {}
        self.stats_up = False

    async def on_data(self, name: Name, stats: Statistics) -> None:
        self.latest[name] = (trio.current_time(), stats)

    def _set_stats_up(self, up: bool) -> None:
        self.stats_up = up

    def current(self) -> dict[Name, Statistics]:
        cutoff = trio.current_time() - self.stale_after
        for name in [n for n, (t, _) in self.latest.items() if t < cutoff]:
            del self.latest[name]
        return {name: st for name, (_, st) in self.latest.items()}

    async def policies(self) -> list[PolicyUsage] | None:
        """Limits and usage per policy path, or None when albatrossd does not answer."""
        replies: list[object] = []
        try:
            with trio.fail_after(QUERY_TIMEOUT):
                for cmd in (PolicyInfoQuery(), UnikernelInfoQuery(), BlockInfoQuery()):
                    try:
                        replies.append(await query_albatrossd(self.tmpdir, cmd))
                    except QueryError as exc:
                        # albatrossd answered, but with a Failure (e.g. nothing there yet).
                        log.debug("%s: %s", type(cmd).__name__, exc)
                        replies.append(None)
        except (OSError, trio.TooSlowError, WireError) as exc:
            log.info("asking albatrossd failed: %s", exc)
            return None
        pols, uks, blks = replies
        if not (
            isinstance(pols, ReplyPolicies | None)
            and isinstance(uks, ReplyUnikernelInfo | None)
            and isinstance(blks, ReplyBlockDevices | None)
        ):
            log.warning("unexpected replies from albatrossd: %s %s %s", pols, uks, blks)
            return None
        return policy_usage(
            pols.entries if pols else (),
            uks.entries if uks else (),
            blks.entries if blks else (),
        )

    async def render(self) -> str:
        pols = await self.policies()
        extra = [
            (
                "albatross_exporter_albatrossd_up",
                "gauge",
                "1 if albatrossd answered the policy queries of this scrape",
                1 if pols is not None else 0,
            ),
            (
                "albatross_exporter_stats_up",
                "gauge",
                "1 if the subscription to albatross-stats is live",
                1 if self.stats_up else 0,
            ),
        ]
        return prometheus_text(self.current(), pols or [], page_size=self.page_size, extra=extra)

    # -- the HTTP side -------------------------------------------------------------------
    async def handle_http(self, conn: guard.Connection) -> None:
        stream = conn.stream
        timeout = conn.limits.request_timeout
        try:
            head: bytes | None = None
            with trio.move_on_after(timeout):
                head = await _read_head(stream)
                if head is None:
                    return
            if head is None:
                response = guard.HttpReplies.response(
                    "408 Request Timeout", f"no complete request within {timeout:g} s"
                )
            else:
                status, ctype, body, is_head = await self._respond(head)
                response = (
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode("latin-1") + (b"" if is_head else body)
            with trio.move_on_after(timeout):
                await stream.send_all(response)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("HTTP connection: %s", exc)

    async def _respond(self, head: bytes) -> tuple[str, str, bytes, bool]:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return "400 Bad Request", "text/plain", b"bad request\n", False
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"method not allowed\n", False
        path = target.split("?", 1)[0]
        if path == "/metrics":
            body = (await self.render()).encode("utf-8", "surrogateescape")
            return "200 OK", PROMETHEUS_CONTENT_TYPE, body, method == "HEAD"
        if path == "/":
            return "200 OK", "text/plain", b"albatross-prometheus: see /metrics\n", method == "HEAD"
        return "404 Not Found", "text/plain", b"not found\n", method == "HEAD"

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: _TaskStatus = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: subscribe_stats(
                    self.tmpdir, Name(), self.on_data, on_state=self._set_stats_up
                )
            )
            await nursery.start(
                partial(
                    guard.serve,
                    listeners,
                    self.handle_http,
                    service="albatross-prometheus",
                    limits=self.limits,
                    replies=guard.HTTP,
                )
            )
            task_status.started()


async def _read_head(stream: trio.abc.Stream) -> bytes | None:
    data = bytearray()
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_REQUEST_HEAD:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            return None
        data += chunk
    return bytes(data)


# -- executables ---------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tmpdir", default=DEFAULT_TMPDIR, help="runtime directory")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="no logging")
    parser.add_argument("--user", default=DEFAULT_USER, help="user to drop root to")


def parse_influx_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="albatross-influx",
        description="Subscribes to albatross-stats and writes the statistics to InfluxDB "
        "(or telegraf) in the line protocol.",
        epilog="example: albatross-influx --tmpdir /run/albatross --influx 127.0.0.1:8094",
    )
    _common(parser)
    sink = parser.add_mutually_exclusive_group(required=True)
    sink.add_argument("--influx", metavar="HOST[:PORT]", help="TCP line protocol (port 8094)")
    sink.add_argument("--http", metavar="URL", help="HTTP write API, http://HOST:PORT/write?db=DB")
    parser.add_argument("-n", "--name", default=":", help="subscription name (default :)")
    parser.add_argument("--no-drop-path", action="store_true", help="full names as vm tags")
    return parser.parse_args(argv)


def influx_main(argv: Sequence[str] | None = None) -> int:
    args = parse_influx_args(argv)
    setup_logging("albatross-influx", args.verbose, args.quiet)
    try:
        name = Name.of_string(args.name)
        sink: TcpInflux | HttpInflux
        if args.http:
            sink = HttpInflux(args.http)
        else:
            sink = TcpInflux(*parse_host_port(args.influx, DEFAULT_INFLUX_PORT))
    except ValueError as exc:
        print(f"albatross-influx: {exc}", file=sys.stderr)
        return 2
    exporter = InfluxExporter(sink, no_drop_path=args.no_drop_path)

    async def run() -> int:
        drop_privileges(args.user)  # no socket to bind: root is never needed
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(exporter.run, args.tmpdir, name)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
        return 0

    return trio.run(run)


def parse_prometheus_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="albatross-prometheus",
        description="Serves statistics of unikernels and policy usage for Prometheus.",
        epilog="example: albatross-prometheus --tmpdir /run/albatross --listen 127.0.0.1:9435",
    )
    _common(parser)
    parser.add_argument(
        "--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT", help="default %(default)s"
    )
    parser.add_argument(
        "--stale",
        type=float,
        default=DEFAULT_STALE,
        metavar="SECONDS",
        help="forget a VM whose statistics are older (default %(default)s)",
    )
    guard.add_limit_options(parser, request_timeout=REQUEST_TIMEOUT, what="an HTTP request head")
    return parser.parse_args(argv)


def prometheus_main(argv: Sequence[str] | None = None) -> int:
    args = parse_prometheus_args(argv)
    setup_logging("albatross-prometheus", args.verbose, args.quiet)
    try:
        host, port = parse_host_port(args.listen, 9435)
    except ValueError as exc:
        print(f"albatross-prometheus: {exc}", file=sys.stderr)
        return 2
    exporter = PrometheusExporter(
        args.tmpdir, stale_after=args.stale, limits=guard.limits_from_args(args)
    )

    async def run() -> int:
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            log.error("cannot listen on %s: %s", args.listen, exc)
            return 1
        drop_privileges(args.user)  # listening already: root is not needed now
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(exporter.serve, listeners)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
        return 0

    return trio.run(run)


__all__ = [
    "HttpInflux",
    "InfluxExporter",
    "PrometheusExporter",
    "TcpInflux",
    "http_request",
    "influx_main",
    "parse_host_port",
    "prometheus_main",
    "query_albatrossd",
    "subscribe_stats",
]
