"""albatross-stats attached to the real albatrossd: Stats_initial, then
albatrossd pushes Stats_add/Stats_remove, and subscribers get the VM's data."""

from __future__ import annotations

from pathlib import Path

import trio

from albatross_py.daemons.stats import StatsDaemon
from albatross_py.transport import FramedStream, bind_unix, connect_unix, socket_path
from albatross_py.wire.messages import (
    DataStatistics,
    Header,
    ReplyString,
    StatsSubscribe,
    UnikernelCreate,
    UnikernelDestroy,
    Wire,
)
from albatross_py.wire.names import Name
from tests.integration.stack import stack


async def test_stats_follow_albatrossd(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        stats = StatsDaemon(s.tmpdir, interval=0.2)
        await s.nursery.start(stats.run, bind_unix(socket_path(s.tmpdir, "stats")))
        with trio.fail_after(10):
            while not s.sup.stats.connected:  # albatross-stats sent Stats_initial
                await trio.sleep(0.05)
        # a VM created after the stats daemon attached is pushed to it
        cfg = s.config("--lines=2")
        assert await s.call("t:vm", UnikernelCreate(cfg)) == ReplyString("created unikernel")
        pid = s.sup.resources.find_unikernel(Name.of_string("t:vm")).process.pid
        with trio.fail_after(10):
            conn = FramedStream(await connect_unix(socket_path(s.tmpdir, "stats")))
            async with conn:
                header = Header(name=Name.of_string("t:"))
                await conn.write_wire(Wire(header, StatsSubscribe()))
                assert (await conn.read_wire()).payload == ReplyString("subscribed")
                data = await conn.read_wire()
                assert data is not None and isinstance(data.payload, DataStatistics)
                assert str(data.header.name) == ":vm"  # relative to the subscription
                assert data.payload.stats.kinfo_mem is not None
                assert data.payload.stats.kinfo_mem.rss > 0
        tracked = stats.table.vm(Name.of_string("t:vm"))
        assert tracked is not None and tracked.pid == pid
        assert await s.call("t:vm", UnikernelDestroy()) == ReplyString("destroyed unikernel")
        assert stats.table.vm(Name.of_string("t:vm")) is None  # Stats_remove was pushed


async def test_stats_learns_about_vms_running_before_it_connected(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        assert await s.call("early", UnikernelCreate(s.config())) == ReplyString(
            "created unikernel"
        )
        stats = StatsDaemon(s.tmpdir, interval=0.2)
        await s.nursery.start(stats.run, bind_unix(socket_path(s.tmpdir, "stats")))
        pid = s.sup.resources.find_unikernel(Name.of_string("early")).process.pid
        with trio.fail_after(20):
            while (tracked := stats.table.vm(Name.of_string("early"))) is None:
                await trio.sleep(0.05)
        assert tracked.pid == pid
