"""The resource map and every admission check: albatross's ``Vmm_resources``.

:class:`Resources` holds three tries (policies by path, block devices by name
with their size in MB and whether a unikernel uses them, running unikernels by
name) and answers the questions the supervisor asks before it acts: may this
policy be installed, may this unikernel be created (or replace a running one),
may this block device be added or removed.  Every operation either succeeds
completely or raises and leaves the map exactly as it was: checks run first,
mutation only after every check passed.

A block device's resource name is (unikernel path, device label): the block
``data`` of a unikernel ``a:b:web`` is ``a:b:data``.

Refusals raise :class:`~albatross_py.core.policy.PolicyError` (a limit of a
policy) or its subclass :class:`ResourceError` (unknown names, a block device
in use, a name already running...); messages are albatross's where it has one,
prefixed with the path whose policy refused.

Given the host's :class:`~albatross_py.core.bounds.HostCapacity` (albatrossd
does; the conformance vectors do not), the map also refuses what the host
cannot hold, whatever the policies say (:mod:`albatross_py.core.bounds`):
values no VM has, more memory or other CPU ids than the host has, a block
device over ``--max-block-size`` or the free space the caller measured, and
a root policy larger than the host.
"""

# DELIBERATE DIFFERENCE FROM ALBATROSS 2.7.2 (spec sections 5.2, 5.3 and 11).
#
# albatross checks a create only against the policy at the unikernel's own
# path, and when it inserts a policy it walks the ancestors but stops before
# the root, so the root policy (the host's capacity) is never a super-policy.
# Siblings can therefore together run more than their parent allows: if "a"
# allows 2 unikernels and "a:b" and "a:c" each allow 2, albatross runs 4 --
# contrary to its own README ("Alice, Bob, and Charlie are able to run 2
# virtual machines in total").
#
# We implement the documented intent: EVERY policy on the way from the root
# down to a path (the root policy included) bounds the whole subtree below it.
# * create / force-create / restart: for each ancestor path with a policy, the
#   unikernel count, memory sum, cpuids and bridges of its whole subtree
#   (including the new unikernel) must fit that policy;
# * block add: the block storage summed over each ancestor's subtree must fit;
# * policy insert: the new policy must be is_smaller than every ancestor's
#   policy, the root's included, and must bound every policy and all current
#   usage below it.
# A refusal names the path whose policy refused.
#
# Cost: every node of the path tree keeps aggregated counters for its subtree
# (running unikernels, memory, block storage, multisets of cpuids and bridges
# in use, and the bounds of the policies strictly below it), updated
# incrementally on every insert and remove.  A create check or a policy insert
# therefore costs O(depth), independent of the size of the tree.
#
# A second, minor difference: usage of a path counts the unikernels and block
# devices whose *path* lies under it.  albatross folds over the trie node, so a
# unikernel "a:b" (label b under path a) would also count towards a policy at
# "a:b:" because a path and a name share a trie node; here it counts towards
# "a:" and its ancestors only, which is what its name means.

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from albatross_py.core import bounds
from albatross_py.core.bounds import HostCapacity
from albatross_py.core.policy import (
    PolicyError,
    block_fits,
    check_block_in_subtree,
    check_unikernel_in_subtree,
    host_bridges,
    is_smaller,
    where,
)
from albatross_py.core.trie import Trie
from albatross_py.wire.names import ROOT, Name, NameError_, Path, label_of_string, path_to_string
from albatross_py.wire.types import Policy, UnikernelConfig

#: What Policy_add replies when the policy is already installed (albatross's text).
NO_MODIFICATION = "no modification of policy"


class ResourceError(PolicyError):
    """A refusal that is not a policy limit: unknown name, device in use, ..."""


class DuplicateUnikernelError(RuntimeError):
    """A second unikernel inserted under a running name: a programming error.

    albatross raises ``Invalid_argument`` here; callers must check first.
    """


class HasConfig(Protocol):
    """What the map needs from a running unikernel: its config."""

    @property
    def config(self) -> UnikernelConfig: ...


R = TypeVar("R", bound=HasConfig)


@dataclass(frozen=True, slots=True)
class RunningUnikernel:
    """A minimal running-unikernel record: the config plus an opaque payload."""

    config: UnikernelConfig
    payload: Any = None


