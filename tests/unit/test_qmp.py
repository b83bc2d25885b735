"""The QMP client against a scripted stand-in server on a unix socket (no QEMU)."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from albatross_py.virt import qmp

GREETING = {"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}}, "capabilities": []}}
Handler = Callable[[trio.SocketStream, Callable[[], Awaitable[dict[str, Any]]]], Awaitable[None]]


async def send(stream: trio.SocketStream, msg: dict[str, Any] | bytes) -> None:
    data = msg if isinstance(msg, bytes) else json.dumps(msg).encode() + b"\r\n"
    await stream.send_all(data)


async def serve_once(path: Path, handler: Handler, *, task_status: Any) -> None:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(1)
    listener = trio.SocketListener(sock)
    task_status.started()
    stream = await listener.accept()
    buffer = b""

    async def receive() -> dict[str, Any]:
        nonlocal buffer
        while b"\n" not in buffer:
            data = await stream.receive_some(4096)
            if not data:
                raise EOFError
            buffer += data
        line, buffer = buffer.split(b"\n", 1)
        return json.loads(line)

    async with stream, listener:
        await send(stream, GREETING)
        caps = await receive()
        assert caps["execute"] == "qmp_capabilities"
        await send(stream, {"return": {}, "id": caps["id"]})
        with contextlib.suppress(EOFError):
            await handler(stream, receive)


async def test_commands_events_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "q.sock"

    async def handler(stream: trio.SocketStream, receive: Any) -> None:
        cmd = await receive()
        assert cmd["execute"] == "query-status"
        # An event and a stale answer arrive before the answer.
        await send(stream, {"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 0}})
        await send(stream, {"return": {}, "id": -5})
        await send(
            stream, {"return": {"status": "internal-error", "running": False}, "id": cmd["id"]}
        )
        cmd = await receive()
        assert cmd == {"execute": "query-stats", "id": cmd["id"], "arguments": {"target": "vm"}}
        stats = [{"provider": "kvm", "stats": [{"name": "exits", "value": 42}]}]
        await send(stream, {"return": stats, "id": cmd["id"]})
        cmd = await receive()
        await send(stream, {"error": {"class": "CommandNotFound", "desc": "nope"}, "id": cmd["id"]})
        await receive()  # system_powerdown: answered only by an event, then silence
        await send(stream, {"event": "POWERDOWN"})
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        await nursery.start(serve_once, path, handler)
        async with qmp.open_qmp(path, timeout=5) as client:
            assert client.greeting["version"]["qemu"]["major"] == 7
            assert await client.query_status() == "internal-error"
            assert [e["event"] for e in client.events] == ["STOP"]
            [result] = await client.query_stats()
            assert result == qmp.StatsResult("kvm", None, {"exits": 42})
            with pytest.raises(qmp.QmpCommandError, match="CommandNotFound: nope") as err:
                await client.execute("no-such-command")
            assert err.value.error_class == "CommandNotFound"
            with pytest.raises(qmp.QmpTimeout):
                await client.system_powerdown(timeout=0.2)
            assert (await client.wait_event("POWERDOWN", timeout=5))["event"] == "POWERDOWN"
            assert (await client.wait_event("STOP", timeout=5))["event"] == "STOP"
            with pytest.raises(qmp.QmpTimeout):
                await client.wait_event("SHUTDOWN", timeout=0.05)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"not json\r\n", "invalid JSON"),
        (b"[1, 2]\r\n", "non-object"),
        (b"{" + b" " * (qmp.MAX_MESSAGE + 10), "longer than"),
        (b"", "closed"),
    ],
)
async def test_bad_peer(tmp_path: Path, reply: bytes, message: str) -> None:
    path = tmp_path / "q.sock"

    async def handler(stream: trio.SocketStream, receive: Any) -> None:
        await receive()
        await send(stream, reply)

    async with trio.open_nursery() as nursery:
        await nursery.start(serve_once, path, handler)
        async with qmp.open_qmp(path, timeout=5) as client:
            with pytest.raises(qmp.QmpError, match=message):
                await client.query_status(timeout=5)
        nursery.cancel_scope.cancel()


async def test_connect_waits_for_the_socket_then_times_out(tmp_path: Path) -> None:
    path = tmp_path / "late.sock"

    async def handler(stream: trio.SocketStream, receive: Any) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:

        async def start_late() -> None:
            await trio.sleep(0.1)
            await nursery.start(serve_once, path, handler)

        nursery.start_soon(start_late)
        client = await qmp.connect(path, timeout=5)
        await client.aclose()
        nursery.cancel_scope.cancel()
    with pytest.raises(qmp.QmpTimeout, match="no QMP"):
        await qmp.connect(tmp_path / "never.sock", timeout=0.05)
