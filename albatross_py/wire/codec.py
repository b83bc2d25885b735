"""Encoding and decoding of whole messages, certificate extensions and commands.

``decode_wire`` checks the header's version before anything else, as
albatross's ``decode_wire_version`` does, so a message from a future (or
retired) wire version gets "unknown version number" rather than a confusing
parse error deeper in.
"""

from __future__ import annotations

from datetime import datetime

from albatross_py.wire import der
from albatross_py.wire.errors import WireError
from albatross_py.wire.grammar import CERT_EXTENSION, COMMAND, HEADER, WIRE
from albatross_py.wire.messages import WIRE_VERSION, Command, Header, Wire


def peek_version(data: bytes | memoryview) -> int:
    """The version field of a message's header, read on its own."""
    view = memoryview(data)
    tag, body, _ = der.read_tlv(view, 0)
    if tag != der.TAG_SEQUENCE:
        raise WireError(f"a message is a SEQUENCE, found {der.tag_name(tag)}")
    if not len(body):
        raise WireError("message has no header")
    tag, header, _ = der.read_tlv(body, 0)
    if tag != der.TAG_SEQUENCE:
        raise WireError(f"a header is a SEQUENCE, found {der.tag_name(tag)}")
    if not len(header):
        raise WireError("header has no version")
    tag, version, _ = der.read_tlv(header, 0)
    return der.Integer().decode_tlv(tag, version, 2)


def decode_wire(data: bytes | memoryview) -> Wire:
    version = peek_version(data)
    if version != WIRE_VERSION:
        raise WireError(f"unknown version number 0x{version:X}")
    wire: Wire = der.decode(WIRE, bytes(data))
    return wire


def encode_wire(wire: Wire) -> bytes:
    return der.encode(WIRE, wire)


def encode_command(cmd: Command) -> bytes:
    """A bare Command (no payload wrapper), as inside certificates."""
    return der.encode(COMMAND, cmd)


def decode_command(data: bytes) -> Command:
    cmd: Command = der.decode(COMMAND, data)
    return cmd


def encode_cert_extension(cmd: Command, version: int = WIRE_VERSION) -> bytes:
    """The value of the albatross certificate extension: SEQUENCE { 5, command }."""
    return der.encode(CERT_EXTENSION, {"version": version, "command": cmd})


def decode_cert_extension(data: bytes) -> tuple[int, Command]:
    raw = der.decode(CERT_EXTENSION, data)
    if raw["version"] != WIRE_VERSION:
        raise WireError(f"unknown version number 0x{raw['version']:X} in certificate")
    return raw["version"], raw["command"]


# -- console lines, the one message sent at high rates ------------------------------


def encode_header(header: Header) -> bytes:
    """A header's DER, to reuse across many messages with the same header."""
    return der.encode(HEADER, header)


def encode_timestamp(timestamp: datetime) -> bytes:
    """A GeneralizedTime's DER, to reuse for every line of one FIFO read."""
    return der.GeneralizedTime().encode(timestamp)


def _hdr(tag: int, length: int) -> bytes:
    return bytes((tag, length)) if length < 0x80 else bytes((tag,)) + der.encode_length(length)


def frame_console_line(header_der: bytes, timestamp_der: bytes, line: bytes) -> bytes:
    """``frame(encode_wire(Wire(header, DataConsole(timestamp, line))))``, built
    from pre-encoded parts with one join: the console daemon sends every line
    to every subscriber, and the general encoder's per-message work (and its
    copies of the line at every nesting level) would dominate."""
    line_hdr = _hdr(der.TAG_UTF8STRING, len(line))
    seq_len = len(timestamp_der) + len(line_hdr) + len(line)
    seq_hdr = _hdr(0x30, seq_len)  # console SEQUENCE
    inner_len = len(seq_hdr) + seq_len
    inner_hdr = _hdr(0xA3, inner_len)  # console [3]
    data_len = len(inner_hdr) + inner_len
    data_hdr = _hdr(0xA3, data_len)  # data [3]
    wire_len = len(header_der) + len(data_hdr) + data_len
    wire_hdr = _hdr(0x30, wire_len)
    total = len(wire_hdr) + wire_len
    return b"".join(
        (total.to_bytes(4, "big"), wire_hdr, header_der, data_hdr, inner_hdr, seq_hdr,
         timestamp_der, line_hdr, line)
    )  # fmt: skip