@dataclass(frozen=True, slots=True)
class BlockState:
    """A block device: its size in MB and whether a running unikernel uses it."""

    size: int
    active: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    """What runs in a subtree: the figures a policy bounds (and exporters report)."""

    unikernels: int = 0
    memory: int = 0
    block_active: int = 0
    block_inactive: int = 0
    block_devices: int = 0

    @property
    def block(self) -> int:
        return self.block_active + self.block_inactive


class PolicyChange(enum.Enum):
    """The outcome of :meth:`Resources.insert_policy`."""

    ADDED = "added"
    REPLACED = "replaced"
    UNCHANGED = NO_MODIFICATION


def _ints(xs: Iterable[int]) -> str:
    return ", ".join(str(x) for x in sorted(xs))


def _strs(xs: Iterable[str]) -> str:
    return ", ".join(sorted(xs))


def _bump(counter: dict[Any, int], keys: Iterable[Any], delta: int) -> None:
    for k in keys:
        n = counter.get(k, 0) + delta
        if n:
            counter[k] = n
        else:
            del counter[k]


class _MaxBag:
    """A multiset of ints with its maximum: O(log n) amortised add, remove and max.

    A heap with lazy deletion: removal only decrements a count; stale heap tops
    are dropped when the maximum is asked for.  Only ``counts`` is state; the heap
    is an index into it.
    """

    __slots__ = ("_heap", "_queued", "counts")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self._heap: list[int] = []  # negated values
        self._queued: set[int] = set()  # values that have an entry in the heap

    def __bool__(self) -> bool:
        return bool(self.counts)

    def add(self, v: int) -> None:
        self.counts[v] = self.counts.get(v, 0) + 1
        if v not in self._queued:
            self._queued.add(v)
            heapq.heappush(self._heap, -v)

    def remove(self, v: int) -> None:
        n = self.counts[v] - 1  # KeyError would be an accounting bug
        if n:
            self.counts[v] = n
        else:
            del self.counts[v]

    def max(self) -> int | None:
        heap = self._heap
        while heap and -heap[0] not in self.counts:
            self._queued.discard(-heapq.heappop(heap))
        return -heap[0] if heap else None

    def items(self) -> tuple[tuple[int, int], ...]:
        return tuple(sorted(self.counts.items()))


class _Agg:
    """One node of the path tree with aggregated counters for its subtree."""

    __slots__ = (
        "block_active",
        "block_inactive",
        "bridges",
        "children",
        "count",
        "cpuids",
        "memory",
        "n_blocks",
        "policy",
        "sub_block",
        "sub_bridges",
        "sub_cpuids",
        "sub_memory",
        "sub_unikernels",
    )

    def __init__(self) -> None:
        self.children: dict[str, _Agg] = {}
        self.policy: Policy | None = None
        # usage by unikernels and block devices whose path is at or below this node
        self.count = 0
        self.memory = 0
        self.cpuids: dict[int, int] = {}
        self.bridges: dict[str, int] = {}
        self.n_blocks = 0
        self.block_active = 0
        self.block_inactive = 0
        # bounds of the policies strictly below this node (multisets)
        self.sub_unikernels = _MaxBag()
        self.sub_memory = _MaxBag()
        self.sub_block = _MaxBag()  # only the policies with block storage
        self.sub_cpuids: dict[int, int] = {}
        self.sub_bridges: dict[str, int] = {}

    def is_empty(self) -> bool:
        return not (
            self.children
            or self.policy is not None
            or self.count
            or self.n_blocks
            or self.sub_unikernels
        )

    def usage(self) -> Usage:
        return Usage(self.count, self.memory, self.block_active, self.block_inactive, self.n_blocks)

    def add_sub_policy(self, p: Policy, sign: int) -> None:
        if sign > 0:
            self.sub_unikernels.add(p.unikernels)
            self.sub_memory.add(p.memory)
            if p.block is not None:
                self.sub_block.add(p.block)
        else:
            self.sub_unikernels.remove(p.unikernels)
            self.sub_memory.remove(p.memory)
            if p.block is not None:
                self.sub_block.remove(p.block)
        _bump(self.sub_cpuids, p.cpuids, sign)
        _bump(self.sub_bridges, p.bridges, sign)

    def bounds_all_below(self, p: Policy) -> bool:
        """Whether ``p`` is is_smaller-above every policy strictly below this node."""
        max_unikernels = self.sub_unikernels.max()
        max_memory = self.sub_memory.max()
        if max_unikernels is None or max_memory is None:
            return True  # no policy below
        max_block = self.sub_block.max()
        return (
            max_unikernels <= p.unikernels
            and max_memory <= p.memory
            and self.sub_cpuids.keys() <= p.cpuids
            and self.sub_bridges.keys() <= p.bridges
            and (max_block is None or block_fits(p.block, max_block))
        )

    def snapshot(self, path: Path) -> tuple[Any, ...]:
        return (
            path,
            self.policy,
            self.count,
            self.memory,
            tuple(sorted(self.cpuids.items())),
            tuple(sorted(self.bridges.items())),
            self.n_blocks,
            self.block_active,
            self.block_inactive,
            self.sub_unikernels.items(),
            self.sub_memory.items(),
            self.sub_block.items(),
            tuple(sorted(self.sub_cpuids.items())),
            tuple(sorted(self.sub_bridges.items())),
        )


