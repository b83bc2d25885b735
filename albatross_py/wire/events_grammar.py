"""The event log's grammar: our own append-only alternatives (not albatross 2.7.2).

albatross retired its log service with an error on tag ``[2]`` in both
Command and Data (spec 3.4, 3.5, 6.2), and the 2.8 event service's grammar
is unpublished (spec 2.8).  Following albatross's append-only rule (spec
3.9), the event log travels under new tags and ``[2]`` stays retired::

    Command ::= CHOICE { ..., events [6] EventsCmd }
    Data    ::= CHOICE { ..., event  [5] SEQUENCE { timestamp GeneralizedTime,
                                                    event     Event } }

    EventsCmd ::= CHOICE {
        subscribe [0] CHOICE { since [0] GeneralizedTime, count [1] INTEGER },
        record    [1] Event }                       -- producer -> albatross-log

    Event ::= CHOICE {
        startup              [0] UTF8String,        -- the program that started
        login                [1] SEQUENCE { name Name, address UTF8String },
        logout               [2] SEQUENCE { name Name, address UTF8String },
        unikernel-started    [3] SEQUENCE {
            name Name, pid INTEGER,
            taps   SEQUENCE OF SEQUENCE { netif UTF8String, tap UTF8String },
            blocks SEQUENCE OF SEQUENCE { name UTF8String, device UTF8String },
            digest OCTET STRING },
        unikernel-exited     [4] SEQUENCE { name Name, pid INTEGER,
            status CHOICE { exit-code [0] INTEGER, signal [1] INTEGER,
                            unknown [2] NULL },
            reason UTF8String OPTIONAL },                 -- appended: last console lines
        unikernel-restarting [5] SEQUENCE { name Name, reason UTF8String },
        unikernel-destroyed  [6] Name,
        policy-changed       [7] SEQUENCE { name Name, policy Policy OPTIONAL },
        block-changed        [8] SEQUENCE { name Name, size INTEGER OPTIONAL } }

All tags are EXPLICIT, as everywhere in albatross.  ``unknown [2]`` in the
exit status covers a process whose end could not be determined (our
``ExitStatus.unknown``); without it such an exit could not be recorded.

``grammar`` registers these schemas; the policy schema comes from
``types_grammar``, which both use, so neither imports the other.
"""

from __future__ import annotations

from typing import Any

from albatross_py.wire import events as ev
from albatross_py.wire.der import (
    Choice,
    Field,
    GeneralizedTime,
    Integer,
    Map,
    Null,
    OctetString,
    SequenceOf,
    Utf8,
)
from albatross_py.wire.der import Sequence_ as Seq
from albatross_py.wire.errors import WireError
from albatross_py.wire.messages import Command, DataEvent, EventsRecord, EventsSubscribe
from albatross_py.wire.types_grammar import NAME, POLICY

#: Tag of the ``events`` alternative in Command (spec 3.4 ends at [5]).
COMMAND_TAG = 6
#: Tag of the ``event`` alternative in Data (spec 3.5 ends at [4]).
DATA_TAG = 5


def _pairs(first: str, second: str) -> SequenceOf:
    return SequenceOf(Seq([Field(first, Utf8()), Field(second, Utf8())]))


_SESSION = Seq([Field("name", NAME), Field("address", Utf8())])

EVENT_RAW = Choice(
    "event",
    {
        0: ("startup", Utf8()),
        1: ("login", _SESSION),
        2: ("logout", _SESSION),
        3: (
            "unikernel-started",
            Seq(
                [
                    Field("name", NAME),
                    Field("pid", Integer()),
                    Field("taps", _pairs("netif", "tap")),
                    Field("blocks", _pairs("name", "device")),
                    Field("digest", OctetString()),
                ]
            ),
        ),
        4: (
            "unikernel-exited",
            Seq(
                [
                    Field("name", NAME),
                    Field("pid", Integer()),
                    Field(
                        "status",
                        Choice(
                            "exit status",
                            {
                                0: ("exit-code", Integer()),
                                1: ("signal", Integer()),
                                2: ("unknown", Null()),
                            },
                        ),
                    ),
                    Field("reason", Utf8(), optional=True),
                ]
            ),
        ),
        5: ("unikernel-restarting", Seq([Field("name", NAME), Field("reason", Utf8())])),
        6: ("unikernel-destroyed", NAME),
        7: (
            "policy-changed",
            Seq([Field("name", NAME), Field("policy", POLICY, optional=True)]),
        ),
        8: (
            "block-changed",
            Seq([Field("name", NAME), Field("size", Integer(), optional=True)]),
        ),
    },
)


