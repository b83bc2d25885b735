"""Typed wire messages: header, commands, replies, failures and data.

One frozen dataclass per alternative of albatross's grammar (spec 3.3-3.5).
Historical alternatives that albatross maps to current meaning decode into
the current class (old create tags become :class:`UnikernelCreate`);
historical *queries* whose reply differs keep a marker (``InfoVersion``,
``BlockDump.old``) so the reply can use the old reply tag, as albatross does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from albatross_py.wire.events import Event
from albatross_py.wire.names import Name
from albatross_py.wire.types import (
    BlockDeviceEntry,
    NamedPolicy,
    Policy,
    Statistics,
    UnikernelArguments,
    UnikernelConfig,
    UnikernelInfo,
)

#: The only wire version albatross speaks since 2.6.0.
WIRE_VERSION = 5


@dataclass(frozen=True, slots=True)
class Header:
    version: int = WIRE_VERSION
    sequence: int = 0
    name: Name = field(default_factory=Name)


class Command:
    """Base of every command (the ``[0] command`` payload)."""

    __slots__ = ()


class Reply:
    """Base of every success reply (the ``[1] reply`` payload)."""

    __slots__ = ()


class Data:
    """Base of every data payload (the ``[3] data`` payload)."""

    __slots__ = ()


# -- console commands ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsoleAdd(Command):
    """Open the VM's FIFO; ``limit`` = most ring buffers kept for its path."""

    limit: int


@dataclass(frozen=True, slots=True)
class ConsoleSubscribe(Command):
    """History since a time, or the last ``count`` lines, then live lines."""

    since: datetime | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if (self.since is None) == (self.count is None):
            raise ValueError("console subscribe takes exactly one of since and count")


@dataclass(frozen=True, slots=True)
class ConsoleListInactive(Command):
    pass


# -- stats commands -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatsAdd(Command):
    """Start gathering for a pid; ``network`` pairs are (netif, tap)."""

    vmmdev: str
    pid: int
    network: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class StatsRemove(Command):
    pass


@dataclass(frozen=True, slots=True)
class StatsSubscribe(Command):
    pass


@dataclass(frozen=True, slots=True)
class StatsInitial(Command):
    pass


# -- unikernel commands -------------------------------------------------------


class InfoVersion(enum.IntEnum):
    """Which info query tag was used; the value is the query tag.

    Replies use the matching tag: [15] -> [9], [18] -> [11], [19] -> [13].
    """

    OLD4 = 15
    OLD5 = 18
    CURRENT = 19

    @property
    def reply_tag(self) -> int:
        return {15: 9, 18: 11, 19: 13}[self.value]


@dataclass(frozen=True, slots=True)
class UnikernelDestroy(Command):
    pass


@dataclass(frozen=True, slots=True)
class UnikernelCreate(Command):
    config: UnikernelConfig
    force: bool = False


@dataclass(frozen=True, slots=True)
class UnikernelGet(Command):
    compression_level: int = 0


@dataclass(frozen=True, slots=True)
class UnikernelRestart(Command):
    arguments: UnikernelArguments | None = None


@dataclass(frozen=True, slots=True)
class UnikernelInfoQuery(Command):
    version: InfoVersion = InfoVersion.CURRENT


# -- policy commands ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyInfoQuery(Command):
    pass


@dataclass(frozen=True, slots=True)
class PolicyAdd(Command):
    policy: Policy


@dataclass(frozen=True, slots=True)
class PolicyRemove(Command):
    pass


# -- block commands -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockInfoQuery(Command):
    pass


@dataclass(frozen=True, slots=True)
class BlockAdd(Command):
    size: int  # MB


@dataclass(frozen=True, slots=True)
class BlockRemove(Command):
    pass


@dataclass(frozen=True, slots=True)
class BlockAddOld(Command):
    """Pre-2.5.0 block add with inline data (``add-OLD [3]``)."""

    size: int
    compressed: bool
    data: bytes | None


@dataclass(frozen=True, slots=True)
class BlockSetOld(Command):
    """Pre-2.5.0 block set with inline data (``set-OLD [4]``)."""

    compressed: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class BlockDump(Command):
    """Streamed dump ([6]); ``old`` = whole-image dump-OLD [5], answered [7]."""

    compression_level: int = 0
    old: bool = False


@dataclass(frozen=True, slots=True)
class BlockSet(Command):
    """Raw chunks follow the command; ``compressed`` = they are a zlib stream."""

    compressed: bool = False


# -- event log commands (our own tag [6], see wire/events_grammar.py) ---------


@dataclass(frozen=True, slots=True)
class EventsSubscribe(Command):
    """Event history since a time, or the last ``count`` events, then live events."""

    since: datetime | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if (self.since is None) == (self.count is None):
            raise ValueError("events subscribe takes exactly one of since and count")


@dataclass(frozen=True, slots=True)
class EventsRecord(Command):
    """A producer (albatrossd, the TLS endpoint) hands albatross-log one event."""

    event: Event


# -- replies ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplyEmpty(Reply):
    pass


@dataclass(frozen=True, slots=True)
class ReplyString(Reply):
    text: str


@dataclass(frozen=True, slots=True)
class ReplyPolicies(Reply):
    entries: tuple[NamedPolicy, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplyBlockDevices(Reply):
    entries: tuple[BlockDeviceEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplyUnikernelImage(Reply):
    compressed: bool
    image: bytes


@dataclass(frozen=True, slots=True)
class ReplyOldBlockDeviceImage(Reply):
    compressed: bool
    image: bytes


@dataclass(frozen=True, slots=True)
class ReplyBlockDeviceImage(Reply):
    """First reply of a streamed block dump: are the chunks compressed?"""

    compressed: bool


@dataclass(frozen=True, slots=True)
class ReplyUnikernelInfo(Reply):
    entries: tuple[tuple[Name, UnikernelInfo], ...] = ()
    version: InfoVersion = InfoVersion.CURRENT


@dataclass(frozen=True, slots=True)
class ReplyConsoles(Reply):
    names: tuple[Name, ...] = ()


@dataclass(frozen=True, slots=True)
class Failure:
    message: str


# -- data ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataStatistics(Data):
    stats: Statistics


@dataclass(frozen=True, slots=True)
class DataConsole(Data):
    timestamp: datetime
    line: bytes


@dataclass(frozen=True, slots=True)
class DataBlock(Data):
    """A chunk of a block dump; ``chunk`` None marks the end of the stream."""

    chunk: bytes | None


@dataclass(frozen=True, slots=True)
class DataEvent(Data):
    """One event of the event log (our own tag [5]), stamped by albatross-log."""

    timestamp: datetime
    event: Event


Payload = Command | Reply | Failure | Data


@dataclass(frozen=True, slots=True)
class Wire:
    header: Header
    payload: Payload
