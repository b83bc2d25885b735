"""The event log's pure logic: the ring, who sees what, and the text line format.

albatross-log (``albatross_py.daemons.events``) keeps the last
:data:`RING_SIZE` events in memory, appends each to a text file and streams
them to subscribers, as albatross-console does for console lines (spec 6.1).
Everything here is sans-IO; subscribers are opaque objects compared by
identity.

Who sees an event: a subscriber at a name or path sees every event whose
subject is at or below it, matching on label tuples as the stats daemon
does (``Vmm_trie`` semantics): a subscriber at ``:`` sees everything, one at
``a:`` everything about ``a:``, ``a:vm``, ``a:b:``, ``a:b:vm``...  A
``startup`` event has the root as subject, so only root subscribers get it.
The name a subscriber sees (in the header, and in the event itself) is the
subject relative to the subscriber's path (:func:`relative_name`).

History on subscribe, as console subscriptions: ``count`` n = the last n
*matching* events (n clamped to ``[0, RING_SIZE]``), ``since`` t = the
matching events from t on, oldest first; the walk never laps the ring and
stops at the first event older than t.

Text format, one line per event, always a single line::

    2026-08-03T10:11:12.345Z unikernel-started a:vm pid=1234 taps=service=tap0 blocks= ...

``<RFC 3339 UTC timestamp with milliseconds> <kind> <name> key=value ...``;
``kind`` is the wire alternative's name, ``name`` the subject (``:`` for a
startup).  Values are written bare when they are plain, otherwise in double
quotes with ``\\\\``, ``\\"``, ``\\n``, ``\\r``, ``\\t`` and ``\\xHH`` escapes for
every other control character, so neither a hostile VM name nor a reason
string can break or forge a line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from albatross_py.core.console import Ring
from albatross_py.core.subscribers import PathSubscribers, relative_name
from albatross_py.wire import events as ev
from albatross_py.wire.names import Name, is_prefix

#: Events kept in memory.
RING_SIZE = 4096

#: Subscribers kept per name; beyond that, the oldest one is closed (a client
#: reconnecting in a loop cannot pile up connections).
MAX_SUBSCRIBERS_PER_NAME = 8

Entry = tuple[datetime, ev.Event]
S = TypeVar("S")


# -- the ring ---------------------------------------------------------------------


#: The event ring is the console's ring, holding events instead of lines.
EventRing = Ring[ev.Event]


# -- matching -----------------------------------------------------------------------


def matches(subscriber: Name, event: ev.Event) -> bool:
    """Whether a subscriber at ``subscriber`` (a name or a path) sees ``event``."""
    return is_prefix(subscriber.labels(), event.subject.labels())


def relative_event(subscriber: Name, event: ev.Event) -> ev.Event:
    """``event`` with its name relative to ``subscriber``'s path."""
    if isinstance(event, ev.Startup):
        return event
    rel = relative_name(subscriber, event.subject)
    if rel == event.subject:
        return event
    return dataclasses.replace(event, name=rel)  # type: ignore[type-var]


def history(
    ring: EventRing, subscriber: Name, *, count: int | None = None, since: datetime | None = None
) -> list[Entry]:
    """The matching events a new subscriber gets first, oldest first (module docstring)."""
    out: list[Entry] = []
    if count is not None:
        n = max(0, min(count, ring.size))
        if n == 0:
            return out
        for entry in ring.newest_first():
            if matches(subscriber, entry[1]):
                out.append(entry)
                if len(out) == n:
                    break
    else:
        assert since is not None, "history needs a count or a since"
        for entry in ring.newest_first():
            if entry[0] < since:
                break
            if matches(subscriber, entry[1]):
                out.append(entry)
    out.reverse()
    return out


# -- state: ring + subscribers ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscribed(Generic[S]):
    """What a subscribe gives: the history to send and subscribers to close."""

    history: list[Entry]
    kicked: list[S]


