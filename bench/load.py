"""Load: many concurrent clients against real daemons (run by hand, as root).

``python bench/load.py [--clients 100] [--commands 1000]``

albatross-console and albatrossd run as their own processes; solo5 VMs use a
stand-in tender (a shell script that prints a line and sleeps), so thousands
of creates measure the daemons, not guests.  Every client is a trio task
with its own connections (a new one per command, as albatross clients do)
and its own two VM names under one tenant whose policy admits fewer VMs
than the clients want, so some creates are refused by policy.  The mix per
command: ``info`` (of the tenant or of one name) 50%, create or destroy of
one of its VMs 30% (create when it is not running, destroy when it is),
console attach (subscribe, read the history line, detach) 20%.

A reply that is not what that command must answer is an error; refusals by
policy are counted apart and are not errors.  Printed: commands, errors,
refusals, commands/s, and the RSS of both daemons before and after (after a
warm-up round, so the figure shows growth, not start-up).  The integration
test ``tests/integration/test_load.py`` runs :func:`run_load` at 20 x 100.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from albatross_py.transport import FramedStream, connect_unix  # noqa: E402
from albatross_py.virt.solo5_elf import make_solo5_elf  # noqa: E402
from albatross_py.wire.messages import (  # noqa: E402
    Command,
    ConsoleSubscribe,
    DataConsole,
    Failure,
    Header,
    PolicyAdd,
    ReplyString,
    ReplyUnikernelInfo,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfoQuery,
    Wire,
)
from albatross_py.wire.names import Name  # noqa: E402
from albatross_py.wire.types import Policy, UnikernelConfig  # noqa: E402

TENDER = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "ABI version 2" >&2; exit 0; fi
echo "load: up"
exec sleep 1000000
"""
TENANT = "load"
#: Bounds one command (a create waits for its tender to start).
COMMAND_TIMEOUT = 30.0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Daemons:
    tmpdir: Path
    console: subprocess.Popen[bytes]
    vmmd: subprocess.Popen[bytes]

    @property
    def vmmd_socket(self) -> Path:
        return self.tmpdir / "util" / "vmmd.sock"

    @property
    def console_socket(self) -> Path:
        return self.tmpdir / "util" / "console.sock"

    def rss(self) -> tuple[int, int]:
        """(albatrossd, albatross-console) RSS in KiB."""
        return rss_kib(self.vmmd.pid), rss_kib(self.console.pid)

    def alive(self) -> bool:
        return self.vmmd.poll() is None and self.console.poll() is None


def _wait_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear")
        time.sleep(0.05)


@contextmanager
def daemons(work: Path) -> Iterator[Daemons]:
    """albatross-console and albatrossd in ``work``, stopped (and reaped) afterwards."""
    tmpdir, dbdir, bindir = work / "t", work / "d", work / "bin"
    bindir.mkdir(parents=True)
    tender = bindir / "solo5-hvt"
    tender.write_text(TENDER)
    tender.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        console = subprocess.Popen(
            [sys.executable, "-m", "albatross_py.daemons.console", "--tmpdir", str(tmpdir),
             "--user", "", "-q"],
            env=env,
        )  # fmt: skip
        procs.append(console)
        _wait_socket(tmpdir / "util" / "console.sock", console)
        vmmd = subprocess.Popen(
            [sys.executable, "-m", "albatross_py.daemons.vmmd", "--tmpdir", str(tmpdir),
             "--dbdir", str(dbdir), "--tender-path", str(bindir), "-q"],
            env=env,
        )  # fmt: skip
        procs.append(vmmd)
        _wait_socket(tmpdir / "util" / "vmmd.sock", vmmd)
        yield Daemons(tmpdir, console, vmmd)
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Tally:
    commands: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)


async def _call(path: Path, name: Name, cmd: Command) -> object:
    with trio.fail_after(COMMAND_TIMEOUT):
        conn = FramedStream(await connect_unix(path))
        async with conn:
            await conn.write_wire(Wire(Header(name=name), cmd))
            reply = await conn.read_wire()
    if reply is None:
        raise ConnectionError("closed without a reply")
    return reply.payload


async def _attach(path: Path, name: Name) -> str | None:
    """Subscribe to a running VM's console, read one line, detach; None if fine."""
    with trio.fail_after(COMMAND_TIMEOUT):
        conn = FramedStream(await connect_unix(path))
        async with conn:
            await conn.write_wire(Wire(Header(name=name), ConsoleSubscribe(count=10)))
            reply = await conn.read_wire()
            if reply is None or isinstance(reply.payload, Failure):
                return f"console subscribe of {name}: {reply}"
            line = await conn.read_wire()
            if line is None or not isinstance(line.payload, DataConsole):
                return f"console of {name}: expected a line, got {line}"
    return None


