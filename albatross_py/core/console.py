"""The console daemon's pure logic: ring buffers, line splitting, subscriptions.

albatross-console (spec 6.1) reads each unikernel's console FIFO, keeps the
last :data:`RING_SIZE` lines per unikernel and streams them to subscribers.
Everything here is sans-IO: the daemon (``albatross_py.daemons.console``)
feeds bytes and timestamps in and acts on what comes back (lines to send,
subscribers to close).  Subscribers are opaque objects compared by identity.

Where we differ from albatross 2.7.2, on purpose (spec 11):

* counts are clamped to ``[0, RING_SIZE]`` (a negative count loops upstream);
* at most ``max_subscribers`` subscribers per console, not ``max + 1``: at
  the limit, the oldest is kicked;
* the splitter's output does not depend on how the bytes were chunked: a line
  of :data:`MAX_LINE` bytes or more is always truncated (upstream, a long
  line that arrives together with its newline can slip through whole);
* the ``n + 1`` ring limit counts entries that hold a ring, so a subscriber
  waiting for a VM that does not exist yet is never evicted to make room,
  and a ring created for a waiting subscriber's entry is counted too;
* every ``Console_add`` bumps the entry's *generation*; only the reader of
  the current generation may record lines or mark the entry inactive, so an
  old reader finishing late cannot mark a restarted VM inactive.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from albatross_py.core.trie import Trie
from albatross_py.wire.names import Name, Path

#: Lines kept per unikernel (``Vmm_ring.create ?(size=1024)``).
RING_SIZE = 1024

#: Longest line kept, and the FIFO read size.  albatross 2.5.0 introduced the
#: limit against unbounded buffering of a console without newlines (OOM).
MAX_LINE = 512

#: Appended to a line cut at :data:`MAX_LINE` bytes.
TRUNCATED = b" [truncated]"

#: ``--max-subscribers`` default (albatross 2.6.1, #240).
DEFAULT_MAX_SUBSCRIBERS = 5

#: Replies to a subscribe.
SUBSCRIBED = "subscribed"
WAITING = "waiting for VM"

Line = tuple[datetime, bytes]
S = TypeVar("S")
T = TypeVar("T")


class ConsoleError(ValueError):
    """A request the console refuses; the message is the ``Failure`` text."""


# -- ring buffer ----------------------------------------------------------------


class Ring(Generic[T]):
    """A fixed-size ring of ``(timestamp, item)``, oldest overwritten first.

    Console lines here; events in :mod:`albatross_py.core.eventlog`.
    """

    __slots__ = ("_count", "_slots", "_write", "size")

    def __init__(self, size: int = RING_SIZE) -> None:
        if size < 1:
            raise ValueError("a ring holds at least one entry")
        self.size = size
        self._slots: list[tuple[datetime, T] | None] = [None] * size
        self._write = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def push(self, timestamp: datetime, item: T) -> None:
        self._slots[self._write] = (timestamp, item)
        self._write = (self._write + 1) % self.size
        self._count = min(self._count + 1, self.size)

    def newest_first(self) -> Iterator[tuple[datetime, T]]:
        """At most one lap, newest entry first."""
        idx = self._write
        for _ in range(self._count):
            idx = (idx - 1) % self.size
            entry = self._slots[idx]
            assert entry is not None
            yield entry

    def entries(self) -> list[tuple[datetime, T]]:
        """Everything held, oldest first."""
        return self.last(self.size)

    def last(self, n: int) -> list[tuple[datetime, T]]:
        """The last ``n`` entries, oldest first; ``n`` is clamped to [0, size]."""
        n = max(0, min(n, self._count))
        out = []
        for entry in self.newest_first():
            if len(out) == n:
                break
            out.append(entry)
        out.reverse()
        return out

    def since(self, t: datetime) -> list[tuple[datetime, T]]:
        """Entries from the newest back to the first one older than ``t``, oldest first.

        As albatross's ``read_history``: the walk stops at the first entry
        earlier than ``t`` and never goes round more than once.
        """
        out = []
        for entry in self.newest_first():
            if entry[0] < t:
                break
            out.append(entry)
        out.reverse()
        return out


# -- line splitting ---------------------------------------------------------------


class LineSplitter:
    """Turns console bytes into lines (spec 6.1).

    Lines end at ``\\n``; the unterminated tail is kept as slack.  Once a line
    reaches ``max_line`` bytes without a newline it is emitted cut to
    ``max_line`` bytes plus :data:`TRUNCATED`, and the rest of it is dropped
    up to the next newline.  Empty lines are discarded.  The result does not
    depend on how the input is chunked, and the slack never exceeds
    ``max_line - 1`` bytes.
    """

    __slots__ = ("_dropping", "_slack", "max_line")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self.max_line = max_line
        self._slack = bytearray()
        self._dropping = False

    @property
    def slack(self) -> bytes:
        return bytes(self._slack)

    def feed(self, data: bytes) -> list[bytes]:
        """The lines completed by ``data``."""
        lines: list[bytes] = []
        pos, size = 0, len(data)
        while pos < size:
            nl = data.find(b"\n", pos)
            if self._dropping:
                if nl < 0:
                    break
                self._dropping = False
                pos = nl + 1
                continue
            end = size if nl < 0 else nl
            room = self.max_line - len(self._slack)
            if end - pos >= room:
                self._slack += data[pos : pos + room]
                lines.append(bytes(self._slack) + TRUNCATED)
                self._slack.clear()
                self._dropping = True
                pos += room
                continue
            self._slack += data[pos:end]
            if nl < 0:
                break
            if self._slack:
                lines.append(bytes(self._slack))
                self._slack.clear()
            pos = nl + 1
        return lines

    def flush(self) -> list[bytes]:
        """At end of input: the unterminated tail as a last line, if any."""
        tail = bytes(self._slack)
        self._slack.clear()
        self._dropping = False
        return [tail] if tail else []


# -- state ------------------------------------------------------------------------


@dataclass(eq=False)
class ConsoleEntry(Generic[S]):
    """One unikernel's console: subscribers (oldest first), liveness, history."""

    subscribers: list[S] = field(default_factory=list)
    active: bool = False
    ring: Ring | None = None
    generation: int = 0


