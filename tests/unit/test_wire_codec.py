"""The codec: the spec's worked encodings, DER rules, historical alternatives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from albatross_py.wire import der
from albatross_py.wire.codec import decode_wire, encode_wire
from albatross_py.wire.grammar import PAYLOAD
from albatross_py.wire.messages import (
    BlockAdd,
    BlockAddOld,
    BlockDump,
    BlockSet,
    BlockSetOld,
    DataBlock,
    DataConsole,
    Failure,
    Header,
    InfoVersion,
    ReplyString,
    ReplyUnikernelInfo,
    StatsInitial,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfoQuery,
    UnikernelRestart,
    Wire,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import (
    BlockDevice,
    FailBehaviour,
    NetDevice,
    Policy,
    Typ,
    UnikernelConfig,
    UnikernelInfo,
)
from albatross_py.wire.types_grammar import CONFIG, CONFIG_V3, INFO, POLICY

HELLO = Header(name=Name.of_string("hello"))
HELLO_HDR = "3015020105040800000000000000000c063a68656c6c6f"


def hx(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


def wire_hex(payload: object, header: Header = HELLO) -> str:
    return encode_wire(Wire(header, payload)).hex()  # type: ignore[arg-type]


# -- spec 3.10 worked encodings --------------------------------------------------


def test_b_info_query() -> None:
    assert wire_hex(UnikernelInfoQuery()) == "301f" + HELLO_HDR + "a006a304b3020500"


def test_c_destroy() -> None:
    assert wire_hex(UnikernelDestroy()).endswith("a006a304a3020500")


def test_d_success_string() -> None:
    expected = "302e" + HELLO_HDR + "a115a1130c11" + b"created unikernel".hex()
    assert wire_hex(ReplyString("created unikernel")) == expected


def test_e_failure() -> None:
    assert wire_hex(Failure("destroy: not found")).endswith(
        "a2140c12" + b"destroy: not found".hex()
    )


def test_f_console_line_with_milliseconds() -> None:
    ts = datetime(2025, 8, 22, 13, 4, 43, 123999, tzinfo=UTC)  # truncated, not rounded
    out = wire_hex(DataConsole(ts, b"hello world"))
    assert out.endswith(
        "a326a3243022181332303235303832323133303434332e3132335a0c0b" + b"hello world".hex()
    )


def test_generalized_time_without_fraction_and_sub_millisecond() -> None:
    gt = der.GeneralizedTime()
    assert gt.encode(datetime(2025, 8, 22, 13, 4, 43, tzinfo=UTC))[2:] == b"20250822130443Z"
    assert gt.encode(datetime(2025, 8, 22, 13, 4, 43, 500, tzinfo=UTC))[2:] == (
        b"20250822130443.000Z"
    )
    # the decoder also accepts offsets and missing seconds
    assert gt.decode_content(b"202508221304+0100") == datetime(2025, 8, 22, 12, 4, tzinfo=UTC)


def test_g_minimal_create() -> None:
    cfg = UnikernelConfig(memory=32, bridges=(NetDevice("service"),))
    payload = der.encode(PAYLOAD, ("command", UnikernelCreate(cfg)))
    assert payload == hx(
        "a032a330b42e302c a0020500 010100 0400 0101ff a0020500"
        "3103020100 020120 a10d310b30090c07" + b"service".hex() + "a303020101"
    )


def test_h_block_messages() -> None:
    assert wire_hex(DataBlock(None)).endswith("a306a404a1020500")
    assert wire_hex(BlockSet(True)).endswith("a007a505a7030101ff")
    assert wire_hex(BlockAdd(10)).endswith("a007a505a10302010a")


def test_i_stats_initial() -> None:
    root = Header(name=Name.of_string(":"))
    assert wire_hex(StatsInitial(), root) == (
        "301a3010020105040800000000000000000c013aa006a104a3020500"
    )


# -- DER rules -----------------------------------------------------------------------


def test_set_of_is_sorted_by_encoding_and_decode_keeps_order() -> None:
    cfg = UnikernelConfig(cpuids=frozenset({300, 2, 1}), memory=1)
    enc = der.encode(CONFIG, cfg)
    # 1 and 2 (one octet) sort before 300 (two octets)
    assert hx("310a 020101 020102 0202012c") in enc
    blocks = (BlockDevice("zz"), BlockDevice("a"), BlockDevice("ab"))
    enc = der.encode(CONFIG, UnikernelConfig(blocks=blocks))
    got = der.decode(CONFIG, enc)
    assert [b.name for b in got.blocks] == ["a", "ab", "zz"]
    # a hand-made unsorted SET OF decodes in the order found
    unsorted = enc.replace(b"\x0c\x01a", b"\x0c\x01q")
    assert [b.name for b in der.decode(CONFIG, unsorted).blocks] == ["q", "ab", "zz"]


def test_policy_fields_are_sequences_in_ascending_order() -> None:
    p = Policy(2, frozenset({3, 1}), 64, None, frozenset({"b", "a"}))
    assert der.encode(POLICY, p) == hx("3016 3006020101020103 020102 020140 3006 0c0161 0c0162")


def test_empty_lists_are_omitted_but_empty_argv_is_not() -> None:
    base = der.encode(CONFIG, UnikernelConfig())
    with_argv = der.encode(CONFIG, UnikernelConfig(argv=()))
    assert b"\xa2\x02\x30\x00" in with_argv and b"\xa2" not in base[-8:]
    assert der.decode(CONFIG, with_argv).argv == ()
    assert der.decode(CONFIG, base).argv is None
    # cpus is always emitted, and defaults to 1 when absent
    assert base.endswith(hx("a303020101"))
    assert der.decode(CONFIG, base[:-5].replace(base[:2], bytes([0x30, base[1] - 5]), 1)).cpus == 1


def test_int64_is_an_eight_octet_octet_string() -> None:
    h = Header(sequence=-2, name=Name.of_string(":"))
    out = encode_wire(Wire(h, StatsInitial()))
    assert hx("0408fffffffffffffffe") in out
    assert decode_wire(out).header.sequence == -2


def test_boolean_accepts_any_nonzero() -> None:
    enc = wire_hex(BlockSet(True)).replace("0101ff", "010101")
    assert decode_wire(hx(enc)).payload == BlockSet(True)


def test_info_always_emits_started_and_cpus() -> None:
    info = UnikernelInfo(
        typ=Typ.SOLO5,
        startup=None,
        fail_behaviour=FailBehaviour(restart=True, exit_codes=frozenset({3})),
        cpuids=frozenset({0}),
        memory=32,
        digest=b"\x00" * 32,
    )
    enc = der.encode(INFO, info)
    assert hx("a311 180f 31393730303130313030303030305a") in enc  # epoch
    assert enc.endswith(hx("a403020101"))
    assert der.decode(INFO, enc) == info


# -- historical alternatives -----------------------------------------------------


def _config_v3() -> UnikernelConfig:
    return UnikernelConfig(memory=64, bridges=(NetDevice("service", "br0"),), argv=("-l",))


@pytest.mark.parametrize(("tag", "force"), [(9, False), (10, True), (16, False), (17, True)])
def test_old_create_tags_map_to_current_create(tag: int, force: bool) -> None:
    cfg = _config_v3()
    from albatross_py.wire.types_grammar import CONFIG_V4

    schema = CONFIG_V3 if tag in (9, 10) else CONFIG_V4
    body = der.Explicit(tag, schema).encode(cfg)
    payload = der.tlv(0xA0, der.tlv(0xA3, body))
    wire = hx(HELLO_HDR) + payload
    msg = decode_wire(der.tlv(0x30, wire))
    assert msg.payload == UnikernelCreate(cfg, force=force)
    # re-encoding uses the current tags, as albatross's encoder does
    assert encode_wire(msg).hex().count("b4" if not force else "b5") >= 1


def test_old_restart_arguments_decode() -> None:
    from albatross_py.wire.types import UnikernelArguments
    from albatross_py.wire.types_grammar import ARGUMENTS_V0, ARGUMENTS_V1

    args = UnikernelArguments(memory=48, cpuids=frozenset({1}))
    for n, schema in ((1, ARGUMENTS_V0), (2, ARGUMENTS_V1)):
        inner = der.Explicit(n, schema).encode(args)
        payload = der.tlv(0xA0, der.tlv(0xA3, der.tlv(0xAE, inner)))
        msg = decode_wire(der.tlv(0x30, hx(HELLO_HDR) + payload))
        assert msg.payload == UnikernelRestart(args)


@pytest.mark.parametrize(
    ("query_tag", "reply_tag", "version"),
    [(15, 9, InfoVersion.OLD4), (18, 11, InfoVersion.OLD5), (19, 13, InfoVersion.CURRENT)],
)
def test_old_info_queries_get_old_reply_tags(
    query_tag: int, reply_tag: int, version: InfoVersion
) -> None:
    query = der.tlv(
        0x30, hx(HELLO_HDR) + der.tlv(0xA0, der.tlv(0xA3, der.tlv(0xA0 | query_tag, hx("0500"))))
    )
    msg = decode_wire(query)
    assert msg.payload == UnikernelInfoQuery(version)
    info = UnikernelInfo(Typ.SOLO5, 3, FailBehaviour(), frozenset({0}), 32, b"d")
    reply = ReplyUnikernelInfo(((Name.of_string("hello"), info),), msg.payload.version)
    enc = encode_wire(Wire(msg.header, reply))
    assert enc[len(hx(HELLO_HDR)) + 4] == 0xA0 | reply_tag
    back = decode_wire(enc).payload
    assert isinstance(back, ReplyUnikernelInfo) and back.version == version
    ((_name, got),) = back.entries
    assert got.cpuids == info.cpuids and got.memory == 32
    if version != InfoVersion.OLD4:
        assert got.startup == 3


def test_old_block_commands_keep_their_tags() -> None:
    for cmd in (BlockAddOld(10, False, b"x"), BlockSetOld(True, b"y"), BlockDump(3, old=True)):
        enc = encode_wire(Wire(HELLO, cmd))
        assert decode_wire(enc).payload == cmd


def test_old_encoders_refuse_several_cpuids() -> None:
    info = UnikernelInfo(Typ.SOLO5, None, FailBehaviour(), frozenset({0, 1}), 32, b"")
    reply = ReplyUnikernelInfo(((Name.of_string("x"), info),), InfoVersion.OLD5)
    with pytest.raises(der.WireError, match="one cpuid"):
        encode_wire(Wire(HELLO, reply))


@pytest.mark.parametrize(
    ("value", "octets"),
    [
        (0, "00"), (127, "7f"), (128, "0080"), (255, "00ff"), (256, "0100"),
        (-1, "ff"), (-128, "80"), (-129, "ff7f"), (-256, "ff00"), (-257, "feff"),
        (2**62 - 1, "3fffffffffffffff"), (-(2**62), "c000000000000000"),
    ],
)  # fmt: skip
def test_integer_encoding_is_minimal_twos_complement(value: int, octets: str) -> None:
    enc = der.Integer().encode(value)
    assert enc[2:].hex() == octets
    assert der.decode(der.Integer(), enc) == value
