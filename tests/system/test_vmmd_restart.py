"""Restarting albatrossd loses and duplicates nothing, and leaves no tap behind.

albatrossd and albatross-console run as real processes; the VMs are the
stand-in solo5 tender (one with a tap on a real bridge).  After SIGTERM the
VMs are stopped and restored on the next start; after ``kill -9`` they keep
running as orphans, and the next albatrossd stops them, removes their taps and
restores them from the state file: exactly one process per VM either way.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from albatross_py.host import net
from albatross_py.wire import read_state
from albatross_py.wire.messages import ReplyString, UnikernelCreate
from albatross_py.wire.names import Name
from albatross_py.wire.types import NetDevice, UnikernelConfig
from tests.integration.stack import install_standin, write_image
from tests.sync_client import call

pytestmark = pytest.mark.system
if os.geteuid() != 0:
    pytest.skip("needs root (taps and bridges)", allow_module_level=True)


@pytest.fixture
def bridge() -> Iterator[str]:
    name = f"albr{secrets.token_hex(3)}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


class Daemons:
    def __init__(self, tmp: Path) -> None:
        self.tmpdir, self.dbdir, self.bindir = tmp / "t", tmp / "d", tmp / "bin"
        self.bindir.mkdir()
        install_standin(self.bindir)
        self.console = self._spawn("albatross_py.daemons.console", "--tmpdir", str(self.tmpdir))
        self._wait_socket("console.sock")
        self.vmmd: subprocess.Popen[bytes] | None = None

    def _spawn(self, module: str, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", module, *args])

    def _wait_socket(self, sock: str, timeout: float = 20) -> None:
        path = self.tmpdir / "util" / sock
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert time.monotonic() < deadline, f"{path} did not appear"
            time.sleep(0.05)

    def start_vmmd(self) -> None:
        (self.tmpdir / "util" / "vmmd.sock").unlink(missing_ok=True)
        self.vmmd = self._spawn(
            "albatross_py.daemons.vmmd", "--tmpdir", str(self.tmpdir), "--dbdir",
            str(self.dbdir), "--tender-path", str(self.bindir), "--stop-timeout", "2",
        )  # fmt: skip
        self._wait_socket("vmmd.sock")

    def stop_vmmd(self, sig: int) -> int:
        assert self.vmmd is not None
        self.vmmd.send_signal(sig)
        code = self.vmmd.wait(timeout=30)
        self.vmmd = None
        return code

    def vm_pids(self) -> dict[str, list[int]]:
        """VM processes by name, found by their image path on the command line."""
        found: dict[str, list[int]] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            for arg in argv:
                text = arg.decode(errors="replace")
                if text.startswith(f"{self.tmpdir}/") and text.endswith(".img"):
                    found.setdefault(text[len(str(self.tmpdir)) + 1 : -4], []).append(
                        int(proc.name)
                    )
        return found

    def close(self) -> None:
        for pids in self.vm_pids().values():  # whatever a failed test left running
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for p in (self.vmmd, self.console):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    d = Daemons(tmp_path)
    try:
        yield d
    finally:
        d.close()


def wait_until(predicate, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def taps_on(bridge: str) -> set[str]:
    """Taps attached to this test's bridge (other tests may have taps of their own)."""
    return {t for t in net.stale_taps_sync() if net.tap_master_sync(t) == bridge}


def create_two(d: Daemons, bridge: str) -> None:
    image = write_image(d.bindir / "plain.elf").read_bytes()
    netimage = write_image(d.bindir / "net.elf", nets=("service",)).read_bytes()
    sock = d.tmpdir / "util" / "vmmd.sock"
    for name, cfg in (
        ("a:one", UnikernelConfig(image=image)),
        ("b:two", UnikernelConfig(image=netimage, bridges=(NetDevice("service", bridge),))),
    ):
        assert call(sock, Name.of_string(name), UnikernelCreate(cfg)) == ReplyString(
            "created unikernel"
        )


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_restart_keeps_every_vm_once(daemons: Daemons, bridge: str, how: str) -> None:
    daemons.start_vmmd()
    create_two(daemons, bridge)
    wait_until(lambda: sorted(daemons.vm_pids()) == ["a:one", "b:two"])
    old = daemons.vm_pids()
    assert len(taps_on(bridge)) == 1

    code = daemons.stop_vmmd(getattr(signal, how))
    if how == "SIGTERM":
        assert code == 0
        wait_until(lambda: daemons.vm_pids() == {})  # stopped, taps freed, not forgotten
        assert taps_on(bridge) == set()
    else:
        assert daemons.vm_pids() == old  # orphans keep running
    state = read_state((daemons.dbdir / "state").read_bytes())
    assert sorted(str(n) for n, _ in state.unikernels) == ["a:one", "b:two"]

    daemons.start_vmmd()
    wait_until(lambda: sorted(daemons.vm_pids()) == ["a:one", "b:two"])
    time.sleep(0.5)  # anything duplicated would show up now
    new = daemons.vm_pids()
    assert all(len(pids) == 1 for pids in new.values()), new
    assert not {p for ps in old.values() for p in ps} & {p for ps in new.values() for p in ps}
    assert len(taps_on(bridge)) == 1  # one tap: the old one was removed, not leaked

    daemons.stop_vmmd(signal.SIGTERM)
    wait_until(lambda: daemons.vm_pids() == {})
    assert taps_on(bridge) == set()
