"""The qemu backend's command lines, byte for byte (pure: no QEMU needed)."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from albatross_py.host.files import Layout
from albatross_py.virt import qemu
from albatross_py.virt.qemu import (
    QemuBackend,
    QemuConfigError,
    QemuDisk,
    QemuNet,
    QemuOptions,
    QemuVm,
    command_line,
    guest_exit_code,
)
from albatross_py.virt.solo5 import derive_mac
from albatross_py.wire.names import Name
from albatross_py.wire.types import BlockDevice, NetDevice, Typ, UnikernelConfig

QBOOT = Path("/usr/share/qemu/qboot.rom")
LAYOUT = Layout(tmpdir=Path("/run/albatross"), dbdir=Path("/var/db/albatross"))
NAME = Name.of_string("tenant:web")
# "true" stands in for QEMU: prepare() only checks that the binary exists.
OPTIONS = QemuOptions(binary="true", qboot=QBOOT)

HEAD = ["-no-user-config", "-nodefaults", "-nographic", "-no-reboot"]
CONSOLE = ["-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console"]
DEBUG_EXIT = ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
KVM_TCG = ["-accel", "kvm", "-accel", "tcg"]


def test_tiny_kernel_gets_microvm() -> None:
    vm = QemuVm(
        name="tenant:tiny",
        memory=32,
        qmp_socket=Path("/run/albatross/tenant:tiny.qmp"),
        kernel=Path("/run/albatross/tenant:tiny.img"),
        append="lines=3 interval=10",
    )
    assert command_line(vm, QemuOptions(qboot=QBOOT)) == [
        "qemu-system-x86_64", "-name", "guest=tenant:tiny", *HEAD,
        "-machine", "microvm", *KVM_TCG,
        "-cpu", "qemu64", "-m", "32", "-smp", "1", *CONSOLE, *DEBUG_EXIT,
        "-qmp", "unix:/run/albatross/tenant:tiny.qmp,server=on,wait=off",
        "-kernel", "/run/albatross/tenant:tiny.img", "-append", "lines=3 interval=10",
    ]  # fmt: skip


def test_linux_with_initrd_disk_and_networks_gets_pc_with_qboot() -> None:
    config = UnikernelConfig(
        typ=Typ.QEMU,
        image=b"\x7fELF kernel",
        cpuids=frozenset({3, 1}),
        memory=512,
        cpus=2,
        argv=("console=ttyS0", "root=/dev/vda", "quiet"),
        blocks=(
            BlockDevice("initrd", "web-initrd"),
            BlockDevice("root", "web-root", sector_size=4096),
        ),
        bridges=(
            NetDevice("service", "br0"),
            NetDevice("mgmt", "br1", b"\x02\x00\x00\x00\x00\x01"),
        ),
    )
    backend = QemuBackend(LAYOUT, OPTIONS)
    prepared = backend.prepare(NAME, config)
    mac0 = ":".join(f"{b:02x}" for b in derive_mac("service", NAME))
    assert backend.command_line(prepared, ["vmmtap0", "vmmtap7"]) == [
        "taskset", "-c", "1,3",
        "true", "-name", "guest=tenant:web", *HEAD,
        "-machine", "pc", "-bios", "/usr/share/qemu/qboot.rom", *KVM_TCG,
        "-cpu", "qemu64", "-m", "512", "-smp", "2", *CONSOLE, *DEBUG_EXIT,
        "-qmp", "unix:/run/albatross/tenant:web.qmp,server=on,wait=off",
        "-kernel", "/run/albatross/tenant:web.img",
        "-initrd", "/var/db/albatross/block/tenant:web-initrd",
        "-append", "console=ttyS0 root=/dev/vda quiet",
        "-netdev", "tap,id=net0,ifname=vmmtap0,script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=net0,mac={mac0}",
        "-netdev", "tap,id=net1,ifname=vmmtap7,script=no,downscript=no",
        "-device", "virtio-net-pci,netdev=net1,mac=02:00:00:00:00:01",
        "-drive", "file=/var/db/albatross/block/tenant:web-root,if=none,format=raw,id=blk0",
        "-device",
        "virtio-blk-pci,drive=blk0,logical_block_size=4096,physical_block_size=4096",
    ]  # fmt: skip
    assert mac0.startswith("00:80:41:")
    infos = backend.bridge_infos(prepared, ["vmmtap0", "vmmtap7"])
    assert [(i.unikernel_device, i.host_device) for i in infos] == [
        ("service", "br0"),
        ("mgmt", "br1"),
    ]
    assert infos[0].mac == derive_mac("service", NAME)
    assert prepared.host_bridges == ("br0", "br1")
    assert prepared.image == b"\x7fELF kernel"


def test_disk_boot_gets_pc_with_seabios_and_bootindex() -> None:
    config = UnikernelConfig(
        typ=Typ.QEMU, image=b"", memory=256, blocks=(BlockDevice("disk", "vm-disk"),)
    )
    backend = QemuBackend(LAYOUT, QemuOptions(binary="true", qboot=QBOOT, accel="kvm"), pin=False)
    prepared = backend.prepare(NAME, config)
    assert prepared.image is None
    assert backend.command_line(prepared, []) == [
        "true", "-name", "guest=tenant:web", *HEAD,
        "-machine", "pc", "-accel", "kvm",
        "-cpu", "qemu64", "-m", "256", "-smp", "1", *CONSOLE, *DEBUG_EXIT,
        "-qmp", "unix:/run/albatross/tenant:web.qmp,server=on,wait=off",
        "-drive", "file=/var/db/albatross/block/tenant:vm-disk,if=none,format=raw,id=blk0",
        "-device", "virtio-blk-pci,drive=blk0,bootindex=0",
    ]  # fmt: skip


def test_forced_microvm_uses_virtio_mmio_and_options_apply() -> None:
    vm = QemuVm(
        name="a:b",
        memory=64,
        qmp_socket=Path("/run/q,x.qmp".replace(",", "")),
        kernel=Path("/k"),
        nets=(QemuNet("tap1", b"\x00\x80\x41\x01\x02\x03"),),
        disks=(QemuDisk(Path("/dir,with,commas/b")),),
    )
    options = QemuOptions(
        binary="/opt/qemu/bin/qemu-system-x86_64",
        accel="tcg",
        machine="microvm",
        cpu_model="Skylake-Server",
        debug_exit=False,
    )
    assert command_line(vm, options) == [
        "/opt/qemu/bin/qemu-system-x86_64", "-name", "guest=a:b", *HEAD,
        "-machine", "microvm", "-accel", "tcg",
        "-cpu", "Skylake-Server", "-m", "64", "-smp", "1", *CONSOLE,
        "-qmp", "unix:/run/qx.qmp,server=on,wait=off",
        "-kernel", "/k",
        "-netdev", "tap,id=net0,ifname=tap1,script=no,downscript=no",
        "-device", "virtio-net-device,netdev=net0,mac=00:80:41:01:02:03",
        "-drive", "file=/dir,,with,,commas/b,if=none,format=raw,id=blk0",
        "-device", "virtio-blk-device,drive=blk0",
    ]  # fmt: skip


def test_kernel_on_pc_without_qboot_uses_default_firmware() -> None:
    vm = QemuVm(
        name="x:y",
        memory=64,
        qmp_socket=Path("/q"),
        kernel=Path("/k"),
        nets=(QemuNet("t", bytes(6)),),
    )
    argv = command_line(vm, QemuOptions(qboot=None))
    assert "-bios" not in argv
    assert argv[argv.index("-machine") + 1] == "pc"
    assert "-append" not in argv


@pytest.mark.parametrize(
    ("status", "code"),
    [(0, 0), (1, 1), (2, 2), (3, 1), (15, 7), (255, 127), (199, 99), (4, 4)],
)
def test_guest_exit_code(status: int, code: int) -> None:
    assert guest_exit_code(status) == code
    assert QemuBackend(LAYOUT, OPTIONS).guest_exit_code(status) == code
    no_debug_exit = QemuOptions(binary="true", debug_exit=False)
    assert QemuBackend(LAYOUT, no_debug_exit).guest_exit_code(status) == status


def test_compressed_image_and_digest() -> None:
    import hashlib

    kernel = b"\x7fELF" + bytes(1000)
    config = UnikernelConfig(typ=Typ.QEMU, compressed=True, image=zlib.compress(kernel))
    prepared = QemuBackend(LAYOUT, OPTIONS).prepare(NAME, config)
    assert prepared.image == kernel
    assert prepared.digest == hashlib.sha256(kernel).digest()


def test_qmp_socket_falls_back_to_a_digest_name_when_too_long() -> None:
    long_name = Name.of_string(":".join(["x" * 60] * 3) + ":vm")
    path = qemu.qmp_socket_path(LAYOUT, long_name)
    assert path.parent == LAYOUT.tmpdir
    assert path.name.startswith("qmp-") and path.suffix == ".sock"
    assert len(str(path)) <= 107
    assert qemu.qmp_socket_path(LAYOUT, NAME) == Path("/run/albatross/tenant:web.qmp")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (UnikernelConfig(typ=Typ.SOLO5, image=b"k"), "cannot run typ solo5"),
        (UnikernelConfig(typ=Typ.QEMU, image=b""), "nothing to boot"),
        (
            UnikernelConfig(typ=Typ.QEMU, image=b"k", linux_boot_partition="1"),
            "linux_boot_partition",
        ),
        (
            UnikernelConfig(typ=Typ.QEMU, image=b"", blocks=(BlockDevice("initrd", "i"),)),
            "initrd block needs a kernel",
        ),
        (UnikernelConfig(typ=Typ.QEMU, image=b"k", cpus=0), "cpus must be at least 1"),
        (UnikernelConfig(typ=Typ.QEMU, image=b"k", memory=0), "memory must be at least 1"),
        (UnikernelConfig(typ=Typ.QEMU, image=b"k", cpuids=frozenset()), "no CPU ids"),
        (
            UnikernelConfig(
                typ=Typ.QEMU,
                image=b"k",
                blocks=tuple(BlockDevice(f"d{i}", f"b{i}") for i in range(25)),
            ),
            "at most 24",
        ),
        (UnikernelConfig(typ=Typ.QEMU, image=b"k", argv=("x" * 2048,)), "command line"),
        (
            UnikernelConfig(typ=Typ.QEMU, image=b"k", blocks=(BlockDevice("d", "-bad"),)),
            "invalid block device name",
        ),
    ],
)
def test_prepare_rejects(config: UnikernelConfig, message: str) -> None:
    with pytest.raises(qemu.BackendError, match=message):
        QemuBackend(LAYOUT, OPTIONS).prepare(NAME, config)


def test_prepare_rejects_a_path_and_a_missing_binary() -> None:
    config = UnikernelConfig(typ=Typ.QEMU, image=b"k")
    with pytest.raises(qemu.BackendError, match="is a path"):
        QemuBackend(LAYOUT, OPTIONS).prepare(Name.of_string("tenant:"), config)
    missing = QemuOptions(binary="/nonexistent/qemu-system-x86_64")
    with pytest.raises(qemu.BackendError, match="not found"):
        QemuBackend(LAYOUT, missing).prepare(NAME, config)


def test_command_line_rejects_bad_taps_and_paths() -> None:
    config = UnikernelConfig(typ=Typ.QEMU, image=b"k", bridges=(NetDevice("n", "br0"),))
    backend = QemuBackend(LAYOUT, OPTIONS)
    prepared = backend.prepare(NAME, config)
    with pytest.raises(QemuConfigError, match="1 taps needed, 0 given"):
        backend.command_line(prepared, [])
    for tap in ("a,b", "x" * 16, "", "tap 0"):
        with pytest.raises(QemuConfigError, match="invalid tap name"):
            backend.command_line(prepared, [tap])
    rel = QemuVm(name="n", memory=8, qmp_socket=Path("/q"), disks=(QemuDisk(Path("a:b:c")),))
    with pytest.raises(QemuConfigError, match="not absolute"):
        command_line(rel)
    with pytest.raises(QemuConfigError, match="no firmware disk boot"):
        command_line(rel, QemuOptions(machine="microvm"))
    bad_qmp = QemuVm(name="n", memory=8, qmp_socket=Path("/a,b"), kernel=Path("/k"))
    with pytest.raises(QemuConfigError, match="QMP socket"):
        command_line(bad_qmp)
    with pytest.raises(QemuConfigError, match="unknown accelerator"):
        command_line(
            QemuVm(name="n", memory=8, qmp_socket=Path("/q"), kernel=Path("/k")),
            QemuOptions(accel="xen"),  # type: ignore[arg-type]
        )


def test_pin_prefix_and_required_commands() -> None:
    assert qemu.pin_prefix(frozenset({2, 0, 10})) == ["taskset", "-c", "0,2,10"]
    assert QemuBackend(LAYOUT, OPTIONS).required_commands() == ("true", "taskset")
    assert QemuBackend(LAYOUT, OPTIONS, pin=False).required_commands() == ("true",)


def test_qemu_settings_in_argv() -> None:
    from albatross_py.virt.qemu import VmSettings, split_settings

    settings, rest = split_settings(["console=ttyS0", "qemu.accel=tcg", "qemu.shutdown=acpi", "x"])
    assert settings == VmSettings("tcg", "acpi") and rest == ["console=ttyS0", "x"]
    assert split_settings(["a"]) == (VmSettings(None, "signal"), ["a"])
    for bad in ("qemu.accel=xen", "qemu.shutdown", "qemu.mem=1", "qemu.accel"):
        with pytest.raises(QemuConfigError, match="unknown QEMU setting"):
            split_settings([bad])
    config = UnikernelConfig(typ=Typ.QEMU, image=b"k", argv=("qemu.accel=tcg", "run"))
    vm = qemu.vm_of_config(LAYOUT, NAME, config, [])
    assert vm.append == "run" and vm.accel == "tcg"
    argv = qemu.command_line(vm, QemuOptions(qboot=QBOOT, accel="auto"))
    assert argv[argv.index("-accel") : argv.index("-accel") + 3] == ["-accel", "tcg", "-cpu"]
    acpi = UnikernelConfig(typ=Typ.QEMU, image=b"k", argv=("qemu.shutdown=acpi",))
    only = qemu.vm_of_config(LAYOUT, NAME, acpi, [])
    assert only.append is None and only.shutdown == "acpi" and only.accel is None
