"""The event log: its wire alternatives, the ring, matching, history and the line format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from albatross_py.core import eventlog as el
from albatross_py.wire import der
from albatross_py.wire import events as ev
from albatross_py.wire.codec import decode_wire, encode_wire
from albatross_py.wire.errors import WireError
from albatross_py.wire.jsonview import wire_to_json
from albatross_py.wire.messages import DataEvent, EventsRecord, EventsSubscribe, Header, Wire
from albatross_py.wire.names import Name
from albatross_py.wire.types import Policy

N = Name.of_string
T0 = datetime(2026, 8, 3, 10, 11, 12, 345000, tzinfo=UTC)

# -- strategies ---------------------------------------------------------------------

labels = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,10}", fullmatch=True)
paths = st.lists(labels, max_size=3).map(tuple)
names = st.builds(Name, paths, st.one_of(st.none(), labels))
text = st.text(max_size=12)
ints = st.integers(-(2**62), 2**62 - 1)
pairs = st.lists(st.tuples(text, text), max_size=3).map(tuple)
times = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
policies = st.builds(
    Policy,
    unikernels=st.integers(0, 100),
    cpuids=st.frozensets(st.integers(0, 64), max_size=4),
    memory=st.integers(0, 10_000),
    block=st.one_of(st.none(), st.integers(0, 10_000)),
    bridges=st.frozensets(labels, max_size=3),
)
events = st.one_of(
    st.builds(ev.Startup, text),
    st.builds(ev.Login, names, text),
    st.builds(ev.Logout, names, text),
    st.builds(ev.UnikernelStarted, names, ints, pairs, pairs, st.binary(max_size=32)),
    st.builds(ev.UnikernelExited, names, ints, code=ints),
    st.builds(ev.UnikernelExited, names, ints, signal=ints),
    st.builds(ev.UnikernelExited, names, ints),
    st.builds(ev.UnikernelRestarting, names, text),
    st.builds(ev.UnikernelDestroyed, names),
    st.builds(ev.PolicyChanged, names, st.one_of(st.none(), policies)),
    st.builds(ev.BlockChanged, names, st.one_of(st.none(), st.integers(0, 2**40))),
)
payloads = st.one_of(
    st.builds(EventsSubscribe, since=times),
    st.builds(EventsSubscribe, count=ints),
    st.builds(EventsRecord, events),
    st.builds(DataEvent, times, events),
)


# -- wire -----------------------------------------------------------------------------


@given(st.builds(Header, st.just(5), st.integers(-(2**63), 2**63 - 1), names), payloads)
def test_wire_roundtrip(header: Header, payload: object) -> None:
    wire = Wire(header, payload)  # type: ignore[arg-type]
    data = encode_wire(wire)
    back = decode_wire(data)
    assert back == wire
    assert encode_wire(back) == data
    wire_to_json(back)  # the JSON view knows the new alternatives


def test_wire_tags() -> None:
    """Command [6] events / [1] record / [6] destroyed; Data [5] event (EXPLICIT tags)."""
    record = encode_wire(Wire(Header(name=N(":")), EventsRecord(ev.UnikernelDestroyed(N("a:vm")))))
    assert record.hex().endswith("a00ca60aa108a6060c04613a766d")
    data = encode_wire(Wire(Header(name=N(":")), DataEvent(T0, ev.Startup("x"))))
    assert bytes.fromhex("a31ea51c301a1813") in data
    assert data.endswith(b"20260803101112.345Z" + bytes.fromhex("a0030c0178"))
    j = wire_to_json(Wire(Header(name=N(":")), EventsSubscribe(count=3)))
    assert j["payload"] == {"command": {"events": {"subscribe": {"count": 3}}}}
    j = wire_to_json(Wire(Header(name=N(":")), EventsRecord(ev.UnikernelExited(N("vm"), 7, 2))))
    assert j["payload"]["command"]["events"]["record"] == {
        "unikernel-exited": {"name": ":vm", "pid": 7, "status": {"exit-code": 2}}
    }


HDR = bytes.fromhex("3013020105040800000000000000000c043a666f6f")


@pytest.mark.parametrize(
    ("payload_hex", "message"),
    [
        ("a004a2020500", "support for log dropped"),  # tag [2] stays retired
        ("a304a2020500", "support for log was dropped"),
        ("a006a604a7020500", "unknown tag \\[7\\]"),  # no events alternative [7]
        ("a008a606a104a9020500", "event: unknown tag \\[9\\]"),
        ("a307a505300318012a", "malformed GeneralizedTime"),
    ],
)
def test_rejected(payload_hex: str, message: str) -> None:
    with pytest.raises(WireError, match=message):
        decode_wire(der.tlv(0x30, HDR + bytes.fromhex(payload_hex)))


def test_exit_with_code_and_signal_is_not_encodable() -> None:
    with pytest.raises(WireError, match="not both"):
        encode_wire(Wire(Header(), EventsRecord(ev.UnikernelExited(N("vm"), 1, 2, 9))))


def test_subscribe_needs_one_of_since_and_count() -> None:
    with pytest.raises(ValueError):
        EventsSubscribe()
    with pytest.raises(ValueError):
        EventsSubscribe(since=T0, count=1)


# -- matching and relative names -------------------------------------------------------

VM = ev.UnikernelStarted(N("a:b:vm"), 1, (("service", "tap0"),), (), b"")


@pytest.mark.parametrize(
    ("at", "event", "seen"),
    [
        (":", VM, "a:b:vm"),
        ("a:", VM, "b:vm"),
        ("a:b:", VM, ":vm"),
        ("a:b:vm", VM, ":vm"),
        ("a:b:vm:", VM, ":vm"),  # the path sharing the VM's trie node
        ("x:", VM, None),
        ("a:c:", VM, None),
        ("a:b:vm2", VM, None),
        (":", ev.Startup("albatrossd"), ":"),
        ("a:", ev.Startup("albatrossd"), None),  # startup: root subscribers only
        ("a:", ev.PolicyChanged(N("a:"), None), ":"),
        ("a:", ev.PolicyChanged(N("a:b:"), None), "b:"),
        ("a:b:", ev.PolicyChanged(N("a:"), None), None),
        ("a:", ev.Login(N("a:alice"), "10.0.0.1:4242"), ":alice"),
    ],
)
def test_matching(at: str, event: ev.Event, seen: str | None) -> None:
    sub = N(at)
    assert el.matches(sub, event) == (seen is not None)
    if seen is not None:
        assert str(el.relative_name(sub, event.subject)) == seen
        rel = el.relative_event(sub, event)
        assert str(rel.subject) == seen
        assert type(rel) is type(event)


# -- the ring and history ---------------------------------------------------------------


def _ts(i: int) -> datetime:
    return T0 + timedelta(seconds=i)


def _destroyed(i: int, at: str = "a") -> ev.Event:
    return ev.UnikernelDestroyed(N(f"{at}:vm{i}"))


def test_ring_keeps_the_newest() -> None:
    ring = el.EventRing(3)
    for i in range(5):
        ring.push(_ts(i), _destroyed(i))
    assert len(ring) == 3
    assert [e for _, e in ring.entries()] == [_destroyed(i) for i in (2, 3, 4)]
    with pytest.raises(ValueError):
        el.EventRing(0)


@pytest.mark.parametrize(
    ("count", "expected"), [(2, [4, 5]), (0, []), (-5, []), (10**18, [2, 3, 4, 5])]
)
def test_history_by_count_is_clamped(count: int, expected: list[int]) -> None:
    ring = el.EventRing(4)
    for i in range(6):
        ring.push(_ts(i), _destroyed(i))
    got = el.history(ring, N(":"), count=count)
    assert got == [(_ts(i), _destroyed(i)) for i in expected]


def test_history_counts_matching_events_only() -> None:
    ring = el.EventRing(10)
    for i in range(6):
        ring.push(_ts(i), _destroyed(i, "a" if i % 2 else "b"))
    got = el.history(ring, N("a:"), count=2)
    assert [e for _, e in got] == [_destroyed(3), _destroyed(5)]


def test_history_since() -> None:
    ring = el.EventRing(10)
    for i in range(6):
        ring.push(_ts(i), _destroyed(i, "a" if i % 2 else "b"))
    assert [t for t, _ in el.history(ring, N(":"), since=_ts(3))] == [_ts(3), _ts(4), _ts(5)]
    assert [t for t, _ in el.history(ring, N("a:"), since=_ts(2))] == [_ts(3), _ts(5)]
    assert el.history(ring, N(":"), since=_ts(99)) == []


def test_eventlog_subscribers() -> None:
    log: el.EventLog[str] = el.EventLog(ring_size=8, max_per_name=2)
    log.record(_ts(0), ev.Startup("albatross-log"))
    out = log.subscribe(N(":"), "root", count=10)
    assert [e for _, e in out.history] == [ev.Startup("albatross-log")]
    assert log.subscribe(N("a:"), "a1", count=0).history == []
    assert log.subscribe(N("a:"), "a2", count=0).kicked == []
    assert log.subscribe(N("a:"), "a3", count=0).kicked == ["a1"]
    got = log.record(_ts(1), _destroyed(1))
    assert got == [
        ("root", N("a:vm1"), _destroyed(1)),
        ("a2", N(":vm1"), ev.UnikernelDestroyed(N(":vm1"))),
        ("a3", N(":vm1"), ev.UnikernelDestroyed(N(":vm1"))),
    ]
    assert [s for s, _, _ in log.record(_ts(2), ev.Startup("albatrossd"))] == ["root"]
    assert log.unsubscribe(N("a:"), "a2")
    assert not log.unsubscribe(N("a:"), "a2")
    assert log.subscriber_count() == 2


# -- the text line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (ev.Startup("albatrossd"), "startup : program=albatrossd"),
        (
            ev.UnikernelStarted(
                N("a:vm"),
                42,
                (("service", "tap0"), ("net2", "tap1")),
                (("data", "a:disk"),),
                b"\x01\xff",
            ),
            "unikernel-started a:vm pid=42 taps=service=tap0,net2=tap1 blocks=data=a:disk "
            "digest=01ff",
        ),
        (ev.UnikernelExited(N("vm"), 42, code=3), "unikernel-exited :vm pid=42 exit-code=3"),
        (ev.UnikernelExited(N("vm"), 42, signal=9), "unikernel-exited :vm pid=42 signal=9"),
        (ev.UnikernelExited(N("vm"), 42), "unikernel-exited :vm pid=42 status=unknown"),
        (
            ev.UnikernelRestarting(N("vm"), "exited with exit 3"),
            'unikernel-restarting :vm reason="exited with exit 3"',
        ),
        (ev.UnikernelDestroyed(N("a:vm")), "unikernel-destroyed a:vm"),
        (
            ev.PolicyChanged(N("a:"), Policy(2, frozenset({1, 0}), 64, None, frozenset({"b2"}))),
            "policy-changed a: unikernels=2 memory=64 block=none cpuids=0,1 bridges=b2",
        ),
        (ev.PolicyChanged(N("a:"), None), "policy-changed a: removed=true"),
        (ev.BlockChanged(N("a:disk"), 10), "block-changed a:disk size=10"),
        (ev.BlockChanged(N("a:disk"), None), "block-changed a:disk removed=true"),
        (ev.Login(N("a:alice"), "10.0.0.1:4242"), "login a:alice address=10.0.0.1:4242"),
        (ev.Logout(N("a:alice"), ""), 'logout a:alice address=""'),
    ],
)
def test_line_format(event: ev.Event, expected: str) -> None:
    assert el.line(T0, event) == f"2026-08-03T10:11:12.345Z {expected}\n"


def test_line_escapes_control_characters() -> None:
    nasty = 'x\n2026-01-01T00:00:00.000Z startup : program=forged\r\t"\\\x00\x1b\x7f\u2028\udcff'
    text = el.line(T0, ev.UnikernelRestarting(N("vm"), nasty))
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "\r" not in text and "\x00" not in text and "\x1b" not in text
    assert "\u2028" not in text and "\x7f" not in text
    assert text.encode("utf-8")  # no lone surrogates left
    assert (
        r'reason="x\n2026-01-01T00:00:00.000Z startup : program=forged\r\t\"\\\x00\x1b\x7f'
        r'\u2028\xff"' in text
    )


@given(events, times)
def test_every_line_is_one_line(event: ev.Event, ts: datetime) -> None:
    text = el.line(ts, event)
    assert text.endswith("\n") and "\n" not in text[:-1] and "\r" not in text
    assert text.splitlines() == [text[:-1]]
    text.encode("utf-8")


def test_timestamp_text() -> None:
    assert el.timestamp_text(T0.replace(microsecond=999)) == "2026-08-03T10:11:12.000Z"
    other = datetime(2026, 8, 3, 12, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    assert el.timestamp_text(other) == "2026-08-03T12:00:00.000Z"
