"""Every size bounded by something real (issue 13 item 2, and its first defect).

A real albatrossd in a temp dir: the issue's ``create-block`` at the root
path of 712234361788353638 MB (which used to end albatrossd's serve task: the
rollback removed a file never made), the rollback rules (undo only what was
done; a failing undo is reported and never masks the first error), the
host's bounds (free space of the block directory, ``--max-block-size``,
physical memory, CPU ids), and every numeric field a valid request can carry
at extreme values, which must all be clear refusals (or work), never an
internal error.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from albatross_py.daemons.stats import StatsDaemon
from albatross_py.host import discover, files
from albatross_py.transport import FramedStream, bind_unix, connect_unix, socket_path
from albatross_py.wire import der, read_state
from albatross_py.wire.messages import (
    BlockAdd,
    BlockAddOld,
    BlockDump,
    BlockInfoQuery,
    ConsoleAdd,
    ConsoleSubscribe,
    EventsSubscribe,
    Failure,
    Header,
    PolicyAdd,
    ReplyBlockDevices,
    ReplyString,
    ReplyUnikernelInfo,
    StatsAdd,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfoQuery,
    UnikernelRestart,
    Wire,
)
from albatross_py.wire.names import ROOT, Name
from albatross_py.wire.types import BlockDevice, Policy, UnikernelArguments, UnikernelConfig
from tests.integration.stack import Stack, stack

TIMEOUT = 20
#: The issue's block size.
ISSUE_SIZE = 712234361788353638
HUGE = Policy(2**62 - 1, frozenset(range(64)), 2**62 - 1, 2**62 - 1, frozenset())
#: Extreme values: the wire's own bounds (OCaml's 63-bit int) and beyond them.
EXTREMES = [0, -1, 2**62 - 1, -(2**62), 2**63, 2**64 + 1]


def unexpected(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info]


async def info_answers(s: Stack) -> bool:
    return isinstance(await s.call(":", UnikernelInfoQuery()), ReplyUnikernelInfo)


async def test_the_issues_create_block_at_the_root(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with stack(tmp_path) as s:
        root = s.sup.resources.find_policy(ROOT)
        # how the size got through: the root policy could be replaced by any numbers
        refused = await s.call(":", PolicyAdd(HUGE))
        assert isinstance(refused, Failure), refused
        assert refused.message.startswith("root policy memory"), refused
        assert s.sup.resources.find_policy(ROOT) == root
        reply = await s.call(":disk", BlockAdd(ISSUE_SIZE))
        assert isinstance(reply, Failure), reply
        assert f"block device of {ISSUE_SIZE} MB exceeds the free space" in reply.message
        assert not (s.dbdir / "block" / ":disk").exists()
        assert await s.call(":", BlockInfoQuery()) == ReplyBlockDevices(())
        assert all([await info_answers(s) for _ in range(10)])
    assert unexpected(caplog) == []


async def test_a_failed_create_removes_nothing_it_did_not_make(tmp_path: Path) -> None:
    """The old rollback removed the file whether or not the create had made it."""
    async with stack(tmp_path) as s:
        theirs = s.dbdir / "block" / ":disk"
        theirs.write_bytes(b"not MB aligned, so not a block device")  # not in the map
        reply = await s.call(":disk", BlockAdd(1))
        assert reply == Failure("could not create block device: file already exists"), reply
        assert theirs.read_bytes() == b"not MB aligned, so not a block device"
        assert await info_answers(s)


async def test_a_failing_undo_is_reported_after_the_first_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def undo_fails(layout: files.Layout, name: Name) -> None:
        raise PermissionError(13, "Permission denied (injected)")

    async with stack(tmp_path) as s:
        monkeypatch.setattr(files, "destroy_block", undo_fails)
        reply = await s.call(":disk", BlockAddOld(1, True, b"not zlib"))
        assert isinstance(reply, Failure), reply
        assert reply.message.startswith("could not fill block device: failed to uncompress")
        assert reply.message.endswith(
            "removing it failed too: [Errno 13] Permission denied (injected)"
        )
        assert await s.call(":", BlockInfoQuery()) == ReplyBlockDevices(())
        assert await info_answers(s)
    assert any("after a failed fill" in r.getMessage() for r in caplog.records)


async def test_block_size_is_bounded_by_free_space_and_max_block_size(tmp_path: Path) -> None:
    async with stack(tmp_path, max_block_size=4) as s:
        over = await s.call(":big", BlockAdd(5))
        assert over == Failure("block device of 5 MB exceeds --max-block-size of 4 MB"), over
        assert await s.call(":ok", BlockAdd(4)) == ReplyString("added block device")
    (tmp_path / "again").mkdir()
    async with stack(tmp_path / "again") as s:
        free = discover.free_space_mb(s.dbdir / "block")
        too_big = 2 * free + 1024  # free space moves on a shared host; this never fits
        reply = await s.call(":big", BlockAdd(too_big))
        assert isinstance(reply, Failure), reply
        assert reply.message.startswith(
            f"block device of {too_big} MB exceeds the free space of the block directory"
        ), reply
        assert not (s.dbdir / "block" / ":big").exists()


async def test_memory_and_cpus_are_bounded_by_the_host(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        host = s.sup.resources.host
        assert host is not None
        cases = {
            "memory": (
                {"memory": host.memory + 1},
                f"memory of {host.memory + 1} MB exceeds what this host has",
            ),
            "cpuid": (
                {"cpuids": frozenset({len(host.cpuids)})},
                f"CPU ids {len(host.cpuids)} do not exist on this host",
            ),
            "cpus": ({"cpus": len(host.cpuids) + 1}, "online CPUs of this host"),
        }
        for what, (change, message) in cases.items():
            cfg = dataclasses.replace(s.config(), **change)
            reply = await s.call(":vm", UnikernelCreate(cfg))
            assert isinstance(reply, Failure) and message in reply.message, (what, reply)
        over = dataclasses.replace(s.sup.resources.find_policy(ROOT), memory=host.memory + 1)
        reply = await s.call(":", PolicyAdd(over))
        assert isinstance(reply, Failure) and "exceeds the host's" in reply.message, reply
        assert await s.call(":", UnikernelInfoQuery()) == ReplyUnikernelInfo(())


# -- every numeric field, extreme values -----------------------------------------------------


def _unbounded_integer_encoding(self: der.Integer, value: int) -> bytes:
    """The client side may send any INTEGER: encode without the 63-bit bound."""
    bits = value.bit_length() if value >= 0 else (~value).bit_length()
    return value.to_bytes(bits // 8 + 1, "big", signed=True)


Request = Callable[[int], tuple[str, str, object]]  # value -> (socket, name, payload)


def requests(s: Stack) -> dict[str, Request]:
    cfg = s.config()
    root = s.sup.resources.find_policy(ROOT)
    assert root is not None
    tenant = Policy(2, frozenset({0}), 64, 10, frozenset())

    def config(**kw: object) -> UnikernelConfig:
        return dataclasses.replace(cfg, **kw)  # type: ignore[arg-type]

    def policy(base: Policy, **kw: object) -> Policy:
        return dataclasses.replace(base, **kw)  # type: ignore[arg-type]

    return {
        "block size": lambda v: ("vmmd", ":b", BlockAdd(v)),
        "old block size": lambda v: ("vmmd", ":b", BlockAddOld(v, False, b"data")),
        "memory": lambda v: ("vmmd", ":x", UnikernelCreate(config(memory=v))),
        "cpuid": lambda v: ("vmmd", ":x", UnikernelCreate(config(cpuids=frozenset({v})))),
        "cpus": lambda v: ("vmmd", ":x", UnikernelCreate(config(cpus=v))),
        "startup priority": lambda v: ("vmmd", ":x", UnikernelCreate(config(startup=v))),
        "sector size": lambda v: (
            "vmmd", ":x", UnikernelCreate(config(blocks=(BlockDevice("d", "disk", v),))),
        ),
        "restart memory": lambda v: (
            "vmmd", ":running", UnikernelRestart(UnikernelArguments(memory=v)),
        ),
        "restart cpus": lambda v: (
            "vmmd", ":running", UnikernelRestart(UnikernelArguments(cpus=v)),
        ),
        "get level": lambda v: ("vmmd", ":running", UnikernelGet(v)),
        "dump level": lambda v: ("vmmd", ":disk", BlockDump(v)),
        "old dump level": lambda v: ("vmmd", ":disk", BlockDump(v, old=True)),
        "policy unikernels": lambda v: ("vmmd", "t:", PolicyAdd(policy(tenant, unikernels=v))),
        "policy memory": lambda v: ("vmmd", "t:", PolicyAdd(policy(tenant, memory=v))),
        "policy block": lambda v: ("vmmd", "t:", PolicyAdd(policy(tenant, block=v))),
        "policy cpuid": lambda v: ("vmmd", "t:", PolicyAdd(policy(tenant, cpuids={v}))),
        "root unikernels": lambda v: ("vmmd", ":", PolicyAdd(policy(root, unikernels=v))),
        "root memory": lambda v: ("vmmd", ":", PolicyAdd(policy(root, memory=v))),
        "root block": lambda v: ("vmmd", ":", PolicyAdd(policy(root, block=v))),
        "console count": lambda v: ("console", ":running", ConsoleSubscribe(count=v)),
        "console limit": lambda v: ("console", ":running", ConsoleAdd(v)),
        "events count": lambda v: ("log", ":", EventsSubscribe(count=v)),
        "stats pid": lambda v: ("stats", ":x", StatsAdd("", v, ())),
    }  # fmt: skip


async def first_reply(path: Path, name: str, payload: object) -> Wire | None:
    with trio.fail_after(TIMEOUT):
        conn = FramedStream(await connect_unix(path))
        async with conn:
            header = Header(sequence=3, name=Name.of_string(name))
            await conn.write_wire(Wire(header, payload))  # type: ignore[arg-type]
            return await conn.read_wire()


async def test_extreme_values_in_every_numeric_field_are_refused_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(der.Integer, "encode_content", _unbounded_integer_encoding)
    async with stack(tmp_path, log=True) as s:
        stats = StatsDaemon(s.tmpdir)
        await s.nursery.start(stats.run, bind_unix(socket_path(s.tmpdir, "stats")))
        assert await s.call(":running", UnikernelCreate(s.config())) == ReplyString(
            "created unikernel"
        )
        assert await s.call(":disk", BlockAdd(1)) == ReplyString("added block device")
        root = s.sup.resources.find_policy(ROOT)
        outcomes: dict[str, list[str]] = {}
        for field, request in requests(s).items():
            for value in EXTREMES:
                service, name, payload = request(value)
                wire = await first_reply(socket_path(s.tmpdir, service), name, payload)
                assert wire is not None, (field, value, "closed without a reply")
                answer = wire.payload
                if isinstance(answer, Failure):
                    assert not answer.message.startswith("internal error"), (field, value, answer)
                    outcomes.setdefault(field, []).append(f"{value}: {answer.message}")
                # undo what was accepted
                if s.sup.resources.find_unikernel(Name.of_string(":x")) is not None:
                    assert await s.call(":x", UnikernelDestroy()) == ReplyString(
                        "destroyed unikernel"
                    )
                if s.sup.resources.find_policy(ROOT) != root:
                    assert await s.call(":", PolicyAdd(root)) == ReplyString("added policy")
        # values beyond the wire's 63 bits never reach a handler
        for field, messages in outcomes.items():
            for value in (2**63, 2**64 + 1):
                assert any(m.startswith(f"{value}: ") for m in messages), (field, messages)
        assert await info_answers(s)
        read_state((s.dbdir / "state").read_bytes())  # the state file still loads
    assert unexpected(caplog) == []
