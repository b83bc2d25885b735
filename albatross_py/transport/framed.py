"""Framed albatross streams over trio: unix sockets and TLS alike.

:class:`FramedStream` wraps any ``trio.abc.Stream`` with the sans-IO
:class:`~albatross_py.wire.framing.FrameReader`: it reads and writes raw
chunks (block data, image upload) and whole wire messages.  A peer that
closes between frames gives ``None`` from the readers; a peer that closes
in the middle of a frame, or sends an oversized frame or an undecodable
message, raises :class:`~albatross_py.wire.WireError`.
"""

from __future__ import annotations

import trio

from albatross_py.wire import MAX_FRAME_SIZE, FrameReader, WireError, frame
from albatross_py.wire.codec import decode_wire, encode_wire
from albatross_py.wire.messages import Wire

#: How much a single receive asks for; frames larger than this arrive in pieces.
RECEIVE_SIZE = 64 * 1024

#: Marker for "the peer sent the zero-length end-of-stream chunk".
END = b""


class StreamClosed(Exception):
    """The peer closed the connection cleanly between frames."""


class FramedStream:
    def __init__(self, stream: trio.abc.Stream, max_frame: int = MAX_FRAME_SIZE) -> None:
        self.stream = stream
        self._reader = FrameReader(max_frame)
        self._send_lock = trio.Lock()

    async def read_chunk(self) -> bytes | None:
        """The next frame's bytes; ``END`` (b"") for an end-of-stream chunk;
        ``None`` when the peer closed the connection between frames."""
        while True:
            got = self._reader.next_frame()
            if got is None:
                return END
            if got is not FrameReader.NEED_DATA:
                assert isinstance(got, bytes)
                return got
            data = await self.stream.receive_some(RECEIVE_SIZE)
            if not data:
                if self._reader.buffered:
                    raise WireError(
                        f"connection closed in the middle of a frame "
                        f"({self._reader.buffered} bytes buffered)"
                    )
                return None
            self._reader.feed(data)

    async def read_wire(self) -> Wire | None:
        """The next message, or ``None`` when the peer closed (or sent end-of-stream)."""
        chunk = await self.read_chunk()
        if not chunk:
            return None
        return decode_wire(chunk)

    async def write_chunk(self, data: bytes) -> None:
        async with self._send_lock:
            await self.stream.send_all(frame(data))

    async def write_end(self) -> None:
        await self.write_chunk(END)

    async def write_wire(self, wire: Wire) -> None:
        await self.write_chunk(encode_wire(wire))

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def __aenter__(self) -> FramedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
