"""The qemu backend: Linux (or any x86 kernel) VMs under QEMU with KVM.

``typ = qemu`` is our CHOICE tag [2]; albatross has no such backend, so this
module defines how a :class:`UnikernelConfig` maps onto QEMU, keeping
albatross's conventions wherever they carry over:

* **Boot.**  A non-empty image is a kernel booted directly (``-kernel
  <tmpdir>/<name>.img``, the file albatross writes for solo5 too; Linux
  bzImage, PVH vmlinux or multiboot) with ``argv`` joined by spaces as
  ``-append``.  An empty image (as albatross allows for BHyve) boots the
  first block device through the firmware's disk boot.
* **Name.**  ``add_name``'s ``--name=<label>`` is a Solo5/MirageOS argument
  with no place on a kernel command line, so it is not added; QEMU gets the
  name as ``-name guest=<name>`` (seen in QMP and ``ps``).
* **initramfs.**  A block device whose unikernel-side name is ``initrd``
  (``--block initrd:<block-label>``) is passed as ``-initrd`` instead of
  being attached as a disk, so an initramfs is uploaded and stored like any
  albatross block device.  Only with a kernel image.
* **Console.**  As for every albatross VM the console FIFO is the process's
  stdin, stdout and stderr (spec 5.7), and the serial port is a ``stdio``
  chardev: QEMU then needs no path of ours, and its own diagnostics (the
  register dump of a KVM internal error, warnings) reach the console log in
  order with the guest's output, as a solo5 tender's do.  ``signal=off``:
  stdin is never a terminal, nothing must turn bytes into signals.
* **Networks** get virtio-net on our taps (one ``-netdev tap`` per device, no
  helper scripts), with albatross's MAC (explicit, else ``00:80:41`` +
  MD5-derived, spec 5.7); **blocks** get virtio-blk on
  ``<dbdir>/block/<name>``, raw, with the sector size if one is given.
* **Control.**  A QMP socket next to the image (``<tmpdir>/<name>.qmp``):
  the supervisor asks it whether the VM is still running, because a KVM
  emulation failure leaves QEMU alive with the VM paused (HOST-FACTS).
* **Accelerator.**  ``kvm``, ``tcg`` or ``auto`` per VM (argv word
  ``qemu.accel=``) or per host (albatrossd's ``--qemu-accel``, default
  ``auto``).  QEMU's own fallback (``-accel kvm -accel tcg``) only covers a
  KVM that cannot be opened; a nested KVM that opens but cannot run the
  guest (HOST-FACTS: a Debian kernel spins for minutes without one console
  line) needs a judgement, made at start-up: once QMP answers and
  ``query-kvm`` says KVM is in use, the create waits until the vCPUs have
  made :data:`PROGRESS_EXITS` device exits (port I/O, MMIO or HLT, from
  ``query-stats``; any booting kernel or firmware makes hundreds within
  milliseconds: the serial port, the timer, idling).  None within
  :data:`PROGRESS_WINDOW`: under ``auto`` the VM is started once more under
  TCG (the create's reply waits; albatrossd's log says so, and later starts
  of the same image and arguments go straight to TCG); under ``kvm`` the create
  fails and says to use ``tcg`` or ``auto``.  The judgement is made only at
  start: a guest later busy with computation and no I/O is healthy.  A VM
  that KVM paused with an internal error is left to the watchdog below.
* **Settings.**  argv words ``qemu.accel=kvm|tcg|auto`` (this VM's
  accelerator; default albatrossd's ``--qemu-accel``) and
  ``qemu.shutdown=signal|acpi`` are taken out of the kernel command line.
  ``signal`` (the default): a destroy sends SIGTERM, as albatross does to
  its tenders, and QEMU exits at once; ``acpi``: the ACPI power button first
  and half the stop grace for the guest to power off cleanly.
* **Exit status.**  Every VM gets isa-debug-exit at port 0xf4: a guest that
  writes N there makes QEMU exit with ``(N << 1) | 1``, which
  :func:`guest_exit_code` maps back to N, so test guests (ours:
  ``guest/tinyguest.S``) can report albatross exit codes.  QEMU itself exits
  0 on a guest power-off (and on SIGTERM) and 1 on its own errors; both map
  to themselves, so the mapping is safe for guests that never touch 0xf4.
* **CPUs.**  ``cpus`` vCPUs (``-smp``); ``cpuids`` pin the QEMU process
  with ``taskset -c``, as albatross pins tenders.  The CPU model is a named,
  migration-safe one (``qemu64`` here), never ``host``: ``-cpu host`` aborts
  on nested KVM hosts (``failed to set MSR 0x10a``) and would tie a VM to
  one CPU family.  albatrossd switches off what the host lacks
  (``qemu64,-pni`` on these nested hosts), so QEMU prints no warning on the
  console: :mod:`albatross_py.virt.qemu_host` probes and caches it.

Machine type (``machine="auto"``): ``microvm`` when the VM boots a kernel and
has no devices, since it starts in ~65 ms against ~145 ms for ``pc`` with
qboot and ~2.5-4 s with SeaBIOS; ``pc`` with qboot as soon as there is a
network or block device, because virtio over PCI is found by every guest
without command-line hints (microvm's virtio-mmio needs
``virtio_mmio.device=`` parameters, which only Linux understands) and qboot
still boots in ~145 ms; ``pc`` with QEMU's default SeaBIOS for disk boot,
because qboot can only boot a kernel handed over by QEMU (measured: it hangs
on a bootable virtio disk).  ``machine="microvm"`` forces microvm, with
virtio-mmio devices.

The pure part (:class:`QemuVm`, :class:`QemuOptions`, :func:`command_line`,
:func:`vm_of_config`) does no I/O; :class:`QemuBackend` adds the checks and
plugs it into :mod:`albatross_py.virt.base`.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import trio

from albatross_py.core.restart import ExitStatus
from albatross_py.host.files import Layout
from albatross_py.host.process import VmProcess
from albatross_py.virt.base import DEFAULT_STOP_GRACE, Backend, BackendError, Prepared, Relaunch
from albatross_py.virt.qmp import QmpClient, QmpCommandError, QmpError, StatsResult, open_qmp
from albatross_py.virt.solo5 import derive_mac, format_mac, uncompressed_image
from albatross_py.wire.names import Name, NameError_
from albatross_py.wire.types import BridgeInfo, Rusage, Typ, UnikernelConfig

#: How often the supervisor asks QMP whether a VM still runs.
WATCH_INTERVAL = 1.0
#: QMP run states in which the guest no longer runs while QEMU is alive.
FAILED_RUN_STATES = frozenset({"internal-error", "guest-panicked", "io-error"})
#: Bound on QEMU's start-up (command line, kernel, devices) before a create replies.
READY_TIMEOUT = 5.0
#: How long a QEMU whose QMP closed unanswered gets to exit before the create is called good.
EXIT_SETTLE = 1.0
#: Bound on reaching QMP for a power-down before falling back to signals.
POWERDOWN_QMP_TIMEOUT = 2.0
#: Device exits (I/O, MMIO, HLT) the vCPUs must make under KVM at start-up ...
PROGRESS_EXITS = 16
#: ... within this many seconds of QMP answering (see the module comment).
PROGRESS_WINDOW = 3.0
#: How often the start-up probe reads the counters.
PROGRESS_POLL = 0.05
#: ``query-stats`` vCPU counters that mean the guest touched a device or idled.
DEVICE_EXIT_STATS = ("io_exits", "mmio_exits", "halt_exits")

Accel = Literal["kvm", "tcg", "auto"]
Shutdown = Literal["signal", "acpi"]
ACCELS: tuple[Accel, ...] = ("kvm", "tcg", "auto")
SHUTDOWNS: tuple[Shutdown, ...] = ("signal", "acpi")
#: argv words with this prefix are settings for QEMU, not kernel arguments.
SETTING_PREFIX = "qemu."
MachineChoice = Literal["auto", "microvm", "pc"]

QEMU_BINARY = "qemu-system-x86_64"
#: QEMU's own default x86-64 model; see the module comment for why not ``host``.
DEFAULT_CPU_MODEL = "qemu64"
#: Where Debian (and most distributions) install qboot.
QBOOT_PATHS = (Path("/usr/share/qemu/qboot.rom"), Path("/usr/share/qboot/bios.bin"))
#: isa-debug-exit's port: the one QEMU's own tests and most test kernels use.
DEBUG_EXIT_IOBASE = 0xF4
#: The unikernel-side block name that means "this is the initramfs".
INITRD_BLOCK = "initrd"
#: Devices per VM: microvm has 24 virtio-mmio transports; ``pc`` has 32 PCI
#: slots of which the host bridge and PIIX3 take two.  One bound for both.
MAX_DEVICES = 24
#: ``sun_path`` holds 108 bytes including the terminating NUL.
MAX_UNIX_PATH = 107
#: Linux's x86 boot protocol limit for the kernel command line (2048 on
#: older kernels); QEMU rejects longer ones for bzImages anyway.
MAX_APPEND = 2048

_TAP_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}\Z")


class QemuConfigError(BackendError):
    """A config the qemu backend cannot run; the message is for the client."""


# -- exit status ------------------------------------------------------------------


def guest_exit_code(status: int) -> int:
    """Map QEMU's exit status back to the guest's code (see the module comment).

    0 (power-off, SIGTERM) and 1 (QEMU's own error) stay; an odd status of 3
    or more is ``(N << 1) | 1`` from isa-debug-exit and becomes N; anything
    else is passed through.
    """
    if status >= 3 and status & 1:
        return status >> 1
    return status


# -- the pure command line ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QemuNet:
    tap: str
    mac: bytes


@dataclass(frozen=True, slots=True)
class QemuDisk:
    path: Path
    sector_size: int | None = None


@dataclass(frozen=True, slots=True)
class QemuVm:
    """One VM with every name already resolved to a host path."""

    name: str
    memory: int  # MB
    qmp_socket: Path
    cpus: int = 1
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    nets: tuple[QemuNet, ...] = ()
    disks: tuple[QemuDisk, ...] = ()
    #: ``qemu.accel=`` from the VM's argv; None: the daemon's ``--qemu-accel``.
    accel: Accel | None = None
    #: ``qemu.shutdown=``: how a destroy ends the VM.
    shutdown: Shutdown = "signal"

    @property
    def disk_boot(self) -> bool:
        return self.kernel is None


@dataclass(frozen=True, slots=True)
class QemuOptions:
    """How this host runs QEMU (daemon-wide, not per VM)."""

    binary: str = QEMU_BINARY
    #: ``auto`` lists KVM first and TCG as QEMU's fallback when KVM is unusable.
    accel: Accel = "auto"
    machine: MachineChoice = "auto"
    cpu_model: str = DEFAULT_CPU_MODEL
    #: Firmware for kernel boot on ``pc``; None means QEMU's default (SeaBIOS).
    qboot: Path | None = QBOOT_PATHS[0]
    debug_exit: bool = True

    @classmethod
    def for_host(cls, **overrides: object) -> QemuOptions:
        """Defaults, with qboot wherever this host has it (SeaBIOS if it has none)."""
        overrides.setdefault("qboot", find_qboot())
        return cls(**overrides)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Machine:
    """The machine type chosen for a VM and how devices attach to it."""

    name: Literal["microvm", "pc"]
    bios: Path | None
    #: ``pci`` (virtio-net-pci) or ``device`` (virtio-mmio: virtio-net-device).
    virtio: Literal["pci", "device"]


def choose_machine(vm: QemuVm, options: QemuOptions) -> Machine:
    if options.machine == "microvm" or (
        options.machine == "auto" and not vm.disk_boot and not vm.nets and not vm.disks
    ):
        if vm.disk_boot:
            raise QemuConfigError("microvm has no firmware disk boot; give a kernel image")
        return Machine("microvm", None, "device")
    bios = None if vm.disk_boot else options.qboot
    return Machine("pc", bios, "pci")


def _opt(value: str | os.PathLike[str]) -> str:
    """A value inside a QEMU ``key=value,...`` option: commas are doubled."""
    return os.fspath(value).replace(",", ",,")


def accel_args(accel: Accel) -> list[str]:
    if accel == "auto":
        return ["-accel", "kvm", "-accel", "tcg"]
    if accel in ("kvm", "tcg"):
        return ["-accel", accel]
    raise QemuConfigError(f"unknown accelerator {accel!r} (kvm, tcg or auto)")


def command_line(vm: QemuVm, options: QemuOptions | None = None) -> list[str]:
    """The exact ``qemu-system-x86_64`` argv for ``vm`` (no pinning prefix)."""
    o = options if options is not None else QemuOptions()
    if vm.memory < 1:
        raise QemuConfigError(f"memory must be at least 1 MB, not {vm.memory}")
    if vm.cpus < 1:
        raise QemuConfigError(f"cpus must be at least 1, not {vm.cpus}")
    if len(vm.nets) + len(vm.disks) > MAX_DEVICES:
        raise QemuConfigError(f"at most {MAX_DEVICES} network and block devices per VM")
    if vm.disk_boot and not vm.disks:
        raise QemuConfigError("nothing to boot: no kernel image and no block device")
    if vm.disk_boot and vm.initrd is not None:
        raise QemuConfigError("an initrd needs a kernel image")
    if vm.append is not None and len(vm.append.encode()) >= MAX_APPEND:
        raise QemuConfigError(f"kernel command line is longer than {MAX_APPEND - 1} bytes")
    if "," in os.fspath(vm.qmp_socket) or len(os.fsencode(vm.qmp_socket)) > MAX_UNIX_PATH:
        raise QemuConfigError(f"unusable QMP socket path {vm.qmp_socket}")
    machine = choose_machine(vm, o)

    argv = [o.binary, "-name", f"guest={_opt(vm.name)}"]
    argv += ["-no-user-config", "-nodefaults", "-nographic", "-no-reboot"]
    argv += ["-machine", machine.name]
    if machine.bios is not None:
        argv += ["-bios", os.fspath(machine.bios)]
    argv += accel_args(vm.accel or o.accel)
    argv += ["-cpu", o.cpu_model, "-m", str(vm.memory), "-smp", str(vm.cpus)]
    argv += ["-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console"]
    if o.debug_exit:
        argv += ["-device", f"isa-debug-exit,iobase={DEBUG_EXIT_IOBASE:#x},iosize=0x04"]
    argv += ["-qmp", f"unix:{os.fspath(vm.qmp_socket)},server=on,wait=off"]
    if vm.kernel is not None:
        argv += ["-kernel", os.fspath(vm.kernel)]
        if vm.initrd is not None:
            argv += ["-initrd", os.fspath(vm.initrd)]
        if vm.append:
            argv += ["-append", vm.append]
    for i, net in enumerate(vm.nets):
        if not _TAP_RE.match(net.tap):
            raise QemuConfigError(f"invalid tap name {net.tap!r}")
        argv += ["-netdev", f"tap,id=net{i},ifname={net.tap},script=no,downscript=no"]
        argv += ["-device", f"virtio-net-{machine.virtio},netdev=net{i},mac={format_mac(net.mac)}"]
    for i, disk in enumerate(vm.disks):
        if not disk.path.is_absolute():
            # a relative "a:b:foo" would read as protocol "a" to QEMU
            raise QemuConfigError(f"block device path {disk.path} is not absolute")
        argv += ["-drive", f"file={_opt(disk.path)},if=none,format=raw,id=blk{i}"]
        dev = f"virtio-blk-{machine.virtio},drive=blk{i}"
        if disk.sector_size is not None:
            dev += f",logical_block_size={disk.sector_size},physical_block_size={disk.sector_size}"
        if vm.disk_boot and i == 0:
            dev += ",bootindex=0"
        argv += ["-device", dev]
    return argv


def pin_prefix(cpuids: frozenset[int] | Sequence[int]) -> list[str]:
    """``taskset -c <ids>``: the pinning albatross applies to its tenders on Linux."""
    if not cpuids:
        raise QemuConfigError("no CPU ids given")
    return ["taskset", "-c", ",".join(str(c) for c in sorted(cpuids))]


def share_with_group(path: Path, group: str = "albatross") -> None:
    """Give the QMP socket (created by QEMU as root, 0755 by umask) to the
    ``albatross`` group, mode 0660, so albatross-stats can read KVM counters
    after dropping root.  That group already controls albatrossd itself
    through ``vmmd.sock`` (spec 2.5), so this grants it nothing new."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return
    with contextlib.suppress(OSError):
        os.chown(path, -1, gid)
        os.chmod(path, 0o660)


def qmp_socket_path(layout: Layout, name: Name) -> Path:
    """``<tmpdir>/<name>.qmp``, or a digest-named socket where that is too long."""
    path = layout.image_file(name).with_suffix(".qmp")
    if len(os.fsencode(path)) <= MAX_UNIX_PATH and "," not in os.fspath(path):
        return path
    digest = hashlib.sha256(str(name).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return layout.tmpdir / f"qmp-{digest}.sock"


def split_blocks(
    name: Name, config: UnikernelConfig
) -> tuple[Name | None, list[tuple[Name, int | None]]]:
    """(initrd block, [(disk block, sector size)]) in config order."""
    initrd: Name | None = None
    disks: list[tuple[Name, int | None]] = []
    for b in config.blocks:
        try:
            block = Name.make(name.path, b.host_device)
        except NameError_ as e:
            raise QemuConfigError(f"invalid block device name {b.host_device!r}: {e}") from e
        if b.name == INITRD_BLOCK:
            initrd = block
        else:
            disks.append((block, b.sector_size))
    return initrd, disks


@dataclass(frozen=True, slots=True)
class VmSettings:
    """The ``qemu.<key>=<value>`` words of a VM's argv (see the module comment)."""

    accel: Accel | None = None
    shutdown: Shutdown = "signal"


def split_settings(argv: Sequence[str]) -> tuple[VmSettings, list[str]]:
    """(settings, the kernel's own arguments): ``qemu.accel=kvm|tcg|auto`` and
    ``qemu.shutdown=signal|acpi`` are ours and never reach the kernel; any other
    ``qemu.`` word is refused, so a typo is not silently passed to the guest."""
    allowed = {"accel": ACCELS, "shutdown": SHUTDOWNS}
    settings: dict[str, str] = {}
    rest: list[str] = []
    for word in argv:
        if not word.startswith(SETTING_PREFIX):
            rest.append(word)
            continue
        key, sep, value = word[len(SETTING_PREFIX) :].partition("=")
        if not sep or value not in allowed.get(key, ()):
            raise QemuConfigError(
                f"unknown QEMU setting {word!r} (qemu.accel=kvm|tcg|auto,"
                " qemu.shutdown=signal|acpi)"
            )
        settings[key] = value
    return VmSettings(**settings), rest  # type: ignore[arg-type]


def vm_of_config(
    layout: Layout,
    name: Name,
    config: UnikernelConfig,
    taps: Sequence[str],
    *,
    kernel: bool | None = None,
) -> QemuVm:
    """The :class:`QemuVm` for a config; ``kernel`` says whether an image is booted
    (default: the config's image is non-empty)."""
    if len(taps) != len(config.bridges):
        raise QemuConfigError(f"{len(config.bridges)} taps needed, {len(taps)} given")
    if config.linux_boot_partition is not None:
        raise QemuConfigError(
            "linux_boot_partition is a bhyve (grub-bhyve) option; qemu boots the disk's own loader"
        )
    boots_kernel = bool(config.image) if kernel is None else kernel
    initrd, disks = split_blocks(name, config)
    settings, args = split_settings(config.argv or ())
    if initrd is not None and not boots_kernel:
        raise QemuConfigError("an initrd block needs a kernel image")
    nets = tuple(
        QemuNet(tap, n.mac if n.mac is not None else derive_mac(n.netif, name))
        for n, tap in zip(config.bridges, taps, strict=True)
    )
    return QemuVm(
        name=str(name),
        memory=config.memory,
        cpus=config.cpus,
        qmp_socket=qmp_socket_path(layout, name),
        kernel=layout.image_file(name) if boots_kernel else None,
        initrd=layout.block_file(initrd) if initrd is not None else None,
        append=" ".join(args) if args else None,
        nets=nets,
        disks=tuple(QemuDisk(layout.block_file(b), size) for b, size in disks),
        accel=settings.accel,
        shutdown=settings.shutdown,
    )


# -- the backend --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QemuPrepared(Prepared):
    qmp_socket: Path
    shutdown: Shutdown = "signal"
    #: The accelerator this start uses, where the backend chose it (TCG after
    #: KVM made no progress); None: the VM's ``qemu.accel=`` or the host's.
    accel: Accel | None = None


def device_exits(stats: Sequence[StatsResult]) -> int | None:
    """The sum of :data:`DEVICE_EXIT_STATS` over the vCPUs of a ``query-stats``
    answer, or None where KVM reports none of them."""
    values = [
        int(entry.values[key])
        for entry in stats
        if entry.provider == "kvm"
        for key in DEVICE_EXIT_STATS
        if isinstance(entry.values.get(key), int)
    ]
    return sum(values) if values else None


def find_qboot(candidates: Sequence[Path] = QBOOT_PATHS) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


class QemuBackend(Backend):
    """``typ = qemu``; by default with :meth:`QemuOptions.for_host` and ``taskset`` pinning."""

    typ = Typ.QEMU

    def __init__(
        self, layout: Layout, options: QemuOptions | None = None, *, pin: bool = True
    ) -> None:
        super().__init__(layout)
        self.options = options if options is not None else QemuOptions.for_host()
        self.pin = pin
        #: (image digest, argv) KVM made no progress with: ``auto`` starts them under TCG.
        self.kvm_stalled: set[tuple[bytes, tuple[str, ...]]] = set()

    def required_commands(self) -> tuple[str, ...]:
        return (self.options.binary, "taskset") if self.pin else (self.options.binary,)

    def prepare(self, name: Name, config: UnikernelConfig) -> QemuPrepared:
        if config.typ is not Typ.QEMU:
            raise BackendError(f"qemu backend cannot run typ {config.typ.name.lower()}")
        if name.label is None:
            raise BackendError(f"{name} is a path, not a unikernel name")
        if not config.cpuids:
            raise BackendError("no CPU ids given")
        if shutil.which(self.options.binary) is None:
            raise BackendError(f"{self.options.binary} not found")
        image = uncompressed_image(config) if config.image else None
        # Everything the command line checks, with placeholder taps.
        vm = vm_of_config(self.layout, name, config, ["tap0"] * len(config.bridges))
        command_line(vm, self.options)
        digest = hashlib.sha256(image or b"").digest()
        accel: Accel | None = None
        if (vm.accel or self.options.accel) == "auto" and (
            digest,
            tuple(config.argv or ()),
        ) in self.kvm_stalled:
            accel = "tcg"
        return QemuPrepared(
            name=name,
            config=config,
            digest=digest,
            image=image,
            host_bridges=tuple(n.host_bridge for n in config.bridges),
            qmp_socket=vm.qmp_socket,
            shutdown=vm.shutdown,
            accel=accel,
        )

    def vm(self, prepared: Prepared, taps: Sequence[str]) -> QemuVm:
        vm = vm_of_config(
            self.layout, prepared.name, prepared.config, taps, kernel=prepared.image is not None
        )
        if isinstance(prepared, QemuPrepared) and prepared.accel is not None:
            vm = replace(vm, accel=prepared.accel)
        return vm

    def accel(self, prepared: QemuPrepared) -> Accel:
        """The accelerator ``prepared`` starts with."""
        if prepared.accel is not None:
            return prepared.accel
        settings, _ = split_settings(prepared.config.argv or ())
        return settings.accel or self.options.accel

    def command_line(
        self, prepared: Prepared, taps: Sequence[str], fifo: Path | None = None
    ) -> list[str]:
        """The console is the process's stdio, so ``fifo`` is unused here."""
        argv = command_line(self.vm(prepared, taps), self.options)
        return [*pin_prefix(prepared.config.cpuids), *argv] if self.pin else argv

    def bridge_infos(self, prepared: Prepared, taps: Sequence[str]) -> tuple[BridgeInfo, ...]:
        return tuple(
            BridgeInfo(unikernel_device=n.netif, host_device=n.host_bridge, mac=net.mac)
            for n, net in zip(prepared.config.bridges, self.vm(prepared, taps).nets, strict=True)
        )

    def guest_exit_code(self, status: int) -> int:
        """The guest's exit code for QEMU's exit status (see :func:`guest_exit_code`)."""
        return guest_exit_code(status) if self.options.debug_exit else status

    def exit_status(self, status: ExitStatus) -> ExitStatus:
        code = status.code
        if code is None or not self.options.debug_exit:
            return status
        return ExitStatus.exited(guest_exit_code(code))

    async def wait_ready(self, prepared: Prepared, vm: VmProcess) -> None:
        """Until QMP answers ``query-status`` (QEMU opened the kernel, the disks,
        the taps and runs its main loop) or QEMU exits, whichever comes first:
        a create whose QEMU refuses its command line fails with QEMU's words
        instead of succeeding and exiting a moment later.  A QMP that does not
        answer within :data:`READY_TIMEOUT` lets the create succeed (the
        watchdog and the exit will tell)."""
        if not isinstance(prepared, QemuPrepared):
            return
        async with trio.open_nursery() as nursery:

            async def exited() -> None:
                await vm.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(exited)
            answered = False
            stalled: str | None = None
            with contextlib.suppress(QmpError, OSError, trio.BrokenResourceError):
                ready = trio.move_on_after(READY_TIMEOUT)
                with ready:
                    async with open_qmp(prepared.qmp_socket, timeout=READY_TIMEOUT) as qmp:
                        await qmp.query_status(timeout=READY_TIMEOUT)
                        answered = True
                        if self.accel(prepared) != "tcg":
                            ready.deadline = trio.current_time() + PROGRESS_WINDOW + READY_TIMEOUT
                            stalled = await self._kvm_stalled(qmp)
            if not answered:
                # QMP closed without an answer: QEMU is on its way out (it
                # refused the kernel); let the exit land before deciding
                with trio.move_on_after(EXIT_SETTLE):
                    await vm.wait()
            nursery.cancel_scope.cancel()
        if vm.result is not None and not answered:
            raise BackendError(f"QEMU exited at once ({vm.result[0]})")
        # (a guest that ended while its progress was watched ran: it was created)
        if stalled is None:
            return
        if self.accel(prepared) == "auto":
            self.kvm_stalled.add((prepared.digest, tuple(prepared.config.argv or ())))
            raise Relaunch(replace(prepared, accel="tcg"), f"{stalled}; starting it under TCG")
        raise BackendError(f"{stalled}; start it with qemu.accel=tcg or qemu.accel=auto")

    async def _kvm_stalled(self, qmp: QmpClient) -> str | None:
        """Under KVM, wait for the guest's first :data:`PROGRESS_EXITS` device
        exits; a reason if none came within :data:`PROGRESS_WINDOW`, else None
        (also under TCG, and where QEMU has no KVM counters to ask)."""
        kvm = await qmp.execute("query-kvm")
        if not (isinstance(kvm, dict) and kvm.get("enabled")):
            return None
        seen: int | None = None
        with trio.move_on_after(PROGRESS_WINDOW):
            while True:
                try:
                    seen = device_exits(await qmp.query_stats("vcpu"))
                    if seen is None or seen >= PROGRESS_EXITS:
                        return None
                    if await qmp.query_status() in FAILED_RUN_STATES:
                        return None  # paused by a KVM internal error: the watchdog's case
                except QmpCommandError:
                    return None  # a QEMU without query-stats: no judgement
                await trio.sleep(PROGRESS_POLL)
        return (
            f"KVM made no progress: {seen} device exits (I/O, MMIO, HLT) in the"
            f" first {PROGRESS_WINDOW:g} s, {PROGRESS_EXITS} expected"
        )

    async def stop(
        self, prepared: Prepared, vm: VmProcess, grace: float = DEFAULT_STOP_GRACE
    ) -> tuple[ExitStatus, Rusage]:
        """SIGTERM (QEMU exits at once, as albatross's tenders do), SIGKILL after
        ``grace``.  With ``qemu.shutdown=acpi`` the ACPI power button first (a
        Linux guest shuts down cleanly), half the grace for the guest to power
        off, then SIGTERM and SIGKILL in the other half."""
        if isinstance(prepared, QemuPrepared) and prepared.shutdown == "acpi" and vm.running:
            with contextlib.suppress(QmpError, OSError, trio.BrokenResourceError):
                with trio.move_on_after(POWERDOWN_QMP_TIMEOUT):
                    async with open_qmp(prepared.qmp_socket) as qmp:
                        await qmp.system_powerdown()
                with trio.move_on_after(grace / 2):
                    return await vm.wait()
            return await vm.stop(grace / 2)
        return await vm.stop(grace)

    async def watch(self, prepared: Prepared, vm: VmProcess) -> str:
        """Poll QMP: a VM that stopped running (KVM internal error, guest panic)
        while QEMU lives on has failed (HOST-FACTS: QEMU stays up, paused)."""
        if not isinstance(prepared, QemuPrepared):
            await trio.sleep_forever()
        shared = False
        while True:
            await trio.sleep(WATCH_INTERVAL)
            if not shared and prepared.qmp_socket.exists():
                share_with_group(prepared.qmp_socket)
                shared = True
            try:
                with trio.fail_after(WATCH_INTERVAL * 5):
                    async with open_qmp(prepared.qmp_socket) as qmp:
                        status = await qmp.query_status()
            except (QmpError, OSError, trio.BrokenResourceError, trio.TooSlowError):
                continue  # starting up, or exiting: the process wait will tell
            if status in FAILED_RUN_STATES:
                return f"VM stopped running ({status})"

    def cleanup(self, prepared: Prepared) -> None:
        """Remove the QMP socket QEMU leaves behind."""
        if isinstance(prepared, QemuPrepared):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(prepared.qmp_socket)


__all__ = [
    "DEFAULT_CPU_MODEL",
    "INITRD_BLOCK",
    "QBOOT_PATHS",
    "QEMU_BINARY",
    "Machine",
    "QemuBackend",
    "QemuConfigError",
    "QemuDisk",
    "QemuNet",
    "QemuOptions",
    "QemuPrepared",
    "QemuVm",
    "VmSettings",
    "accel_args",
    "choose_machine",
    "command_line",
    "device_exits",
    "find_qboot",
    "guest_exit_code",
    "pin_prefix",
    "qmp_socket_path",
    "split_blocks",
    "split_settings",
    "vm_of_config",
]
