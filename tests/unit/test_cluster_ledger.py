"""The cluster-wide ledger's arithmetic, records and transactions (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from albatross_py.cluster import kv
from albatross_py.cluster import ledger as L
from albatross_py.core.policy import PolicyError
from albatross_py.core.resources import Resources, RunningUnikernel
from albatross_py.wire.names import Name
from albatross_py.wire.types import NetDevice, Policy, UnikernelConfig

T = ("tenant",)
TEAM = ("tenant", "team")


def pol(unikernels: int, memory: int, block: int | None = None, cpuids=(0, 1), bridges=("br0",)):
    return Policy(unikernels, frozenset(cpuids), memory, block, frozenset(bridges))


def vm(memory: int = 64, cpuids=(0,), bridges=(), cpus: int = 1) -> UnikernelConfig:
    return UnikernelConfig(
        memory=memory,
        cpuids=frozenset(cpuids),
        cpus=cpus,
        bridges=tuple(NetDevice(b) for b in bridges),
    )


def test_key_layout() -> None:
    assert L.ledger_key(TEAM) == b"/albatross/v1/ledger/tenant:team:"
    assert L.ledger_key(()) == b"/albatross/v1/ledger/:"
    assert L.path_of_ledger_key(L.ledger_key(TEAM)) == TEAM
    name = Name.of_string("tenant:team:web")
    assert L.placement_key(name) == b"/albatross/v1/placement/tenant:team:web"
    with pytest.raises(L.LedgerError):
        L.placement_key(Name(TEAM, None))
    assert L.host_key("h1") == b"/albatross/v1/hosts/h1"


def test_reservation_counts_on_every_policy_path() -> None:
    policies = {T: pol(4, 1024), TEAM: pol(2, 512)}
    out = L.check_reservation(policies, {}, Name.of_string("tenant:team:web"), vm(100, cpus=2))
    assert out == {TEAM: L.Usage(1, 100, 2, 0), T: L.Usage(1, 100, 2, 0)}
    assert list(out) == [TEAM, T]  # the nearest path first, as the host checks


def test_refusals_name_bound_and_path_like_the_host() -> None:
    """The ledger refuses with the very message the host's resource map gives."""
    policies = {T: pol(3, 1024), TEAM: pol(2, 256)}
    name = Name.of_string("tenant:team:c")
    team, top = "policy at path 'tenant:team:'", "policy at path 'tenant:'"
    cases = [
        ({TEAM: L.Usage(2, 10, 2, 0)}, vm(10), f"{team}: maximum amount of unikernels (2) reached"),
        (
            {TEAM: L.Usage(1, 200, 1, 0)},
            vm(100),
            f"{team}: maximum allowed memory (256, used 200) would be exceeded (requesting 100)",
        ),
        ({T: L.Usage(3, 30, 3, 0)}, vm(10), f"{top}: maximum amount of unikernels (3) reached"),
        ({}, vm(10, cpuids=(5,)), f"{team}: CPUids 5 are not allowed by policy"),
        ({}, vm(10, bridges=("evil",)), f"{team}: bridges evil not allowed by policy"),
    ]
    for usage, config, message in cases:
        with pytest.raises(PolicyError) as info:
            L.check_reservation(policies, usage, name, config)
        assert str(info.value) == message
    with pytest.raises(PolicyError, match="'tenant:team:': no block devices are allowed"):
        L.check_reservation(policies, {}, name, vm(10), block=5)
    with pytest.raises(PolicyError, match="no policy covers other:x"):
        L.check_reservation(policies, {}, Name.of_string("other:x"), vm(10))


def test_same_messages_as_the_hosts_resource_map() -> None:
    """One host whose map holds the same policies and usage refuses identically."""
    policies = {T: pol(3, 300), TEAM: pol(2, 200)}
    res: Resources[RunningUnikernel] = Resources()
    res.insert_policy((), pol(100, 100_000, cpuids=range(8), bridges=("br0", "x")))
    for path, p in policies.items():
        res.insert_policy(path, p)
    usage: dict = {}
    for i in range(6):
        name = Name.of_string(f"tenant:team:vm{i}")
        config = vm(90)
        try:
            res.check_create(name, config)
            host_error = None
        except PolicyError as e:
            host_error = str(e)
        try:
            usage.update(L.check_reservation(policies, usage, name, config))
            ledger_error = None
        except PolicyError as e:
            ledger_error = str(e)
        assert ledger_error == host_error
        if host_error is None:
            res.insert_unikernel(name, RunningUnikernel(config))


