"""albatross's ASN.1 grammar (wire version 5) and its mapping to our types.

Each schema mirrors a definition of spec sections 3.3-3.7; the comments give
the spec's names.  Values cross the schema boundary as dicts (SEQUENCE) and
``(alternative, value)`` pairs (CHOICE); the ``*_to_raw``/``*_of_raw``
functions convert them to and from the dataclasses of ``types`` and
``messages``.  Decoding accepts every historical alternative the spec lists;
encoding writes only what albatross 2.7.2 writes.
"""

from __future__ import annotations

from typing import Any

from albatross_py.core.names import Name
from albatross_py.wire import der
from albatross_py.wire.der import (
    Boolean,
    Choice,
    Explicit,
    Field,
    GeneralizedTime,
    Int64,
    Integer,
    Map,
    Null,
    OctetString,
    SequenceOf,
    SetOf,
    Utf8,
    Utf8Bytes,
)
from albatross_py.wire.der import Sequence_ as Seq
from albatross_py.wire.errors import WireError
from albatross_py.wire.events_grammar import (
    EVENT_DATA,
    EVENTS_CMD,
    data_event_of_raw,
    data_event_to_raw,
    events_command_of_raw,
    events_command_to_raw,
)
from albatross_py.wire.messages import (
    BlockAdd,
    BlockAddOld,
    BlockDump,
    BlockInfoQuery,
    BlockRemove,
    BlockSet,
    BlockSetOld,
    Command,
    ConsoleAdd,
    ConsoleListInactive,
    ConsoleSubscribe,
    Data,
    DataBlock,
    DataConsole,
    DataEvent,
    DataStatistics,
    EventsRecord,
    EventsSubscribe,
    Failure,
    Header,
    InfoVersion,
    Payload,
    PolicyAdd,
    PolicyInfoQuery,
    PolicyRemove,
    Reply,
    ReplyBlockDeviceImage,
    ReplyBlockDevices,
    ReplyConsoles,
    ReplyEmpty,
    ReplyOldBlockDeviceImage,
    ReplyPolicies,
    ReplyString,
    ReplyUnikernelImage,
    ReplyUnikernelInfo,
    StatsAdd,
    StatsInitial,
    StatsRemove,
    StatsSubscribe,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfoQuery,
    UnikernelRestart,
    Wire,
)
from albatross_py.wire.types import (
    EPOCH,
    IFDATA_INT32_FIELDS,
    IFDATA_INT64_FIELDS,
    RUSAGE_FIELDS,
    BlockDevice,
    BlockDeviceEntry,
    BlockInfo,
    BridgeInfo,
    FailBehaviour,
    IfData,
    KinfoMem,
    NamedPolicy,
    NetDevice,
    Policy,
    Rusage,
    Statistics,
    Timeval,
    Typ,
    UnikernelArguments,
    UnikernelConfig,
    UnikernelInfo,
)


