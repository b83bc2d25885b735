"""Lifecycle events: what albatrossd and the TLS endpoint report to albatross-log.

albatross had a log daemon until 1.2.0 (spec 6.2) and 2.8.0 brings an event
service back; neither grammar is usable here (the old one is retired with an
error on tag [2], the 2.8 one is unpublished), so events travel under new
CHOICE tags of our own (see ``wire/grammar.py``), following albatross's
append-only rule.  These are the typed values.
"""

from __future__ import annotations

from dataclasses import dataclass

from albatross_py.wire.names import Name
from albatross_py.wire.types import Policy


class Event:
    """Base of every event."""

    __slots__ = ()

    @property
    def subject(self) -> Name:
        """The name the event is about (subscriptions match on it)."""
        return getattr(self, "name", Name())


@dataclass(frozen=True, slots=True)
class Startup(Event):
    """A daemon started (``name`` ":"); ``program`` says which."""

    program: str


@dataclass(frozen=True, slots=True)
class Login(Event):
    name: Name
    address: str


@dataclass(frozen=True, slots=True)
class Logout(Event):
    name: Name
    address: str


@dataclass(frozen=True, slots=True)
class UnikernelStarted(Event):
    name: Name
    pid: int
    taps: tuple[tuple[str, str], ...]  # (netif, tap)
    blocks: tuple[tuple[str, str], ...]  # (block name in the VM, host block device)
    digest: bytes = b""


@dataclass(frozen=True, slots=True)
class UnikernelExited(Event):
    """A VM process ended: ``code`` for an exit, ``signal`` for a signal."""

    name: Name
    pid: int
    code: int | None = None
    signal: int | None = None
    #: Why, where known: the VM's last console lines for an exit nobody asked for.
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class UnikernelRestarting(Event):
    name: Name
    reason: str


@dataclass(frozen=True, slots=True)
class UnikernelDestroyed(Event):
    name: Name


@dataclass(frozen=True, slots=True)
class PolicyChanged(Event):
    """A policy was added or replaced (``policy``) or removed (None)."""

    name: Name
    policy: Policy | None


@dataclass(frozen=True, slots=True)
class BlockChanged(Event):
    """A block device was added (``size`` MB) or removed (None)."""

    name: Name
    size: int | None
