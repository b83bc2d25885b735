"""albatrossd benchmark (run by hand, as root: ``python bench/bench_vmmd.py [--vms 1000]``).

Prints figures; asserts nothing.  albatrossd and albatross-console run as
their own processes; the client here uses blocking sockets, a new connection
per command, as albatross clients do.  VMs use a minimal stand-in tender (a
shell script that answers ``--version`` and then ``exec``s ``sleep``), so a
thousand of them fit in memory and the figures measure albatrossd, not the
guests.

* info round trips per second (one VM running, query by name);
* create+destroy cycles per second;
* N VMs supervised at once: albatrossd's and albatross-console's memory,
  and the latency of ``info`` on one name and on the whole tree.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from albatross_py.virt.solo5_elf import make_solo5_elf  # noqa: E402
from albatross_py.wire.messages import (  # noqa: E402
    ReplyString,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfoQuery,
)
from albatross_py.wire.names import Name  # noqa: E402
from albatross_py.wire.types import UnikernelConfig  # noqa: E402
from tests.sync_client import call  # noqa: E402

TENDER = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "ABI version 2" >&2; exit 0; fi
exec sleep 1000000
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_socket(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear")
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--info-rounds", type=int, default=2000)
    ap.add_argument("--cycles", type=int, default=100)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (albatrossd needs it for taps; the figures assume it)")

    work = Path(tempfile.mkdtemp(prefix="abench-"))
    tmpdir, dbdir, bindir = work / "t", work / "d", work / "bin"
    bindir.mkdir()
    tender = bindir / "solo5-hvt"
    tender.write_text(TENDER)
    tender.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    console = subprocess.Popen(
        [sys.executable, "-m", "albatross_py.daemons.console", "--tmpdir", str(tmpdir), "-q"],
        env=env,
    )
    wait_socket(tmpdir / "util" / "console.sock")
    vmmd = subprocess.Popen(
        [sys.executable, "-m", "albatross_py.daemons.vmmd", "--tmpdir", str(tmpdir),
         "--dbdir", str(dbdir), "--tender-path", str(bindir), "-q"],
        env=env,
    )  # fmt: skip
    sock = tmpdir / "util" / "vmmd.sock"
    wait_socket(sock)
    image = make_solo5_elf("hvt", 2, (), ())
    config = UnikernelConfig(image=image, memory=1)
    try:
        base_rss = rss_kib(vmmd.pid)
        assert call(sock, Name.of_string("probe"), UnikernelCreate(config)) == ReplyString(
            "created unikernel"
        )
        name = Name.of_string("probe")
        t0 = time.perf_counter()
        for _ in range(args.info_rounds):
            call(sock, name, UnikernelInfoQuery())
        elapsed = time.perf_counter() - t0
        print(f"info round trips (new connection each): {args.info_rounds / elapsed:,.0f}/s")

        t0 = time.perf_counter()
        for i in range(args.cycles):
            n = Name.of_string(f"cycle{i}")
            call(sock, n, UnikernelCreate(config))
            call(sock, n, UnikernelDestroy())
        elapsed = time.perf_counter() - t0
        print(f"create+destroy cycles: {args.cycles / elapsed:,.1f}/s "
              f"({elapsed / args.cycles * 1000:.1f} ms each)")  # fmt: skip

        t0 = time.perf_counter()
        for i in range(args.vms):
            reply = call(sock, Name.of_string(f"t{i % 10}:vm{i}"), UnikernelCreate(config))
            if reply != ReplyString("created unikernel"):
                raise SystemExit(f"create {i} failed: {reply}")
        elapsed = time.perf_counter() - t0
        print(
            f"{args.vms} VMs created in {elapsed:.1f} s ({elapsed / args.vms * 1000:.1f} ms each)"
        )
        time.sleep(1)
        print(f"albatrossd RSS: {base_rss / 1024:.1f} MiB idle, "
              f"{rss_kib(vmmd.pid) / 1024:.1f} MiB with {args.vms + 1} VMs")  # fmt: skip
        print(
            f"albatross-console RSS with {args.vms + 1} VMs: {rss_kib(console.pid) / 1024:.1f} MiB"
        )
        one, every = [], []
        for _ in range(30):
            t0 = time.perf_counter()
            call(sock, Name.of_string("t3:vm3"), UnikernelInfoQuery())
            one.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            call(sock, Name.of_string(":"), UnikernelInfoQuery())
            every.append((time.perf_counter() - t0) * 1000)
        print(f"info latency with {args.vms + 1} VMs: one name median {statistics.median(one):.2f}"
              f" ms, whole tree median {statistics.median(every):.1f} ms")  # fmt: skip
    finally:
        t0 = time.perf_counter()
        vmmd.send_signal(signal.SIGTERM)
        vmmd.wait(timeout=600)
        print(f"albatrossd shutdown (stops every VM): {time.perf_counter() - t0:.1f} s")
        console.send_signal(signal.SIGTERM)
        console.wait(timeout=60)


if __name__ == "__main__":
    main()
