"""Framing: a 4-byte big-endian length, then that many bytes (spec 3.1).

A zero-length chunk marks the end of a stream (block set data, image
upload).  albatross reads the length as a signed 32-bit number and treats
any length <= 0 as end of stream; so do we.  Unlike albatross, which
allocates whatever length it is sent, every reader here enforces a maximum
frame size and refuses a larger frame before reading its body.

This module is sans-IO: :class:`FrameReader` is fed bytes and hands out
frames; the trio transport wraps it.
"""

from __future__ import annotations

import struct

from albatross_py.wire.errors import WireError

#: Default largest frame a reader accepts.  A frame carries at most one
#: message; the largest legitimate ones carry a whole unikernel or kernel
#: image inline (create, get).  MirageOS unikernels are a few MB, Linux
#: kernels with an initramfs tens of MB; albatross's certificates cap an
#: image at 16 MiB (TLS), local creates have no cap.  64 MiB admits all of
#: these while bounding what one hostile length prefix can make us allocate.
MAX_FRAME_SIZE = 64 * 1024 * 1024
#: Largest image (as sent, after compression) a create may carry: the whole
#: create travels in one frame to albatrossd, and one MiB is left for the rest
#: of the command.  Clients check it before sending; the TLS endpoint refuses
#: a longer stream.
MAX_IMAGE_SIZE = MAX_FRAME_SIZE - 1024 * 1024

END_OF_STREAM = b"\x00\x00\x00\x00"

_LEN = struct.Struct(">i")


def frame(data: bytes) -> bytes:
    """Prefix ``data`` with its length; empty data is the end-of-stream marker."""
    if len(data) > 0x7FFFFFFF:
        raise WireError("frame larger than 2 GiB cannot be encoded")
    return _LEN.pack(len(data)) + data


class FrameReader:
    """Incremental frame splitter.

    ``feed`` bytes as they arrive; ``next_frame`` returns the next complete
    frame, ``None`` for an end-of-stream marker, or ``NEED_DATA``.
    """

    NEED_DATA = object()

    def __init__(self, max_frame: int = MAX_FRAME_SIZE) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def pending_length(self) -> int | None:
        """Length of the frame being received, once its prefix is in."""
        if len(self._buf) < 4:
            return None
        return _LEN.unpack_from(self._buf)[0]

    def next_frame(self) -> bytes | object | None:
        length = self.pending_length()
        if length is None:
            return self.NEED_DATA
        if length <= 0:
            del self._buf[:4]
            return None
        if length > self.max_frame:
            raise WireError(f"frame of {length} bytes exceeds the maximum of {self.max_frame}")
        if len(self._buf) < 4 + length:
            return self.NEED_DATA
        data = bytes(self._buf[4 : 4 + length])
        del self._buf[: 4 + length]
        return data
