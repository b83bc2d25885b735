"""albatross's wire protocol, version 5: pure, no IO.

The public surface: typed messages (``messages``), shared value types
(``types``), the codec (``decode_wire``/``encode_wire``), framing, the state
file, the certificate extension, and the one error type ``WireError``.
"""

from albatross_py.wire.codec import (
    decode_cert_extension,
    decode_command,
    decode_wire,
    encode_cert_extension,
    encode_command,
    encode_wire,
)
from albatross_py.wire.errors import WireError
from albatross_py.wire.framing import END_OF_STREAM, MAX_FRAME_SIZE, FrameReader, frame
from albatross_py.wire.state import State, read_state, write_state

__all__ = [
    "END_OF_STREAM",
    "MAX_FRAME_SIZE",
    "FrameReader",
    "State",
    "WireError",
    "decode_cert_extension",
    "decode_command",
    "decode_wire",
    "encode_cert_extension",
    "encode_command",
    "encode_wire",
    "frame",
    "read_state",
    "write_state",
]
