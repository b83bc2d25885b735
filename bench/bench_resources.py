"""Benchmark of the admission core: create checks and policy inserts stay O(depth).

Run by hand: ``python bench/bench_resources.py``.  Prints median times; asserts
nothing.  The main tree has 10,000 policies (100 tenants with 99 sub-paths
each, plus the root) and 10,000 running unikernels (one per policy path).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path as FsPath

# Benchmark the checkout this file lives in, not whatever copy is installed.
sys.path.insert(0, str(FsPath(__file__).resolve().parents[1]))

from albatross_py.core.resources import Resources, RunningUnikernel
from albatross_py.wire.names import ROOT, Name, Path
from albatross_py.wire.types import NetDevice, Policy, UnikernelConfig

REPEAT = 2000
BIG = 10**12


def policy(unikernels: int, memory: int) -> Policy:
    return Policy(unikernels, frozenset(range(8)), memory, memory, frozenset({"br0", "br1"}))


CONFIG = UnikernelConfig(cpuids=frozenset({1}), memory=16, bridges=(NetDevice("service", "br0"),))


def build(tenants: int, subs: int) -> Resources[RunningUnikernel]:
    res: Resources[RunningUnikernel] = Resources()
    res.insert_policy(ROOT, policy(BIG, BIG))
    for t in range(tenants):
        tp = (f"t{t}",)
        res.insert_policy(tp, policy(10 * subs + 10, BIG))
        res.insert_unikernel(Name(tp, "vm"), RunningUnikernel(CONFIG))
        for s in range(subs):
            sp = (*tp, f"s{s}")
            res.insert_policy(sp, policy(10, 10_000))
            res.insert_unikernel(Name(sp, "vm"), RunningUnikernel(CONFIG))
    return res


def add_chain(res: Resources[RunningUnikernel], under: Path, depth: int) -> list[Path]:
    """Policies at every level of a chain under ``under``; returns the chain's paths."""
    out = []
    path = under
    for d in range(depth):
        path = (*path, f"d{d}")
        res.insert_policy(path, policy(1000 - d, 10**6 - d))
        out.append(path)
    return out


def median_us(f: Callable[[], object], after: Callable[[], object] | None = None) -> float:
    times = []
    for _ in range(REPEAT):
        t0 = time.perf_counter_ns()
        f()
        times.append(time.perf_counter_ns() - t0)
        if after is not None:
            after()
    return statistics.median(times) / 1000


def main() -> None:
    t0 = time.perf_counter()
    res = build(100, 99)
    n_pol = len(res.all_policies())
    n_vm = len(res.all_unikernels())
    print(f"built {n_pol} policies, {n_vm} unikernels in {time.perf_counter() - t0:.2f} s")
    print(f"median of {REPEAT} runs, microseconds\n")

    new = Name(("t5", "s7"), "new")
    leaf = ("t5", "s7", "p")
    print(f"{'operation':58} {'us':>8}")
    rows = [
        (
            "check_create t5:s7:new (depth 2, 3 policies above)",
            lambda: res.check_create(new, CONFIG),
        ),
        ("check_replace t5:s7:vm", lambda: res.check_replace(Name(("t5", "s7"), "vm"), CONFIG)),
        ("check_block t5:s7:disk", lambda: res.check_block(Name(("t5", "s7"), "disk"), 10)),
    ]
    for label, f in rows:
        print(f"{label:58} {median_us(f):8.1f}")
    us = median_us(
        lambda: res.insert_policy(leaf, policy(5, 5000)), lambda: res.remove_policy(leaf)
    )
    print(f"{'insert_policy new leaf t5:s7:p (then removed, untimed)':58} {us:8.1f}")
    us = median_us(
        lambda: res.insert_unikernel(new, RunningUnikernel(CONFIG)),
        lambda: res.remove_unikernel(new),
    )
    print(f"{'insert_unikernel t5:s7:new (then removed, untimed)':58} {us:8.1f}")
    roots = [policy(BIG + 1, BIG), policy(BIG, BIG)]
    flip = iter(range(10**9))
    print(
        f"{'replace the root policy (10,000 policies below)':58} "
        f"{median_us(lambda: res.insert_policy(ROOT, roots[next(flip) % 2])):8.1f}"
    )
    tenant = [policy(10 * 99 + 11, BIG), policy(10 * 99 + 10, BIG)]
    print(
        f"{'replace tenant policy t5: (99 policies, 100 vms below)':58} "
        f"{median_us(lambda: res.insert_policy(('t5',), tenant[next(flip) % 2])):8.1f}"
    )

    print("\ngrowth with depth (chain of policies under t0:, same 10,000-policy tree)")
    chain = add_chain(res, ("t0",), 64)
    print(f"{'depth':>6} {'check_create':>13} {'insert_policy leaf':>19}")
    for depth in (1, 2, 4, 8, 16, 32, 64):
        path = chain[depth - 1]
        name = Name(path, "new")
        extra = (*path, "leaf")
        create = median_us(lambda name=name: res.check_create(name, CONFIG))
        insert = median_us(
            lambda extra=extra: res.insert_policy(extra, policy(10, 1000)),
            lambda extra=extra: res.remove_policy(extra),
        )
        print(f"{depth + 1:>6} {create:>13.1f} {insert:>19.1f}")

    print("\ngrowth with tree size (check at depth 2)")
    print(f"{'policies':>9} {'unikernels':>11} {'check_create':>13} {'insert_policy leaf':>19}")
    for tenants, subs in ((10, 9), (10, 99), (100, 99), (300, 99)):
        r = build(tenants, subs)
        n = Name(("t5", "s7"), "new")
        lp = ("t5", "s7", "p")
        create = median_us(lambda r=r, n=n: r.check_create(n, CONFIG))
        insert = median_us(
            lambda r=r, lp=lp: r.insert_policy(lp, policy(5, 5000)),
            lambda r=r, lp=lp: r.remove_policy(lp),
        )
        print(
            f"{len(r.all_policies()):>9} {len(r.all_unikernels()):>11} "
            f"{create:>13.1f} {insert:>19.1f}"
        )


if __name__ == "__main__":
    main()
