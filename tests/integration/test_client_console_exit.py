"""An attached ``albatross-client console`` whose console goes away (issue 14, item 6).

The client runs as its own process (as a user runs it: the main thread, with
its signal handling), attached to albatross-console in-process.  Its console
goes away in the two ways it can: albatross-console drops it (a path over its
VM count drops the console of a stopped VM) or stops.  Either way the client
says so and exits 121 (communication failure: the stream ended without a
final message, spec 7.5), with no traceback and no exception group.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio

from albatross_py.wire.names import Name
from tests.integration.test_console_daemon import (
    add,
    connect,
    console,
    make_fifo,
    open_writer,
    wait_until,
    write,
)

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 20


async def attach(tmp_path: Path, name: str) -> trio.Process:
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", "albatross_py.client.cli", "console", name,
         "--tmpdir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip


async def read_until(proc: trio.Process, text: bytes) -> bytes:
    assert proc.stdout is not None
    seen = b""
    with trio.fail_after(TIMEOUT):
        while text not in seen:
            chunk = await proc.stdout.receive_some(4096)
            assert chunk, f"the console client exited early: {seen!r}"
            seen += chunk
    return seen


async def ended(proc: trio.Process) -> tuple[int, str]:
    assert proc.stderr is not None
    err = b""
    with trio.fail_after(TIMEOUT):
        while chunk := await proc.stderr.receive_some(4096):
            err += chunk
        code = await proc.wait()
    return code, err.decode()


async def test_console_dropped_or_daemon_stopped(tmp_path: Path) -> None:
    async with console(tmp_path) as daemon:
        vmmd = await connect(tmp_path)
        fifo_a = make_fifo(tmp_path, ":a")
        await add(vmmd, ":a", sequence=1, limit=1)  # the root path may run one VM
        vm = open_writer(fifo_a)
        await write(vm, b"hello from a\n")
        client = await attach(tmp_path, "a")
        await read_until(client, b"hello from a")

        # a stops; b starts on the same path: over the count, a's console is dropped
        await vm.aclose()
        entry = daemon.state.entry(Name.of_string(":a"))
        await wait_until(lambda: entry is not None and not entry.active)
        make_fifo(tmp_path, ":b")
        await add(vmmd, ":b", sequence=2, limit=1)
        code, err = await ended(client)
        assert code == 121, err
        assert err.startswith("albatross-client: albatross-console closed the console of :a")
        assert "Traceback" not in err and "ExceptionGroup" not in err

        # attached to b, albatross-console stops
        client = await attach(tmp_path, "b")
        await read_until(client, b"subscribed")
        await wait_until(lambda: len(daemon.state.subscribers(Name.of_string(":b"))) == 1)
        await vmmd.aclose()
    # leaving ``console()`` stopped the daemon, and with it every connection
    code, err = await ended(client)
    assert code == 121, err
    assert "albatross-console closed the console of :b" in err
    assert "Traceback" not in err and "ExceptionGroup" not in err