def event_of_raw(c: tuple[str, Any]) -> ev.Event:
    alt, v = c
    match alt:
        case "startup":
            return ev.Startup(v)
        case "login":
            return ev.Login(v["name"], v["address"])
        case "logout":
            return ev.Logout(v["name"], v["address"])
        case "unikernel-started":
            return ev.UnikernelStarted(
                v["name"],
                v["pid"],
                tuple((t["netif"], t["tap"]) for t in v["taps"]),
                tuple((b["name"], b["device"]) for b in v["blocks"]),
                v["digest"],
            )
        case "unikernel-exited":
            kind, value = v["status"]
            return ev.UnikernelExited(
                v["name"],
                v["pid"],
                code=value if kind == "exit-code" else None,
                signal=value if kind == "signal" else None,
                reason=v.get("reason"),
            )
        case "unikernel-restarting":
            return ev.UnikernelRestarting(v["name"], v["reason"])
        case "unikernel-destroyed":
            return ev.UnikernelDestroyed(v)
        case "policy-changed":
            return ev.PolicyChanged(v["name"], v["policy"])
        case "block-changed":
            return ev.BlockChanged(v["name"], v["size"])
    raise WireError(f"unhandled event {alt}")  # pragma: no cover - grammar is closed


def event_to_raw(e: ev.Event) -> tuple[str, Any]:
    match e:
        case ev.Startup(program):
            return "startup", program
        case ev.Login(name, address):
            return "login", {"name": name, "address": address}
        case ev.Logout(name, address):
            return "logout", {"name": name, "address": address}
        case ev.UnikernelStarted(name, pid, taps, blocks, digest):
            return "unikernel-started", {
                "name": name,
                "pid": pid,
                "taps": [{"netif": n, "tap": t} for n, t in taps],
                "blocks": [{"name": n, "device": d} for n, d in blocks],
                "digest": digest,
            }
        case ev.UnikernelExited(name, pid, code, signal, reason):
            if code is not None and signal is not None:
                raise WireError("an exit has an exit code or a signal, not both")
            status: tuple[str, Any] = (
                ("exit-code", code)
                if code is not None
                else ("signal", signal)
                if signal is not None
                else ("unknown", None)
            )
            exited: dict[str, Any] = {"name": name, "pid": pid, "status": status}
            if reason is not None:  # appended field: absent, not empty, when unknown
                exited["reason"] = reason
            return "unikernel-exited", exited
        case ev.UnikernelRestarting(name, reason):
            return "unikernel-restarting", {"name": name, "reason": reason}
        case ev.UnikernelDestroyed(name):
            return "unikernel-destroyed", name
        case ev.PolicyChanged(name, policy):
            return "policy-changed", {"name": name, "policy": policy}
        case ev.BlockChanged(name, size):
            return "block-changed", {"name": name, "size": size}
    raise WireError(f"not an event: {e!r}")


#: The Event CHOICE with typed values (:mod:`albatross_py.wire.events`).
EVENT = Map(EVENT_RAW, event_of_raw, event_to_raw, "event")

#: ``events [6]``'s inner CHOICE.  Values stay at the grammar level (the
#: event as ``(alternative, fields)``) so JSON views name the alternative.
EVENTS_CMD = Choice(
    "events command",
    {
        0: (
            "subscribe",
            Choice("events subscribe", {0: ("since", GeneralizedTime()), 1: ("count", Integer())}),
        ),
        1: ("record", EVENT_RAW),
    },
)

#: ``event [5]``'s SEQUENCE in Data.
EVENT_DATA = Seq([Field("timestamp", GeneralizedTime()), Field("event", EVENT_RAW)])


# -- to and from the typed messages (grammar.py calls these) ---------------------


def events_command_of_raw(alt: str, v: Any) -> Command:
    if alt == "subscribe":
        kind, arg = v
        return EventsSubscribe(since=arg) if kind == "since" else EventsSubscribe(count=arg)
    return EventsRecord(event_of_raw(v))


def events_command_to_raw(cmd: EventsSubscribe | EventsRecord) -> tuple[str, Any]:
    if isinstance(cmd, EventsRecord):
        return "record", event_to_raw(cmd.event)
    return "subscribe", ("since", cmd.since) if cmd.since is not None else ("count", cmd.count)


def data_event_of_raw(v: dict[str, Any]) -> DataEvent:
    return DataEvent(v["timestamp"], event_of_raw(v["event"]))


def data_event_to_raw(d: DataEvent) -> dict[str, Any]:
    return {"timestamp": d.timestamp, "event": event_to_raw(d.event)}
