"""Subscribers keyed by the name or path they subscribed at (stats, event log).

A subscriber at a path sees everything at and below it; one at a name sees
that name.  What it sees is named relative to its subscription's path.  At
most ``max_per_name`` subscribers share one name: a new one pushes out the
oldest (albatross keeps exactly one per name, its issue #281).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from albatross_py.wire.names import ROOT, Name, Path, is_prefix

S = TypeVar("S")


def relative_name(subscriber: Name, subject: Name) -> Name:
    """``subject`` as a subscriber at ``subscriber`` sees it (it must match).

    A path subscription whose labels equal a unikernel's (``a:vm:`` and
    ``a:vm`` share a trie node) sees the bare label ``:vm``.
    """
    prefix = subscriber.path
    if not is_prefix(prefix, subject.path):
        return Name(ROOT, subject.label)
    return subject.drop_prefix(prefix)


@dataclass(eq=False)
class PathSubscribers(Generic[S]):
    max_per_name: int
    _subs: dict[Path, list[tuple[Name, S]]] = field(default_factory=dict)

    def subscribe(self, at: Name, sub: S) -> list[S]:
        """Add ``sub`` at ``at``; the subscribers pushed out, oldest first."""
        entries = self._subs.setdefault(at.labels(), [])
        entries.append((at, sub))
        kicked: list[S] = []
        while len(entries) > self.max_per_name:
            kicked.append(entries.pop(0)[1])
        return kicked

    def unsubscribe(self, at: Name, sub: S) -> bool:
        key = at.labels()
        entries = self._subs.get(key, [])
        for i, (_, s) in enumerate(entries):
            if s is sub:
                del entries[i]
                if not entries:
                    del self._subs[key]
                return True
        return False

    def __len__(self) -> int:
        return sum(len(v) for v in self._subs.values())

    def matching(self, subject: Name) -> Iterator[tuple[Name, S]]:
        """(subscribed at, subscriber) for ``subject`` and every ancestor, root first."""
        labels = subject.labels()
        for depth in range(len(labels) + 1):
            yield from self._subs.get(labels[:depth], ())
