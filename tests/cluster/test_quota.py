"""Cluster-wide quota and placement records in a real etcd, under concurrency (issue 16).

Twenty reservations at once from two clients (on different members) against
one policy: exactly the allowed number get through, the refusals name the
bound and the path, and the ledger equals the sum of the placement records.
"""

from __future__ import annotations

import pytest
import trio

from albatross_py.cluster import quota
from albatross_py.cluster.etcd import Etcd
from albatross_py.cluster.etcdrun import EtcdCluster
from albatross_py.cluster.ledger import Usage
from albatross_py.core.policy import PolicyError
from albatross_py.wire.names import Name
from albatross_py.wire.types import Policy, UnikernelConfig

pytestmark = pytest.mark.system


def pol(unikernels: int, memory: int) -> Policy:
    return Policy(unikernels, frozenset({0, 1}), memory, None, frozenset({"br0"}))


async def test_twenty_concurrent_reservations_from_two_clients(
    etcd_cluster: EtcdCluster, etcd: Etcd
) -> None:
    top, team_a = ("q20",), ("q20", "a")
    policies = {top: pol(7, 10_000), team_a: pol(10, 300)}
    second = Etcd(etcd_cluster.endpoints[1:] + etcd_cluster.endpoints[:1],
                  ssl_context=etcd_cluster.ssl_context())  # fmt: skip
    won: list[Name] = []
    refused: dict[Name, str] = {}
    try:
        async with trio.open_nursery() as nursery:
            for i in range(20):
                team = "a" if i % 2 else "b"
                name = Name.of_string(f"q20:{team}:vm{i}")
                client = etcd if i % 4 < 2 else second

                async def one(client: Etcd = client, name: Name = name, i: int = i) -> None:
                    try:
                        await quota.reserve(
                            client, policies, name, UnikernelConfig(memory=100), f"h{i % 3}"
                        )
                        won.append(name)
                    except PolicyError as e:
                        refused[name] = str(e)

                nursery.start_soon(one)
    finally:
        await second.aclose()
    assert len(won) == 7 and len(refused) == 13
    assert sum(1 for n in won if n.path == team_a) <= 3
    for message in refused.values():
        assert message in (
            "policy at path 'q20:': maximum amount of unikernels (7) reached",
            "policy at path 'q20:a:': maximum allowed memory (300, used 300)"
            " would be exceeded (requesting 100)",
        )
    ledger = await quota.ledger(etcd)
    placed = {n: c for n, c in (await quota.placements(etcd)).items() if n.path[:1] == top}
    assert set(placed) == set(won)
    for path in (top, team_a):
        mine = [c.usage for c in placed.values() if path in c.paths]
        assert ledger.get(path, Usage()) == sum(mine, Usage())
    assert ledger[top] == Usage(7, 700, 7, 0)
    # the name is taken now, whoever asks
    with pytest.raises(quota.NameTaken, match="already exists"):
        await quota.reserve(etcd, policies, won[0], UnikernelConfig(memory=100), "h9")
    # releasing gives everything back, and twice is harmless
    for name in won:
        assert (await quota.release(etcd, name)) is not None
    assert await quota.release(etcd, won[0]) is None
    ledger = await quota.ledger(etcd)
    assert ledger[top] == Usage() and ledger.get(team_a, Usage()) == Usage()


async def test_one_name_one_host_under_a_race(etcd: Etcd) -> None:
    policies = {("race",): pol(100, 10_000)}
    name = Name.of_string("race:web")
    outcomes: list[str] = []

    async def claim(host: str) -> None:
        try:
            c = await quota.reserve(etcd, policies, name, UnikernelConfig(memory=64), host)
            outcomes.append(c.host)
        except quota.NameTaken as e:
            outcomes.append(f"taken on {e.claim.host}")

    async with trio.open_nursery() as nursery:
        for h in ("h1", "h2", "h3", "h4"):
            nursery.start_soon(claim, h)
    winners = [o for o in outcomes if not o.startswith("taken")]
    assert len(winners) == 1
    assert outcomes.count(f"taken on {winners[0]}") == 3
    assert (await quota.ledger(etcd))[("race",)] == Usage(1, 64, 1, 0)
    await quota.release(etcd, name)
