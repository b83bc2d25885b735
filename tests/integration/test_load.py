"""Load (issue 13 item 5): 20 concurrent clients x 100 mixed commands against
real albatrossd and albatross-console processes (``bench/load.py``, whose
full run is 100 x 1,000): no errors but refusals by policy, both daemons
alive, nothing left running, and RSS flat after a warm-up."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from albatross_py.wire.messages import ReplyUnikernelInfo, UnikernelInfoQuery
from albatross_py.wire.names import Name
from tests.sync_client import call

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="albatrossd needs root")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "load.py"
#: RSS may grow this much over the measured run (after the warm-up), no more.
RSS_GROWTH = 1.25


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("albatross_bench_load", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


async def test_twenty_clients_times_a_hundred_commands(tmp_path: Path) -> None:
    load = load_module()
    with load.daemons(tmp_path) as d:
        await load.run_load(d, 20, 20, seed=7)  # warm-up
        before = d.rss()
        tally = await load.run_load(d, 20, 100, seed=8)
        after = d.rss()
        assert tally.errors == [], tally.errors[:10]
        assert tally.commands == 2000
        assert tally.kinds["create"] > 0 and tally.kinds["console"] > 0, tally.kinds
        assert tally.refused > 0, "the policy never refused: the mix does not test it"
        assert d.alive()
        reply = call(d.vmmd_socket, Name.of_string("load:"), UnikernelInfoQuery())
        assert isinstance(reply, ReplyUnikernelInfo) and reply.entries == ()
        for b, a in zip(before, after, strict=True):
            assert a <= b * RSS_GROWTH, (before, after)
