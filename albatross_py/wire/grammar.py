"""albatross's ASN.1 grammar (wire version 5): commands, replies, data and
the top-level message (spec 3.3-3.5), and their mapping to ``messages``.

The shared value types they carry (names, policies, configs, info,
statistics) are in ``types_grammar``; our event-log alternatives are in
``events_grammar``.  Each schema mirrors a definition of the spec; the comments give
the spec's names.  Values cross the schema boundary as dicts (SEQUENCE) and
``(alternative, value)`` pairs (CHOICE); the ``*_to_raw``/``*_of_raw``
functions convert them to and from the dataclasses of ``types`` and
``messages``.  Decoding accepts every historical alternative the spec lists;
encoding writes only what albatross 2.7.2 writes.
"""

from __future__ import annotations

from typing import Any

from albatross_py.wire.der import (
    Boolean,
    Choice,
    Field,
    GeneralizedTime,
    Int64,
    Integer,
    Map,
    Null,
    OctetString,
    SequenceOf,
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
    BlockDeviceEntry,
    NamedPolicy,
)
from albatross_py.wire.types_grammar import (
    ARGUMENTS,
    ARGUMENTS_V0,
    ARGUMENTS_V1,
    CONFIG,
    CONFIG_V3,
    CONFIG_V4,
    INFO,
    INFO_V4,
    INFO_V5,
    NAME,
    POLICY,
    STATISTICS,
    Rejected,
    named_sequence,
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
        2: ("policies", named_sequence(POLICY, "policy")),
        4: (
            "block-devices",
            SequenceOf(
                Seq([Field("name", NAME), Field("size", Integer()), Field("active", Boolean())])
            ),
        ),
        6: ("unikernel-image", _IMAGE),
        7: ("old-block-device-image", _IMAGE),
        9: ("old-unikernel-info4", named_sequence(INFO_V4, "info")),
        10: ("block-device-image", Boolean()),
        11: ("old-unikernel-info5", named_sequence(INFO_V5, "info")),
        12: ("consoles", SequenceOf(NAME)),
        13: ("unikernel-info", named_sequence(INFO, "info")),
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
