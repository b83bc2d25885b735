"""The shared value types of albatross's wire grammar (spec section 3.6).

Plain, immutable dataclasses: the codec (``grammar``) turns them into DER and
back, the core reasons about them, the daemons act on them.  Sets that
albatross keeps as sets (cpuids, policy bridges, restart exit codes) are
``frozenset``; lists that albatross keeps in the order found (block devices,
network devices, argv) are tuples.

Strings that albatross carries as UTF8String without validating them are
``str`` decoded with ``surrogateescape``, so arbitrary bytes survive a round
trip; console lines, which are bytes by nature, are ``bytes``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

from albatross_py.wire.names import Name

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: albatross's default ``startup`` priority (lower starts first).
DEFAULT_STARTUP = 50
#: albatross's default block sector size in bytes.
DEFAULT_SECTOR_SIZE = 512


class Typ(enum.IntEnum):
    """Which virtualizer runs a unikernel; the value is the wire CHOICE tag.

    ``solo5`` [0] and ``bhyve`` [1] are albatross's; ``qemu`` [2] is ours,
    appended as a new CHOICE tag (albatross's append-only rule), so every
    config albatross can express still encodes exactly as albatross does.
    """

    SOLO5 = 0
    BHYVE = 1
    QEMU = 2


@dataclass(frozen=True, slots=True)
class Policy:
    """A delegation policy: limits for everything below a path."""

    unikernels: int
    cpuids: frozenset[int]
    memory: int
    block: int | None
    bridges: frozenset[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "cpuids", frozenset(self.cpuids))
        object.__setattr__(self, "bridges", frozenset(self.bridges))


@dataclass(frozen=True, slots=True)
class FailBehaviour:
    """``quit`` (restart=False) or restart on failure.

    ``exit_codes`` None means "restart on any exit code" (albatross's
    ``Restart None``; on the wire an empty SET OF).
    """

    restart: bool = False
    exit_codes: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if self.exit_codes is not None:
            codes = frozenset(self.exit_codes)
            object.__setattr__(self, "exit_codes", codes or None)
        if not self.restart and self.exit_codes is not None:
            raise ValueError("exit codes only apply to restart-on-failure")


QUIT = FailBehaviour()


@dataclass(frozen=True, slots=True)
class BlockDevice:
    """A block device of a unikernel: name in the guest, albatross block label."""

    name: str
    device: str | None = None
    sector_size: int | None = None

    @property
    def host_device(self) -> str:
        return self.device if self.device is not None else self.name


@dataclass(frozen=True, slots=True)
class NetDevice:
    """A network device: name in the guest, host bridge, optional MAC (6 bytes)."""

    netif: str
    bridge: str | None = None
    mac: bytes | None = None

    @property
    def host_bridge(self) -> str:
        return self.bridge if self.bridge is not None else self.netif


@dataclass(frozen=True, slots=True)
class UnikernelConfig:
    typ: Typ = Typ.SOLO5
    compressed: bool = False
    image: bytes = b""
    startup: int | None = None
    add_name: bool = True
    fail_behaviour: FailBehaviour = QUIT
    cpuids: frozenset[int] = frozenset({0})
    memory: int = 32
    blocks: tuple[BlockDevice, ...] = ()
    bridges: tuple[NetDevice, ...] = ()
    argv: tuple[str, ...] | None = None
    cpus: int = 1
    linux_boot_partition: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cpuids", frozenset(self.cpuids))
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "bridges", tuple(self.bridges))
        if self.argv is not None:
            object.__setattr__(self, "argv", tuple(self.argv))

    @property
    def startup_priority(self) -> int:
        return DEFAULT_STARTUP if self.startup is None else self.startup


@dataclass(frozen=True, slots=True)
class UnikernelArguments:
    """New arguments for ``restart`` (typ, compression and image are kept)."""

    fail_behaviour: FailBehaviour = QUIT
    startup: int | None = None
    add_name: bool = True
    cpuids: frozenset[int] = frozenset({0})
    memory: int = 32
    blocks: tuple[BlockDevice, ...] = ()
    bridges: tuple[NetDevice, ...] = ()
    argv: tuple[str, ...] | None = None
    cpus: int = 1
    linux_boot_partition: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cpuids", frozenset(self.cpuids))
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "bridges", tuple(self.bridges))
        if self.argv is not None:
            object.__setattr__(self, "argv", tuple(self.argv))

    def apply_to(self, old: UnikernelConfig) -> UnikernelConfig:
        """The restarted config: ``old`` with these arguments replaced (incl. #276)."""
        return UnikernelConfig(
            typ=old.typ,
            compressed=old.compressed,
            image=old.image,
            startup=self.startup,
            add_name=self.add_name,
            fail_behaviour=self.fail_behaviour,
            cpuids=self.cpuids,
            memory=self.memory,
            blocks=self.blocks,
            bridges=self.bridges,
            argv=self.argv,
            cpus=self.cpus,
            linux_boot_partition=self.linux_boot_partition,
        )


@dataclass(frozen=True, slots=True)
class BlockInfo:
    unikernel_device: str
    host_device: str
    sector_size: int = DEFAULT_SECTOR_SIZE
    size: int = 0  # MB, 0 if unknown


@dataclass(frozen=True, slots=True)
class BridgeInfo:
    unikernel_device: str
    host_device: str
    mac: bytes


@dataclass(frozen=True, slots=True)
class UnikernelInfo:
    """What ``info`` reports about a running unikernel."""

    typ: Typ
    startup: int | None
    fail_behaviour: FailBehaviour
    cpuids: frozenset[int]
    memory: int
    digest: bytes
    blocks: tuple[BlockInfo, ...] = ()
    bridges: tuple[BridgeInfo, ...] = ()
    argv: tuple[str, ...] | None = None
    started: datetime = EPOCH
    cpus: int = 1
    linux_boot_partition: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cpuids", frozenset(self.cpuids))
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "bridges", tuple(self.bridges))
        if self.argv is not None:
            object.__setattr__(self, "argv", tuple(self.argv))


@dataclass(frozen=True, slots=True)
class Timeval:
    seconds: int = 0
    microseconds: int = 0


RUSAGE_FIELDS = (
    "maxrss",
    "ixrss",
    "idrss",
    "isrss",
    "minflt",
    "majflt",
    "nswap",
    "inblock",
    "outblock",
    "msgsnd",
    "msgrcv",
    "nsignals",
    "nvcsw",
    "nivcsw",
)


@dataclass(frozen=True, slots=True)
class Rusage:
    utime: Timeval = Timeval()
    stime: Timeval = Timeval()
    maxrss: int = 0
    ixrss: int = 0
    idrss: int = 0
    isrss: int = 0
    minflt: int = 0
    majflt: int = 0
    nswap: int = 0
    inblock: int = 0
    outblock: int = 0
    msgsnd: int = 0
    msgrcv: int = 0
    nsignals: int = 0
    nvcsw: int = 0
    nivcsw: int = 0


@dataclass(frozen=True, slots=True)
class KinfoMem:
    vsize: int = 0
    rss: int = 0
    tsize: int = 0
    dsize: int = 0
    ssize: int = 0
    runtime: int = 0
    cow: int = 0
    start: Timeval = Timeval()


IFDATA_INT32_FIELDS = ("flags", "send_length", "max_send_length", "send_drops", "mtu")
IFDATA_INT64_FIELDS = (
    "baudrate",
    "input_packets",
    "input_errors",
    "output_packets",
    "output_errors",
    "collisions",
    "input_bytes",
    "output_bytes",
    "input_mcast",
    "output_mcast",
    "input_dropped",
    "output_dropped",
)


@dataclass(frozen=True, slots=True)
class IfData:
    """Interface counters; ``bridge`` carries the unikernel-side netif name."""

    bridge: str
    flags: int = 0
    send_length: int = 0
    max_send_length: int = 0
    send_drops: int = 0
    mtu: int = 0
    baudrate: int = 0
    input_packets: int = 0
    input_errors: int = 0
    output_packets: int = 0
    output_errors: int = 0
    collisions: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    input_mcast: int = 0
    output_mcast: int = 0
    input_dropped: int = 0
    output_dropped: int = 0


@dataclass(frozen=True, slots=True)
class Statistics:
    rusage: Rusage
    ifdata: tuple[IfData, ...] = ()
    vmm: tuple[tuple[str, int], ...] | None = None
    kinfo_mem: KinfoMem | None = None


@dataclass(frozen=True, slots=True)
class NamedPolicy:
    name: Name
    policy: Policy


@dataclass(frozen=True, slots=True)
class BlockDeviceEntry:
    name: Name
    size: int
    active: bool


__all__ = [
    "DEFAULT_SECTOR_SIZE",
    "DEFAULT_STARTUP",
    "EPOCH",
    "IFDATA_INT32_FIELDS",
    "IFDATA_INT64_FIELDS",
    "QUIT",
    "RUSAGE_FIELDS",
    "BlockDevice",
    "BlockDeviceEntry",
    "BlockInfo",
    "BridgeInfo",
    "FailBehaviour",
    "IfData",
    "KinfoMem",
    "NamedPolicy",
    "NetDevice",
    "Policy",
    "Rusage",
    "Statistics",
    "Timeval",
    "Typ",
    "UnikernelArguments",
    "UnikernelConfig",
    "UnikernelInfo",
]
