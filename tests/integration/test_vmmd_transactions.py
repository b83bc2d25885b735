"""albatrossd's create transaction and startup, under injected faults.

A failure at any step of a create undoes every step before it: no FIFO, no
image file, no tap, no running process, no resource entry, no state entry.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from albatross_py.daemons import supervisor as supervisor_module
from albatross_py.daemons.vmmd import Options, StartupError, start_supervisor
from albatross_py.virt.solo5_elf import make_solo5_elf
from albatross_py.wire import State, read_state, write_state
from albatross_py.wire.messages import Failure, ReplyString, UnikernelCreate, UnikernelInfoQuery
from albatross_py.wire.names import Name
from albatross_py.wire.types import UnikernelConfig
from tests.integration.stack import stack

STEPS = ["fifo", "image", "console", "start", "commit", "dump"]


def leftovers(tmpdir: Path) -> list[str]:
    found = [p.name for p in (tmpdir / "fifo").iterdir()]
    found += [p.name for p in tmpdir.glob("*.img")]
    return found


@pytest.mark.parametrize("step", STEPS)
async def test_a_failure_at_each_create_step_leaves_nothing(
    tmp_path: Path, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack(tmp_path) as s:
        sup = s.sup
        started: list[int] = []
        backend = next(iter(sup.backends.values()))
        real_start = backend.start

        async def start(prepared, taps, fifo, **kw):  # type: ignore[no-untyped-def]
            if step == "start":  # the tender cannot be executed
                raise OSError("injected: start")
            proc = await real_start(prepared, taps, fifo, **kw)
            started.append(proc.pid)
            return proc

        monkeypatch.setattr(backend, "start", start)

        def boom(*_a: object, **_k: object) -> None:
            raise OSError(f"injected: {step}")

        if step == "fifo":
            monkeypatch.setattr(supervisor_module.files, "ensure_fifo", boom)
        elif step == "image":
            monkeypatch.setattr(supervisor_module.files, "write_image", boom)
        elif step == "console":

            async def console_down(*_a: object) -> None:
                raise supervisor_module.PeerError("injected: console")

            monkeypatch.setattr(sup.console, "add", console_down)
        elif step == "commit":

            def refuse(*_a: object) -> None:
                raise supervisor_module.PolicyError("injected: commit")

            monkeypatch.setattr(sup.resources, "insert_unikernel", refuse)
        elif step == "dump":
            monkeypatch.setattr(sup, "dump", boom)

        reply = await s.call("t:vm", UnikernelCreate(s.config()))
        assert isinstance(reply, Failure) and "injected" in reply.message, reply
        monkeypatch.undo()
        assert leftovers(s.tmpdir) == []
        assert sup.resources.find_unikernel(Name.of_string("t:vm")) is None
        for pid in started:  # a started VM was stopped again
            assert (
                not Path(f"/proc/{pid}").exists()
                or "Z" in Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1]
            )
        state = s.dbdir / "state"
        if state.exists():
            assert read_state(state.read_bytes()).unikernels == ()
        # and the daemon goes on: the same create now works
        assert await s.call("t:vm", UnikernelCreate(s.config())) == ReplyString("created unikernel")


async def test_corrupt_state_stops_the_start_and_is_not_overwritten(tmp_path: Path) -> None:
    opts = Options(tmpdir=tmp_path / "t", dbdir=tmp_path / "d")
    (tmp_path / "d").mkdir()
    garbage = b"\x30\x05\x02\x01\x05\xff\xff"
    (tmp_path / "d" / "state").write_bytes(garbage)
    with pytest.raises(StartupError, match="corrupt"):
        await start_supervisor(opts)
    assert (tmp_path / "d" / "state").read_bytes() == garbage


async def test_names_never_escape_their_directories(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        for name in ("..", "a:..", "...:x", "x.y..z"):
            reply = await s.call(name, UnikernelCreate(s.config()))
            assert reply == ReplyString("created unikernel"), (name, reply)
            vm = s.sup.resources.find_unikernel(Name.of_string(name))
            fifo = s.sup.layout.fifo_file(vm.name)
            assert fifo.parent == s.tmpdir / "fifo" and fifo.exists()
            assert s.sup.layout.image_file(vm.name).parent == s.tmpdir
        # what is not a label never parses, and raw strings never become paths
        for bad in ("a/b", "../x", "x\x00y", "a:b/c"):
            with pytest.raises(ValueError):
                Name.of_string(bad)
            with pytest.raises(TypeError):
                s.sup.layout.fifo_file(bad)  # type: ignore[arg-type]
        info = await s.call(":", UnikernelInfoQuery())
        assert len(info.entries) == 4  # type: ignore[attr-defined]


async def test_restore_follows_startup_priority(tmp_path: Path) -> None:
    image = make_solo5_elf("hvt", 2, (), ())
    dbdir = tmp_path / "d"
    dbdir.mkdir()
    saved = State(
        unikernels=(
            (Name.of_string("c"), UnikernelConfig(image=image, startup=90)),
            (Name.of_string("a"), UnikernelConfig(image=image)),  # default 50
            (Name.of_string("b"), UnikernelConfig(image=image, startup=10)),
        )
    )
    (dbdir / "state").write_bytes(write_state(saved))
    async with stack(tmp_path) as s:
        pids = {str(n): vm.process.pid for n, vm in s.sup.resources.all_unikernels()}
        assert sorted(pids) == [":a", ":b", ":c"]
        # pids grow with start order: b (10), a (50), c (90)
        assert pids[":b"] < pids[":a"] < pids[":c"]
        assert os.path.exists(dbdir / "state.started")
        await trio.sleep(0)