def test_records_round_trip_and_bad_ones_are_refused() -> None:
    u = L.Usage(2, 128, 3, 50)
    assert L.Usage.of_json(u.to_json()) == u
    c = L.Claim(Name.of_string("tenant:team:web"), "h2", u, (TEAM, T), "abc")
    assert L.Claim.of_json(c.to_json()) == c
    for bad in (b"", b"{}", b'{"unikernels": "x"}', b"[1]"):
        with pytest.raises(L.LedgerError):
            L.Usage.of_json(bad)
        with pytest.raises(L.LedgerError):
            L.Claim.of_json(bad)
    with pytest.raises(L.LedgerError, match="negative"):
        _ = L.Usage(0, 10) - L.Usage(1, 10)


def _range(key: bytes, value: bytes | None, mod: int) -> kv.RangeResult:
    kvs = () if value is None else (kv.KeyValue(key, value, mod, mod, 1, 0),)
    return kv.RangeResult(kvs, len(kvs), 9)


def test_reserve_txn_is_guarded_by_absence_and_revisions() -> None:
    name = Name.of_string("tenant:team:web")
    paths = [TEAM, T]
    read = L.read_txn(name, paths)
    assert read.compare == () and len(read.success) == 3
    result = kv.TxnResult(
        True,
        9,
        (
            _range(L.placement_key(name), None, 0),
            _range(L.ledger_key(TEAM), L.Usage(1, 64, 1, 0).to_json(), 7),
            _range(L.ledger_key(T), None, 0),
        ),
    )
    snap = L.snapshot_of(name, paths, result)
    assert snap.claim is None and snap.usage == {TEAM: L.Usage(1, 64, 1, 0)}
    new = L.check_reservation({T: pol(5, 500), TEAM: pol(2, 200)}, snap.usage, name, vm(64))
    claim = L.Claim(name, "h1", L.usage_of(vm(64)), tuple(paths), "tok")
    txn = L.reserve_txn(snap, claim, new)
    assert txn.compare == (
        kv.absent(L.placement_key(name)),
        kv.mod_revision_is(L.ledger_key(TEAM), 7),
        kv.mod_revision_is(L.ledger_key(T), 0),
    )
    assert kv.put(L.ledger_key(TEAM), L.Usage(2, 128, 2, 0).to_json()) in txn.success
    assert kv.put(L.placement_key(name), claim.to_json()) in txn.success
    assert txn.failure == (kv.get(L.placement_key(name)),)


def test_release_txn_gives_back_exactly_the_claim() -> None:
    name = Name.of_string("tenant:team:web")
    claim = L.Claim(name, "h1", L.Usage(1, 64, 1, 0), (TEAM, T), "tok")
    snap = L.Snapshot(
        {TEAM: L.Usage(2, 128, 2, 0), T: L.Usage(1, 64, 1, 0)},
        claim,
        {L.placement_key(name): 11, L.ledger_key(TEAM): 12, L.ledger_key(T): 12},
    )
    new = L.release_usage(snap.usage, claim)
    assert new == {TEAM: L.Usage(1, 64, 1, 0), T: L.Usage()}
    txn = L.release_txn(snap, new)
    assert kv.mod_revision_is(L.placement_key(name), 11) in txn.compare
    assert kv.delete(L.placement_key(name)) in txn.success


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(32, 600),
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(1, 200), st.booleans()), max_size=40
    ),
)
def test_ledger_never_exceeds_any_policy(limit: int, memory: int, ops) -> None:
    """Any sequence of reservations and releases keeps every path within its policy,
    and the ledger equals the sum of the live claims."""
    policies = {T: pol(limit, memory), ("tenant", "a"): pol(limit, memory // 2 + 16)}
    usage: dict = {}
    live: list[L.Claim] = []
    for i, (team, mem, release) in enumerate(ops):
        if release and live:
            claim = live.pop(0)
            usage.update(L.release_usage(usage, claim))
            continue
        name = Name.of_string(f"tenant:{team}:vm{i}")
        try:
            new = L.check_reservation(policies, usage, name, vm(mem))
        except PolicyError:
            continue
        usage.update(new)
        live.append(L.Claim(name, "h", L.usage_of(vm(mem)), tuple(new), str(i)))
    for path, p in policies.items():
        u = usage.get(path, L.Usage())
        assert u.unikernels <= p.unikernels and u.memory <= p.memory
        mine = [c for c in live if path in c.paths]
        assert u == sum((c.usage for c in mine), L.Usage())