@dataclass(eq=False)
class EventLog(Generic[S]):
    """The ring and the subscribers; ``S`` is whatever the daemon uses for one."""

    ring_size: int = RING_SIZE
    max_per_name: int = MAX_SUBSCRIBERS_PER_NAME
    ring: EventRing = field(init=False)
    _subs: PathSubscribers[S] = field(init=False)

    def __post_init__(self) -> None:
        self.ring = EventRing(self.ring_size)
        self._subs = PathSubscribers(self.max_per_name)

    def record(self, timestamp: datetime, event: ev.Event) -> list[tuple[S, Name, ev.Event]]:
        """Keep ``event``; every subscriber that sees it, with the name and event it sees."""
        self.ring.push(timestamp, event)
        return [
            (sub, relative_name(at, event.subject), relative_event(at, event))
            for at, sub in self._subs.matching(event.subject)
        ]

    def subscribe(
        self, at: Name, sub: S, *, count: int | None = None, since: datetime | None = None
    ) -> Subscribed[S]:
        """Register ``sub`` at ``at``; its history, and older subscribers to close."""
        kicked = self._subs.subscribe(at, sub)
        return Subscribed(history(self.ring, at, count=count, since=since), kicked)

    def unsubscribe(self, at: Name, sub: S) -> bool:
        return self._subs.unsubscribe(at, sub)

    def subscriber_count(self) -> int:
        return len(self._subs)


# -- the text line ----------------------------------------------------------------------

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:,;=_-+/@[]()")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: str) -> str:
    """``value`` bare when plain, otherwise double-quoted and escaped (never a newline)."""
    if value and all(c in _PLAIN for c in value):
        return value
    out = []
    for c in value:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif c < " " or c == "\x7f" or "\x80" <= c <= "\x9f" or c in "\u2028\u2029":
            out.append(f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        elif "\udc80" <= c <= "\udcff":  # an undecodable byte kept by surrogateescape
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif "\ud800" <= c <= "\udfff":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def timestamp_text(ts: datetime) -> str:
    """RFC 3339, UTC, milliseconds: ``2026-08-03T10:11:12.345Z``."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts.microsecond // 1000:03d}Z"


def _pairs(pairs: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{a}={b}" for a, b in pairs)


def fields(event: ev.Event) -> list[tuple[str, str]]:
    """The ``key=value`` part of an event's line, unquoted."""
    match event:
        case ev.Startup(program):
            return [("program", program)]
        case ev.Login(_, address) | ev.Logout(_, address):
            return [("address", address)]
        case ev.UnikernelStarted(_, pid, taps, blocks, digest):
            return [
                ("pid", str(pid)),
                ("taps", _pairs(taps)),
                ("blocks", _pairs(blocks)),
                ("digest", digest.hex()),
            ]
        case ev.UnikernelExited(_, pid, code, signal, reason):
            why = [] if reason is None else [("reason", reason)]
            if code is not None:
                return [("pid", str(pid)), ("exit-code", str(code)), *why]
            if signal is not None:
                return [("pid", str(pid)), ("signal", str(signal)), *why]
            return [("pid", str(pid)), ("status", "unknown"), *why]
        case ev.UnikernelRestarting(_, reason):
            return [("reason", reason)]
        case ev.PolicyChanged(_, None) | ev.BlockChanged(_, None):
            return [("removed", "true")]
        case ev.PolicyChanged(_, policy):
            assert policy is not None
            return [
                ("unikernels", str(policy.unikernels)),
                ("memory", str(policy.memory)),
                ("block", "none" if policy.block is None else str(policy.block)),
                ("cpuids", ",".join(str(c) for c in sorted(policy.cpuids))),
                ("bridges", ",".join(sorted(policy.bridges))),
            ]
        case ev.BlockChanged(_, size):
            return [("size", str(size))]
    return []


def kind(event: ev.Event) -> str:
    """The event's kind: its alternative's name in the wire grammar."""
    return _KINDS.get(type(event), type(event).__name__)


_KINDS: dict[type, str] = {
    ev.Startup: "startup",
    ev.Login: "login",
    ev.Logout: "logout",
    ev.UnikernelStarted: "unikernel-started",
    ev.UnikernelExited: "unikernel-exited",
    ev.UnikernelRestarting: "unikernel-restarting",
    ev.UnikernelDestroyed: "unikernel-destroyed",
    ev.PolicyChanged: "policy-changed",
    ev.BlockChanged: "block-changed",
}


def line(timestamp: datetime, event: ev.Event) -> str:
    """The event's line in the log file, with its trailing newline."""
    parts = [timestamp_text(timestamp), kind(event), quote(str(event.subject))]
    parts += [f"{k}={quote(v)}" for k, v in fields(event)]
    return " ".join(parts) + "\n"


__all__ = [
    "MAX_SUBSCRIBERS_PER_NAME",
    "RING_SIZE",
    "EventLog",
    "EventRing",
    "Subscribed",
    "history",
    "kind",
    "line",
    "matches",
    "quote",
    "relative_event",
    "relative_name",
    "timestamp_text",
]
