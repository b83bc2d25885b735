"""Framed streams over real unix sockets."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio

from albatross_py.transport import END, FramedStream, bind_unix, connect_unix, socket_path
from albatross_py.wire import WireError
from albatross_py.wire.messages import ConsoleSubscribe, Header, Wire
from albatross_py.wire.names import Name


async def test_roundtrip_chunks_and_messages(tmp_path: Path) -> None:
    path = socket_path(tmp_path, "vmmd")
    listener = bind_unix(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    wire = Wire(Header(name=Name.of_string("foo")), ConsoleSubscribe(count=20))
    got: list[object] = []

    async def server() -> None:
        conn = FramedStream(await listener.accept())
        got.append(await conn.read_wire())
        got.append(await conn.read_chunk())
        got.append(await conn.read_chunk())
        got.append(await conn.read_chunk())
        await conn.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        client = FramedStream(await connect_unix(path))
        await client.write_wire(wire)
        await client.write_chunk(b"x" * 200_000)
        await client.write_end()
        await client.aclose()
    assert got == [wire, b"x" * 200_000, END, None]
    await listener.aclose()


async def test_oversized_and_truncated_frames(tmp_path: Path) -> None:
    listener = bind_unix(tmp_path / "s.sock")
    errors: list[str] = []

    async def server() -> None:
        for _ in range(2):
            conn = FramedStream(await listener.accept(), max_frame=1000)
            try:
                await conn.read_chunk()
            except WireError as exc:
                errors.append(str(exc))
            await conn.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        c = await connect_unix(tmp_path / "s.sock")
        await c.send_all((5000).to_bytes(4, "big"))
        await c.aclose()
        c = await connect_unix(tmp_path / "s.sock")
        await c.send_all((50).to_bytes(4, "big") + b"abc")
        await c.aclose()
    assert "exceeds the maximum of 1000" in errors[0]
    assert "in the middle of a frame" in errors[1]
    await listener.aclose()


def test_refuses_to_remove_a_regular_file(tmp_path: Path) -> None:
    victim = tmp_path / "util" / "vmmd.sock"
    victim.parent.mkdir()
    victim.write_text("precious")
    with pytest.raises(OSError, match="not a socket"):
        bind_unix(victim)
    assert victim.read_text() == "precious"
