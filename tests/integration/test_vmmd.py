"""albatrossd over its real socket: every command, the transactions, bad input."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import trio

from albatross_py.daemons.supervisor import OperationError
from albatross_py.wire import read_state
from albatross_py.wire.messages import (
    BlockAdd,
    BlockDump,
    BlockInfoQuery,
    BlockRemove,
    Failure,
    InfoVersion,
    PolicyAdd,
    PolicyInfoQuery,
    PolicyRemove,
    ReplyBlockDevices,
    ReplyOldBlockDeviceImage,
    ReplyPolicies,
    ReplyString,
    ReplyUnikernelImage,
    ReplyUnikernelInfo,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfoQuery,
    UnikernelRestart,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import FailBehaviour, Policy, UnikernelArguments
from tests.integration.stack import Stack, stack


def policy(vms: int, mem: int = 1024, block: int | None = None) -> Policy:
    return Policy(vms, frozenset({0}), mem, block, frozenset())


def pid_of(s: Stack, name: str) -> int:
    vm = s.sup.resources.find_unikernel(Name.of_string(name))
    assert vm is not None, f"{name} is not running"
    return vm.process.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}/status").exists()
        and "zombie" not in Path(f"/proc/{pid}/status").read_text()
    )


def state_names(s: Stack) -> list[str]:
    return [str(n) for n, _ in read_state((s.dbdir / "state").read_bytes()).unikernels]


async def wait_for(predicate, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def test_create_info_get_destroy(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        cfg = s.config()
        assert await s.call("web", UnikernelCreate(cfg)) == ReplyString("created unikernel")
        pid = pid_of(s, ":web")
        assert alive(pid)
        assert (s.tmpdir / "fifo" / ":web").exists() and (s.tmpdir / ":web.img").exists()
        assert state_names(s) == [":web"]
        # a second create of the same name is refused
        again = await s.call("web", UnikernelCreate(cfg))
        assert again == Failure("Unikernel with same name is already running")
        info = await s.call(":", UnikernelInfoQuery())
        assert isinstance(info, ReplyUnikernelInfo)
        ((name, i),) = info.entries
        assert str(name) == ":web" and i.memory == cfg.memory and len(i.digest) == 32
        old = await s.call("web", UnikernelInfoQuery(InfoVersion.OLD5))
        assert isinstance(old, ReplyUnikernelInfo) and old.version is InfoVersion.OLD5
        img = await s.call("web", UnikernelGet(9))
        assert isinstance(img, ReplyUnikernelImage) and img.compressed
        assert zlib.decompress(img.image) == cfg.image
        assert await s.call("web", UnikernelDestroy()) == ReplyString("destroyed unikernel")
        assert not alive(pid)  # destroy replies only after the process is gone
        assert not (s.tmpdir / "fifo" / ":web").exists()
        assert not (s.tmpdir / ":web.img").exists()
        assert state_names(s) == []
        assert await s.call("web", UnikernelDestroy()) == Failure("destroy: not found")


async def test_policies_bound_the_whole_subtree(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        assert await s.call("a:", PolicyAdd(policy(2))) == ReplyString("added policy")
        assert await s.call("a:", PolicyAdd(policy(2))) == ReplyString("no modification of policy")
        assert await s.call("a:b:", PolicyAdd(policy(2))) == ReplyString("added policy")
        assert await s.call("a:c:", PolicyAdd(policy(2))) == ReplyString("added policy")
        big = await s.call("a:d:", PolicyAdd(policy(3)))
        assert isinstance(big, Failure) and "a:" in big.message
        for name in ("a:b:one", "a:c:two"):
            assert await s.call(name, UnikernelCreate(s.config())) == ReplyString(
                "created unikernel"
            )
        third = await s.call("a:c:three", UnikernelCreate(s.config()))
        assert isinstance(third, Failure) and "a:" in third.message, third
        listed = await s.call("a:", PolicyInfoQuery())
        assert isinstance(listed, ReplyPolicies)
        assert sorted(str(e.name) for e in listed.entries) == [":", "b:", "c:"]
        # below current usage: refused, and the state is unchanged
        small = await s.call("a:b:", PolicyAdd(policy(0)))
        assert isinstance(small, Failure)
        assert await s.call("a:c:", PolicyRemove()) == ReplyString("removed policy")
        stored = read_state((s.dbdir / "state").read_bytes())
        assert sorted(str(n) for n, _ in stored.policies) == [":", "a:", "a:b:"]


async def test_policy_add_keeps_the_connection(tmp_path: Path) -> None:
    from albatross_py.transport import FramedStream, connect_unix, socket_path
    from albatross_py.wire.messages import Header, Wire

    async with stack(tmp_path) as s:
        conn = FramedStream(await connect_unix(socket_path(s.tmpdir, "vmmd")))
        async with conn:
            for seq, path in enumerate(["x:", "x:y:"], start=1):
                await conn.write_wire(Wire(Header(sequence=seq, name=Name.of_string(path)),
                                           PolicyAdd(policy(1))))  # fmt: skip
                reply = await conn.read_wire()
                assert reply is not None and reply.header.sequence == seq
                assert reply.payload == ReplyString("added policy")
            await conn.write_wire(Wire(Header(sequence=3, name=Name.of_string("x:y:vm")),
                                       UnikernelCreate(s.config())))  # fmt: skip
            reply = await conn.read_wire()
            assert reply is not None and reply.payload == ReplyString("created unikernel")
            assert await conn.read_wire() is None  # closed after a single command


async def test_restart_on_failure_and_destroy_in_the_loop(tmp_path: Path) -> None:
    # the restart delay is the window in which a destroy finds the VM between runs
    async with stack(tmp_path, restart_delay=1.5) as s:
        fb = FailBehaviour(restart=True, exit_codes=frozenset({3}))
        cfg = s.config("--lines=1", "--interval=0.2", "--exit-code=3", fail_behaviour=fb)
        assert await s.call("loop", UnikernelCreate(cfg)) == ReplyString("created unikernel")
        first = pid_of(s, ":loop")
        await wait_for(lambda: s.sup.resources.find_unikernel(Name.of_string("loop"))
                       is not None and pid_of(s, ":loop") != first)  # fmt: skip
        # destroy while it is between runs or running: either way it is gone for good
        await wait_for(lambda: Name.of_string("loop") in s.sup.restarting)
        reply = await s.call("loop", UnikernelDestroy())
        assert reply == ReplyString("destroyed: removed from restarting")
        await trio.sleep(2)
        assert s.sup.resources.find_unikernel(Name.of_string("loop")) is None
        # exit code 1 (solo5 internal error) is never restarted
        once = s.config("--exit-code=1", fail_behaviour=FailBehaviour(restart=True))
        assert await s.call("once", UnikernelCreate(once)) == ReplyString("created unikernel")
        await wait_for(lambda: s.sup.resources.find_unikernel(Name.of_string("once")) is None)
        await trio.sleep(0.5)
        assert s.sup.resources.find_unikernel(Name.of_string("once")) is None
        assert Name.of_string("once") not in s.sup.restarting


async def test_exit_64_retries_without_name(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        cfg = s.config("--reject-name")
        assert await s.call("old", UnikernelCreate(cfg)) == ReplyString("created unikernel")
        await wait_for(lambda: (vm := s.sup.resources.find_unikernel(Name.of_string("old")))
                       is not None and not vm.config.add_name)  # fmt: skip
        assert (
            "--name=old" not in s.sup.resources.find_unikernel(Name.of_string("old")).process.argv
        )


async def test_force_create_replaces_and_rolls_back(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        assert await s.call("svc", UnikernelCreate(s.config(memory=32))) == ReplyString(
            "created unikernel"
        )
        first = pid_of(s, ":svc")
        reply = await s.call("svc", UnikernelCreate(s.config(memory=48), force=True))
        assert reply == ReplyString("created unikernel")
        second = pid_of(s, ":svc")
        assert second != first and not alive(first)
        assert s.sup.resources.find_unikernel(Name.of_string("svc")).config.memory == 48

        # the new VM fails to start after the old one was stopped: the old one comes back
        backend = s.sup.backends[next(iter(s.sup.backends))]
        real_start = backend.start

        async def failing_start(prepared, taps, fifo, **kw):  # type: ignore[no-untyped-def]
            if prepared.config.memory == 64:
                raise OSError("injected start failure")
            return await real_start(prepared, taps, fifo, **kw)

        backend.start = failing_start  # type: ignore[method-assign]
        reply = await s.call("svc", UnikernelCreate(s.config(memory=64), force=True))
        assert isinstance(reply, Failure)
        assert "injected start failure" in reply.message
        assert "the previous unikernel was restored" in reply.message
        vm = s.sup.resources.find_unikernel(Name.of_string("svc"))
        assert vm is not None and vm.config.memory == 48 and alive(vm.process.pid)
        assert not alive(second)
        # a config refused by the checks never touches the running VM
        before = pid_of(s, ":svc")
        bad = await s.call("svc", UnikernelCreate(s.config(memory=10**9), force=True))
        assert isinstance(bad, Failure) and pid_of(s, ":svc") == before


async def test_restart_with_new_arguments(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        assert await s.call("r", UnikernelCreate(s.config(memory=32))) == ReplyString(
            "created unikernel"
        )
        first = pid_of(s, ":r")
        assert await s.call("r", UnikernelRestart()) == ReplyString("created unikernel")
        assert pid_of(s, ":r") != first
        args = UnikernelArguments(memory=40, argv=("--lines=2",))
        assert await s.call("r", UnikernelRestart(args)) == ReplyString("created unikernel")
        vm = s.sup.resources.find_unikernel(Name.of_string("r"))
        assert vm.config.memory == 40 and vm.config.argv == ("--lines=2",)
        assert await s.call("gone", UnikernelRestart()) == Failure("destroy: not found")


async def test_failed_create_leaves_nothing_behind(tmp_path: Path) -> None:
    async with stack(tmp_path, console=False) as s:
        reply = await s.call("c", UnikernelCreate(s.config()))
        assert isinstance(reply, Failure)
        assert "albatross-console is not running" in reply.message
        assert list((s.tmpdir / "fifo").iterdir()) == []
        assert list(s.tmpdir.glob("*.img")) == []
        assert s.sup.resources.find_unikernel(Name.of_string("c")) is None
        # a manifest mismatch is refused before anything is allocated
        image_with_net = s.image(nets=("service",))
        reply = await s.call("m", UnikernelCreate(s.config().__class__(image=image_with_net)))
        assert isinstance(reply, Failure) and "manifest" in reply.message, reply
        assert list((s.tmpdir / "fifo").iterdir()) == []
        assert list(s.tmpdir.glob("*.img")) == []


async def test_block_devices(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        assert await s.call("t:", PolicyAdd(policy(2, block=3))) == ReplyString("added policy")
        assert await s.call("t:disk", BlockAdd(2)) == ReplyString("added block device")
        over = await s.call("t:more", BlockAdd(2))
        assert isinstance(over, Failure) and "t:" in over.message
        info = await s.call("t:", BlockInfoQuery())
        assert info == ReplyBlockDevices(info.entries) and [
            (str(e.name), e.size, e.active) for e in info.entries
        ] == [(":disk", 2, False)]
        dump = await s.call("t:disk", BlockDump(0, old=True))
        assert isinstance(dump, ReplyOldBlockDeviceImage) and dump.image == bytes(2 << 20)
        assert await s.call("t:disk", BlockRemove()) == ReplyString("removed block")
        assert not (s.dbdir / "block" / "t:disk").exists()
        assert await s.call("t:disk", BlockRemove()) == Failure("remove block: not found")


async def test_garbage_gets_a_failure_and_the_daemon_goes_on(tmp_path: Path) -> None:
    from albatross_py.transport import connect_unix, socket_path

    async with stack(tmp_path) as s:
        for junk in (b"\x00\x00\x00\x05hello", (1 << 30).to_bytes(4, "big"), b"\x00\x00"):
            conn = await connect_unix(socket_path(s.tmpdir, "vmmd"))
            await conn.send_all(junk)
            with trio.fail_after(5):
                if junk == b"\x00\x00":
                    await conn.send_eof()
                data = await conn.receive_some(4096)
            await conn.aclose()
            if junk != b"\x00\x00":
                assert b"\xa2" in data  # a Failure payload came back
        assert await s.call("still", UnikernelCreate(s.config())) == ReplyString(
            "created unikernel"
        )


def test_operation_error_is_an_exception() -> None:
    assert issubclass(OperationError, Exception)
