"""Schemas of albatross's shared value types (spec 3.6) and statistics.

The DER side of ``types``: names, policies, unikernel configs of every
historical layout, restart arguments, unikernel info and statistics.  The
commands and replies (``grammar``), the event log (``events_grammar``) and
the state file (``state``) are built from these; this module imports none of
them, so there is no cycle.
"""

from __future__ import annotations

from typing import Any

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
)
from albatross_py.wire.der import Sequence_ as Seq
from albatross_py.wire.errors import WireError
from albatross_py.wire.names import Name
from albatross_py.wire.types import (
    EPOCH,
    IFDATA_INT32_FIELDS,
    IFDATA_INT64_FIELDS,
    RUSAGE_FIELDS,
    BlockDevice,
    BlockInfo,
    BridgeInfo,
    FailBehaviour,
    IfData,
    KinfoMem,
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


def named_sequence(value: der.Schema, key: str) -> SequenceOf:
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
