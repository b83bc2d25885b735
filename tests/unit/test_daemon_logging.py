"""``-v`` logs our own debug lines, not those of the libraries we use (issue 14, item 7).

At DEBUG, pyroute2 logs every netlink message (a dump of each interface per
query) and asyncio its selector; the daemons' handler lets other libraries'
records through from WARNING only, unless ``-vvv`` asks for them.  The
pyroute2 records here are real: a real netlink query of this host's links.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from albatross_py.daemons import common, vmmd
from albatross_py.host.net import list_bridges_sync


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def log_everything() -> None:
    logging.getLogger("albatross.console").debug("ours at debug")
    logging.getLogger("albatrossd").debug("albatrossd at debug")
    logging.getLogger("albatross_py.host.net").debug("a module logger at debug")
    logging.getLogger("httpx").info("theirs at info")
    logging.getLogger("hpack.hpack").debug("theirs at debug")
    logging.getLogger("pyroute2").warning("theirs at warning")
    list_bridges_sync()  # pyroute2's own netlink debug records


def test_albatrossd_v_without_third_party_floods(capsys: pytest.CaptureFixture[str]) -> None:
    vmmd.setup_logging(1, syslog=False)  # albatrossd -v
    log_everything()
    out = capsys.readouterr().out
    assert "albatrossd: [DEBUG] ours at debug" in out
    assert "albatrossd: [DEBUG] albatrossd at debug" in out
    assert "a module logger at debug" in out
    assert "theirs at warning" in out  # warnings always pass
    assert "theirs at info" not in out and "theirs at debug" not in out
    assert "IFLA_IFNAME" not in out and "SOCK_DGRAM" not in out  # pyroute2's dumps

    vmmd.setup_logging(3, syslog=False)  # -vvv: everything
    log_everything()
    out = capsys.readouterr().out
    assert "theirs at debug" in out and "IFLA_IFNAME" in out


def test_unprivileged_daemons_alike(capsys: pytest.CaptureFixture[str]) -> None:
    common.setup_logging("albatross-stats", verbose=2)  # -vv: debug
    log_everything()
    out = capsys.readouterr().out
    assert "albatross-stats: [DEBUG] ours at debug" in out and "theirs at warning" in out
    assert "theirs at debug" not in out and "IFLA_IFNAME" not in out
    common.setup_logging("albatross-stats", verbose=0)
    log_everything()
    out = capsys.readouterr().out
    assert out.splitlines() == ["albatross-stats: [WARNING] theirs at warning"]