class Rejected(der.Schema):
    """An alternative albatross retired with an error (the ``log`` tag [2])."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.tags = Null().tags

    def parts(self, value: Any) -> der.Parts:
        raise WireError(self.message)

    def decode_tlv(self, tag: int, content: memoryview, depth: int) -> Any:
        raise WireError(self.message)


def _utf8_key(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


# -- shared types (3.6) -------------------------------------------------------

NAME = Map(Utf8(), Name.of_string, str, "name")
MAC = der.FixedOctets(6, "MAC address")

POLICY = Map(
    Seq(
        [
            Field("cpuids", SequenceOf(Integer())),
            Field("unikernels", Integer()),
            Field("memory", Integer()),
            Field("block", Integer(), optional=True),
            Field("bridges", SequenceOf(Utf8())),
        ]
    ),
    lambda d: Policy(
        unikernels=d["unikernels"],
        cpuids=frozenset(d["cpuids"]),
        memory=d["memory"],
        block=d["block"],
        bridges=frozenset(d["bridges"]),
    ),
    lambda p: {
        "cpuids": sorted(p.cpuids),
        "unikernels": p.unikernels,
        "memory": p.memory,
        "block": p.block,
        "bridges": sorted(p.bridges, key=_utf8_key),
    },
    "policy",
)

TYP = Map(
    Choice("typ", {t.value: (t.name.lower(), Null()) for t in Typ}),
    lambda c: Typ[c[0].upper()],
    lambda t: (t.name.lower(), None),
    "typ",
)

FAIL = Map(
    Choice("fail-behaviour", {0: ("quit", Null()), 1: ("restart-exit-codes", SetOf(Integer()))}),
    lambda c: (
        FailBehaviour()
        if c[0] == "quit"
        else FailBehaviour(restart=True, exit_codes=frozenset(c[1]) or None)
    ),
    lambda f: ("restart-exit-codes", sorted(f.exit_codes or ())) if f.restart else ("quit", None),
    "fail-behaviour",
)

BLOCK_DEVICE = Map(
    Seq(
        [
            Field("block-name", Utf8()),
            Field("block-device-name", Utf8(), optional=True),
            Field("block-sector-size", Integer(), optional=True),
        ]
    ),
    lambda d: BlockDevice(d["block-name"], d["block-device-name"], d["block-sector-size"]),
    lambda b: {
        "block-name": b.name,
        "block-device-name": b.device,
        "block-sector-size": b.sector_size,
    },
    "block device",
)

NET_DEVICE = Map(
    Seq(
        [
            Field("netif", Utf8()),
            Field("bridge", Utf8(), optional=True),
            Field("mac", MAC, optional=True),
        ]
    ),
    lambda d: NetDevice(d["netif"], d["bridge"], d["mac"]),
    lambda n: {"netif": n.netif, "bridge": n.bridge, "mac": n.mac},
    "network device",
)


def _nonempty(xs: Any) -> Any:
    """Lists albatross omits when empty (blocks, bridges)."""
    return list(xs) if xs else None


def _argv(xs: Any) -> Any:
    return None if xs is None else list(xs)


def _single_cpuid(cpuids: frozenset[int]) -> int:
    if len(cpuids) != 1:
        raise WireError(f"this layout holds exactly one cpuid, not {len(cpuids)}")
    return next(iter(cpuids))


ARGV = Explicit(2, SequenceOf(Utf8()))

# UnikernelConfig (current: state [6], create [20], force-create [21]).
_CONFIG_SEQ = Seq(
    [
        Field("typ", TYP),
        Field("compressed", Boolean()),
        Field("image", OctetString()),
        Field("startup", Integer(), optional=True),
        Field("add_name", Boolean()),
        Field("fail-behaviour", FAIL),
        Field("cpuids", SetOf(Integer())),
        Field("memory", Integer()),
        Field("blocks", Explicit(0, SetOf(BLOCK_DEVICE)), optional=True),
        Field("bridges", Explicit(1, SetOf(NET_DEVICE)), optional=True),
        Field("arguments", ARGV, optional=True),
        Field("cpus", Explicit(3, Integer()), optional=True),
        Field("linux_boot_partition", Explicit(4, Utf8()), optional=True),
    ]
)


def _config_of_raw(d: dict[str, Any]) -> UnikernelConfig:
    return UnikernelConfig(
        typ=d["typ"],
        compressed=d["compressed"],
        image=d["image"],
        startup=d.get("startup"),
        add_name=d.get("add_name", True),
        fail_behaviour=d["fail-behaviour"],
        cpuids=frozenset(d["cpuids"]) if "cpuids" in d else frozenset({d["cpuid"]}),
        memory=d["memory"],
        blocks=tuple(d["blocks"] or ()),
        bridges=tuple(d["bridges"] or ()),
        argv=_argv(d["arguments"]),
        cpus=1 if d.get("cpus") is None else d["cpus"],
        linux_boot_partition=d.get("linux_boot_partition"),
    )


def _config_to_raw(c: UnikernelConfig) -> dict[str, Any]:
    return {
        "typ": c.typ,
        "compressed": c.compressed,
        "image": c.image,
        "startup": c.startup,
        "add_name": c.add_name,
        "fail-behaviour": c.fail_behaviour,
        "cpuids": sorted(c.cpuids),
        "memory": c.memory,
        "blocks": _nonempty(c.blocks),
        "bridges": _nonempty(c.bridges),
        "arguments": _argv(c.argv),
        "cpus": c.cpus,
        "linux_boot_partition": c.linux_boot_partition,
    }


def _old_config_to_raw(c: UnikernelConfig) -> dict[str, Any]:
    raw = _config_to_raw(c)
    raw["cpuid"] = _single_cpuid(c.cpuids)
    return raw


CONFIG = Map(_CONFIG_SEQ, _config_of_raw, _config_to_raw, "unikernel config")

# UnikernelConfigV4 (state [5], create-OLD2 [16]/[17]).
CONFIG_V4 = Map(
    Seq(
        [
            Field("typ", TYP),
            Field("compressed", Boolean()),
            Field("image", OctetString()),
            Field("startup", Integer(), optional=True),
            Field("add_name", Boolean()),
            Field("fail-behaviour", FAIL),
            Field("cpuid", Integer()),
            Field("memory", Integer()),
            Field("blocks", Explicit(0, SetOf(BLOCK_DEVICE)), optional=True),
            Field("bridges", Explicit(1, SetOf(NET_DEVICE)), optional=True),
            Field("arguments", ARGV, optional=True),
        ]
    ),
    _config_of_raw,
    _old_config_to_raw,
    "unikernel config (v4)",
)

_V3_HEAD = [
    Field("typ", TYP),
    Field("compressed", Boolean()),
    Field("image", OctetString()),
    Field("fail-behaviour", FAIL),
    Field("cpuid", Integer()),
    Field("memory", Integer()),
]

# UnikernelConfigV3 (state [3], [4], create-OLD [9]/[10]).
CONFIG_V3 = Map(
    Seq(
        [
            *_V3_HEAD,
            Field("blocks", Explicit(0, SetOf(BLOCK_DEVICE)), optional=True),
            Field("bridges", Explicit(1, SetOf(NET_DEVICE)), optional=True),
            Field("arguments", ARGV, optional=True),
        ]
    ),
    _config_of_raw,
    _old_config_to_raw,
    "unikernel config (v3)",
)

_NAMES_AS_BLOCKS = Map(
    SetOf(Utf8()),
    lambda xs: [BlockDevice(x) for x in xs],
    lambda bs: [b.name if b.device is None else b.device for b in bs],
)

# UnikernelConfigV2 (state [2]): one name per block, bridges as (netif, bridge).
CONFIG_V2 = Map(
    Seq(
        [
            *_V3_HEAD,
            Field("blocks", Explicit(0, _NAMES_AS_BLOCKS), optional=True),
            Field(
                "bridges",
                Explicit(
                    1,
                    SequenceOf(
                        Map(
                            Seq([Field("netif", Utf8()), Field("bridge", Utf8(), optional=True)]),
                            lambda d: NetDevice(d["netif"], d["bridge"]),
                            lambda n: {"netif": n.netif, "bridge": n.bridge},
                        )
                    ),
                ),
                optional=True,
            ),
            Field("arguments", ARGV, optional=True),
        ]
    ),
    _config_of_raw,
    _old_config_to_raw,
    "unikernel config (v2)",
)

# UnikernelConfigV1 (state [0]): names only.
CONFIG_V1 = Map(
    Seq(
        [
            *_V3_HEAD,
            Field("blocks", Explicit(0, _NAMES_AS_BLOCKS), optional=True),
            Field(
                "bridges",
                Explicit(
                    1,
                    Map(
                        SetOf(Utf8()),
                        lambda xs: [NetDevice(x) for x in xs],
                        lambda ns: [n.netif for n in ns],
                    ),
                ),
                optional=True,
            ),
            Field("arguments", ARGV, optional=True),
        ]
    ),
    _config_of_raw,
    _old_config_to_raw,
    "unikernel config (v1)",
)


def _config_v0_of_raw(d: dict[str, Any]) -> UnikernelConfig:
    kind, image = d["image"]
    return UnikernelConfig(
        typ=Typ.SOLO5,
        compressed=kind == "hvt-amd64-compressed",
        image=image,
        cpuids=frozenset({d["cpu"]}),
        memory=d["memory"],
        blocks=() if d["block"] is None else (BlockDevice(d["block"]),),
        bridges=tuple(NetDevice(n) for n in d["network-interfaces"] or ()),
        argv=_argv(d["arguments"]),
    )


def _config_v0_to_raw(c: UnikernelConfig) -> dict[str, Any]:
    if len(c.blocks) > 1:
        raise WireError("the v0 layout holds at most one block device")
    return {
        "cpu": _single_cpuid(c.cpuids),
        "memory": c.memory,
        "block": c.blocks[0].host_device if c.blocks else None,
        "network-interfaces": [n.netif for n in c.bridges] or None,
        "image": ("hvt-amd64-compressed" if c.compressed else "hvt-amd64", c.image),
        "arguments": _argv(c.argv),
    }


# UnikernelConfigV0 (state [1]).
CONFIG_V0 = Map(
    Seq(
        [
            Field("cpu", Integer()),
            Field("memory", Integer()),
            Field("block", Utf8(), optional=True),
            Field("network-interfaces", SequenceOf(Utf8()), optional=True),
            Field(
                "image",
                Choice(
                    "image",
                    {
                        0: ("hvt-amd64", OctetString()),
                        1: ("hvt-arm64", OctetString()),
                        2: ("hvt-amd64-compressed", OctetString()),
                    },
                ),
            ),
            Field("arguments", SequenceOf(Utf8()), optional=True),
        ]
    ),
    _config_v0_of_raw,
    _config_v0_to_raw,
    "unikernel config (v0)",
)


# -- restart arguments ----------------------------------------------------------


def _args_of_raw(d: dict[str, Any]) -> UnikernelArguments:
    return UnikernelArguments(
        fail_behaviour=d["fail-behaviour"],
        startup=d.get("startup"),
        add_name=d.get("add_name", True),
        cpuids=frozenset(d["cpuids"]) if "cpuids" in d else frozenset({d["cpuid"]}),
        memory=d["memory"],
        blocks=tuple(d["blocks"] or ()),
        bridges=tuple(d["bridges"] or ()),
        argv=_argv(d["arguments"]),
        cpus=1 if d.get("cpus") is None else d["cpus"],
        linux_boot_partition=d.get("linux_boot_partition"),
    )


def _args_to_raw(a: UnikernelArguments) -> dict[str, Any]:
    raw = {
        "fail-behaviour": a.fail_behaviour,
        "startup": a.startup,
        "add_name": a.add_name,
        "cpuids": sorted(a.cpuids),
        "memory": a.memory,
        "blocks": _nonempty(a.blocks),
        "bridges": _nonempty(a.bridges),
        "arguments": _argv(a.argv),
        "cpus": a.cpus,
        "linux_boot_partition": a.linux_boot_partition,
    }
    if len(a.cpuids) == 1:
        raw["cpuid"] = next(iter(a.cpuids))
    return raw


_ARGS_TAIL = [
    Field("blocks", Explicit(0, SetOf(BLOCK_DEVICE)), optional=True),
    Field("bridges", Explicit(1, SetOf(NET_DEVICE)), optional=True),
    Field("arguments", ARGV, optional=True),
]

ARGUMENTS = Map(
    Seq(
        [
            Field("fail-behaviour", FAIL),
            Field("startup", Integer(), optional=True),
            Field("add_name", Boolean()),
            Field("cpuids", SetOf(Integer())),
            Field("memory", Integer()),
            *_ARGS_TAIL,
            Field("cpus", Explicit(3, Integer()), optional=True),
            Field("linux_boot_partition", Explicit(4, Utf8()), optional=True),
        ]
    ),
    _args_of_raw,
    _args_to_raw,
    "restart arguments",
)
ARGUMENTS_V1 = Map(
    Seq(
        [
            Field("fail-behaviour", FAIL),
            Field("startup", Integer(), optional=True),
            Field("add_name", Boolean()),
            Field("cpuid", Integer()),
            Field("memory", Integer()),
            *_ARGS_TAIL,
        ]
    ),
    _args_of_raw,
    _args_to_raw,
    "restart arguments (v1)",
)
ARGUMENTS_V0 = Map(
    Seq(
        [
            Field("fail-behaviour", FAIL),
            Field("cpuid", Integer()),
            Field("memory", Integer()),
            *_ARGS_TAIL,
        ]
    ),
    _args_of_raw,
    _args_to_raw,
    "restart arguments (v0)",
)


# -- unikernel info -------------------------------------------------------------

_INFO_BLOCK = Map(
    Seq(
        [
            Field("unikernel-device", Utf8()),
            Field("host-device", Utf8()),
            Field("sector-size", Integer()),
            Field("block-size", Integer()),
        ]
    ),
    lambda d: BlockInfo(d["unikernel-device"], d["host-device"], d["sector-size"], d["block-size"]),
    lambda b: {
        "unikernel-device": b.unikernel_device,
        "host-device": b.host_device,
        "sector-size": b.sector_size,
        "block-size": b.size,
    },
)
_INFO_BRIDGE = Map(
    Seq([Field("unikernel-device", Utf8()), Field("host-device", Utf8()), Field("mac", MAC)]),
    lambda d: BridgeInfo(d["unikernel-device"], d["host-device"], d["mac"]),
    lambda b: {"unikernel-device": b.unikernel_device, "host-device": b.host_device, "mac": b.mac},
)
_INFO_TAIL = [
    Field("digest", OctetString()),
    Field("blocks", Explicit(0, SetOf(_INFO_BLOCK)), optional=True),
    Field("bridges", Explicit(1, SetOf(_INFO_BRIDGE)), optional=True),
    Field("arguments", ARGV, optional=True),
    Field("started", Explicit(3, GeneralizedTime()), optional=True),
]


def _info_of_raw(d: dict[str, Any]) -> UnikernelInfo:
    return UnikernelInfo(
        typ=d["typ"],
        startup=d.get("startup"),
        fail_behaviour=d["fail-behaviour"],
        cpuids=frozenset(d["cpuids"]) if "cpuids" in d else frozenset({d["cpuid"]}),
        memory=d["memory"],
        digest=d["digest"],
        blocks=tuple(d["blocks"] or ()),
        bridges=tuple(d["bridges"] or ()),
        argv=_argv(d["arguments"]),
        started=d["started"] or EPOCH,
        cpus=1 if d.get("cpus") is None else d["cpus"],
        linux_boot_partition=d.get("linux_boot_partition"),
    )


def _info_to_raw(i: UnikernelInfo) -> dict[str, Any]:
    return {
        "typ": i.typ,
        "startup": i.startup,
        "fail-behaviour": i.fail_behaviour,
        "cpuids": sorted(i.cpuids),
        "memory": i.memory,
        "digest": i.digest,
        "blocks": _nonempty(i.blocks),
        "bridges": _nonempty(i.bridges),
        "arguments": _argv(i.argv),
        "started": i.started,
        "cpus": i.cpus,
        "linux_boot_partition": i.linux_boot_partition,
    }


def _old_info_to_raw(i: UnikernelInfo) -> dict[str, Any]:
    raw = _info_to_raw(i)
    raw["cpuid"] = _single_cpuid(i.cpuids)
    return raw


INFO = Map(
    Seq(
        [
            Field("typ", TYP),
            Field("startup", Integer(), optional=True),
            Field("fail-behaviour", FAIL),
            Field("cpuids", SetOf(Integer())),
            Field("memory", Integer()),
            *_INFO_TAIL,
            Field("cpus", Explicit(4, Integer()), optional=True),
            Field("linux_boot_partition", Explicit(5, Utf8()), optional=True),
        ]
    ),
    _info_of_raw,
    _info_to_raw,
    "unikernel info",
)
INFO_V5 = Map(
    Seq(
        [
            Field("typ", TYP),
            Field("startup", Integer(), optional=True),
            Field("fail-behaviour", FAIL),
            Field("cpuid", Integer()),
            Field("memory", Integer()),
            *_INFO_TAIL,
        ]
    ),
    _info_of_raw,
    _old_info_to_raw,
    "unikernel info (v5)",
)
INFO_V4 = Map(
    Seq(
        [
            Field("typ", TYP),
            Field("fail-behaviour", FAIL),
            Field("cpuid", Integer()),
            Field("memory", Integer()),
            *_INFO_TAIL,
        ]
    ),
    _info_of_raw,
    _old_info_to_raw,
    "unikernel info (v4)",
)


def _named(value: der.Schema, key: str) -> SequenceOf:
    return SequenceOf(Seq([Field("name", NAME), Field(key, value)]))


# -- statistics -----------------------------------------------------------------

TIMEVAL = Map(
    Seq([Field("seconds", Int64()), Field("microseconds", Integer())]),
    lambda d: Timeval(d["seconds"], d["microseconds"]),
    lambda t: {"seconds": t.seconds, "microseconds": t.microseconds},
)
RUSAGE = Map(
    Seq(
        [Field("utime", TIMEVAL), Field("stime", TIMEVAL)]
        + [Field(f, Int64()) for f in RUSAGE_FIELDS]
    ),
    lambda d: Rusage(**d),
    lambda r: {f: getattr(r, f) for f in ("utime", "stime", *RUSAGE_FIELDS)},
)
_KINFO_INT64 = ("vsize", "rss", "tsize", "dsize", "ssize", "runtime")
KINFO_MEM = Map(
    Seq(
        [Field(f, Int64()) for f in _KINFO_INT64]
        + [Field("cow", Integer()), Field("start", TIMEVAL)],
        tag=0xA1,  # [1] IMPLICIT, the grammar's only implicit tag
    ),
    lambda d: KinfoMem(**d),
    lambda k: {f: getattr(k, f) for f in (*_KINFO_INT64, "cow", "start")},
)
IFDATA = Map(
    Seq(
        [Field("bridge", Utf8())]
        + [Field(f, Integer()) for f in IFDATA_INT32_FIELDS]
        + [Field(f, Int64()) for f in IFDATA_INT64_FIELDS]
    ),
    lambda d: IfData(**d),
    lambda i: {f: getattr(i, f) for f in ("bridge", *IFDATA_INT32_FIELDS, *IFDATA_INT64_FIELDS)},
)
STATISTICS = Map(
    Seq(
        [
            Field("resource-usage", RUSAGE),
            Field("ifdata", SequenceOf(IFDATA)),
            Field(
                "vmm-stats",
                Explicit(0, SequenceOf(Seq([Field("key", Utf8()), Field("value", Int64())]))),
                optional=True,
            ),
            Field("kinfo-mem", KINFO_MEM, optional=True),
        ]
    ),
    lambda d: Statistics(
        rusage=d["resource-usage"],
        ifdata=tuple(d["ifdata"]),
        vmm=None
        if d["vmm-stats"] is None
        else tuple((e["key"], e["value"]) for e in d["vmm-stats"]),
        kinfo_mem=d["kinfo-mem"],
    ),
    lambda s: {
        "resource-usage": s.rusage,
        "ifdata": list(s.ifdata),
        "vmm-stats": None if s.vmm is None else [{"key": k, "value": v} for k, v in s.vmm],
        "kinfo-mem": s.kinfo_mem,
    },
    "statistics",
)


# -- commands (3.4) -------------------------------------------------------------

_LOG_DROPPED = "support for log dropped"

CONSOLE_CMD = Choice(
    "console command",
    {
        0: ("add", Integer()),
        2: (
            "subscribe",
            Choice("console subscribe", {0: ("since", GeneralizedTime()), 1: ("count", Integer())}),
        ),
        3: ("list-inactive", Null()),
    },
)
STATS_CMD = Choice(
    "stats command",
    {
        0: (
            "add",
            Seq(
                [
                    Field("vmmdev", Utf8()),
                    Field("pid", Integer()),
                    Field(
                        "network", SequenceOf(Seq([Field("bridge", Utf8()), Field("tap", Utf8())]))
                    ),
                ]
            ),
        ),
        1: ("remove", Null()),
        2: ("subscribe", Null()),
        3: ("initial", Null()),
    },
)
UNIKERNEL_CMD = Choice(
    "unikernel command",
    {
        3: ("destroy", Null()),
        9: ("create-OLD", CONFIG_V3),
        10: ("force-create-OLD", CONFIG_V3),
        11: ("get", Integer()),
        14: (
            "restart",
            Choice(
                "restart",
                {
                    0: ("no-arguments", Null()),
                    1: ("arguments-OLD2", ARGUMENTS_V0),
                    2: ("arguments-OLD", ARGUMENTS_V1),
                    3: ("arguments", ARGUMENTS),
                },
            ),
        ),
        15: ("info-OLD4", Null()),
        16: ("create-OLD2", CONFIG_V4),
        17: ("force-create-OLD2", CONFIG_V4),
        18: ("info-OLD5", Null()),
        19: ("info", Null()),
        20: ("create", CONFIG),
        21: ("force-create", CONFIG),
    },
)
POLICY_CMD = Choice(
    "policy command", {0: ("info", Null()), 1: ("add", POLICY), 2: ("remove", Null())}
)
BLOCK_CMD = Choice(
    "block command",
    {
        0: ("info", Null()),
        1: ("add", Integer()),
        2: ("remove", Null()),
        3: (
            "add-OLD",
            Seq(
                [
                    Field("size", Integer()),
                    Field("compress", Boolean()),
                    Field("data", OctetString(), optional=True),
                ]
            ),
        ),
        4: ("set-OLD", Seq([Field("compress", Boolean()), Field("data", OctetString())])),
        5: ("dump-OLD", Integer()),
        6: ("dump", Integer()),
        7: ("set", Boolean()),
    },
)
COMMAND_RAW = Choice(
    "command",
    {
        0: ("console", CONSOLE_CMD),
        1: ("statistics", STATS_CMD),
        2: ("log", Rejected(_LOG_DROPPED)),
        3: ("unikernel", UNIKERNEL_CMD),
        4: ("policy", POLICY_CMD),
        5: ("block", BLOCK_CMD),
        6: ("events", EVENTS_CMD),  # ours, not albatross 2.7.2 (events_grammar.py)
    },
)


def command_of_raw(c: tuple[str, Any]) -> Command:
    group, (alt, v) = c
    match group, alt:
        case "console", "add":
            return ConsoleAdd(v)
        case "console", "subscribe":
            kind, arg = v
            return ConsoleSubscribe(since=arg) if kind == "since" else ConsoleSubscribe(count=arg)
        case "console", "list-inactive":
            return ConsoleListInactive()
        case "statistics", "add":
            net = tuple((e["bridge"], e["tap"]) for e in v["network"])
            return StatsAdd(v["vmmdev"], v["pid"], net)
        case "statistics", "remove":
            return StatsRemove()
        case "statistics", "subscribe":
            return StatsSubscribe()
        case "statistics", "initial":
            return StatsInitial()
        case "unikernel", "destroy":
            return UnikernelDestroy()
        case "unikernel", ("create" | "create-OLD" | "create-OLD2"):
            return UnikernelCreate(v, force=False)
        case "unikernel", ("force-create" | "force-create-OLD" | "force-create-OLD2"):
            return UnikernelCreate(v, force=True)
        case "unikernel", "get":
            return UnikernelGet(v)
        case "unikernel", "restart":
            kind, args = v
            return UnikernelRestart(None if kind == "no-arguments" else args)
        case "unikernel", ("info" | "info-OLD4" | "info-OLD5"):
            return UnikernelInfoQuery(
                {"info": InfoVersion.CURRENT, "info-OLD4": InfoVersion.OLD4}.get(
                    alt, InfoVersion.OLD5
                )
            )
        case "policy", "info":
            return PolicyInfoQuery()
        case "policy", "add":
            return PolicyAdd(v)
        case "policy", "remove":
            return PolicyRemove()
        case "block", "info":
            return BlockInfoQuery()
        case "block", "add":
            return BlockAdd(v)
        case "block", "remove":
            return BlockRemove()
        case "block", "add-OLD":
            return BlockAddOld(v["size"], v["compress"], v["data"])
        case "block", "set-OLD":
            return BlockSetOld(v["compress"], v["data"])
        case "block", "dump-OLD":
            return BlockDump(v, old=True)
        case "block", "dump":
            return BlockDump(v)
        case "block", "set":
            return BlockSet(v)
        case "events", _:
            return events_command_of_raw(alt, v)
    raise WireError(f"unhandled command {group}/{alt}")  # pragma: no cover - grammar is closed


def command_to_raw(cmd: Command) -> tuple[str, Any]:
    match cmd:
        case ConsoleAdd(limit):
            return "console", ("add", limit)
        case ConsoleSubscribe(since, count):
            return "console", ("subscribe", ("since", since) if since else ("count", count))
        case ConsoleListInactive():
            return "console", ("list-inactive", None)
        case StatsAdd(vmmdev, pid, network):
            net = [{"bridge": b, "tap": t} for b, t in network]
            return "statistics", ("add", {"vmmdev": vmmdev, "pid": pid, "network": net})
        case StatsRemove():
            return "statistics", ("remove", None)
        case StatsSubscribe():
            return "statistics", ("subscribe", None)
        case StatsInitial():
            return "statistics", ("initial", None)
        case UnikernelDestroy():
            return "unikernel", ("destroy", None)
        case UnikernelCreate(config, force):
            return "unikernel", ("force-create" if force else "create", config)
        case UnikernelGet(level):
            return "unikernel", ("get", level)
        case UnikernelRestart(args):
            inner = ("no-arguments", None) if args is None else ("arguments", args)
            return "unikernel", ("restart", inner)
        case UnikernelInfoQuery(version):
            alt = {InfoVersion.CURRENT: "info", InfoVersion.OLD4: "info-OLD4"}.get(
                version, "info-OLD5"
            )
            return "unikernel", (alt, None)
        case PolicyInfoQuery():
            return "policy", ("info", None)
        case PolicyAdd(policy):
            return "policy", ("add", policy)
        case PolicyRemove():
            return "policy", ("remove", None)
        case BlockInfoQuery():
            return "block", ("info", None)
        case BlockAdd(size):
            return "block", ("add", size)
        case BlockRemove():
            return "block", ("remove", None)
        case BlockAddOld(size, compressed, data):
            return "block", ("add-OLD", {"size": size, "compress": compressed, "data": data})
        case BlockSetOld(compressed, data):
            return "block", ("set-OLD", {"compress": compressed, "data": data})
        case BlockDump(level, old):
            return "block", ("dump-OLD" if old else "dump", level)
        case BlockSet(compressed):
            return "block", ("set", compressed)
        case EventsSubscribe() | EventsRecord():
            return "events", events_command_to_raw(cmd)
    raise WireError(f"not a command: {cmd!r}")


COMMAND = Map(COMMAND_RAW, command_of_raw, command_to_raw, "command")


# -- replies and data (3.5) -----------------------------------------------------

_IMAGE = Seq([Field("compressed", Boolean()), Field("image", OctetString())])

SUCCESS_RAW = Choice(
    "reply",
    {
        0: ("empty", Null()),
        1: ("string", Utf8()),
        2: ("policies", _named(POLICY, "policy")),
        4: (
            "block-devices",
            SequenceOf(
                Seq([Field("name", NAME), Field("size", Integer()), Field("active", Boolean())])
            ),
        ),
        6: ("unikernel-image", _IMAGE),
        7: ("old-block-device-image", _IMAGE),
        9: ("old-unikernel-info4", _named(INFO_V4, "info")),
        10: ("block-device-image", Boolean()),
        11: ("old-unikernel-info5", _named(INFO_V5, "info")),
        12: ("consoles", SequenceOf(NAME)),
        13: ("unikernel-info", _named(INFO, "info")),
    },
)

_INFO_ALTS = {
    "old-unikernel-info4": InfoVersion.OLD4,
    "old-unikernel-info5": InfoVersion.OLD5,
    "unikernel-info": InfoVersion.CURRENT,
}


def reply_of_raw(c: tuple[str, Any]) -> Reply:
    alt, v = c
    match alt:
        case "empty":
            return ReplyEmpty()
        case "string":
            return ReplyString(v)
        case "policies":
            return ReplyPolicies(tuple(NamedPolicy(e["name"], e["policy"]) for e in v))
        case "block-devices":
            return ReplyBlockDevices(
                tuple(BlockDeviceEntry(e["name"], e["size"], e["active"]) for e in v)
            )
        case "unikernel-image":
            return ReplyUnikernelImage(v["compressed"], v["image"])
        case "old-block-device-image":
            return ReplyOldBlockDeviceImage(v["compressed"], v["image"])
        case "block-device-image":
            return ReplyBlockDeviceImage(v)
        case "consoles":
            return ReplyConsoles(tuple(v))
        case _:
            return ReplyUnikernelInfo(tuple((e["name"], e["info"]) for e in v), _INFO_ALTS[alt])


def reply_to_raw(r: Reply) -> tuple[str, Any]:
    match r:
        case ReplyEmpty():
            return "empty", None
        case ReplyString(text):
            return "string", text
        case ReplyPolicies(entries):
            return "policies", [{"name": e.name, "policy": e.policy} for e in entries]
        case ReplyBlockDevices(entries):
            return "block-devices", [
                {"name": e.name, "size": e.size, "active": e.active} for e in entries
            ]
        case ReplyUnikernelImage(compressed, image):
            return "unikernel-image", {"compressed": compressed, "image": image}
        case ReplyOldBlockDeviceImage(compressed, image):
            return "old-block-device-image", {"compressed": compressed, "image": image}
        case ReplyBlockDeviceImage(compressed):
            return "block-device-image", compressed
        case ReplyConsoles(names):
            return "consoles", list(names)
        case ReplyUnikernelInfo(entries, version):
            alt = {v: k for k, v in _INFO_ALTS.items()}[version]
            return alt, [{"name": n, "info": i} for n, i in entries]
    raise WireError(f"not a reply: {r!r}")


SUCCESS = Map(SUCCESS_RAW, reply_of_raw, reply_to_raw, "reply")

DATA_RAW = Choice(
    "data",
    {
        1: ("statistics", STATISTICS),
        2: ("log", Rejected("support for log was dropped")),
        3: ("console", Seq([Field("timestamp", GeneralizedTime()), Field("data", Utf8Bytes())])),
        4: (
            "block",
            Choice("block data", {0: ("some-data", OctetString()), 1: ("no-data", Null())}),
        ),
        5: ("event", EVENT_DATA),  # ours, not albatross 2.7.2 (events_grammar.py)
    },
)


def data_of_raw(c: tuple[str, Any]) -> Data:
    alt, v = c
    if alt == "statistics":
        return DataStatistics(v)
    if alt == "console":
        return DataConsole(v["timestamp"], v["data"])
    if alt == "event":
        return data_event_of_raw(v)
    kind, chunk = v
    return DataBlock(chunk if kind == "some-data" else None)


def data_to_raw(d: Data) -> tuple[str, Any]:
    match d:
        case DataStatistics(stats):
            return "statistics", stats
        case DataConsole(ts, line):
            return "console", {"timestamp": ts, "data": line}
        case DataBlock(chunk):
            return "block", ("no-data", None) if chunk is None else ("some-data", chunk)
        case DataEvent():
            return "event", data_event_to_raw(d)
    raise WireError(f"not data: {d!r}")


DATA = Map(DATA_RAW, data_of_raw, data_to_raw, "data")

# -- top level (3.3) --------------------------------------------------------------

HEADER = Map(
    Seq([Field("version", Integer()), Field("sequence", Int64()), Field("name", NAME)]),
    lambda d: Header(d["version"], d["sequence"], d["name"]),
    lambda h: {"version": h.version, "sequence": h.sequence, "name": h.name},
    "header",
)

PAYLOAD = Choice(
    "payload",
    {
        0: ("command", COMMAND),
        1: ("reply", SUCCESS),
        2: ("failure", Utf8()),
        3: ("data", DATA),
    },
)


def _payload_of_raw(c: tuple[str, Any]) -> Payload:
    alt, v = c
    return Failure(v) if alt == "failure" else v


def _payload_to_raw(p: Payload) -> tuple[str, Any]:
    if isinstance(p, Command):
        return "command", p
    if isinstance(p, Reply):
        return "reply", p
    if isinstance(p, Failure):
        return "failure", p.message
    if isinstance(p, Data):
        return "data", p
    raise WireError(f"not a payload: {p!r}")


WIRE = Map(
    Seq(
        [Field("header", HEADER), Field("payload", Map(PAYLOAD, _payload_of_raw, _payload_to_raw))]
    ),
    lambda d: Wire(d["header"], d["payload"]),
    lambda w: {"header": w.header, "payload": w.payload},
    "message",
)

# Certificate extension value (spec 4.1): SEQUENCE { version INTEGER, command }.
CERT_EXTENSION = Seq([Field("version", Integer()), Field("command", COMMAND)])
