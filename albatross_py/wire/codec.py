"""Encoding and decoding of whole messages, certificate extensions and commands.

``decode_wire`` checks the header's version before anything else, as
albatross's ``decode_wire_version`` does, so a message from a future (or
retired) wire version gets "unknown version number" rather than a confusing
parse error deeper in.
"""

from __future__ import annotations

from albatross_py.wire import der
from albatross_py.wire.errors import WireError
from albatross_py.wire.grammar import CERT_EXTENSION, COMMAND, WIRE
from albatross_py.wire.messages import WIRE_VERSION, Command, Wire


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
