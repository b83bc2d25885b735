"""Policy checks: usable, is_smaller (order and messages), fine_with_policy."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from albatross_py.core.policy import (
    PolicyError,
    block_fits,
    fine_with_policy,
    is_smaller,
    smaller,
    usable,
)
from albatross_py.wire.types import NetDevice, Policy, UnikernelConfig


def pol(
    unikernels: int = 4,
    cpuids: set[int] | None = None,
    memory: int = 1024,
    block: int | None = 100,
    bridges: set[str] | None = None,
) -> Policy:
    return Policy(
        unikernels=unikernels,
        cpuids=frozenset({0, 1} if cpuids is None else cpuids),
        memory=memory,
        block=block,
        bridges=frozenset({"service"} if bridges is None else bridges),
    )


def test_usable_accepts_a_reasonable_policy() -> None:
    usable(pol())
    usable(pol(memory=17, block=None))
    usable(pol(block=0))


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (pol(unikernels=0), "Unusable policy with no unikernels"),
        (pol(cpuids=set()), "Unusable policy with no CPUids"),
        (pol(memory=16), "Unusable policy with memory 16 MB <= 16 MB"),
        (pol(block=-1), "Unusable policy with block -1 MB < 0 MB"),
        # the first failing rule wins
        (pol(unikernels=0, memory=1), "Unusable policy with no unikernels"),
    ],
)
def test_usable_refuses(policy: Policy, message: str) -> None:
    with pytest.raises(PolicyError, match=f"^{re.escape(message)}$"):
        usable(policy)


def test_is_smaller_accepts_equal_and_smaller() -> None:
    is_smaller(pol(), pol())
    is_smaller(pol(), pol(unikernels=1, cpuids={1}, memory=10, block=None, bridges=set()))


@pytest.mark.parametrize(
    ("sub", "message"),
    [
        (pol(unikernels=5), "policy above allows 4 unikernels, which is fewer than 5"),
        (pol(memory=2048), "policy above allows 1024 MB memory, which is fewer than 2048 MB"),
        (pol(cpuids={0, 2, 3}), "policy above does not allow CPUids 2, 3"),
        (
            pol(bridges={"service", "other"}),
            "policy above allows bridge(s) service, which is not a superset of other, service",
        ),
        (pol(block=101), "policy above allows 100 MB block storage, which is fewer than 101 MB"),
    ],
)
def test_is_smaller_messages(sub: Policy, message: str) -> None:
    with pytest.raises(PolicyError, match=f"^{re.escape(message)}$"):
        is_smaller(pol(), sub)


def test_is_smaller_checks_in_albatross_order() -> None:
    everything_wrong = pol(unikernels=9, memory=9999, cpuids={7}, bridges={"x"}, block=999)
    order = ["unikernels", "memory", "CPUids", "bridge", "block"]
    sub = everything_wrong
    for word in order:
        with pytest.raises(PolicyError) as exc:
            is_smaller(pol(), sub)
        assert word in str(exc.value)
        # repair the field that was reported; the next one must be reported next
        fixes = {
            "unikernels": {"unikernels": 4},
            "memory": {"memory": 1024},
            "CPUids": {"cpuids": frozenset({0})},
            "bridge": {"bridges": frozenset({"service"})},
            "block": {"block": 100},
        }[word]
        sub = dataclasses.replace(sub, **fixes)
    is_smaller(pol(), sub)


@pytest.mark.parametrize(
    ("super_block", "sub_block", "ok"),
    [(None, None, True), (5, None, True), (5, 5, True), (5, 6, False), (None, 0, False)],
)
def test_block_rule(super_block: int | None, sub_block: int | None, ok: bool) -> None:
    assert block_fits(super_block, sub_block) is ok
    assert smaller(pol(block=super_block), pol(block=sub_block)) is ok


def cfg(cpuids: set[int], memory: int, bridges: list[NetDevice]) -> UnikernelConfig:
    return UnikernelConfig(cpuids=frozenset(cpuids), memory=memory, bridges=tuple(bridges))


def test_fine_with_policy() -> None:
    p = pol(memory=64)
    fine_with_policy(p, cfg({0}, 64, [NetDevice("service")]))
    fine_with_policy(p, cfg({1}, 1, [NetDevice("net0", "service")]))
    with pytest.raises(PolicyError, match="CPUids 2 requested by the unikernel"):
        fine_with_policy(p, cfg({0, 2}, 1, []))
    with pytest.raises(PolicyError, match=re.escape("65 MB memory assigned to unikernel exceeds")):
        fine_with_policy(p, cfg({0}, 65, []))
    # the host bridge is the second component when present
    with pytest.raises(PolicyError, match=r"Bridge\(s\) other not allowed .*available: service"):
        fine_with_policy(p, cfg({0}, 1, [NetDevice("service", "other")]))


policies = st.builds(
    Policy,
    unikernels=st.integers(0, 5),
    cpuids=st.frozensets(st.integers(0, 3)),
    memory=st.integers(0, 100),
    block=st.one_of(st.none(), st.integers(0, 50)),
    bridges=st.frozensets(st.sampled_from(["a", "b", "c"])),
)


@given(policies, policies, policies)
def test_is_smaller_is_a_preorder(a: Policy, b: Policy, c: Policy) -> None:
    assert smaller(a, a)
    if smaller(a, b) and smaller(b, c):
        assert smaller(a, c)
