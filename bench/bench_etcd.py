"""etcd client benchmark (run by hand: ``python bench/bench_etcd.py``).

Prints figures; asserts nothing.  Starts a real 3-member etcd over mutual TLS
on loopback (:mod:`albatross_py.cluster.etcdrun`) and measures, through our
trio client over the JSON gateway:

* median and 90th percentile latency of ``put``, ``range`` (linearizable),
  a guarded ``txn`` and a full quota reservation (read txn + CAS txn);
* ``--concurrent`` reservations at once from two clients against one policy;
* failover: the time from SIGKILL of the leader (then of a follower) until a
  write through the client, whose preferred member it was, is acknowledged.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import trio

from albatross_py.cluster import etcd as E
from albatross_py.cluster import quota
from albatross_py.cluster.etcdrun import EtcdCluster, start_cluster
from albatross_py.core.policy import PolicyError
from albatross_py.wire.names import Name
from albatross_py.wire.types import Policy, UnikernelConfig


def fig(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[int(len(xs) * 0.9) - 1] if len(xs) >= 10 else xs[-1]
    return f"median {statistics.median(xs) * 1000:6.2f} ms  p90 {p90 * 1000:6.2f} ms  (n={len(xs)})"


async def timed(n: int, op) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await op(i)
        out.append(time.perf_counter() - t0)
    return out


async def leader_url(cluster: EtcdCluster, etcd: E.Etcd) -> str:
    leader = (await etcd.status())["leader"]
    for m in cluster.members:
        if not m.alive:
            continue
        c = E.Etcd([m.client_url], ssl_context=cluster.ssl_context())
        try:
            if (await c.status())["header"]["member_id"] == leader:
                return m.client_url
        finally:
            await c.aclose()
    raise RuntimeError("no leader found")


async def main(cluster: EtcdCluster, args: argparse.Namespace) -> None:
    ctx = cluster.ssl_context()
    async with E.Etcd(cluster.endpoints, ssl_context=ctx) as etcd:
        n = args.rounds
        print(f"put     {fig(await timed(n, lambda i: etcd.put(f'b/{i % 10}', str(i))))}")
        print(f"range   {fig(await timed(n, lambda i: etcd.range('b/', prefix=True)))}")
        kv0 = await etcd.get("b/0")
        rev = [kv0.mod_revision if kv0 else 0]

        async def cas(i: int) -> None:
            r = await etcd.txn(E.Txn((E.mod_revision_is("b/0", rev[0]),), (E.put("b/0", str(i)),)))
            rev[0] = r.revision

        print(f"cas txn {fig(await timed(n, cas))}")
        policies = {("bench",): Policy(10**6, frozenset({0}), 10**9, None, frozenset())}

        async def reserve(i: int) -> None:
            await quota.reserve(
                etcd, policies, Name.of_string(f"bench:vm{i}"), UnikernelConfig(), "h1"
            )

        print(f"reserve {fig(await timed(n, reserve))}")

        # concurrent reservations from two clients against a policy allowing half
        allowed = args.concurrent // 2
        tight = {("conc",): Policy(allowed, frozenset({0}), 10**9, None, frozenset())}
        other = E.Etcd(cluster.endpoints[1:] + cluster.endpoints[:1], ssl_context=ctx)
        ok = [0]

        async def one(i: int) -> None:
            client = etcd if i % 2 else other
            try:
                await quota.reserve(
                    client, tight, Name.of_string(f"conc:vm{i}"), UnikernelConfig(), "h1"
                )
                ok[0] += 1
            except PolicyError:
                pass

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(args.concurrent):
                nursery.start_soon(one, i)
        took = time.perf_counter() - t0
        await other.aclose()
        print(
            f"{args.concurrent} concurrent reservations, 2 clients: {ok[0]} of {allowed}"
            f" allowed got through, all done in {took * 1000:.0f} ms"
        )

        for k in range(args.kills):
            url = await leader_url(cluster, etcd)
            etcd._current = etcd.endpoints.index(url)
            cluster.kill(url)
            t0 = time.perf_counter()
            await etcd.put("b/failover", str(k))
            took = time.perf_counter() - t0
            print(f"failover {k + 1}: leader killed -> write acknowledged in {took:.2f} s")
            await trio.to_thread.run_sync(cluster.restart, url)
            leader = await leader_url(cluster, etcd)
            follower = next(u for u in cluster.endpoints if u != leader)
            etcd._current = etcd.endpoints.index(follower)
            cluster.kill(follower)
            t0 = time.perf_counter()
            await etcd.put("b/failover", str(k))
            took = time.perf_counter() - t0
            print(
                f"failover {k + 1}: follower killed -> write acknowledged in {took * 1000:.1f} ms"
            )
            await trio.to_thread.run_sync(cluster.restart, follower)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--kills", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-etcd-") as d:
        load0 = os.getloadavg()[0]
        cluster = start_cluster(Path(d), 3)
        print(f"3-member etcd over mutual TLS healthy {cluster.startup_seconds:.2f} s after launch")
        try:
            trio.run(main, cluster, args)
        finally:
            cluster.stop()
        print(f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f} (2 vCPUs, shared)")
