"""Restart rules: which exits restart a unikernel, and the add_name + exit 64 retry."""

from __future__ import annotations

import pytest

from albatross_py.core.restart import (
    NEVER_RESTART_CODES,
    Action,
    ExitKind,
    ExitStatus,
    after_exit,
    needs_exit_handler,
    retry_without_name,
    should_restart,
)
from albatross_py.wire.types import FailBehaviour, UnikernelConfig

QUIT = FailBehaviour()
ANY = FailBehaviour(restart=True)
SOME = FailBehaviour(restart=True, exit_codes=frozenset({0, 2, 64}))

E = ExitStatus.exited
S = ExitStatus.signalled

# (fail behaviour, exit, restart?)
TABLE = [
    (ANY, E(0), True),  # the default restarts on a clean exit
    (ANY, E(2), True),
    (ANY, E(255), True),
    (ANY, E(1), False),  # solo5 internal error
    (ANY, E(60), False),
    (ANY, E(61), False),
    (ANY, E(62), False),
    (ANY, E(63), False),  # --help / --version
    (ANY, E(64), False),  # argument parse error
    (ANY, E(65), True),
    (ANY, S(15), False),  # our own SIGTERM
    (ANY, S(9), False),
    (ANY, ExitStatus.stopped(19), False),
    (SOME, E(0), True),
    (SOME, E(2), True),
    (SOME, E(3), False),  # not in the set
    (SOME, E(64), False),  # in the set, but never restarted
    (SOME, S(2), False),
    (QUIT, E(0), False),
    (QUIT, E(2), False),
]


@pytest.mark.parametrize(("fb", "status", "expected"), TABLE, ids=str)
def test_should_restart_table(fb: FailBehaviour, status: ExitStatus, expected: bool) -> None:
    assert should_restart(fb, status) is expected


def test_never_restart_codes() -> None:
    assert frozenset({1, 60, 61, 62, 63, 64}) == NEVER_RESTART_CODES


def test_exit_status_views() -> None:
    assert ExitStatus.of_returncode(3) == E(3)
    assert ExitStatus.of_returncode(-15) == S(15)
    assert E(3).code == 3 and E(3).signal is None
    assert S(9).code is None and S(9).signal == 9
    assert ExitStatus.stopped(19).kind is ExitKind.STOPPED
    assert str(E(64)) == "exit 64"


def test_retry_without_name() -> None:
    named = UnikernelConfig(add_name=True)
    retry = retry_without_name(named, E(64))
    assert retry is not None and retry.add_name is False
    assert retry == UnikernelConfig(add_name=False)
    assert retry_without_name(named, E(63)) is None
    assert retry_without_name(named, S(64)) is None
    assert retry_without_name(UnikernelConfig(add_name=False), E(64)) is None


def test_after_exit_order() -> None:
    # add_name + 64 wins even for a restarting unikernel (64 itself never restarts)
    both = UnikernelConfig(add_name=True, fail_behaviour=ANY)
    decision = after_exit(both, E(64))
    assert decision.action is Action.RECREATE_WITHOUT_NAME
    assert decision.config is not None and decision.config.add_name is False
    assert after_exit(both, E(0)).action is Action.RESTART
    assert after_exit(both, E(0)).config == both
    assert after_exit(both, E(1)).action is Action.NONE
    assert after_exit(UnikernelConfig(add_name=False), E(0)).action is Action.NONE


def test_needs_exit_handler() -> None:
    assert needs_exit_handler(UnikernelConfig(add_name=True))
    assert needs_exit_handler(UnikernelConfig(add_name=False, fail_behaviour=ANY))
    assert not needs_exit_handler(UnikernelConfig(add_name=False))
