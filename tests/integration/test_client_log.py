"""``albatross-client log`` against albatross-log (in-process, with albatrossd): history
lines as in the log file, the live tail, ``--json``, until SIGTERM detaches cleanly;
remotely (``-d``) through the TLS endpoint, a tenant sees its own subtree."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from albatross_py.client.cli import main
from albatross_py.daemons.tls_endpoint import TlsEndpoint, make_server_context
from albatross_py.transport import socket_path
from albatross_py.wire import events as ev
from albatross_py.wire.codec import decode_wire
from albatross_py.wire.messages import EventsSubscribe, ReplyString, UnikernelCreate
from albatross_py.wire.names import Name
from tests.integration.stack import Stack, stack

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 20
CREATED = ReplyString("created unikernel")


class Follower:
    """A running ``albatross-client log``; ``until`` reads its stdout lines."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.buffer = b""

    @property
    def lines(self) -> list[str]:
        return self.buffer.decode().split("\n")[:-1]  # complete lines only

    async def until(self, done: Callable[[list[str]], bool]) -> list[str]:
        assert self.proc.stdout is not None
        with trio.fail_after(TIMEOUT):
            while not done(self.lines):
                chunk = await self.proc.stdout.receive_some(4096)
                assert chunk, f"the client exited early: {self.buffer!r}"
                self.buffer += chunk
        return self.lines


@asynccontextmanager
async def follow(tmp_path: Path, *argv: str) -> AsyncIterator[Follower]:
    """Run the client; on leaving, SIGTERM must end it with exit 0 (bounded)."""
    with open(tmp_path / "client.err", "wb") as err:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "albatross_py.client.cli", "log", *argv],
            stdout=subprocess.PIPE, stderr=err, cwd=ROOT,
        )  # fmt: skip
    try:
        yield Follower(proc)
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await proc.wait() == 0, (tmp_path / "client.err").read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.fail_after(10):
                await proc.wait()


async def recorded(s: Stack, predicate: Callable[[ev.Event], bool]) -> None:
    """Wait until albatross-log holds an event ``predicate`` accepts."""
    assert s.events is not None
    with trio.fail_after(TIMEOUT):
        while not any(predicate(e) for _, e in s.events.state.ring.entries()):
            await trio.sleep(0.01)


def file_lines(tmp_path: Path) -> list[str]:
    return (tmp_path / "log" / "events.log").read_text().splitlines()


def started(name: str) -> Callable[[ev.Event], bool]:
    return lambda e: isinstance(e, ev.UnikernelStarted) and e.name == Name.of_string(name)


async def test_log_prints_history_as_the_file_then_follows(tmp_path: Path) -> None:
    async with stack(tmp_path, log=True) as s:
        assert await s.call("web", UnikernelCreate(s.config())) == CREATED
        await recorded(s, started("web"))
        before = file_lines(tmp_path)  # albatross-log's and albatrossd's startup, web started
        assert len(before) == 3 and " unikernel-started :web pid=" in before[-1]
        sock = str(socket_path(s.tmpdir, "log"))
        async with follow(tmp_path, "--count", "10", "--socket", sock) as client:
            lines = await client.until(lambda lines: len(lines) >= 1 + len(before))
            assert lines[0] == "host :: success: subscribed"
            assert lines[1:] == before  # the very lines of the file, same timestamps
            # live: a VM created now is printed as it happens
            assert await s.call("db", UnikernelCreate(s.config())) == CREATED
            lines = await client.until(lambda lines: any(":db " in x for x in lines))
            assert lines[1:] == file_lines(tmp_path)
        # --count keeps the last N
        async with follow(tmp_path, "--count", "1", "--socket", sock) as client:
            lines = await client.until(lambda lines: len(lines) >= 2)
            assert lines[1:] == file_lines(tmp_path)[-1:]


async def test_log_json_at_a_name_on_the_default_socket(tmp_path: Path) -> None:
    async with stack(tmp_path, log=True) as s:
        assert await s.call("web", UnikernelCreate(s.config())) == CREATED
        assert await s.call("other", UnikernelCreate(s.config())) == CREATED
        await recorded(s, started("other"))
        args = ("web", "--json", "--tmpdir", str(s.tmpdir))  # socket chosen: util/log.sock
        async with follow(tmp_path, *args) as client:
            lines = await client.until(lambda lines: len(lines) >= 2)
        first, event = (json.loads(x) for x in lines[:2])
        assert first["payload"] == {"reply": {"string": "subscribed"}}
        assert first["header"]["name"] == ":web"
        assert event["header"]["name"] == ":web"
        data = event["payload"]["data"]["event"]
        assert "unikernel-started" in data["event"] and data["timestamp"]
        assert all(":other" not in x for x in lines)


def test_log_socket_dash_prints_the_subscription(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["log", "--socket", "-"]) == 121
    wire = decode_wire(bytes.fromhex(capsys.readouterr().out.strip()))
    assert (wire.header.name, wire.payload) == (Name(), EventsSubscribe(count=20))
    assert main(["log", "a:", "--since", "2026-01-02T03:04:05Z", "--socket", "-"]) == 121
    wire = decode_wire(bytes.fromhex(capsys.readouterr().out.strip()))
    assert str(wire.header.name) == "a:"
    assert isinstance(wire.payload, EventsSubscribe) and wire.payload.since is not None
    assert wire.payload.since.isoformat() == "2026-01-02T03:04:05+00:00"
    assert main(["log", "--since", "2026-01-01", "--count", "3", "--socket", "-"]) == 124


async def test_log_remote_sees_the_tenants_subtree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    monkeypatch.chdir(pki)
    assert main(["generate", "root", "db"]) == 0
    assert main(["add-policy", "tenant", "2", "--mem", "256", "--csr"]) == 0
    assert main(["sign", "cacert.pem", "db", "root.key", "tenant.req"]) == 0
    async with stack(tmp_path, log=True) as s:
        ctx = make_server_context(pki / "cacert.pem", pki / "server.pem", pki / "server.key")
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        await s.nursery.start(TlsEndpoint(ctx, s.tmpdir, s.dbdir).serve, listener)
        port = listener.socket.getsockname()[1]
        dest = ("-d", f"127.0.0.1:{port}", "--ca", str(pki / "tenant.pem"),
                "--ca-key", str(pki / "tenant.key"),
                "--server-ca", str(pki / "cacert.pem"))  # fmt: skip
        async with follow(tmp_path, "--count", "10", *dest) as client:
            lines = await client.until(lambda lines: len(lines) >= 1)
            assert lines[0] == "host tenant:: success: subscribed"
            assert await s.call("other:x", UnikernelCreate(s.config())) == CREATED
            assert await s.call("tenant:web", UnikernelCreate(s.config())) == CREATED
            # its own login (relative to tenant: it is ":") and its VM; never other:x
            lines = await client.until(
                lambda ls: (
                    any(" unikernel-started :web " in x for x in ls)
                    and any(" login : address=127.0.0.1:" in x for x in ls)
                )
            )
        events = lines[1:]
        assert not any("other" in x or " x " in x for x in events), events
