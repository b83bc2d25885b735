"""albatross-stats: the cost of one gathering tick for N VMs (run by hand, as root for taps).

``python bench/bench_stats.py [--vms 1000] [--taps N] [--passes 5] [--profile]``

Prints figures; asserts nothing.  The aim in the issue: under 200 ms of CPU
per tick for 1,000 VMs.

Setup: ``--vms`` real processes (``sleep``), so ``/proc/<pid>/{stat,statm,status}``
are real; as root, ``--taps`` real tap devices (default: one per VM), made with
``ip -batch`` (``tuntap add ... mode tap``, on no bridge) and all removed at the
end, whatever happens.  VM *i* gets tap *i* as its one network interface
while there are taps.

Measured, per pass (passes interleaved, medians printed):

* **tick**: :meth:`StatsDaemon.tick` of the real daemon with every VM in its
  table and one subscriber at the root (so every VM is watched): one trio
  task per VM, each gathering in a worker thread through
  ``trio.to_thread.run_sync(gather_sync)``, then queueing the
  ``Data statistics`` wire.  CPU is the whole process's (``process_time``:
  trio thread plus every worker thread), and wall time;
* **gather_sync, sequential**: :func:`~albatross_py.daemons.stats.gather_sync`
  for every VM in a loop in one thread: CPU (``thread_time``) and wall;
* its two halves, sequential: **procstats** only
  (:func:`~albatross_py.host.procstats.process_usage`) and **netlink** only
  (:func:`~albatross_py.host.net.counters_sync` per tap);
* **one dump** (for comparison, not daemon code): one ``IPRoute`` socket and
  one ``get_links()`` dump for all interfaces, counters picked by name;
* **/proc/net/dev** (for comparison, not daemon code): one read of
  ``/proc/net/dev`` for every tap's counters, plus ``flags`` and ``mtu`` from
  ``/sys/class/net/<tap>/`` per tap.

``--profile`` adds a cProfile of one sequential pass (top functions by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import trio  # noqa: E402
from pyroute2 import IPRoute  # noqa: E402

from albatross_py.core.stats import TrackedVm  # noqa: E402
from albatross_py.daemons.stats import StatsDaemon, Subscriber, gather_sync  # noqa: E402
from albatross_py.host import net, procstats  # noqa: E402
from albatross_py.host.limits import raise_nofile_limit  # noqa: E402
from albatross_py.wire.names import Name  # noqa: E402

TAP_PREFIX = "abst"


def make_taps(n: int) -> list[str]:
    names = [f"{TAP_PREFIX}{i:05d}" for i in range(n)]
    script = "".join(f"tuntap add dev {t} mode tap\n" for t in names)
    r = subprocess.run(["ip", "-batch", "-"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"ip -batch tuntap add failed: {r.stderr.strip()[:300]}")
    return names


def remove_taps() -> int:
    """Remove every tap of ours (by prefix, so a half-made batch is cleaned too)."""
    with IPRoute() as ipr:
        ours = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    ours = [t for t in ours if t and t.startswith(TAP_PREFIX)]
    if ours:
        script = "".join(f"link del {t}\n" for t in ours)
        subprocess.run(["ip", "-force", "-batch", "-"], input=script, text=True,
                       capture_output=True)  # fmt: skip
    return len(ours)


def timed(fn: Callable[[], object]) -> tuple[float, float, float]:
    """(process CPU, this thread's CPU, wall) of ``fn()``, in seconds."""
    p0, t0, w0 = time.process_time(), time.thread_time(), time.perf_counter()
    fn()
    return time.process_time() - p0, time.thread_time() - t0, time.perf_counter() - w0


def seq_gather(vms: list[TrackedVm]) -> None:
    for vm in vms:
        gather_sync(vm)


def seq_procstats(vms: list[TrackedVm]) -> None:
    for vm in vms:
        procstats.process_usage(vm.pid)


def seq_netlink(vms: list[TrackedVm]) -> None:
    for vm in vms:
        for _, tap in vm.network:
            net.counters_sync(tap)


def one_dump(vms: list[TrackedVm]) -> None:
    wanted = {tap for vm in vms for _, tap in vm.network}
    with IPRoute() as ipr:
        found = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name in wanted:
                found[name] = (link.get_attr("IFLA_STATS64"), link["flags"])
    assert len(found) == len(wanted)


def proc_net_dev(vms: list[TrackedVm]) -> None:
    """All counters from one read of /proc/net/dev; flags and mtu from sysfs per tap."""
    wanted = {tap for vm in vms for _, tap in vm.network}
    found = {}
    with open("/proc/net/dev") as f:
        for line in f.read().splitlines()[2:]:
            name, _, rest = line.partition(":")
            name = name.strip()
            if name in wanted:
                found[name] = [int(x) for x in rest.split()]
    for tap in found:
        with open(f"/sys/class/net/{tap}/flags") as f:
            int(f.read(), 16)
        with open(f"/sys/class/net/{tap}/mtu") as f:
            int(f.read())
    assert len(found) == len(wanted)


def tick_runner(vms: list[TrackedVm]) -> tuple[Callable[[], None], list[int]]:
    """A function running one StatsDaemon.tick over ``vms``; and the delivered counts."""
    delivered: list[int] = []

    async def one() -> None:
        daemon = StatsDaemon("/nonexistent", interval=10.0)
        for vm in vms:
            daemon.table.add(vm)
        send, recv = trio.open_memory_channel[object](len(vms) + 10)
        sub = Subscriber(Name.of_string(":"), 4, send)  # type: ignore[arg-type]
        daemon.table.subscribe(Name.of_string(":"), sub)
        await daemon.tick()
        n = 0
        while True:
            try:
                recv.receive_nowait()
            except trio.WouldBlock:
                break
            n += 1
        delivered.append(n)

    return lambda: trio.run(one), delivered


def fmt(xs: list[float]) -> str:
    ms = sorted(x * 1000 for x in xs)
    return f"{statistics.median(ms):8.1f} ms (min {ms[0]:7.1f}, max {ms[-1]:7.1f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--taps", type=int, default=None, help="default: one per VM (root only)")
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    raise_nofile_limit()
    root = os.geteuid() == 0
    ntaps = (args.vms if args.taps is None else args.taps) if root else 0
    if not root:
        print("not root: no taps, procstats only")
    procs: list[subprocess.Popen[bytes]] = []
    taps: list[str] = []
    try:
        t0 = time.perf_counter()
        for _ in range(args.vms):
            procs.append(subprocess.Popen(["sleep", "1000000"], stdin=subprocess.DEVNULL))
        print(f"{args.vms} sleep processes started in {time.perf_counter() - t0:.1f} s")
        if ntaps:
            remove_taps()
            t0 = time.perf_counter()
            taps = make_taps(ntaps)
            print(f"{ntaps} taps created in {time.perf_counter() - t0:.1f} s "
                  f"(host has {len(os.listdir('/sys/class/net'))} interfaces now)")  # fmt: skip
        vms = [
            TrackedVm(Name.of_string(f"t{i % 10}:vm{i:04d}"), p.pid, "",
                      (("service", taps[i]),) if i < len(taps) else ())
            for i, p in enumerate(procs)
        ]  # fmt: skip
        tick, delivered = tick_runner(vms)
        cases: dict[str, Callable[[], object]] = {
            "tick (StatsDaemon.tick, threads)": tick,
            "gather_sync, sequential": lambda: seq_gather(vms),
            "  procstats only": lambda: seq_procstats(vms),
        }
        if taps:
            cases["  netlink only (counters_sync)"] = lambda: seq_netlink(vms)
            cases["one get_links() dump (comparison)"] = lambda: one_dump(vms)
            cases["/proc/net/dev + sysfs (comparison)"] = lambda: proc_net_dev(vms)
        seq_gather(vms[:10])  # warm-up (imports, first sockets)
        res: dict[str, list[tuple[float, float, float]]] = {k: [] for k in cases}
        for _ in range(args.passes):
            for key, fn in cases.items():
                res[key].append(timed(fn))
        print(f"one pass over {args.vms} VMs ({len(taps)} with a tap), "
              f"medians of {args.passes} interleaved passes:")  # fmt: skip
        print(f"  {'':<36} {'process CPU':<34} {'wall':<34} thread CPU")
        for key, rs in res.items():
            proc_cpu, thread_cpu, wall = ([r[i] for r in rs] for i in range(3))
            print(f"  {key:<36} {fmt(proc_cpu)}  {fmt(wall)}  "
                  f"{statistics.median(thread_cpu) * 1000:7.1f} ms")  # fmt: skip
        print(f"  tick delivered {delivered[-1]} Data statistics wires (of {args.vms} VMs)")
        if args.profile:
            site = str(Path(pstats.__file__).parent) + "/site-packages/"
            prof = cProfile.Profile()
            prof.enable()
            seq_gather(vms)
            prof.disable()
            for order in ("cumulative", "tottime"):
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats(order).print_stats(14)
                print(f"cProfile of one sequential gather_sync pass, by {order} time:")
                lines = out.getvalue().splitlines()
                start = next(i for i, ln in enumerate(lines) if "ncalls" in ln)
                print("\n".join(ln.replace(site, "") for ln in lines[start : start + 15]))
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        if root:
            removed = remove_taps()
            print(f"cleanup: {len(procs)} processes killed and reaped, {removed} taps removed")


if __name__ == "__main__":
    main()