class Resources(Generic[R]):
    """Policies, block devices and running unikernels, with their admission checks.

    ``R`` is whatever the daemon stores for a running unikernel; the map only
    reads its ``config``.  ``dev_zvol`` is albatross's ``--allow-zvol-for``: a
    unikernel at exactly that path may use block devices named ``/dev/zvol...``
    that are not managed (not checked, not accounted).
    """

    def __init__(self, dev_zvol: Path | None = None, host: HostCapacity | None = None) -> None:
        self.dev_zvol = dev_zvol
        #: What the host has; None checks policies only (as albatross).
        self.host = host
        self._policies: Trie[Policy] = Trie()
        self._blocks: Trie[BlockState] = Trie()
        self._unikernels: Trie[R] = Trie()
        self._root = _Agg()

    # -- the path tree ------------------------------------------------------
    def _walk(self, path: Path) -> list[tuple[Path, _Agg]]:
        """The existing nodes from the root down towards ``path`` (never creates)."""
        node = self._root
        out = [(ROOT, node)]
        for i, label in enumerate(path):
            nxt = node.children.get(label)
            if nxt is None:
                break
            node = nxt
            out.append((path[: i + 1], node))
        return out

    def _walk_create(self, path: Path) -> list[_Agg]:
        node = self._root
        out = [node]
        for label in path:
            nxt = node.children.get(label)
            if nxt is None:
                nxt = node.children[label] = _Agg()
            node = nxt
            out.append(node)
        return out

    def _prune(self, path: Path, nodes: list[_Agg]) -> None:
        for depth in range(len(path), 0, -1):
            if not nodes[depth].is_empty():
                break
            del nodes[depth - 1].children[path[depth - 1]]

    def _node(self, path: Path) -> _Agg | None:
        walked = self._walk(path)
        return walked[-1][1] if len(walked) == len(path) + 1 else None

    # -- queries --------------------------------------------------------------
    def find_policy(self, path: Path) -> Policy | None:
        return self._policies.find(Name.of_path(path))

    def policies(self, path: Path = ROOT) -> list[tuple[Name, Policy]]:
        """Policies at and below ``path`` with names relative to it, in albatross's reply order."""
        return self._policies.fold_reply(path)

    def all_policies(self) -> list[tuple[Name, Policy]]:
        """Every policy with its absolute name, in trie order (state dump order)."""
        return self._policies.all()

    def policies_above(self, path: Path) -> list[tuple[Path, Policy]]:
        """The policies that bound ``path``: at it and at each ancestor, root first."""
        return [(p, n.policy) for p, n in self._walk(path) if n.policy is not None]

    def find_block(self, name: Name) -> BlockState | None:
        return self._blocks.find(name) if name.label is not None else None

    def block_devices(self, path: Path = ROOT) -> list[tuple[Name, BlockState]]:
        """Block devices at and below ``path``, relative names, albatross's reply order."""
        return self._blocks.fold_reply(path)

    def all_block_devices(self) -> list[tuple[Name, BlockState]]:
        return self._blocks.all()

    def find_unikernel(self, name: Name) -> R | None:
        return self._unikernels.find(name) if name.label is not None else None

    def unikernels(self, path: Path = ROOT) -> list[tuple[Name, R]]:
        """Running unikernels at and below ``path``, relative names, albatross's reply order."""
        return self._unikernels.fold_reply(path)

    def all_unikernels(self) -> list[tuple[Name, R]]:
        """Every running unikernel with its absolute name, in trie order."""
        return self._unikernels.all()

    def iter_unikernels(self, path: Path = ROOT) -> Iterator[tuple[Name, R]]:
        """Running unikernels at and below ``path`` (absolute names), trie order."""
        return self._unikernels.iter_subtree(path)

    def usage(self, path: Path = ROOT) -> Usage:
        """Usage by everything whose path is ``path`` or below it."""
        node = self._node(path)
        return Usage() if node is None else node.usage()

    def usage_by_path(self) -> Iterator[tuple[Path, Usage, Policy | None]]:
        """Every path the map knows (with usage or a policy), pre-order: for exporters."""
        stack: list[tuple[Path, _Agg]] = [(ROOT, self._root)]
        while stack:
            path, node = stack.pop()
            yield path, node.usage(), node.policy
            for label in sorted(node.children, reverse=True):
                stack.append(((*path, label), node.children[label]))

    # -- policies -------------------------------------------------------------
    def check_policy(self, path: Path, p: Policy) -> PolicyChange:
        """Whether ``p`` may be installed at ``path``; what inserting it would do."""
        old = self.find_policy(path)
        if old == p:
            return PolicyChange.UNCHANGED
        if path == ROOT and self.host is not None:
            bounds.check_root_policy(p, self.host)
        walked = self._walk(path)
        # 1. every ancestor's policy, the root's included, must bound p
        for apath, anode in walked[: len(path)]:
            if anode.policy is not None:
                try:
                    is_smaller(anode.policy, p)
                except PolicyError as e:
                    raise PolicyError(f"{where(apath)}: {e}") from None
        node = walked[-1][1] if len(walked) == len(path) + 1 else None
        if node is None:
            return PolicyChange.ADDED
        # 2. p must bound every policy below it (aggregated; scan only to explain a refusal)
        if not node.bounds_all_below(p):
            self._explain_below(path, p)
        # 3. current usage below must fit p
        u = node
        if not u.cpuids.keys() <= p.cpuids:
            raise PolicyError(
                f"{where(path)}: policy does not allow CPUids {_ints(u.cpuids.keys() - p.cpuids)}"
            )
        if not u.bridges.keys() <= p.bridges:
            raise PolicyError(
                f"{where(path)}: policy allows bridges {_strs(p.bridges)},"
                f" which is not a superset of {_strs(u.bridges)}"
            )
        if u.count > p.unikernels:
            raise PolicyError(
                f"{where(path)}: unikernel would exceed running unikernel limit set by"
                f" policy to {p.unikernels}, running {u.count}"
            )
        if u.memory > p.memory:
            raise PolicyError(
                f"{where(path)}: unikernel would exceed running memory limit set by policy"
                f" to {p.memory} MB, used {u.memory} MB"
            )
        block = u.block_active + u.block_inactive
        if block > (p.block or 0):
            raise PolicyError(
                f"{where(path)}: unikernel would exceed running block storage limit set by"
                f" policy to {p.block or 0} MB, used {block} MB"
            )
        return PolicyChange.ADDED if old is None else PolicyChange.REPLACED

    def _explain_below(self, path: Path, p: Policy) -> None:
        for rel, sub in self._policies.fold(path):
            if rel.is_root:
                continue
            try:
                is_smaller(p, sub)
            except PolicyError as e:
                below = path_to_string((*path, *rel.labels()))
                raise PolicyError(
                    f"{where(path)} does not cover the policy at {below!r}: {e}"
                ) from None
        raise AssertionError("policy aggregates disagree with the policy trie")  # pragma: no cover

    def insert_policy(self, path: Path, p: Policy) -> PolicyChange:
        """Install ``p`` at ``path`` (albatross's Policy_add); raise if refused.

        An identical policy is :attr:`PolicyChange.UNCHANGED` ("no modification of
        policy") and changes nothing.  albatross does not check ``usable`` here.
        """
        change = self.check_policy(path, p)
        if change is PolicyChange.UNCHANGED:
            return change
        nodes = self._walk_create(path)
        old = nodes[-1].policy
        for ancestor in nodes[:-1]:
            if old is not None:
                ancestor.add_sub_policy(old, -1)
            ancestor.add_sub_policy(p, +1)
        nodes[-1].policy = p
        self._policies.insert(Name.of_path(path), p)
        return change

    def remove_policy(self, path: Path) -> Policy:
        """Remove the policy at ``path`` (no checks, as albatross); "unknown policy" if absent."""
        old = self.find_policy(path)
        if old is None:
            raise ResourceError(f"unknown policy {path_to_string(path)!r}")
        nodes = self._walk_create(path)  # every node exists: the policy is stored there
        for ancestor in nodes[:-1]:
            ancestor.add_sub_policy(old, -1)
        nodes[-1].policy = None
        self._policies.remove(Name.of_path(path))
        self._prune(path, nodes)
        return old

    # -- block devices ------------------------------------------------------------
    def check_block(self, name: Name, size: int, *, free: int | None = None) -> None:
        """Whether a block device ``name`` of ``size`` MB may be added.

        A new device (``free``: the MB free in the block directory now) is
        also checked against the host; devices found on disk are not."""
        if name.label is None:
            raise ResourceError(f"block device name {str(name)!r} has no label")
        if size < 0:
            raise ResourceError(f"block device size {size} MB is negative")
        if self._blocks.find(name) is not None:
            raise ResourceError(f"block device with name {name} already exists")
        if free is not None and self.host is not None:
            used = self._root.block_active + self._root.block_inactive
            bounds.check_block_on_host(size, self.host, used, free)
        for apath, node in reversed(self._walk(name.path)):
            p = node.policy
            if p is None:
                continue
            check_block_in_subtree(
                apath, p, used=node.block_active + node.block_inactive, size=size
            )

    def add_block(self, name: Name, size: int) -> None:
        """Add an inactive block device of ``size`` MB; raise if refused."""
        self.check_block(name, size)
        self._blocks.insert(name, BlockState(size, False))
        for node in self._walk_create(name.path):
            node.n_blocks += 1
            node.block_inactive += size

    def remove_block(self, name: Name) -> BlockState:
        """Remove a block device; refused while a unikernel uses it."""
        state = self.find_block(name)
        if state is None:
            raise ResourceError(f"unknown block device {name}")
        if state.active:
            raise ResourceError(f"block device {name} in use")
        self._blocks.remove(name)
        nodes = self._walk_create(name.path)
        for node in nodes:
            node.n_blocks -= 1
            node.block_inactive -= state.size
        self._prune(name.path, nodes)
        return state

    def _set_block(self, name: Name, active: bool) -> None:
        state = self.find_block(name)
        if state is None:
            raise ResourceError(f"block device {name} not in trie")
        if state.active == active:
            raise ResourceError(
                f"block device {name} already in state {'active' if active else 'inactive'}"
            )
        self._blocks.insert(name, BlockState(state.size, active))
        delta = state.size if active else -state.size
        for node in self._walk_create(name.path):
            node.block_active += delta
            node.block_inactive -= delta

    def set_block_active(self, name: Name) -> None:
        """Mark a block device attached (raises if unknown or already active)."""
        self._set_block(name, True)

    def set_block_inactive(self, name: Name) -> None:
        """Mark a block device detached (raises if unknown or already inactive)."""
        self._set_block(name, False)

    def _zvol(self, path: Path, device: str) -> bool:
        return (
            self.dev_zvol is not None and path == self.dev_zvol and device.startswith("/dev/zvol")
        )

    def block_names(self, name: Name, config: UnikernelConfig) -> list[Name]:
        """The managed block resources a unikernel ``name`` with ``config`` uses."""
        out = []
        for bd in config.blocks:
            device = bd.host_device
            if self._zvol(name.path, device):
                continue
            try:
                out.append(Name(name.path, label_of_string(device)))
            except NameError_ as e:
                raise ResourceError(f"block device {device!r} is not a valid name: {e}") from None
        return out

    # -- unikernels -----------------------------------------------------------------
    def check_create(self, name: Name, config: UnikernelConfig) -> None:
        """Whether a new unikernel ``name`` may run with ``config``; raise if not."""
        if name.label is None:
            raise ResourceError(f"unikernel name {str(name)!r} has no label")
        if self._unikernels.find(name) is not None:
            raise ResourceError(f"unikernel {name}: unikernel with same name is already running")
        self._check(name, config, None)

    def check_replace(self, name: Name, config: UnikernelConfig) -> None:
        """Force-create / restart: check ``config`` as if the running ``name`` were gone."""
        if name.label is None:
            raise ResourceError(f"unikernel name {str(name)!r} has no label")
        old = self._unikernels.find(name)
        self._check(name, config, None if old is None else old.config)

    def _check(self, name: Name, config: UnikernelConfig, old: UnikernelConfig | None) -> None:
        minus_count = 0 if old is None else 1
        minus_memory = 0 if old is None else old.memory
        if self.host is not None:
            bounds.check_config_on_host(config, self.host, self._root.memory - minus_memory)
        # every policy from the unikernel's own path up to the root bounds its subtree
        for apath, node in reversed(self._walk(name.path)):
            p = node.policy
            if p is None:
                continue
            check_unikernel_in_subtree(
                apath,
                p,
                count=node.count - minus_count,
                used_memory=node.memory - minus_memory,
                config=config,
            )
        freed = set() if old is None else set(self.block_names(name, old))
        seen: set[Name] = set()
        for block in self.block_names(name, config):
            if block in seen:
                raise ResourceError(f"block device {block} is used twice")
            seen.add(block)
            state = self._blocks.find(block)
            if state is None:
                raise ResourceError(f"block device {block} not found")
            if state.active and block not in freed:
                raise ResourceError(f"block device {block} already in use")

    def insert_unikernel(self, name: Name, unikernel: R) -> None:
        """Record a started unikernel after :meth:`check_create`; marks its blocks active.

        The checks run again here, so the map can never hold more than its policies
        allow.  A name that is already running raises :class:`DuplicateUnikernelError`.
        """
        if name.label is not None and self._unikernels.find(name) is not None:
            raise DuplicateUnikernelError(f"unikernel {name} already exists in trie")
        config = unikernel.config
        self.check_create(name, config)
        blocks = self.block_names(name, config)
        self._unikernels.insert(name, unikernel)
        nodes = self._walk_create(name.path)
        bridges = host_bridges(config)
        for node in nodes:
            node.count += 1
            node.memory += config.memory
            _bump(node.cpuids, config.cpuids, +1)
            _bump(node.bridges, bridges, +1)
        for block in blocks:
            self._set_block(block, True)

    def remove_unikernel(self, name: Name) -> R:
        """Forget a stopped unikernel and free its block devices; "unknown unikernel" if absent.

        Unlike albatross this never fails half-way: block devices that are gone or
        already inactive are skipped (the unikernel has stopped, whatever happened).
        """
        unikernel = self.find_unikernel(name)
        if unikernel is None:
            raise ResourceError(f"unknown unikernel {name}")
        config = unikernel.config
        for block in self.block_names(name, config):
            state = self._blocks.find(block)
            if state is not None and state.active:
                self._set_block(block, False)
        self._unikernels.remove(name)
        nodes = self._walk_create(name.path)
        bridges = host_bridges(config)
        for node in nodes:
            node.count -= 1
            node.memory -= config.memory
            _bump(node.cpuids, config.cpuids, -1)
            _bump(node.bridges, bridges, -1)
        self._prune(name.path, nodes)
        return unikernel

    # -- comparison -----------------------------------------------------------------
    def snapshot(self) -> tuple[Any, ...]:
        """The whole state, counters included, as a comparable value."""
        aggs = []
        stack: list[tuple[Path, _Agg]] = [(ROOT, self._root)]
        while stack:
            path, node = stack.pop()
            aggs.append(node.snapshot(path))
            for label in sorted(node.children, reverse=True):
                stack.append(((*path, label), node.children[label]))
        return (
            self.dev_zvol,
            tuple(self._policies.all()),
            tuple(self._blocks.all()),
            tuple(self._unikernels.all()),
            tuple(aggs),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resources):
            return NotImplemented
        return self.snapshot() == other.snapshot()

    __hash__ = None  # type: ignore[assignment]
