"""Which daemon a command goes to, and the shape of the conversation.

albatross's ``Vmm_commands.endpoint`` (spec 2.4): the client picks the local
socket by it and the TLS endpoint proxies by it.  Service names are those of
:func:`albatross_py.transport.socket_path`.
"""

from __future__ import annotations

import enum
from typing import Literal

from albatross_py.wire.messages import (
    BlockDump,
    Command,
    ConsoleAdd,
    ConsoleListInactive,
    ConsoleSubscribe,
    EventsSubscribe,
    StatsAdd,
    StatsInitial,
    StatsRemove,
    StatsSubscribe,
)

Service = Literal["vmmd", "console", "stats", "log"]


class Shape(enum.Enum):
    SINGLE = "single"  # one reply
    READ = "read"  # a subscription: replies and data until either side stops
    DUMP = "dump"  # a block dump: data until DataBlock(None)


def endpoint(cmd: Command) -> tuple[Service, Shape]:
    """The daemon a command is for and how the conversation goes."""
    match cmd:
        case ConsoleListInactive():
            return "console", Shape.SINGLE
        case ConsoleAdd() | ConsoleSubscribe():
            return "console", Shape.READ
        case StatsSubscribe():
            return "stats", Shape.READ
        case EventsSubscribe():
            return "log", Shape.READ
        case StatsAdd() | StatsRemove() | StatsInitial():
            return "stats", Shape.SINGLE
        case BlockDump(old=False):
            return "vmmd", Shape.DUMP
    return "vmmd", Shape.SINGLE
