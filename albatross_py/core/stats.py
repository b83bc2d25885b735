"""albatross-stats' table: which VMs to measure and who wants the numbers (spec 6.3).

Two maps, both pure:

* the VMs, from albatrossd's ``Stats_add``/``Stats_remove``: name -> pid,
  vmmdev and the (netif, tap) pairs whose taps exist;
* the subscribers, from ``Stats_subscribe``, keyed by the name or path they
  subscribed at.  albatross keeps **one** subscriber per name and closes the
  previous one (issue #281: Mollymawk and albatross-influx cannot both watch
  the root).  We keep several per name, up to :data:`MAX_SUBSCRIBERS_PER_NAME`
  (the oldest is closed beyond that, so a client reconnecting in a loop cannot
  pile up connections).

A VM's statistics go to every subscriber at its name or at any ancestor path,
as albatross's ``Vmm_trie.collect``: matching is on label tuples, so a
subscription at ``"a:b"`` (the unikernel b) and one at ``"a:b:"`` (the path)
both see the VM ``a:b``.  The data's name is the VM's name relative to the
subscriber's *path* (``drop_prefix``): a subscriber at ``:`` sees ``a:vm``,
one at ``a:`` or ``a:vm`` sees ``:vm``.  For a path subscription that equals
the VM's labels (``a:vm:``), where albatross would raise in
``drop_prefix_exn``, we give the bare label ``:vm``.

A duplicate ``Stats_add`` for a name trips an ``assert`` in albatross; here it
replaces the old entry (the caller logs it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from albatross_py.core.subscribers import PathSubscribers, relative_name
from albatross_py.wire.names import Name

S = TypeVar("S")

#: Subscribers kept per name.  albatross keeps one (#281); a handful covers a
#: dashboard, an Influx exporter, a Prometheus exporter and a human.
MAX_SUBSCRIBERS_PER_NAME = 8


@dataclass(frozen=True, slots=True)
class TrackedVm:
    """A VM albatrossd asked us to measure; ``network`` pairs are (netif, tap)."""

    name: Name
    pid: int
    vmmdev: str = ""
    network: tuple[tuple[str, str], ...] = ()


@dataclass(eq=False)
class StatsTable(Generic[S]):
    """VMs and subscribers; ``S`` is whatever the daemon uses for a subscriber."""

    max_per_name: int = MAX_SUBSCRIBERS_PER_NAME
    _vms: dict[Name, TrackedVm] = field(default_factory=dict)
    _subs: PathSubscribers[S] = field(init=False)

    def __post_init__(self) -> None:
        self._subs = PathSubscribers(self.max_per_name)

    # -- VMs -----------------------------------------------------------------------
    def add(self, vm: TrackedVm) -> TrackedVm | None:
        """Track ``vm``; returns the entry it replaced, if any."""
        old = self._vms.get(vm.name)
        self._vms[vm.name] = vm
        return old

    def remove(self, name: Name) -> TrackedVm | None:
        return self._vms.pop(name, None)

    def clear_vms(self) -> None:
        self._vms.clear()

    def vm(self, name: Name) -> TrackedVm | None:
        return self._vms.get(name)

    def vms(self) -> list[TrackedVm]:
        return sorted(self._vms.values(), key=lambda v: v.name)

    # -- subscribers ---------------------------------------------------------------
    def subscribe(self, name: Name, sub: S) -> list[S]:
        """Add a subscriber at ``name``; returns the subscribers pushed out (oldest first)."""
        return self._subs.subscribe(name, sub)

    def unsubscribe(self, name: Name, sub: S) -> bool:
        return self._subs.unsubscribe(name, sub)

    def subscriber_count(self) -> int:
        return len(self._subs)

    def subscribers_for(self, vm: Name) -> list[tuple[S, Name]]:
        """Every subscriber at ``vm`` or an ancestor, with the name it sees; root first."""
        return [(sub, relative_name(at, vm)) for at, sub in self._subs.matching(vm)]

    def watched(self) -> Iterator[tuple[TrackedVm, list[tuple[S, Name]]]]:
        """The VMs somebody listens to, with their listeners (nothing else is gathered)."""
        for vm in self.vms():
            subs = self.subscribers_for(vm.name)
            if subs:
                yield vm, subs

    def remove_all(self, names: Iterable[Name]) -> None:
        for name in names:
            self._vms.pop(name, None)


__all__ = [
    "MAX_SUBSCRIBERS_PER_NAME",
    "StatsTable",
    "TrackedVm",
    "relative_name",
]
