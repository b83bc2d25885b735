"""Bad input to the wire layer: always a WireError with a clear message, nothing else."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from albatross_py.wire import der
from albatross_py.wire.codec import decode_cert_extension, decode_wire, encode_wire
from albatross_py.wire.errors import WireError
from albatross_py.wire.framing import MAX_FRAME_SIZE, FrameReader, frame
from albatross_py.wire.messages import ConsoleSubscribe, Header, UnikernelInfoQuery, Wire
from albatross_py.wire.names import Name
from albatross_py.wire.state import read_state

GOOD = encode_wire(Wire(Header(name=Name.of_string("foo")), ConsoleSubscribe(count=20)))
HDR = bytes.fromhex("3013020105040800000000000000000c043a666f6f")


def msg(payload_hex: str, header: bytes = HDR) -> bytes:
    return der.tlv(0x30, header + bytes.fromhex(payload_hex))


def count_msg(integer_tlv: bytes) -> bytes:
    """A console subscribe whose count is the given (possibly bad) INTEGER TLV."""
    inner = der.tlv(0xA0, der.tlv(0xA0, der.tlv(0xA2, der.tlv(0xA1, integer_tlv))))
    return der.tlv(0x30, HDR + inner)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "unexpected end of data"),
        (GOOD + b"\x00", "trailing bytes"),
        (GOOD[:-1], "claims"),
        (b"\x30\x81\x20" + GOOD[2:], "long form where short fits"),
        (b"\x30\x80" + GOOD[2:] + b"\x00\x00", "indefinite length"),
        (b"\x30\x82\x00\x20" + GOOD[2:], "leading zero"),
        (b"\x30\x85\x00\x00\x00\x00\x20", "at most 4"),
        (b"\x3f\x00", "high tag number"),
        (count_msg(bytes.fromhex("02020014")), "not minimally encoded"),
        (count_msg(bytes.fromhex("0202ffff")), "not minimally encoded"),
        (count_msg(bytes.fromhex("0200")), "no content octets"),
        (count_msg(bytes.fromhex("0101ff")), "expected INTEGER, found BOOLEAN"),
        (count_msg(bytes.fromhex("2203020114")), "expected INTEGER"),  # constructed
        (msg("a009a007a205a10301"), "claims"),
        (msg("a006a004a1020500"), "unknown tag \\[1\\]"),  # console old-subscribe, retired
        (msg("a004a2020500"), "support for log dropped"),
        (msg("a304a2020500"), "support for log was dropped"),
        (msg("a404a0020500"), "unknown tag"),  # no payload [4]
        (msg("a005a0030201"), "claims"),
    ],
)
def test_malformed_messages(data: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        decode_wire(data)


def test_negative_count_decodes_but_is_not_a_parse_error() -> None:
    # clamping a negative count is the console daemon's job; the codec keeps it
    wire = decode_wire(msg("a009a007a205a1030201ff"))
    assert wire.payload == ConsoleSubscribe(count=-1)


@pytest.mark.parametrize("version", [3, 4, 6, 0x7F])
def test_other_versions_are_refused_before_parsing(version: int) -> None:
    header = bytes.fromhex(f"30130201{version:02x}040800000000000000000c043a666f6f")
    # the payload is garbage: the version check must come first
    with pytest.raises(WireError, match=f"unknown version number 0x{version:X}"):
        decode_wire(der.tlv(0x30, header + b"\xa9\x00"))


def test_short_int64_sequence() -> None:
    header = bytes.fromhex("300c02010504010c0c043a666f6f")
    with pytest.raises(WireError, match="Int64 must be 8 octets, got 1"):
        decode_wire(msg("a006a304b3020500", der.tlv(0x30, header[2:])))


def test_integers_beyond_63_bits() -> None:
    with pytest.raises(WireError, match="does not fit 63 bits"):
        decode_wire(count_msg(der.tlv(0x02, b"\x40" + bytes(7))))
    with pytest.raises(WireError, match="too large"):
        decode_wire(count_msg(der.tlv(0x02, b"\x01" + bytes(8))))
    assert decode_wire(count_msg(der.tlv(0x02, b"\x3f" + b"\xff" * 7))).payload == (
        ConsoleSubscribe(count=2**62 - 1)
    )


def test_invalid_label_in_header() -> None:
    header = bytes.fromhex("3013020105040800000000000000000c04") + b":-oo"
    with pytest.raises(WireError, match="invalid name"):
        decode_wire(msg("a006a304b3020500", der.tlv(0x30, header[2:])))


def test_deep_nesting_is_bounded() -> None:
    deep = b"\x05\x00"
    for _ in range(200):
        deep = der.tlv(0xA0, deep)
    with pytest.raises(WireError):
        decode_wire(der.tlv(0x30, HDR + deep))


def test_nesting_limit_itself() -> None:
    value = der.Null()
    for _ in range(der.MAX_DEPTH + 2):
        value = der.Explicit(0, value)  # type: ignore[assignment]
    with pytest.raises(WireError, match="nested deeper"):
        der.decode(value, value.encode(None))


def test_oversized_frame_is_refused_before_reading_it() -> None:
    reader = FrameReader(max_frame=1024)
    reader.feed((1025).to_bytes(4, "big"))
    with pytest.raises(WireError, match="exceeds the maximum of 1024"):
        reader.next_frame()
    assert MAX_FRAME_SIZE >= 16 * 1024 * 1024


def test_frames_split_anywhere() -> None:
    reader = FrameReader()
    stream = frame(GOOD) + frame(b"") + frame(b"abc")
    out = []
    for i in range(len(stream)):
        reader.feed(stream[i : i + 1])
        while (f := reader.next_frame()) is not FrameReader.NEED_DATA:
            out.append(f)
    assert out == [GOOD, None, b"abc"]
    # albatross treats any length <= 0 as end of stream
    reader.feed(b"\xff\xff\xff\xff")
    assert reader.next_frame() is None


@pytest.mark.parametrize(
    "data",
    [b"", b"\xa7\x02\x05\x00", b"\xa9\x00", b"\xa6\x04\x30\x02\x30\x00"],
)
def test_bad_state_files(data: bytes) -> None:
    with pytest.raises(WireError):
        read_state(data)


def test_bad_certificate_extension() -> None:
    with pytest.raises(WireError, match="unknown version"):
        decode_cert_extension(bytes.fromhex("300c020104a007a205a103020114"))
    with pytest.raises(WireError):
        decode_cert_extension(bytes.fromhex("300c020105a007a205a10302"))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_wire_error(data: bytes) -> None:
    for decoder in (decode_wire, read_state, decode_cert_extension):
        with contextlib.suppress(WireError):
            decoder(data)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, len(GOOD) - 1), st.integers(0, 255))
def test_mutated_messages_only_raise_wire_error(pos: int, byte: int) -> None:
    info = encode_wire(Wire(Header(name=Name.of_string("a:b")), UnikernelInfoQuery()))
    for base in (GOOD, info):
        mutated = bytearray(base)
        mutated[pos % len(base)] = byte
        with contextlib.suppress(WireError):
            decode_wire(bytes(mutated))
