"""Restart rules: what happens after a unikernel process exits (spec 5.5, 5.6).

:class:`ExitStatus` is how a process ended (an exit code, a signal, or a stop
signal; albatross's ``process_exit``).  :func:`should_restart` is albatross's
``should_restart``; :func:`retry_without_name` is the ``add_name`` rule (a
unikernel that rejects the injected ``--name`` argument with exit 64 is
created again without it); :func:`after_exit` combines them in the order
albatrossd applies them.
"""

from __future__ import annotations

import enum
import signal as signal_module
from dataclasses import dataclass, replace

from albatross_py.wire.types import FailBehaviour, UnikernelConfig

#: Exit codes that never cause a restart, whatever the fail behaviour says:
#: 1 is a solo5 internal error (bad image, bad manifest); 60-62 are unused and
#: reserved by albatross; 63 is functoria's --help/--version; 64 is an argument
#: parse error (sysexits EX_USAGE).  Restarting would only loop.
NEVER_RESTART_CODES: frozenset[int] = frozenset({1, 60, 61, 62, 63, 64})

#: The exit code of an argument parse error (sysexits EX_USAGE).
EXIT_USAGE = 64


class ExitKind(enum.Enum):
    EXITED = "exit"
    SIGNALLED = "signal"
    STOPPED = "stop"
    #: the status was lost (the process was reaped by someone else)
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a process ended: ``kind`` and the exit code or signal number."""

    kind: ExitKind
    value: int

    @classmethod
    def exited(cls, code: int) -> ExitStatus:
        return cls(ExitKind.EXITED, code)

    @classmethod
    def signalled(cls, signal: int) -> ExitStatus:
        return cls(ExitKind.SIGNALLED, signal)

    @classmethod
    def stopped(cls, signal: int) -> ExitStatus:
        return cls(ExitKind.STOPPED, signal)

    @classmethod
    def of_returncode(cls, returncode: int) -> ExitStatus:
        """From a ``subprocess``/trio return code: negative means killed by ``-returncode``."""
        if returncode < 0:
            return cls.signalled(-returncode)
        return cls.exited(returncode)

    @classmethod
    def unknown(cls) -> ExitStatus:
        return cls(ExitKind.UNKNOWN, 0)

    @property
    def code(self) -> int | None:
        return self.value if self.kind is ExitKind.EXITED else None

    @property
    def signal(self) -> int | None:
        return self.value if self.kind in (ExitKind.SIGNALLED, ExitKind.STOPPED) else None

    def __str__(self) -> str:
        if self.kind is ExitKind.UNKNOWN:
            return "unknown exit"
        if self.kind is ExitKind.EXITED:
            return f"exit {self.value}"
        try:
            name = signal_module.Signals(self.value).name
        except ValueError:
            name = str(self.value)
        return f"{self.kind.value} {name}"


def should_restart(fail_behaviour: FailBehaviour, status: ExitStatus) -> bool:
    """Whether a unikernel with ``fail_behaviour`` is restarted after ``status``.

    Never after a signal or stop, never for :data:`NEVER_RESTART_CODES`; otherwise
    with restart-on-failure if no exit codes are given (so exit 0 restarts) or the
    code is one of them.  A ``quit`` unikernel is never restarted.
    """
    code = status.code
    if code is None or not fail_behaviour.restart or code in NEVER_RESTART_CODES:
        return False
    return fail_behaviour.exit_codes is None or code in fail_behaviour.exit_codes


def retry_without_name(config: UnikernelConfig, status: ExitStatus) -> UnikernelConfig | None:
    """The config to create again without ``--name``, or None if the rule does not apply.

    It applies when ``--name`` was injected (``add_name``) and the unikernel exited
    with 64: it does not understand the argument.  The result is dumped to state.
    """
    if config.add_name and status.code == EXIT_USAGE:
        return replace(config, add_name=False)
    return None


def needs_exit_handler(config: UnikernelConfig) -> bool:
    """Whether albatrossd registers a restart waiter after creating this unikernel."""
    return config.fail_behaviour.restart or config.add_name


class Action(enum.Enum):
    RECREATE_WITHOUT_NAME = "recreate without --name (dump state)"
    RESTART = "restart with the same config (no dump)"
    NONE = "stay stopped (dump state)"


@dataclass(frozen=True, slots=True)
class AfterExit:
    action: Action
    config: UnikernelConfig | None = None


def after_exit(config: UnikernelConfig, status: ExitStatus) -> AfterExit:
    """albatrossd's decision once a unikernel exited and no destroy intervened."""
    retry = retry_without_name(config, status)
    if retry is not None:
        return AfterExit(Action.RECREATE_WITHOUT_NAME, retry)
    if should_restart(config.fail_behaviour, status):
        return AfterExit(Action.RESTART, config)
    return AfterExit(Action.NONE)
