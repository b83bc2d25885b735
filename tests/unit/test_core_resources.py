"""The resource map: the stricter ancestor rule, summing up the tree, blocks, queries."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pytest

from albatross_py.core.policy import PolicyError
from albatross_py.core.resources import (
    BlockState,
    DuplicateUnikernelError,
    PolicyChange,
    ResourceError,
    Resources,
    RunningUnikernel,
    Usage,
)
from albatross_py.wire.names import ROOT, Name, Path, path_of_string
from albatross_py.wire.types import BlockDevice, NetDevice, Policy, UnikernelConfig


def P(s: str) -> Path:
    return path_of_string(s)


def N(s: str) -> Name:
    return Name.of_string(s)


def pol(
    unikernels: int = 10,
    memory: int = 1000,
    block: int | None = 100,
    cpuids: frozenset[int] = frozenset({0, 1}),
    bridges: frozenset[str] = frozenset({"service"}),
) -> Policy:
    return Policy(unikernels, cpuids, memory, block, bridges)


def cfg(
    memory: int = 10,
    cpuids: frozenset[int] = frozenset({0}),
    bridges: tuple[str, ...] = ("service",),
    blocks: tuple[BlockDevice, ...] = (),
) -> UnikernelConfig:
    return UnikernelConfig(
        cpuids=cpuids,
        memory=memory,
        bridges=tuple(NetDevice(b) for b in bridges),
        blocks=blocks,
    )


def vm(memory: int = 10, **kw: object) -> RunningUnikernel:
    return RunningUnikernel(cfg(memory, **kw))  # type: ignore[arg-type]


def refused(pattern: str) -> Any:
    """``pytest.raises`` for a policy refusal whose message matches ``pattern``."""
    return pytest.raises(PolicyError, match=pattern)


def unchanged_after_refusal(
    res: Resources[RunningUnikernel], action: Callable[[], object], pattern: str
) -> None:
    """``action`` is refused with a message matching ``pattern`` and changes nothing."""
    before = res.snapshot()
    with pytest.raises(PolicyError, match=pattern):
        action()
    assert res.snapshot() == before


# -- the sibling case (spec 5.3): albatross would run 4 here --------------------


def siblings() -> Resources[RunningUnikernel]:
    res: Resources[RunningUnikernel] = Resources()
    res.insert_policy(P("a"), pol(unikernels=2))
    res.insert_policy(P("a:b"), pol(unikernels=2))
    res.insert_policy(P("a:c"), pol(unikernels=2))
    return res


def test_siblings_two_in_one_child_third_refused_naming_parent() -> None:
    res = siblings()
    res.insert_unikernel(N("a:b:one"), vm())
    res.insert_unikernel(N("a:b:two"), vm())
    with pytest.raises(PolicyError) as exc:
        res.check_create(N("a:c:three"), cfg())
    msg = str(exc.value)
    assert "policy at path 'a:'" in msg
    assert "maximum amount of unikernels (2) reached" in msg
    unchanged_after_refusal(
        res, lambda: res.insert_unikernel(N("a:c:three"), vm()), "policy at path 'a:'"
    )


def test_siblings_one_in_each_third_refused_naming_parent() -> None:
    res = siblings()
    res.insert_unikernel(N("a:b:one"), vm())
    res.insert_unikernel(N("a:c:two"), vm())
    for name in ("a:b:three", "a:c:three", "a:three"):
        with refused(r"^policy at path 'a:': maximum amount of unikernels \(2\) reached$"):
            res.check_create(N(name), cfg())
    res.check_create(N("elsewhere"), cfg())  # no policy on that path


def test_own_path_refuses_first() -> None:
    res = siblings()
    res.insert_policy(P("a:b"), pol(unikernels=1))
    res.insert_unikernel(N("a:b:one"), vm())
    with refused("policy at path 'a:b:'"):
        res.check_create(N("a:b:two"), cfg())


def test_memory_sums_up_the_tree() -> None:
    res: Resources[RunningUnikernel] = Resources()
    res.insert_policy(P("a"), pol(memory=100))
    res.insert_policy(P("a:b"), pol(memory=80))
    res.insert_policy(P("a:c"), pol(memory=80))
    res.insert_unikernel(N("a:b:x"), vm(60))
    res.check_create(N("a:c:y"), cfg(40))
    msg = re.escape("policy at path 'a:': maximum allowed memory (100, used 60)")
    with refused(msg + re.escape(" would be exceeded (requesting 41)")):
        res.check_create(N("a:c:y"), cfg(41))
    with refused(re.escape("policy at path 'a:b:': maximum allowed memory (80, used 60)")):
        res.check_create(N("a:b:y"), cfg(21))
    assert res.usage(P("a")) == Usage(unikernels=1, memory=60)
    assert res.usage(ROOT).memory == 60
    assert res.usage(P("a:c")) == Usage()


def test_cpuids_and_bridges_checked_at_every_level() -> None:
    res: Resources[RunningUnikernel] = Resources()
    res.insert_policy(ROOT, pol(cpuids=frozenset({0, 1}), bridges=frozenset({"service", "x"})))
    res.insert_policy(P("a"), pol(cpuids=frozenset({0}), bridges=frozenset({"service"})))
    with refused(r"^policy at path 'a:': CPUids 1 are not allowed by policy$"):
        res.check_create(N("a:vm"), cfg(cpuids=frozenset({0, 1})))
    with refused(r"^policy at path 'a:': bridges x not allowed by policy$"):
        res.check_create(N("a:vm"), cfg(bridges=("service", "x")))
    with refused(r"^policy at path ':': CPUids 2 are not allowed by policy$"):
        res.check_create(N("b:vm"), cfg(cpuids=frozenset({2})))


def test_root_policy_bounds_top_level_policies_and_creates() -> None:
    # albatross never uses the root policy as a super-policy (spec 5.2); we do.
    res: Resources[RunningUnikernel] = Resources()
    res.insert_policy(ROOT, pol(unikernels=3, memory=100))
    unchanged_after_refusal(
        res,
        lambda: res.insert_policy(P("tenant"), pol(unikernels=4)),
        r"^policy at path ':': policy above allows 3 unikernels, which is fewer than 4$",
    )
    res.insert_policy(P("tenant"), pol(unikernels=3, memory=100))
    res.insert_policy(P("other"), pol(unikernels=3, memory=100))
    res.insert_unikernel(N("tenant:a"), vm(50))
    res.insert_unikernel(N("other:b"), vm(50))
    with refused(re.escape("policy at path ':': maximum allowed memory (100, used 100)")):
        res.check_create(N("tenant:c"), cfg(1))


def test_block_storage_sums_up_the_tree() -> None:
    res: Resources[RunningUnikernel] = Resources()
    res.insert_policy(P("a"), pol(block=10))
    res.insert_policy(P("a:b"), pol(block=10))
    res.insert_policy(P("a:c"), pol(block=10))
    res.add_block(N("a:b:d1"), 6)
    res.check_block(N("a:c:d2"), 4)
    unchanged_after_refusal(
        res,
        lambda: res.add_block(N("a:c:d2"), 5),
        re.escape(
            "policy at path 'a:': block device policy limit of 10 MB (used 6 MB)"
            " would be exceeded by the request (5 MB)"
        ),
    )
    assert res.usage(P("a")) == Usage(block_inactive=6, block_devices=1)
    res.insert_policy(P("a:n"), pol(block=None))
    with refused(r"^policy at path 'a:n:': no block devices are allowed by policy$"):
        res.check_block(N("a:n:d"), 0)


def test_insert_policy_rejects_child_bigger_than_any_ancestor() -> None:
    res: Resources[RunningUnikernel] = Resources()
    res.insert_policy(P("a"), pol(memory=100))
    # the parent a:b has no policy: the grandparent still bounds a:b:c
    unchanged_after_refusal(
        res,
        lambda: res.insert_policy(P("a:b:c"), pol(memory=101)),
        r"^policy at path 'a:': policy above allows 100 MB memory, which is fewer than 101 MB$",
    )
    assert res.insert_policy(P("a:b:c"), pol(memory=100)) is PolicyChange.ADDED


def test_insert_policy_rejects_parent_smaller_than_a_policy_below() -> None:
    res: Resources[RunningUnikernel] = Resources()
    res.insert_policy(P("a:b:c"), pol(cpuids=frozenset({0, 1})))
    unchanged_after_refusal(
        res,
        lambda: res.insert_policy(P("a"), pol(cpuids=frozenset({0}))),
        r"^policy at path 'a:' does not cover the policy at 'a:b:c:': "
        r"policy above does not allow CPUids 1$",
    )
    unchanged_after_refusal(res, lambda: res.insert_policy(P("a"), pol(block=None)), "block")
    assert res.insert_policy(P("a"), pol()) is PolicyChange.ADDED


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"unikernels": 1}, r"unikernel limit set by policy to 1, running 2$"),
        ({"memory": 39}, r"memory limit set by policy to 39 MB, used 40 MB$"),
        ({"block": 7}, r"block storage limit set by policy to 7 MB, used 8 MB$"),
        ({"block": None}, r"block storage limit set by policy to 0 MB, used 8 MB$"),
        ({"cpuids": frozenset({0})}, r"policy does not allow CPUids 1$"),
        ({"bridges": frozenset({"service"})}, r"not a superset of other, service$"),
    ],
)
def test_insert_policy_rejects_parent_smaller_than_usage(
    change: dict[str, object], pattern: str
) -> None:
    res: Resources[RunningUnikernel] = Resources()  # no policy below "a": only usage
    res.add_block(N("a:b:disk"), 8)
    res.insert_unikernel(N("a:b:one"), vm(20))
    res.insert_unikernel(N("a:b:two"), vm(20, cpuids=frozenset({1}), bridges=("other",)))
    fits = pol(unikernels=2, memory=40, block=8, bridges=frozenset({"service", "other"}))
    assert res.check_policy(P("a"), fits) is PolicyChange.ADDED
    smaller = dataclasses.replace(fits, **change)  # type: ignore[arg-type]
    unchanged_after_refusal(
        res, lambda: res.insert_policy(P("a"), smaller), "^policy at path 'a:': .*" + pattern
    )


def test_policy_outcomes_and_removal() -> None:
    res: Resources[RunningUnikernel] = Resources()
    assert res.insert_policy(P("a"), pol()) is PolicyChange.ADDED
    before = res.snapshot()
    assert res.insert_policy(P("a"), pol()) is PolicyChange.UNCHANGED
    assert PolicyChange.UNCHANGED.value == "no modification of policy"
    assert res.snapshot() == before
    assert res.insert_policy(P("a"), pol(unikernels=2)) is PolicyChange.REPLACED
    assert res.find_policy(P("a")) == pol(unikernels=2)
    with pytest.raises(ResourceError, match="unknown policy 'b:'"):
        res.remove_policy(P("b"))
    assert res.remove_policy(P("a")) == pol(unikernels=2)
    assert res == Resources()


def test_replacing_a_policy_updates_the_bounds_below() -> None:
    res: Resources[RunningUnikernel] = Resources()
    res.insert_policy(P("a:b"), pol(unikernels=5))
    res.insert_policy(P("a:b"), pol(unikernels=2))
    res.insert_policy(P("a"), pol(unikernels=2))  # fits only if the old 5 was forgotten
    res.remove_policy(P("a:b"))
    res.insert_policy(P("a"), pol(unikernels=1))


def test_create_refusals() -> None:
    res: Resources[RunningUnikernel] = Resources()
    res.insert_unikernel(N("a:x"), vm())
    with pytest.raises(ResourceError, match="already running"):
        res.check_create(N("a:x"), cfg())
    with pytest.raises(DuplicateUnikernelError):
        res.insert_unikernel(N("a:x"), vm())
    with pytest.raises(ResourceError, match="has no label"):
        res.check_create(N("a:"), cfg())
    with pytest.raises(ResourceError, match="block device a:d not found"):
        res.check_create(N("a:y"), cfg(blocks=(BlockDevice("d"),)))
    res.add_block(N("a:d"), 1)
    with pytest.raises(ResourceError, match="block device a:d is used twice"):
        res.check_create(N("a:y"), cfg(blocks=(BlockDevice("d"), BlockDevice("e", "d"))))
    with pytest.raises(ResourceError, match="not a valid name"):
        res.check_create(N("a:y"), cfg(blocks=(BlockDevice("d", "no/slash"),)))


def test_blocks_follow_their_unikernel() -> None:
    res: Resources[RunningUnikernel] = Resources()
    res.add_block(N("a:disk"), 5)
    res.insert_unikernel(N("a:x"), vm(blocks=(BlockDevice("storage", "disk"),)))
    assert res.find_block(N("a:disk")) == BlockState(5, True)
    assert res.usage(P("a")) == Usage(1, 10, block_active=5, block_devices=1)
    with pytest.raises(ResourceError, match="block device a:disk already in use"):
        res.check_create(N("a:y"), cfg(blocks=(BlockDevice("disk"),)))
    unchanged_after_refusal(res, lambda: res.remove_block(N("a:disk")), "in use")
    res.remove_unikernel(N("a:x"))
    assert res.find_block(N("a:disk")) == BlockState(5, False)
    assert res.remove_block(N("a:disk")) == BlockState(5, False)
    with pytest.raises(ResourceError, match="unknown block device"):
        res.remove_block(N("a:disk"))
    with pytest.raises(ResourceError, match="unknown unikernel"):
        res.remove_unikernel(N("a:x"))
    assert res == Resources()


def test_set_block_active_and_inactive() -> None:
    res: Resources[RunningUnikernel] = Resources()
    res.add_block(N("d"), 3)
    res.set_block_active(N("d"))
    assert res.usage() == Usage(block_active=3, block_devices=1)
    with pytest.raises(ResourceError, match="already in state active"):
        res.set_block_active(N("d"))
    res.set_block_inactive(N("d"))
    with pytest.raises(ResourceError, match="already in state inactive"):
        res.set_block_inactive(N("d"))
    with pytest.raises(ResourceError, match="not in trie"):
        res.set_block_active(N("nope"))


def test_check_replace_counts_the_old_unikernel_as_gone() -> None:
    res: Resources[RunningUnikernel] = Resources()
    res.insert_policy(P("a"), pol(unikernels=1, memory=10))
    res.add_block(N("a:disk"), 1)
    res.insert_unikernel(N("a:x"), vm(10, blocks=(BlockDevice("disk"),)))
    res.check_replace(N("a:x"), cfg(10, blocks=(BlockDevice("disk"),)))
    with refused(r"maximum allowed memory \(10, used 0\)"):
        res.check_replace(N("a:x"), cfg(11))
    with refused(r"maximum amount of unikernels \(1\) reached"):
        res.check_create(N("a:y"), cfg(1))
    # nothing running under that name: a plain create check
    with refused(r"maximum amount of unikernels \(1\) reached"):
        res.check_replace(N("a:y"), cfg(1))


def test_zvol_devices_are_not_managed_at_the_allowed_path() -> None:
    zvol = (BlockDevice("data", "/dev/zvol/pool/x"),)
    res: Resources[RunningUnikernel] = Resources(dev_zvol=P("hosted"))
    res.insert_unikernel(N("hosted:vm"), vm(blocks=zvol))
    assert res.all_block_devices() == []
    with pytest.raises(ResourceError, match="not a valid name"):
        res.check_create(N("other:vm"), cfg(blocks=zvol))


def test_queries_use_relative_names_in_reply_order() -> None:
    res: Resources[RunningUnikernel] = Resources()
    res.insert_policy(P("a"), pol())
    res.insert_policy(P("a:b"), pol())
    res.insert_policy(P("a:c"), pol())
    res.insert_policy(P("z"), pol())
    assert [str(n) for n, _ in res.policies(P("a"))] == [":", "c:", "b:"]
    assert [str(n) for n, _ in res.all_policies()] == ["a:", "a:b:", "a:c:", "z:"]
    assert [p for p, _ in res.policies_above(P("a:b:q"))] == [P("a"), P("a:b")]
    res.add_block(N("a:b:d"), 1)
    res.insert_unikernel(N("a:b:x"), vm())
    res.insert_unikernel(N("a:y"), vm())
    assert [str(n) for n, _ in res.unikernels(P("a"))] == [":y", "b:x"]
    assert [str(n) for n, _ in res.block_devices(P("a:b"))] == [":d"]
    assert [str(n) for n, _ in res.iter_unikernels()] == ["a:b:x", "a:y"]
    assert res.find_unikernel(N("a:y")) == vm()
    assert res.find_unikernel(N("a:")) is None
    summary = {path: u for path, u, _ in res.usage_by_path()}
    assert summary[ROOT] == Usage(2, 20, block_inactive=1, block_devices=1)
    assert summary[P("a:b")] == Usage(1, 10, block_inactive=1, block_devices=1)
    assert summary[P("z")] == Usage()
    assert list(summary) == [ROOT, P("a"), P("a:b"), P("a:c"), P("z")]


def test_a_name_at_a_policy_node_counts_for_its_own_path() -> None:
    # "a:b" (label b under a) shares a trie node with the path "a:b:" but lives in "a:".
    res: Resources[RunningUnikernel] = Resources()
    res.insert_policy(P("a:b"), pol(unikernels=1))
    res.insert_unikernel(N("a:b"), vm())
    assert res.usage(P("a:b")) == Usage()
    assert res.usage(P("a")).unikernels == 1
    res.insert_unikernel(N("a:b:x"), vm())
