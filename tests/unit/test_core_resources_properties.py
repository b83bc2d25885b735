"""Property tests: random operation sequences against a brute-force reference model.

The model recomputes everything from plain dicts on every question (O(tree)),
so it checks the incremental counters of :class:`Resources`.  After every
operation: both agree on accept/refuse, on the stored state and on the usage
of every path; refused operations leave the map exactly as it was; every
stored policy fits inside each ancestor's; usage below every policy fits it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from albatross_py.core.policy import PolicyError, host_bridges, smaller
from albatross_py.core.resources import (
    BlockState,
    DuplicateUnikernelError,
    Resources,
    RunningUnikernel,
    Usage,
)
from albatross_py.wire.names import ROOT, Name, Path, is_prefix
from albatross_py.wire.types import BlockDevice, NetDevice, Policy, UnikernelConfig


class Refused(Exception):
    pass


@dataclass
class Model:
    """The stricter admission rules, written the slow and obvious way."""

    policies: dict[Path, Policy] = field(default_factory=dict)
    blocks: dict[Name, BlockState] = field(default_factory=dict)
    vms: dict[Name, UnikernelConfig] = field(default_factory=dict)

    def usage(self, path: Path, skip: Name | None = None) -> Usage:
        vms = [c for n, c in self.vms.items() if is_prefix(path, n.path) and n != skip]
        blocks = [b for n, b in self.blocks.items() if is_prefix(path, n.path)]
        return Usage(
            unikernels=len(vms),
            memory=sum(c.memory for c in vms),
            block_active=sum(b.size for b in blocks if b.active),
            block_inactive=sum(b.size for b in blocks if not b.active),
            block_devices=len(blocks),
        )

    def sets(self, path: Path) -> tuple[set[int], set[str]]:
        cpus: set[int] = set()
        bridges: set[str] = set()
        for n, c in self.vms.items():
            if is_prefix(path, n.path):
                cpus |= c.cpuids
                bridges |= host_bridges(c)
        return cpus, bridges

    def above(self, path: Path) -> list[tuple[Path, Policy]]:
        return [
            (path[:i], self.policies[path[:i]])
            for i in range(len(path) + 1)
            if path[:i] in self.policies
        ]

    def insert_policy(self, path: Path, p: Policy) -> None:
        if self.policies.get(path) == p:
            return
        for a, q in self.above(path):
            if a != path and not smaller(q, p):
                raise Refused
        for b, q in self.policies.items():
            if b != path and is_prefix(path, b) and not smaller(p, q):
                raise Refused
        u = self.usage(path)
        cpus, bridges = self.sets(path)
        if not (
            cpus <= p.cpuids
            and bridges <= p.bridges
            and u.unikernels <= p.unikernels
            and u.memory <= p.memory
            and u.block <= (p.block or 0)
        ):
            raise Refused
        self.policies[path] = p

    def remove_policy(self, path: Path) -> None:
        if path not in self.policies:
            raise Refused
        del self.policies[path]

    def block_names(self, name: Name, c: UnikernelConfig) -> list[Name]:
        return [Name(name.path, b.host_device) for b in c.blocks]

    def check(self, name: Name, c: UnikernelConfig, replace: bool) -> None:
        if not replace and name in self.vms:
            raise Refused
        skip = name if replace else None
        for a, p in self.above(name.path):
            u = self.usage(a, skip)
            if (
                u.unikernels + 1 > p.unikernels
                or u.memory + c.memory > p.memory
                or not c.cpuids <= p.cpuids
                or not host_bridges(c) <= p.bridges
            ):
                raise Refused
        freed = self.block_names(name, self.vms[name]) if replace and name in self.vms else []
        names = self.block_names(name, c)
        if len(set(names)) != len(names):
            raise Refused
        for b in names:
            if b not in self.blocks or (self.blocks[b].active and b not in freed):
                raise Refused

    def insert_vm(self, name: Name, c: UnikernelConfig) -> None:
        self.check(name, c, False)
        self.vms[name] = c
        for b in self.block_names(name, c):
            self.blocks[b] = BlockState(self.blocks[b].size, True)

    def remove_vm(self, name: Name) -> None:
        c = self.vms.pop(name, None)
        if c is None:
            raise Refused
        for b in self.block_names(name, c):
            self.blocks[b] = BlockState(self.blocks[b].size, False)

    def add_block(self, name: Name, size: int) -> None:
        if name in self.blocks:
            raise Refused
        for a, p in self.above(name.path):
            if p.block is None or self.usage(a).block + size > p.block:
                raise Refused
        self.blocks[name] = BlockState(size, False)

    def remove_block(self, name: Name) -> None:
        b = self.blocks.get(name)
        if b is None or b.active:
            raise Refused
        del self.blocks[name]


# -- strategies -------------------------------------------------------------------

paths = st.lists(st.sampled_from(["a", "b"]), max_size=2).map(tuple)
vm_names = st.builds(Name, paths, st.sampled_from(["x", "y"]))
block_labels = st.sampled_from(["d1", "d2"])
block_names = st.builds(Name, paths, block_labels)
cpus = st.frozensets(st.integers(0, 2))
bridge_sets = st.frozensets(st.sampled_from(["br0", "br1"]))

policies = st.builds(
    Policy,
    unikernels=st.integers(0, 4),
    cpuids=cpus,
    memory=st.integers(0, 100),
    block=st.one_of(st.none(), st.integers(0, 40)),
    bridges=bridge_sets,
)
configs = st.builds(
    lambda cpuids, memory, bridges, blocks: UnikernelConfig(
        cpuids=cpuids,
        memory=memory,
        bridges=tuple(NetDevice(f"net{i}", b) for i, b in enumerate(sorted(bridges))),
        blocks=tuple(BlockDevice(f"blk{i}", d) for i, d in enumerate(blocks)),
    ),
    cpus,
    st.integers(0, 40),
    bridge_sets,
    st.lists(block_labels, max_size=2),
)

operations = st.one_of(
    st.tuples(st.just("insert_policy"), paths, policies),
    st.tuples(st.just("remove_policy"), paths),
    st.tuples(st.just("add_block"), block_names, st.integers(0, 20)),
    st.tuples(st.just("remove_block"), block_names),
    st.tuples(st.just("create"), vm_names, configs),
    st.tuples(st.just("remove"), vm_names),
    st.tuples(st.just("check_replace"), vm_names, configs),
)


def run(res: Resources[RunningUnikernel], model: Model, op: tuple[Any, ...]) -> bool:
    """Apply ``op`` to both; return whether the map accepted it (the model must agree)."""
    kind, *args = op
    real = {
        "insert_policy": res.insert_policy,
        "remove_policy": res.remove_policy,
        "add_block": res.add_block,
        "remove_block": res.remove_block,
        "create": lambda n, c: res.insert_unikernel(n, RunningUnikernel(c)),
        "remove": res.remove_unikernel,
        "check_replace": res.check_replace,
    }[kind]
    ref = {
        "insert_policy": model.insert_policy,
        "remove_policy": model.remove_policy,
        "add_block": model.add_block,
        "remove_block": model.remove_block,
        "create": model.insert_vm,
        "remove": model.remove_vm,
        "check_replace": lambda n, c: model.check(n, c, True),
    }[kind]
    try:
        ref(*args)
        expected = True
    except Refused:
        expected = False
    try:
        real(*args)
        accepted = True
    except (PolicyError, DuplicateUnikernelError):
        accepted = False
    assert accepted == expected, f"{op}: map {'accepted' if accepted else 'refused'}"
    return accepted


def all_paths(model: Model) -> set[Path]:
    out: set[Path] = {ROOT}
    for p in [*model.policies, *(n.path for n in model.blocks), *(n.path for n in model.vms)]:
        out.update(p[:i] for i in range(len(p) + 1))
    return out


def assert_same_state(res: Resources[RunningUnikernel], model: Model) -> None:
    assert {n.path: p for n, p in res.all_policies()} == model.policies
    assert dict(res.all_block_devices()) == model.blocks
    assert {n: r.config for n, r in res.all_unikernels()} == model.vms
    for path in all_paths(model) | {("a", "b", "a")}:
        assert res.usage(path) == model.usage(path), path


def assert_invariants(res: Resources[RunningUnikernel]) -> None:
    stored = {n.path: p for n, p in res.all_policies()}
    for path, p in stored.items():
        for ancestor, q in res.policies_above(path):
            if ancestor != path:
                assert smaller(q, p), (ancestor, path)
        u = res.usage(path)
        assert u.unikernels <= p.unikernels
        assert u.memory <= p.memory
        assert u.block <= (p.block or 0)
        for name, vm in res.iter_unikernels(path):
            assert vm.config.cpuids <= p.cpuids, name
            assert host_bridges(vm.config) <= p.bridges, name


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(operations, max_size=40))
def test_random_operations_match_the_model_and_keep_invariants(ops: list[tuple[Any, ...]]) -> None:
    res: Resources[RunningUnikernel] = Resources()
    model = Model()
    for op in ops:
        before = res.snapshot()
        accepted = run(res, model, op)
        if not accepted or op[0] == "check_replace":
            assert res.snapshot() == before, f"{op} changed the map"
        assert_same_state(res, model)
        assert_invariants(res)
    # undoing everything leaves an empty map, counters included
    for name, _ in res.all_unikernels():
        res.remove_unikernel(name)
    for name, _ in res.all_block_devices():
        res.remove_block(name)
    for name, _ in res.all_policies():
        res.remove_policy(name.path)
    assert res == Resources()


@settings(max_examples=100, deadline=None)
@given(st.lists(operations, max_size=30))
def test_decisions_depend_only_on_the_visible_state(ops: list[tuple[Any, ...]]) -> None:
    """A model rebuilt from the map's public listings before each step agrees with it.

    So the hidden counters never drift from what the tries hold.
    """
    res: Resources[RunningUnikernel] = Resources()
    for op in ops:
        run(res, _model_of(res), op)


def _model_of(res: Resources[RunningUnikernel]) -> Model:
    return Model(
        policies={n.path: p for n, p in res.all_policies()},
        blocks=dict(res.all_block_devices()),
        vms={n: r.config for n, r in res.all_unikernels()},
    )


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), max_size=60))
def test_max_bag_tracks_the_maximum_of_a_multiset(ops: list[tuple[bool, int]]) -> None:
    from albatross_py.core.resources import _MaxBag

    bag = _MaxBag()
    model: list[int] = []
    for add, v in ops:
        if add:
            bag.add(v)
            model.append(v)
        elif v in model:
            bag.remove(v)
            model.remove(v)
        assert bag.max() == (max(model) if model else None)
        assert bag.items() == tuple(sorted((x, model.count(x)) for x in set(model)))
        assert bool(bag) == bool(model)
