"""Benchmark real VM start and stop with tinyguest on microvm and on pc+qboot.

Run by hand as root on a machine with QEMU and /dev/kvm:
``python bench/bench_tinyguest.py [rounds]``.  Prints medians (and min/max)
in milliseconds; asserts nothing.  The machines are shared and noisy, so the
two machine types run interleaved (A B A B) and medians are what to quote.

Figures, each from the spawn of the VM process (as the supervisor does it:
console FIFO on stdio, a direct child, pidfd wait):

* banner: until "tinyguest: booted" is read from the console FIFO;
* exit: ``exit=7`` until QEMU is reaped (status 15, guest code 7);
* sigterm: a ``run`` guest, from SIGTERM (sent once the banner is seen) until reaped;
* powerdown: a ``run`` guest, from QMP ``system_powerdown`` until reaped;
* idle CPU: host CPU time of a ``run`` guest over 2 s, as a share of one CPU.
"""

from __future__ import annotations

import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Benchmark the checkout this file lives in, not whatever copy is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio

from albatross_py.virt import guest, qmp
from albatross_py.virt.qemu import QemuOptions, QemuVm, command_line, find_qboot
from tests.system.tinyguest_harness import run_vm, system_skip_reason

MACHINES = ("microvm", "pc")


def argv_for(workdir: Path, kernel: Path, machine: str, append: str) -> tuple[list[str], Path]:
    sock = workdir / "qmp.sock"
    vm = QemuVm(name="bench:tiny", memory=16, qmp_socket=sock, kernel=kernel, append=append)
    options = QemuOptions(accel="kvm", machine=machine, qboot=find_qboot())  # type: ignore[arg-type]
    return command_line(vm, options), sock


async def one_round(kernel: Path, machine: str, results: dict[str, list[float]]) -> None:
    with tempfile.TemporaryDirectory(prefix="tgb-") as d:
        workdir = Path(d)

        argv, _ = argv_for(workdir, kernel, machine, "exit=7")
        async with run_vm(workdir, argv) as vm:
            seen = await vm.console.wait_for("tinyguest: booted")
            status, _ = await vm.process.wait()
            done = time.monotonic()
        assert status.code == 15, status
        results["banner"].append(seen - vm.spawned)
        results["exit"].append(done - vm.spawned)

        argv, _ = argv_for(workdir, kernel, machine, "run")
        async with run_vm(workdir, argv) as vm:
            await vm.console.wait_for("tinyguest: running")
            t0 = time.monotonic()
            vm.process.send_signal(signal.SIGTERM)
            await vm.process.wait()
            results["sigterm"].append(time.monotonic() - t0)

        argv, sock = argv_for(workdir, kernel, machine, "run")
        async with run_vm(workdir, argv) as vm:
            await vm.console.wait_for("tinyguest: running")
            async with qmp.open_qmp(sock) as q:
                t0 = time.monotonic()
                await q.system_powerdown()
                status, _ = await vm.process.wait()
                results["powerdown"].append(time.monotonic() - t0)
            assert status.code == 0, status


async def idle_cpu(kernel: Path, machine: str) -> float:
    with tempfile.TemporaryDirectory(prefix="tgb-") as d:
        workdir = Path(d)
        argv, _ = argv_for(workdir, kernel, machine, "run")
        async with run_vm(workdir, argv) as vm:
            await vm.console.wait_for("tinyguest: running")
            ticks = _cpu_ticks(vm.process.pid)
            await trio.sleep(2.0)
            used = _cpu_ticks(vm.process.pid) - ticks
        return used / 100 / 2.0  # USER_HZ is 100 on Linux


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def summary(xs: list[float]) -> str:
    ms = sorted(x * 1000 for x in xs)
    return f"median {statistics.median(ms):7.1f} ms  (min {ms[0]:6.1f}, max {ms[-1]:6.1f})"


async def main(rounds: int) -> None:
    kernel = guest.build()
    print(f"tinyguest: {kernel} ({kernel.stat().st_size} bytes), {rounds} rounds, interleaved")
    results = {m: {k: [] for k in ("banner", "exit", "sigterm", "powerdown")} for m in MACHINES}
    for _ in range(rounds):
        for machine in MACHINES:
            await one_round(kernel, machine, results[machine])
    for machine in MACHINES:
        print(f"{machine}:")
        for key, xs in results[machine].items():
            print(f"  {key:<10} {summary(xs)}")
        print(f"  idle CPU   {await idle_cpu(kernel, machine) * 100:5.1f} % of one CPU (run, 2 s)")


if __name__ == "__main__":
    reason = system_skip_reason()
    if reason is not None:
        sys.exit(f"cannot run: {reason}")
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 10)
