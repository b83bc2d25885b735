"""Run real VMs from tests and benchmarks: console FIFO reader, spawn, cleanup.

A VM is started the way the supervisor starts it: ``host.process.spawn``
with the console FIFO as stdin, stdout and stderr, a direct child watched
through a pidfd.  The reader side of the FIFO is ours, so the test sees the
guest's serial output and QEMU's own diagnostics in order.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from albatross_py.host import process

QEMU = "qemu-system-x86_64"
#: A generous bound for anything a tiny guest does; tests never rely on it
#: being tight, it only keeps a broken VM from hanging the suite.
BOUND = 20.0


def system_skip_reason() -> str | None:
    """Why real VMs cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which(QEMU) is None:
        return f"{QEMU} not installed (apt-get install qemu-system-x86)"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "no usable /dev/kvm"
    for tool in ("as", "ld"):
        if shutil.which(tool) is None:
            return f"{tool} (binutils) not installed, cannot build tinyguest"
    return None


@dataclass
class Console:
    """Lines read from the VM's console FIFO, with monotonic arrival times."""

    fd: int
    lines: list[tuple[float, str]] = field(default_factory=list)
    eof: bool = False
    _changed: trio.Event = field(default_factory=trio.Event)
    _partial: bytes = b""

    async def run(self) -> None:
        stream = trio.lowlevel.FdStream(self.fd)
        async with stream:
            while True:
                data = await stream.receive_some(65536)
                now = time.monotonic()
                if not data:
                    break
                *complete, self._partial = (self._partial + data).split(b"\n")
                for raw in complete:
                    self.lines.append((now, raw.decode("utf-8", "replace")))
                self._wake()
        if self._partial:
            self.lines.append((time.monotonic(), self._partial.decode("utf-8", "replace")))
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def find(self, needle: str) -> float | None:
        return next((t for t, line in self.lines if needle in line), None)

    async def wait_for(self, needle: str, timeout: float = BOUND) -> float:
        """Wait until a line contains ``needle``; return when it arrived."""
        with trio.move_on_after(timeout):
            while (t := self.find(needle)) is None:
                if self.eof:
                    break
                await self._changed.wait()
        if (t := self.find(needle)) is None:
            raise AssertionError(f"{needle!r} not on the console; got:\n{self.text()}")
        return t

    async def wait_eof(self, timeout: float = BOUND) -> None:
        with trio.fail_after(timeout):
            while not self.eof:
                await self._changed.wait()


@dataclass
class RunningVm:
    process: process.VmProcess
    console: Console
    spawned: float  # monotonic, just before the spawn


@asynccontextmanager
async def run_vm(workdir: Path, argv: Sequence[str]) -> AsyncIterator[RunningVm]:
    """Start ``argv`` with a fresh console FIFO; always kill and reap it at the end."""
    fifo = workdir / f"console-{time.monotonic_ns()}.fifo"
    os.mkfifo(fifo, 0o600)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        async with trio.open_nursery() as nursery:
            spawned = time.monotonic()
            try:
                vm = await process.spawn(argv, fifo)
            except BaseException:
                os.close(rfd)
                raise
            console = Console(rfd)
            nursery.start_soon(console.run)
            try:
                yield RunningVm(vm, console, spawned)
            finally:
                with trio.CancelScope(shield=True):
                    if vm.running:
                        vm.send_signal(signal.SIGKILL)
                        with trio.move_on_after(BOUND):
                            await vm.wait()
                    with trio.move_on_after(2):
                        await console.wait_eof()
                nursery.cancel_scope.cancel()
    finally:
        fifo.unlink(missing_ok=True)


__all__ = ["BOUND", "QEMU", "Console", "RunningVm", "run_vm", "system_skip_reason"]
