"""Property tests: every message we can build encodes, decodes back equal, and
re-encodes to the same bytes (DER is canonical)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from albatross_py.wire import der
from albatross_py.wire.codec import decode_wire, encode_wire
from albatross_py.wire.messages import (
    BlockAdd,
    BlockDump,
    BlockSet,
    ConsoleAdd,
    ConsoleSubscribe,
    DataBlock,
    DataConsole,
    DataStatistics,
    Failure,
    Header,
    PolicyAdd,
    ReplyBlockDevices,
    ReplyConsoles,
    ReplyPolicies,
    ReplyString,
    ReplyUnikernelImage,
    ReplyUnikernelInfo,
    StatsAdd,
    UnikernelCreate,
    UnikernelGet,
    UnikernelRestart,
    Wire,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import (
    BlockDevice,
    BlockDeviceEntry,
    BlockInfo,
    BridgeInfo,
    FailBehaviour,
    IfData,
    KinfoMem,
    NamedPolicy,
    NetDevice,
    Policy,
    Rusage,
    Statistics,
    Timeval,
    Typ,
    UnikernelArguments,
    UnikernelConfig,
    UnikernelInfo,
)

ints = st.integers(-(2**62), 2**62 - 1)
small = st.integers(0, 10_000)
i64 = st.integers(-(2**63), 2**63 - 1)
text = st.text(max_size=12)
labels = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,10}", fullmatch=True)
paths = st.lists(labels, max_size=3).map(tuple)
names = st.builds(Name, paths, st.one_of(st.none(), labels))
cpusets = st.frozensets(st.integers(0, 300), min_size=1, max_size=4)
times = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
fail = st.one_of(
    st.just(FailBehaviour()),
    st.builds(
        FailBehaviour,
        st.just(True),
        st.one_of(st.none(), st.frozensets(st.integers(0, 255), max_size=4)),
    ),
)
blocks = st.lists(
    st.builds(BlockDevice, text, st.one_of(st.none(), text), st.one_of(st.none(), small)),
    max_size=3,
).map(tuple)
nets = st.lists(
    st.builds(
        NetDevice,
        text,
        st.one_of(st.none(), text),
        st.one_of(st.none(), st.binary(min_size=6, max_size=6)),
    ),
    max_size=3,
).map(tuple)
argvs = st.one_of(st.none(), st.lists(text, max_size=3).map(tuple))


def _sorted_by_encoding(items: tuple, schema: der.Schema) -> tuple:
    return tuple(sorted(items, key=schema.encode))


@st.composite
def configs(draw: st.DrawFn) -> UnikernelConfig:
    from albatross_py.wire.types_grammar import BLOCK_DEVICE, NET_DEVICE

    return UnikernelConfig(
        typ=draw(st.sampled_from(list(Typ))),
        compressed=draw(st.booleans()),
        image=draw(st.binary(max_size=64)),
        startup=draw(st.one_of(st.none(), ints)),
        add_name=draw(st.booleans()),
        fail_behaviour=draw(fail),
        cpuids=draw(cpusets),
        memory=draw(small),
        # SET OF comes back in DER order; build them in that order
        blocks=_sorted_by_encoding(draw(blocks), BLOCK_DEVICE),
        bridges=_sorted_by_encoding(draw(nets), NET_DEVICE),
        argv=draw(argvs),
        cpus=draw(small),
        linux_boot_partition=draw(st.one_of(st.none(), text)),
    )


policies = st.builds(
    Policy, small, cpusets, small, st.one_of(st.none(), small), st.frozensets(text, max_size=3)
)
timevals = st.builds(Timeval, i64, st.integers(0, 999_999))


@st.composite
def infos(draw: st.DrawFn) -> UnikernelInfo:
    from albatross_py.wire.types_grammar import _INFO_BLOCK, _INFO_BRIDGE

    bl = draw(st.lists(st.builds(BlockInfo, text, text, small, small), max_size=2))
    br = draw(
        st.lists(st.builds(BridgeInfo, text, text, st.binary(min_size=6, max_size=6)), max_size=2)
    )
    return UnikernelInfo(
        typ=draw(st.sampled_from(list(Typ))),
        startup=draw(st.one_of(st.none(), small)),
        fail_behaviour=draw(fail),
        cpuids=draw(cpusets),
        memory=draw(small),
        digest=draw(st.binary(max_size=32)),
        blocks=_sorted_by_encoding(tuple(bl), _INFO_BLOCK),
        bridges=_sorted_by_encoding(tuple(br), _INFO_BRIDGE),
        argv=draw(argvs),
        started=draw(times),
        cpus=draw(small),
        linux_boot_partition=draw(st.one_of(st.none(), text)),
    )


stats = st.builds(
    Statistics,
    st.builds(Rusage, timevals, timevals, *[i64] * 14),
    st.lists(
        st.builds(IfData, text, *[st.integers(-(2**31), 2**31 - 1)] * 5, *[i64] * 12), max_size=2
    ).map(tuple),
    st.one_of(st.none(), st.lists(st.tuples(text, i64), max_size=2).map(tuple)),
    st.one_of(st.none(), st.builds(KinfoMem, *[i64] * 6, small, timevals)),
)

payloads = st.one_of(
    st.builds(ConsoleAdd, ints),
    st.builds(lambda c: ConsoleSubscribe(count=c), ints),
    st.builds(lambda t: ConsoleSubscribe(since=t), times),
    st.builds(StatsAdd, text, small, st.lists(st.tuples(text, text), max_size=2).map(tuple)),
    st.builds(UnikernelCreate, configs(), st.booleans()),
    st.builds(UnikernelGet, st.integers(0, 9)),
    st.builds(
        lambda c, a: UnikernelRestart(
            UnikernelArguments(
                fail_behaviour=c.fail_behaviour,
                startup=c.startup,
                add_name=c.add_name,
                cpuids=c.cpuids,
                memory=c.memory,
                blocks=c.blocks,
                bridges=c.bridges,
                argv=c.argv,
                cpus=c.cpus,
                linux_boot_partition=c.linux_boot_partition,
            )
            if a
            else None
        ),
        configs(),
        st.booleans(),
    ),
    st.builds(PolicyAdd, policies),
    st.builds(BlockAdd, small),
    st.builds(BlockDump, st.integers(0, 9), st.booleans()),
    st.builds(BlockSet, st.booleans()),
    st.builds(ReplyString, text),
    st.builds(
        lambda es: ReplyPolicies(tuple(es)),
        st.lists(st.builds(NamedPolicy, names, policies), max_size=3),
    ),
    st.builds(
        lambda es: ReplyBlockDevices(tuple(es)),
        st.lists(st.builds(BlockDeviceEntry, names, small, st.booleans()), max_size=3),
    ),
    st.builds(ReplyUnikernelImage, st.booleans(), st.binary(max_size=64)),
    st.builds(
        lambda es: ReplyUnikernelInfo(tuple(es)), st.lists(st.tuples(names, infos()), max_size=2)
    ),
    st.builds(lambda ns: ReplyConsoles(tuple(ns)), st.lists(names, max_size=3)),
    st.builds(Failure, text),
    st.builds(DataConsole, times, st.binary(max_size=600)),
    st.builds(DataBlock, st.one_of(st.none(), st.binary(max_size=64))),
    st.builds(DataStatistics, stats),
)


@settings(max_examples=300, deadline=None)
@given(st.builds(Header, st.just(5), i64, names), payloads)
def test_roundtrip(header: Header, payload: object) -> None:
    wire = Wire(header, payload)  # type: ignore[arg-type]
    enc = encode_wire(wire)
    back = decode_wire(enc)
    assert back == wire
    assert encode_wire(back) == enc


@settings(max_examples=300, deadline=None)
@given(st.builds(Header, st.just(5), i64, names), times, st.binary(max_size=700))
def test_fast_console_line_equals_the_general_encoder(
    header: Header, ts: datetime, line: bytes
) -> None:
    from albatross_py.wire.codec import encode_header, encode_timestamp, frame_console_line
    from albatross_py.wire.framing import frame

    fast = frame_console_line(encode_header(header), encode_timestamp(ts), line)
    assert fast == frame(encode_wire(Wire(header, DataConsole(ts, line))))