async def _client(d: Daemons, index: int, commands: int, seed: int, tally: Tally) -> None:
    rng = random.Random(seed * 1_000_003 + index)
    image = make_solo5_elf("hvt", 2, (), ())
    config = UnikernelConfig(image=image, memory=1)
    names = [Name.of_string(f"{TENANT}:c{index}v{k}") for k in range(2)]
    running = dict.fromkeys(names, False)
    for _ in range(commands):
        roll = rng.random()
        name = rng.choice(names)
        try:
            if roll < 0.5:
                target = name if roll < 0.25 else Name.of_string(f"{TENANT}:")
                tally.kinds["info"] += 1
                reply = await _call(d.vmmd_socket, target, UnikernelInfoQuery())
                if not isinstance(reply, ReplyUnikernelInfo):
                    tally.errors.append(f"info {target}: {reply}")
            elif roll < 0.8 and not running[name]:
                tally.kinds["create"] += 1
                reply = await _call(d.vmmd_socket, name, UnikernelCreate(config))
                if reply == ReplyString("created unikernel"):
                    running[name] = True
                elif isinstance(reply, Failure) and "policy" in reply.message:
                    tally.refused += 1
                else:
                    tally.errors.append(f"create {name}: {reply}")
            elif roll < 0.8:
                tally.kinds["destroy"] += 1
                reply = await _call(d.vmmd_socket, name, UnikernelDestroy())
                if reply == ReplyString("destroyed unikernel"):
                    running[name] = False
                else:
                    tally.errors.append(f"destroy {name}: {reply}")
            elif running[name]:
                tally.kinds["console"] += 1
                if (problem := await _attach(d.console_socket, name)) is not None:
                    tally.errors.append(problem)
            else:
                tally.kinds["info"] += 1
                reply = await _call(d.vmmd_socket, name, UnikernelInfoQuery())
                if not isinstance(reply, ReplyUnikernelInfo):
                    tally.errors.append(f"info {name}: {reply}")
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, ConnectionError) as exc:
            tally.errors.append(f"client {index}: {type(exc).__name__}: {exc}")
        tally.commands += 1
    for name, up in running.items():  # leave nothing running
        if up:
            reply = await _call(d.vmmd_socket, name, UnikernelDestroy())
            if reply != ReplyString("destroyed unikernel"):
                tally.errors.append(f"final destroy {name}: {reply}")


def tenant_policy(clients: int) -> Policy:
    """Room for half the VMs the clients may want at once (each has two names)."""
    return Policy(max(1, clients), frozenset({0}), 1024, None, frozenset())


async def run_load(d: Daemons, clients: int, commands: int, seed: int = 1) -> Tally:
    """``clients`` concurrent clients, ``commands`` each; the tenant's policy first."""
    reply = await _call(
        d.vmmd_socket, Name.of_string(f"{TENANT}:"), PolicyAdd(tenant_policy(clients))
    )
    if not isinstance(reply, ReplyString):
        raise RuntimeError(f"add policy: {reply}")
    tally = Tally()
    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(_client, d, i, commands, seed, tally)
    return tally


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--commands", type=int, default=1000, help="per client")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (albatrossd)")
    from albatross_py.host.limits import raise_nofile_limit

    raise_nofile_limit()
    with tempfile.TemporaryDirectory(prefix="abench-load-") as work, daemons(Path(work)) as d:
        trio.run(run_load, d, args.clients, 20, args.seed + 1)  # warm-up
        rss0 = d.rss()
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        tally = trio.run(run_load, d, args.clients, args.commands, args.seed)
        elapsed = time.perf_counter() - t0
        time.sleep(1)
        rss1 = d.rss()
        print(f"{args.clients} clients x {args.commands} commands: {tally.commands} in"
              f" {elapsed:.1f} s ({tally.commands / elapsed:,.0f}/s); load {load0:.2f} ->"
              f" {os.getloadavg()[0]:.2f}")  # fmt: skip
        print(f"  mix: {dict(tally.kinds)}; refused by policy: {tally.refused}")
        print(f"  errors: {len(tally.errors)}")
        for problem in tally.errors[:10]:
            print(f"    {problem}")
        print(f"  albatrossd RSS {rss0[0] / 1024:.1f} -> {rss1[0] / 1024:.1f} MiB,"
              f" albatross-console RSS {rss0[1] / 1024:.1f} -> {rss1[1] / 1024:.1f} MiB;"
              f" daemons alive: {d.alive()}")  # fmt: skip


if __name__ == "__main__":
    main()