@dataclass(eq=False)
class PathConsoles(Generic[S]):
    """The consoles of one path; ``limit`` is ``n`` of the latest ``Console_add``."""

    limit: int
    entries: dict[str, ConsoleEntry[S]] = field(default_factory=dict)


@dataclass(frozen=True)
class AddOutcome(Generic[S]):
    """What a ``Console_add`` did: the reader's generation and ring, what to close."""

    generation: int
    ring: Ring
    dropped: tuple[Name, ...] = ()
    close: tuple[S, ...] = ()


@dataclass(frozen=True)
class SubscribeOutcome(Generic[S]):
    """The reply text, the history to send first, and subscribers to close."""

    reply: str
    history: tuple[Line, ...] = ()
    kicked: tuple[S, ...] = ()


def _label(name: Name, what: str = "path used instead of name") -> str:
    if name.label is None:
        raise ConsoleError(what)
    return name.label


class ConsoleState(Generic[S]):
    """albatross-console's state: path -> (n, label -> entry), as in spec 6.1."""

    def __init__(self, max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS) -> None:
        if max_subscribers < 1:
            raise ValueError("max subscribers must be greater than or equal to 1")
        self.max_subscribers = max_subscribers
        self._trie: Trie[PathConsoles[S]] = Trie()
        self._generation = 0

    # -- lookups ------------------------------------------------------------
    def path(self, path: Path) -> PathConsoles[S] | None:
        return self._trie.find(Name.of_path(path))

    def entry(self, name: Name) -> ConsoleEntry[S] | None:
        if name.label is None:
            return None
        consoles = self.path(name.path)
        return None if consoles is None else consoles.entries.get(name.label)

    def rings(self, path: Path) -> list[str]:
        """Labels at ``path`` holding a ring, sorted."""
        consoles = self.path(path)
        if consoles is None:
            return []
        return sorted(lbl for lbl, e in consoles.entries.items() if e.ring is not None)

    def subscribers(self, name: Name) -> tuple[S, ...]:
        entry = self.entry(name)
        return () if entry is None else tuple(entry.subscribers)

    # -- commands -------------------------------------------------------------
    def add(self, name: Name, limit: int) -> AddOutcome[S]:
        """``Console_add limit`` on a unikernel name (its FIFO is open)."""
        label = _label(name)
        self._generation += 1
        consoles = self.path(name.path)
        if consoles is None:
            consoles = PathConsoles(limit)
            self._trie.insert(Name.of_path(name.path), consoles)
        consoles.limit = limit
        entry = consoles.entries.get(label)
        if entry is None:
            entry = consoles.entries[label] = ConsoleEntry()
        new_ring = entry.ring is None
        if entry.ring is None:
            entry.ring = Ring()
        entry.active = True
        entry.generation = self._generation
        dropped: list[Name] = []
        close: list[S] = []
        if new_ring:
            with_ring = [lbl for lbl, e in consoles.entries.items() if e.ring is not None]
            if len(with_ring) > limit:
                inactive = sorted(lbl for lbl in with_ring if not consoles.entries[lbl].active)
                if inactive:
                    victim = consoles.entries.pop(inactive[0])
                    dropped.append(Name(name.path, inactive[0]))
                    close.extend(victim.subscribers)
        return AddOutcome(entry.generation, entry.ring, tuple(dropped), tuple(close))

    def subscribe(
        self,
        name: Name,
        subscriber: S,
        *,
        count: int | None = None,
        since: datetime | None = None,
    ) -> SubscribeOutcome[S]:
        """``Console_subscribe`` (by ``count`` or ``since``) on a unikernel name."""
        label = _label(name)
        if (count is None) == (since is None):
            raise ValueError("subscribe takes exactly one of count and since")
        consoles = self.path(name.path)
        if consoles is None:
            consoles = PathConsoles(1)
            self._trie.insert(Name.of_path(name.path), consoles)
        entry = consoles.entries.get(label)
        if entry is None:
            consoles.entries[label] = ConsoleEntry([subscriber])
            return SubscribeOutcome(WAITING)
        kicked: list[S] = []
        while len(entry.subscribers) >= self.max_subscribers:
            kicked.append(entry.subscribers.pop(0))
        entry.subscribers.append(subscriber)
        if entry.ring is None:
            return SubscribeOutcome(WAITING, (), tuple(kicked))
        history = entry.ring.last(count) if count is not None else entry.ring.since(since)  # type: ignore[arg-type]
        return SubscribeOutcome(SUBSCRIBED, tuple(history), tuple(kicked))

    def list_inactive(self, name: Name) -> tuple[Name, ...]:
        """``Console_list_inactive`` on a path: relative names, albatross's order."""
        if name.label is not None:
            raise ConsoleError("name used")
        found = [
            Name(rel.path, lbl)
            for rel, consoles in self._trie.fold(name.path)
            for lbl, entry in sorted(consoles.entries.items())
            if not entry.active and entry.ring is not None
        ]
        found.reverse()  # albatross conses onto its accumulator
        return tuple(found)

    # -- events from the daemon -------------------------------------------------
    def record(
        self, name: Name, generation: int, timestamp: datetime, lines: list[bytes]
    ) -> tuple[S, ...]:
        """Lines read by the reader of ``generation``: into the ring; who gets them."""
        entry = self.entry(name)
        if entry is None or entry.generation != generation or entry.ring is None:
            return ()
        for line in lines:
            entry.ring.push(timestamp, line)
        return tuple(entry.subscribers)

    def deactivate(self, name: Name, generation: int) -> bool:
        """The FIFO of ``generation`` hit end of file: keep ring and subscribers."""
        entry = self.entry(name)
        if entry is None or entry.generation != generation:
            return False
        entry.active = False
        return True

    def unsubscribe(self, name: Name, subscriber: S) -> bool:
        """Forget a subscriber; an entry left with nothing to keep goes away."""
        consoles = self.path(name.path)
        if consoles is None or name.label is None:
            return False
        entry = consoles.entries.get(name.label)
        if entry is None:
            return False
        before = len(entry.subscribers)
        entry.subscribers = [s for s in entry.subscribers if s is not subscriber]
        if not entry.active and entry.ring is None and not entry.subscribers:
            del consoles.entries[name.label]
            if not consoles.entries:
                self._trie.remove(Name.of_path(name.path))
        return len(entry.subscribers) != before
