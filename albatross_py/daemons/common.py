"""What the unprivileged daemons do the same way.

albatross-console, albatross-stats and albatross-log share their outer
shape: log to stdout as ``<program>: [LEVEL] message`` (or to syslog), take
their listening socket from systemd or bind ``<tmpdir>/util/<name>.sock``,
drop root once the socket exists, serve every connection under the
connection guard (:mod:`albatross_py.transport.guard`: its flags are in
:func:`daemon_parser`), and serve until SIGTERM or SIGINT.  Their
subscribers share one shape too: a bounded queue drained by a writer task,
so a slow reader never blocks the producer or the other subscribers.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from albatross_py.defaults import DEFAULT_TMPDIR
from albatross_py.transport import bind_unix, guard, socket_path, systemd_listener
from albatross_py.wire.names import Name

log = logging.getLogger("albatross")


#: Our loggers' names start with this (albatross.console, albatrossd,
#: albatross-tls-endpoint, albatross_py.host...): their records pass at the
#: level -v chose.
OWN_LOGGERS = "albatross"
#: -v count from which other libraries' records below WARNING pass too: at
#: DEBUG pyroute2 logs every netlink message (a dump of every interface per
#: query), asyncio its selector, httpx/hpack every frame.
THIRD_PARTY_VERBOSITY = 3


class OwnRecords(logging.Filter):
    """Lets our own records through at any level, other libraries' from WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        return (
            record.levelno >= logging.WARNING
            or record.name.startswith(OWN_LOGGERS)
            or record.name == "root"
        )


def install_log_handler(handler: logging.Handler, prog: str, level: int, verbose: int) -> None:
    """The one handler of the root logger: ``<prog>: [LEVEL] message``, floods filtered."""
    handler.setFormatter(logging.Formatter(f"{prog}: [%(levelname)s] %(message)s"))
    if verbose < THIRD_PARTY_VERBOSITY:
        handler.addFilter(OwnRecords())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def daemon_parser(
    prog: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """An argument parser with the options every unprivileged daemon takes."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog)
    parser.add_argument("--tmpdir", default=DEFAULT_TMPDIR, help="runtime directory")
    parser.add_argument(
        "--systemd-socket-activation",
        action="store_true",
        help="use the listening socket passed by systemd",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v info, -vv debug, -vvv other libraries' debug too")  # fmt: skip
    parser.add_argument("-q", "--quiet", action="store_true", help="no logging")
    parser.add_argument("--user", default="albatross", help="user to drop root to")
    guard.add_limit_options(parser)
    return parser


def setup_logging(
    prog: str,
    verbose: int = 0,
    quiet: bool = False,
    syslog: bool = False,
    *,
    default: int = logging.WARNING,
) -> None:
    """``default`` (warnings) without flags, ``-v`` info, ``-vv`` debug, ``-q`` nothing.

    Debug and info records of other libraries appear only from ``-vvv``
    (:data:`THIRD_PARTY_VERBOSITY`); their warnings always do.
    """
    if quiet:
        level = logging.CRITICAL + 1
    elif verbose == 0:
        level = default
    else:
        level = logging.INFO if verbose == 1 and default > logging.INFO else logging.DEBUG
    handler: logging.Handler
    if syslog:
        handler = logging.handlers.SysLogHandler(address="/dev/log")
    else:
        handler = logging.StreamHandler(sys.stdout)
    install_log_handler(handler, prog, level, verbose)


def listen(service: str, tmpdir: str, systemd: bool) -> trio.SocketListener | None:
    """The daemon's listener, or None (after logging why) when there is none."""
    if systemd:
        listener = systemd_listener()
        if listener is None:
            log.error("--systemd-socket-activation given, but systemd passed no socket")
        return listener
    path = socket_path(tmpdir, service)
    try:
        return bind_unix(path)
    except OSError as exc:
        log.error("cannot listen on %s: %s", path, exc)
        return None


def drop_root(user: str | None) -> None:
    """Drop to ``user`` when running as root (the socket already exists, 0660)."""
    if os.geteuid() != 0 or not user:
        return
    from albatross_py.daemons.privdrop import drop_privileges

    drop_privileges(user)


Serve = Callable[..., Awaitable[None]]


async def serve_until_signalled(
    serve: Serve, listener: trio.SocketListener, *, on_hup: Callable[[], None] | None = None
) -> None:
    """Run ``serve(listener, task_status=...)`` until SIGTERM or SIGINT;
    SIGHUP calls ``on_hup`` (log rotation) when given."""
    signals_wanted = [signal.SIGTERM, signal.SIGINT]
    if on_hup is not None:
        signals_wanted.append(signal.SIGHUP)
    with trio.open_signal_receiver(*signals_wanted) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, listener)
            async for signum in signals:
                if signum == signal.SIGHUP and on_hup is not None:
                    on_hup()
                    continue
                log.info("%s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


@dataclass(eq=False)
class Subscriber:
    """One subscribed connection: where it subscribed, its queue, its cancel scope."""

    name: Name
    version: int
    #: what the writer task sends: wires, or (console) already framed bytes
    queue: trio.MemorySendChannel[Any]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: messages not queued because the queue was full
    dropped: int = 0

    def offer(self, item: object) -> bool:
        """Queue ``item`` without waiting; False when the queue is full or gone."""
        try:
            self.queue.send_nowait(item)
        except trio.WouldBlock:
            self.dropped += 1
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def close(self) -> None:
        self.scope.cancel()
