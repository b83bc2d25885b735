"""Framed albatross streams over trio: unix sockets and TLS alike.

:class:`FramedStream` wraps any ``trio.abc.Stream`` with the sans-IO
:class:`~albatross_py.wire.framing.FrameReader`: it reads and writes raw
chunks (block data, image upload) and whole wire messages.  A peer that
closes between frames gives ``None`` from the readers; a peer that closes
in the middle of a frame, or sends an oversized frame or an undecodable
message, raises :class:`~albatross_py.wire.WireError`.

A server's streams carry :class:`ReadTimeouts` (the connection guard,
:mod:`albatross_py.transport.guard`, gives them): then every read says what
it waits for (:class:`Expect`), and a peer that is too slow for it raises
:class:`ClientTooSlow`, a ``WireError`` whose message is fit for the
``Failure`` reply.  Clients' streams have no timeouts (their callers bound
whole exchanges).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import trio

from albatross_py.wire import MAX_FRAME_SIZE, FrameReader, WireError, frame
from albatross_py.wire.codec import decode_wire, encode_wire
from albatross_py.wire.messages import Header, Wire

#: How much a single receive asks for; frames larger than this arrive in pieces.
RECEIVE_SIZE = 64 * 1024

#: Marker for "the peer sent the zero-length end-of-stream chunk".
END = b""


class StreamClosed(Exception):
    """The peer closed the connection cleanly between frames."""


class ClientTooSlow(WireError):
    """The peer did not deliver what a read waited for in time (see :class:`Expect`)."""


class Expect(enum.Enum):
    """What a server's read waits for, which decides how long it may take."""

    #: A request: the whole frame must arrive within the request timeout,
    #: counted from the start of the read (an idle client and one that sends
    #: a byte a second are both dropped).
    REQUEST = "request"
    #: A peer that may legitimately stay silent between frames (a subscriber
    #: that only ever sends its "stop", albatrossd's console link, an event
    #: producer): no bound on the wait for a frame's first byte; once a frame
    #: has begun, it must be complete within the request timeout.
    QUIET = "quiet"
    #: Raw data of an upload (block set): no total bound, but no silence
    #: longer than the stall timeout.
    DATA = "data"


@dataclass(frozen=True, slots=True)
class ReadTimeouts:
    """How long a server waits on its peer, in seconds."""

    request: float
    stall: float


class FramedStream:
    def __init__(
        self,
        stream: trio.abc.Stream,
        max_frame: int = MAX_FRAME_SIZE,
        timeouts: ReadTimeouts | None = None,
    ) -> None:
        self.stream = stream
        self.timeouts = timeouts
        #: The header of the last message read: failures about this
        #: connection are answered with it.
        self.last_header: Header | None = None
        self._reader = FrameReader(max_frame)
        self._send_lock = trio.Lock()

    async def read_chunk(self, expect: Expect = Expect.REQUEST) -> bytes | None:
        """The next frame's bytes; ``END`` (b"") for an end-of-stream chunk;
        ``None`` when the peer closed the connection between frames."""
        timeouts = self.timeouts
        if timeouts is None:
            return await self._frame()
        if expect is Expect.DATA:
            return await self._frame(stall=timeouts.stall)
        if expect is Expect.QUIET and not self._reader.buffered:
            # no bound on the wait for a frame's first bytes
            data = await self.stream.receive_some(RECEIVE_SIZE)
            if not data:
                return None
            self._reader.feed(data)
        with trio.move_on_after(timeouts.request):  # one scope per frame, not per receive
            return await self._frame()
        raise ClientTooSlow(f"request timeout: no complete request within {timeouts.request:g} s")

    async def _frame(self, *, stall: float | None = None) -> bytes | None:
        while True:
            got = self._reader.next_frame()
            if got is None:
                return END
            if got is not FrameReader.NEED_DATA:
                assert isinstance(got, bytes)
                return got
            if stall is None:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            else:
                received: bytes | bytearray | None = None
                with trio.move_on_after(stall):
                    received = await self.stream.receive_some(RECEIVE_SIZE)
                if received is None:
                    raise ClientTooSlow(f"stall timeout: no data for {stall:g} s")
                data = received
            if not data:
                if self._reader.buffered:
                    raise WireError(
                        f"connection closed in the middle of a frame "
                        f"({self._reader.buffered} bytes buffered)"
                    )
                return None
            self._reader.feed(data)

    async def read_wire(self, expect: Expect = Expect.REQUEST) -> Wire | None:
        """The next message, or ``None`` when the peer closed (or sent end-of-stream)."""
        chunk = await self.read_chunk(expect)
        if not chunk:
            return None
        wire = decode_wire(chunk)
        self.last_header = wire.header
        return wire

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
