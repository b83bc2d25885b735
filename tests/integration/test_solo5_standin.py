"""The stand-in tender started the way albatross starts a real one.

Backend.prepare → FIFO, block file, image → Backend.start (host.process:
stdio on the FIFO) → the test reads the FIFO as albatross-console would →
exit status and rusage from wait4, SIGTERM/SIGKILL stops.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import trio

from albatross_py.host import files, process
from albatross_py.host.files import Layout
from albatross_py.host.process import ProcessError
from albatross_py.virt.solo5 import Solo5Backend
from albatross_py.virt.solo5_elf import make_solo5_elf
from albatross_py.wire.names import Name
from albatross_py.wire.types import BlockDevice, Rusage, UnikernelConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from standin import install_standin

NAME = Name.of_string("tenant:web")


class Console:
    """Reads a console FIFO like albatross-console: O_RDONLY|O_NONBLOCK, lines until EOF."""

    def __init__(self, fifo: Path) -> None:
        self.fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self.lines: list[str] = []
        self.eof = trio.Event()
        self._changed = trio.Event()

    async def run(self) -> None:
        # Wait for readability before each read: a read before the first
        # writer has opened the FIFO returns end-of-file at once on Linux.
        buf = b""
        try:
            while True:
                await trio.lowlevel.wait_readable(self.fd)
                try:
                    data = os.read(self.fd, 4096)
                except BlockingIOError:
                    continue
                if not data:
                    break
                buf += data
                *done, buf = buf.split(b"\n")
                self.lines += [line.decode() for line in done]
                self._changed.set()
                self._changed = trio.Event()
        finally:
            os.close(self.fd)
        self.eof.set()
        self._changed.set()

    async def wait_for(self, text: str, timeout: float = 10.0) -> str:
        with trio.fail_after(timeout):
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                if self.eof.is_set():
                    raise AssertionError(f"{text!r} not in console output: {self.lines}")
                await self._changed.wait()


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    for d in ("run/fifo", "db", "bin"):
        (tmp_path / d).mkdir(parents=True)
    lay = Layout(tmp_path / "run", tmp_path / "db")
    install_standin(lay.dbdir, "solo5-hvt")
    return lay


@pytest.fixture
def backend(layout: Layout) -> Solo5Backend:
    return Solo5Backend(layout, search_path=str(layout.dbdir.parent / "bin"))


def prepare(backend: Solo5Backend, layout: Layout, argv: tuple[str, ...], **kw: object):
    config = UnikernelConfig(
        image=make_solo5_elf("hvt", 2, blocks=["storage"]),
        blocks=(BlockDevice("storage", "disk"),),
        argv=argv,
        memory=48,
        **kw,  # type: ignore[arg-type]
    )
    prepared = backend.prepare(NAME, config)
    files.create_block(layout, Name.of_string("tenant:disk"), 2)
    files.write_image(layout, NAME, prepared.image or b"")
    fifo = layout.fifo_file(NAME)
    files.ensure_fifo(fifo)
    return prepared, fifo


async def test_runs_prints_and_exits_with_code(backend: Solo5Backend, layout: Layout) -> None:
    prepared, fifo = prepare(backend, layout, ("--lines=3", "--exit-code=7"))
    console = Console(fifo)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(console.run)
        vm = await backend.start(prepared, [], fifo)
        status, rusage = await vm.wait()
        await console.eof.wait()
    assert status == process.ExitStatus.exited(7)
    assert str(status) == "exit 7"
    assert isinstance(rusage, Rusage)
    assert rusage.minflt > 0  # a real child's counters, not zeros
    assert rusage.utime.seconds * 1_000_000 + rusage.utime.microseconds > 0
    argv = backend.command_line(prepared, [], fifo)
    seen = json.loads((await console.wait_for("standin: tender argv")).split("argv ", 1)[1])
    # taskset execs the tender; it sees everything after "taskset -c 0 <tender>".
    assert argv[:3] == ["taskset", "-c", "0"]
    assert seen == argv[4:]
    block = layout.block_dir / "tenant:disk"
    await console.wait_for(f"standin: block storage path={block} capacity={2 << 20}")
    await console.wait_for("Solo5: Memory map: 48 MB addressable:")
    await console.wait_for('standin: argv ["--name=web", "--lines=3", "--exit-code=7"]')
    assert [x for x in console.lines if x.startswith("standin: line")] == [
        "standin: line 0",
        "standin: line 1",
        "standin: line 2",
    ]
    assert console.lines[-1] == "Solo5: solo5_exit(7) called"
    assert vm.result == (status, rusage)
    assert not vm.running


async def test_sigterm_stop(backend: Solo5Backend, layout: Layout) -> None:
    prepared, fifo = prepare(backend, layout, ())
    console = Console(fifo)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(console.run)
        vm = await backend.start(prepared, [], fifo)
        await console.wait_for("standin: argv")
        assert vm.poll() is None
        with trio.fail_after(10):
            status, _ = await backend.stop(prepared, vm, grace=5)
    # Like solo5-hvt: the tender catches SIGTERM and exits 1, on stderr (= the console).
    assert status == process.ExitStatus.exited(1)
    await console.wait_for("solo5-hvt: Exiting on signal 15")
    assert not vm.send_signal(signal.SIGTERM)  # reaped: no signal can reach a reused PID


async def test_sigkill_after_grace(backend: Solo5Backend, layout: Layout) -> None:
    prepared, fifo = prepare(backend, layout, ("--ignore-sigterm",))
    console = Console(fifo)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(console.run)
        vm = await backend.start(prepared, [], fifo)
        await console.wait_for("standin: argv")
        start = trio.current_time()
        status, _ = await vm.stop(grace=0.3)
        assert trio.current_time() - start >= 0.3
    assert status == process.ExitStatus.signalled(signal.SIGKILL)
    assert str(status) == "signal SIGKILL"


async def test_many_waiters_and_cancelled_waiter(backend: Solo5Backend, layout: Layout) -> None:
    prepared, fifo = prepare(backend, layout, ("--lines=1", "--interval=0.3", "--exit-code=5"))
    console = Console(fifo)
    results = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(console.run)
        vm = await backend.start(prepared, [], fifo)
        with trio.move_on_after(0.05):
            await vm.wait()  # cancelled while holding the wait: others must take over
        assert vm.running

        async def waiter() -> None:
            results.append(await vm.wait())

        for _ in range(3):
            nursery.start_soon(waiter)
    assert len(results) == 3
    assert all(r[0] == process.ExitStatus.exited(5) for r in results)
    assert results[0] is results[1] is results[2]


async def test_unknown_name_argument_exit_64(backend: Solo5Backend, layout: Layout) -> None:
    prepared, fifo = prepare(backend, layout, ("--reject-name",))
    console = Console(fifo)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(console.run)
        vm = await backend.start(prepared, [], fifo)
        status, _ = await vm.wait()
    assert status == process.ExitStatus.exited(64)
    await console.wait_for("standin: unknown option --name")


async def test_tender_rejects_missing_block_file(backend: Solo5Backend, layout: Layout) -> None:
    prepared, fifo = prepare(backend, layout, ("--exit-code=0",))
    files.destroy_block(layout, Name.of_string("tenant:disk"))
    console = Console(fifo)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(console.run)
        vm = await backend.start(prepared, [], fifo)
        status, _ = await vm.wait()
    assert status == process.ExitStatus.exited(1)
    await console.wait_for("Could not open block device")


async def test_spawn_waits_for_console_reader(backend: Solo5Backend, layout: Layout) -> None:
    prepared, fifo = prepare(backend, layout, ("--exit-code=3",))
    argv = backend.command_line(prepared, [], fifo)
    with pytest.raises(ProcessError, match="no reader on console fifo"):
        await process.spawn(argv, fifo, fifo_timeout=0.1)

    got: list[process.VmProcess] = []

    async def start() -> None:
        got.append(await process.spawn(argv, fifo))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(start)
        await trio.sleep(0.2)
        assert not got  # still waiting for a reader
        console = Console(fifo)
        nursery.start_soon(console.run)
    status, _ = await got[0].wait()
    assert status == process.ExitStatus.exited(3)


async def test_rdwr_fallback_without_reader(backend: Solo5Backend, layout: Layout) -> None:
    prepared, fifo = prepare(backend, layout, ("--lines=2", "--exit-code=0"))
    argv = backend.command_line(prepared, [], fifo)
    vm = await process.spawn(argv, fifo, fifo_timeout=0.05, rdwr_fallback=True)
    with trio.fail_after(10):
        status, _ = await vm.wait()
    assert status == process.ExitStatus.exited(0)


async def test_spawn_missing_program(layout: Layout) -> None:
    fifo = layout.fifo_file(NAME)
    files.ensure_fifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(ProcessError, match="No such file or directory"):
            await process.spawn(["/nonexistent/solo5-hvt", "--mem=1"], fifo)
    finally:
        os.close(fd)


def test_exit_status_from_wait_status() -> None:
    assert process.exit_status_of_wait(3 << 8) == process.ExitStatus.exited(3)
    assert process.exit_status_of_wait(signal.SIGTERM) == process.ExitStatus.signalled(
        signal.SIGTERM
    )
    assert str(process.ExitStatus.signalled(signal.SIGTERM)) == "signal SIGTERM"
