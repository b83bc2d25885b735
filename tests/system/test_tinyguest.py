"""Real VMs under QEMU/KVM: our tiny multiboot guest on microvm and on pc+qboot.

Each VM is a direct child, its console a FIFO we read, and it is killed and
reaped in a finally block whatever happens.  Skipped (with the reason) on
machines without root, QEMU or /dev/kvm; CI turns such skips into failures
(tests/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from albatross_py.host.files import Layout
from albatross_py.virt import guest, qmp
from albatross_py.virt.qemu import (
    QemuBackend,
    QemuDisk,
    QemuNet,
    QemuOptions,
    QemuVm,
    command_line,
    find_qboot,
    guest_exit_code,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import BlockDevice, Typ, UnikernelConfig
from tests.system.tinyguest_harness import BOUND, run_vm, system_skip_reason

pytestmark = pytest.mark.system
_skip = system_skip_reason()
if _skip is not None:
    pytest.skip(_skip, allow_module_level=True)

MACHINES = ["microvm", "pc"]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return guest.build(cache_dir=tmp_path_factory.mktemp("guest-cache"))
    except guest.GuestBuildError as e:
        pytest.fail(f"tinyguest does not build: {e}")


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Short paths: the QMP socket must fit in sun_path's 108 bytes.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tg-") as d:
        yield Path(d)


def options(machine: str) -> QemuOptions:
    qboot = find_qboot()
    if machine == "pc" and qboot is None:
        pytest.skip("qboot.rom not installed")
    # "auto" (-accel kvm -accel tcg), as the daemon runs it; tests that talk
    # QMP check that KVM, not the TCG fallback, was taken.
    return QemuOptions(accel="auto", machine=machine, qboot=qboot)  # type: ignore[arg-type]


def tiny_vm(workdir: Path, kernel: Path, append: str, **kw: object) -> QemuVm:
    return QemuVm(
        name="test:tiny",
        memory=16,
        qmp_socket=workdir / "qmp.sock",
        kernel=kernel,
        append=append,
        **kw,  # type: ignore[arg-type]
    )


def test_build_is_cached_and_rebuilt_on_change(tmp_path: Path) -> None:
    first = guest.build(cache_dir=tmp_path)
    assert guest.build(cache_dir=tmp_path) == first
    changed = tmp_path / "tinyguest.S"
    changed.write_bytes(guest.source_path().read_bytes() + b"\n# changed\n")
    second = guest.build(cache_dir=tmp_path, source=changed)
    assert second != first and second.read_bytes()[:4] == b"\x7fELF"
    assert not first.exists()  # older builds are pruned
    assert guest.build(cache_dir=tmp_path) == first


@pytest.mark.parametrize("machine", MACHINES)
async def test_banner_lines_and_poweroff(machine: str, kernel: Path, workdir: Path) -> None:
    argv = command_line(tiny_vm(workdir, kernel, "lines=4 interval=20"), options(machine))
    async with run_vm(workdir, argv) as vm:
        await vm.console.wait_for(f"tinyguest: booted machine={machine} ")
        assert vm.console.find("cmdline=lines=4 interval=20") is not None
        times = [await vm.console.wait_for(f"tinyguest: line {i}") for i in range(1, 5)]
        assert times == sorted(times)
        with trio.fail_after(BOUND):
            status, _ = await vm.process.wait()
    assert vm.console.find("tinyguest: poweroff") is not None
    assert status.code == 0 and guest_exit_code(status.code) == 0


@pytest.mark.parametrize("machine", MACHINES)
async def test_exit_code_is_mapped_back(machine: str, kernel: Path, workdir: Path) -> None:
    argv = command_line(tiny_vm(workdir, kernel, "exit=7"), options(machine))
    async with run_vm(workdir, argv) as vm:
        with trio.fail_after(BOUND):
            status, _ = await vm.process.wait()
    assert vm.console.find("tinyguest: exit 7") is not None
    assert status.code == (7 << 1) | 1
    assert guest_exit_code(status.code) == 7


@pytest.mark.parametrize("action", ["run", "busy", "halt"])
@pytest.mark.parametrize("machine", MACHINES)
async def test_sigterm_stops_the_vm(machine: str, action: str, kernel: Path, workdir: Path) -> None:
    argv = command_line(tiny_vm(workdir, kernel, action), options(machine))
    async with run_vm(workdir, argv) as vm:
        await vm.console.wait_for(f"tinyguest: {'running' if action == 'run' else action}")
        with trio.fail_after(BOUND):
            status, _ = await vm.process.stop(grace=BOUND)
    # QEMU exits 0 on SIGTERM ("terminating on signal 15").
    assert status.code == 0, status
    assert vm.console.find("terminating on signal 15") is not None


@pytest.mark.parametrize("machine", MACHINES)
async def test_qmp_powerdown_stops_a_running_guest(
    machine: str, kernel: Path, workdir: Path
) -> None:
    vmcfg = tiny_vm(workdir, kernel, "run")
    async with run_vm(workdir, command_line(vmcfg, options(machine))) as vm:
        await vm.console.wait_for("tinyguest: running")
        async with qmp.open_qmp(vmcfg.qmp_socket) as q:
            assert await q.query_status() == "running"
            assert (await q.execute("query-kvm")) == {"enabled": True, "present": True}
            await q.system_powerdown()
            event = await q.wait_event("SHUTDOWN", timeout=BOUND)
        assert event["data"]["guest"] is True
        with trio.fail_after(BOUND):
            status, _ = await vm.process.wait()
    assert vm.console.find("tinyguest: power button") is not None
    assert status.code == 0


@pytest.mark.parametrize("variant", ["crash", "crash=1"])
@pytest.mark.parametrize("machine", MACHINES)
async def test_crash_leaves_qemu_paused_with_internal_error(
    machine: str, variant: str, kernel: Path, workdir: Path
) -> None:
    vmcfg = tiny_vm(workdir, kernel, variant)
    async with run_vm(workdir, command_line(vmcfg, options(machine))) as vm:
        await vm.console.wait_for("tinyguest: crash")
        async with qmp.open_qmp(vmcfg.qmp_socket) as q:
            with trio.fail_after(BOUND):
                while (state := await q.query_status()) == "running":
                    await trio.sleep(0.01)
            assert state == "internal-error"
            assert vm.process.running  # QEMU stays alive: the supervisor must notice
            stats = await q.query_stats()
        # QEMU's own report reaches the console, as a tender's stderr does.
        await vm.console.wait_for("emulation failure")
        assert any(s.provider == "kvm" and s.values for s in stats)
        with trio.fail_after(BOUND):
            status, _ = await vm.process.stop(grace=BOUND)
        assert status.code == 0


async def test_backend_end_to_end_exit_code(kernel: Path, tmp_path: Path) -> None:
    """prepare -> image file -> command line (with taskset) -> start -> exit code."""
    layout = Layout(tmpdir=tmp_path / "t", dbdir=tmp_path / "d")
    layout.tmpdir.mkdir()
    layout.dbdir.mkdir()
    backend = QemuBackend(layout, QemuOptions.for_host(accel="kvm"))
    name = Name.of_string("ten:vm1")
    config = UnikernelConfig(
        typ=Typ.QEMU, image=kernel.read_bytes(), memory=16, argv=("lines=2", "exit=42")
    )
    prepared = backend.prepare(name, config)
    assert prepared.image is not None
    layout.image_file(name).write_bytes(prepared.image)
    argv = backend.command_line(prepared, [])
    assert argv[:3] == ["taskset", "-c", "0"]
    async with run_vm(tmp_path, argv) as vm:
        await vm.console.wait_for("tinyguest: booted machine=microvm")
        with trio.fail_after(BOUND):
            status, _ = await vm.process.wait()
    assert guest_exit_code(status.code) == 42
    assert vm.console.find("tinyguest: line 2") is not None
    backend.cleanup(prepared)
    assert not prepared.qmp_socket.exists()


@pytest.fixture
def netns() -> Iterator[str]:
    """A private network namespace with one tap; nothing leaves it."""
    ns = f"albtg{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(
            ["ip", "-n", ns, "tuntap", "add", "dev", "tgtap0", "mode", "tap"], check=True
        )
        subprocess.run(["ip", "-n", ns, "link", "set", "tgtap0", "up"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "-n", ns, "tuntap", "del", "dev", "tgtap0", "mode", "tap"])
        subprocess.run(["ip", "netns", "del", ns])


@pytest.mark.parametrize("machine", MACHINES)
async def test_virtio_net_and_blk_devices(
    machine: str, kernel: Path, workdir: Path, netns: str
) -> None:
    """A tap (in a namespace of ours) and a block file are accepted and show up."""
    disk = workdir / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    vmcfg = tiny_vm(
        workdir,
        kernel,
        "run",
        nets=(QemuNet("tgtap0", b"\x00\x80\x41\x00\x00\x01"),),
        disks=(QemuDisk(disk, 4096),),
    )
    argv = ["ip", "netns", "exec", netns, *command_line(vmcfg, options(machine))]
    async with run_vm(workdir, argv) as vm:
        await vm.console.wait_for(f"tinyguest: booted machine={machine}")
        async with qmp.open_qmp(vmcfg.qmp_socket) as q:
            blocks = await q.execute("query-block")
            assert [b["inserted"]["file"] for b in blocks] == [str(disk)]
            if machine == "pc":
                devices = [d for bus in await q.execute("query-pci") for d in bus["devices"]]
                ids = {(d["id"]["vendor"], d["id"]["device"]) for d in devices}
                assert {(0x1AF4, 0x1000), (0x1AF4, 0x1001)} <= ids  # virtio net, blk
            else:
                tree = await q.execute("qom-list", {"path": "/machine/peripheral-anon"})
                assert len([p for p in tree if p["type"].startswith("child<")]) >= 3
            await q.system_powerdown()
        with trio.fail_after(BOUND):
            status, _ = await vm.process.wait()
    assert status.code == 0


# A 512-byte MBR: print "bootsector: hello" on COM1, exit 5 through isa-debug-exit.
# cli; xor ax,ax; mov ds,ax; mov si,0x7c1a; 1: lodsb; test al,al; jz 2f;
# mov dx,0x3f8; out dx,al; jmp 1b; 2: mov al,5; out 0xf4,al; 3: hlt; jmp 3b
_BOOT_CODE = bytes.fromhex("fa31c08ed8be1a7cac84c07406baf803eeebf5b005e6f4f4ebfd")
BOOT_SECTOR = (_BOOT_CODE + b"bootsector: hello\n\0").ljust(510, b"\0") + b"\x55\xaa"


@pytest.mark.slow
async def test_disk_boot_through_seabios(tmp_path: Path) -> None:
    layout = Layout(tmpdir=tmp_path / "t", dbdir=tmp_path / "d")
    (layout.dbdir / "block").mkdir(parents=True)
    layout.tmpdir.mkdir()
    name = Name.of_string("ten:diskvm")
    layout.block_file(Name.of_string("ten:boot")).write_bytes(BOOT_SECTOR.ljust(1 << 20, b"\0"))
    backend = QemuBackend(layout, QemuOptions.for_host(accel="kvm"), pin=False)
    config = UnikernelConfig(typ=Typ.QEMU, image=b"", memory=16, blocks=(BlockDevice("0", "boot"),))
    argv = backend.command_line(backend.prepare(name, config), [])
    assert "-kernel" not in argv and "-bios" not in argv
    async with run_vm(tmp_path, argv) as vm:
        await vm.console.wait_for("bootsector: hello")
        with trio.fail_after(BOUND):
            status, _ = await vm.process.wait()
    assert guest_exit_code(status.code) == 5
