"""Placement (pure): most free memory that fits, ties by fewest VMs, reasons per host."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from albatross_py.cluster import placement as P
from albatross_py.cluster.ledger import Usage
from albatross_py.core.bounds import HostCapacity
from albatross_py.wire.names import Name
from albatross_py.wire.types import NetDevice, Policy, UnikernelConfig

NS = P.Namespace("prod", frozenset({"h1", "h2", "h3"}), frozenset({("tenant",)}))
WEB = Name.of_string("tenant:web")


def host(name, mem=1024, used=0, vms=0, *, online=True, cpus=2, bridges=("br0",), disk=1000,
         block_used=0, policies=None, usage=None) -> P.HostView:  # fmt: skip
    return P.HostView(
        name=name,
        online=online,
        capacity=HostCapacity(memory=mem, cpuids=frozenset(range(cpus)), disk=disk),
        bridges=frozenset(bridges),
        vms=vms,
        memory_used=used,
        block_used=block_used,
        policies=policies or {},
        usage=usage or {},
    )


def vm(memory=64, cpuids=(0,), bridges=()) -> UnikernelConfig:
    return UnikernelConfig(
        memory=memory, cpuids=frozenset(cpuids), bridges=tuple(NetDevice(b) for b in bridges)
    )


def test_most_free_memory_wins() -> None:
    hosts = [host("h1", used=500), host("h2", used=100), host("h3", used=300)]
    assert P.place(NS, hosts, WEB, vm()).name == "h2"


def test_ties_by_fewest_vms_then_name() -> None:
    hosts = [host("h1", vms=3), host("h2", vms=1), host("h3", vms=1)]
    assert P.place(NS, hosts, WEB, vm()).name == "h2"


def test_skips_down_hosts_and_hosts_outside_the_namespace() -> None:
    hosts = [host("h1", online=False), host("h2", used=900), host("other")]
    assert P.place(NS, hosts, WEB, vm()).name == "h2"


def test_nothing_fits_says_why_per_host() -> None:
    hosts = [
        host("h1", online=False),
        host("h2", used=1000),
        host("h3", bridges=("br1",)),
    ]
    with pytest.raises(P.NoHostFits) as info:
        P.place(NS, hosts, WEB, vm(64, bridges=("br0",)))
    e = info.value
    assert e.reasons["h1"] == "down"
    assert "memory of 64 MB exceeds what this host has: 1024 MB" in e.reasons["h2"]
    assert e.reasons["h3"] == "bridges br0 do not exist on this host (has: br1)"
    assert str(e).startswith("no host of namespace 'prod' fits unikernel tenant:web: h1: down;")


def test_cpu_ids_block_space_and_unregistered_hosts() -> None:
    hosts = [host("h1", cpus=1), host("h2", disk=100, block_used=90)]
    with pytest.raises(P.NoHostFits) as info:
        P.place(NS, hosts, WEB, vm(cpuids=(1,)), block=20)
    r = info.value.reasons
    assert r["h1"].startswith("CPU ids 1 do not exist on this host")
    assert "block device of 20 MB exceeds the block directory's filesystem of 100 MB" in r["h2"]
    assert r["h3"] == "not registered (no agent has reported it)"


def test_per_host_policy_must_fit() -> None:
    team = ("tenant",)
    tight = {team: Policy(1, frozenset({0}), 512, None, frozenset())}
    hosts = [
        host("h1", policies=tight, usage={team: Usage(1, 64, 1, 0)}),  # most free, but full
        host("h2", used=200),
    ]
    assert P.place(NS, hosts, WEB, vm()).name == "h2"
    with pytest.raises(P.NoHostFits) as info:
        P.place(NS, hosts[:1], WEB, vm())
    assert (
        "policy at path 'tenant:': maximum amount of unikernels (1) reached"
        in info.value.reasons["h1"]
    )


def test_namespace_of_takes_the_longest_path() -> None:
    a = P.Namespace("a", frozenset({"h1"}), frozenset({("t",)}))
    b = P.Namespace("b", frozenset({"h2"}), frozenset({("t", "x")}))
    assert P.namespace_of([a, b], ("t", "x", "y")).name == "b"
    assert P.namespace_of([a, b], ("t", "z")).name == "a"
    with pytest.raises(P.NoNamespace):
        P.namespace_of([a, b], ("u",))
    with pytest.raises(P.NoNamespace):
        P.place(a, [host("h1")], Name.of_string("u:vm"), vm())


def test_nine_creates_spread_by_free_memory() -> None:
    """Three equal hosts, nine equal VMs: three each (the issue's CI case, pure)."""
    hosts = {h: host(h, mem=2048) for h in ("h1", "h2", "h3")}
    for i in range(9):
        name = Name.of_string(f"tenant:vm{i}")
        chosen = P.place(NS, hosts.values(), name, vm(128))
        hosts[chosen.name] = P.with_vm(chosen, name.path, vm(128))
    assert sorted(h.vms for h in hosts.values()) == [3, 3, 3]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(128, 4096), st.integers(0, 4096), st.integers(0, 9), st.booleans()),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 2048),
)
def test_choice_fits_and_no_fitting_host_is_better(specs, memory) -> None:
    hosts = [
        host(f"h{i}", mem=m, used=min(u, m), vms=n, online=up)
        for i, (m, u, n, up) in enumerate(specs)
    ]
    ns = P.Namespace("n", frozenset(h.name for h in hosts), frozenset({("tenant",)}))
    fitting = [h for h in hosts if P.why_not(h, vm(memory), WEB.path) is None]
    try:
        chosen = P.place(ns, hosts, WEB, vm(memory))
    except P.NoHostFits as e:
        assert not fitting and set(e.reasons) == {h.name for h in hosts}
        return
    assert chosen.online and chosen.memory_free >= memory
    assert all(P.rank(chosen) <= P.rank(h) for h in fitting)
