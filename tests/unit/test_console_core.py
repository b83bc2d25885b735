"""The console's pure core: ring, line splitter, subscription state (spec 6.1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from albatross_py.core.console import (
    MAX_LINE,
    RING_SIZE,
    SUBSCRIBED,
    TRUNCATED,
    WAITING,
    ConsoleError,
    ConsoleState,
    LineSplitter,
    Ring,
)
from albatross_py.wire.names import Name

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def ts(i: int) -> datetime:
    return T0 + timedelta(seconds=i)


def full_ring(n: int = RING_SIZE + 10) -> Ring:
    ring = Ring()
    for i in range(n):
        ring.push(ts(i), b"%d" % i)
    return ring


# -- ring -------------------------------------------------------------------------


def test_ring_keeps_the_last_1024_in_order() -> None:
    ring = full_ring(RING_SIZE + 10)
    assert len(ring) == RING_SIZE
    got = ring.entries()
    assert got[0] == (ts(10), b"10")
    assert got[-1] == (ts(RING_SIZE + 9), b"%d" % (RING_SIZE + 9))
    assert [t for t, _ in got] == sorted(t for t, _ in got)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(-1, 0), (-(10**30), 0), (0, 0), (1, 1), (5, 5), (RING_SIZE, RING_SIZE), (10**30, RING_SIZE)],
)
def test_ring_last_clamps(n: int, expected: int) -> None:
    ring = full_ring()
    got = ring.last(n)
    assert len(got) == expected
    assert got == ring.entries()[RING_SIZE - expected :]


def test_ring_last_on_partial_ring() -> None:
    ring = full_ring(3)
    assert ring.last(10**9) == [(ts(0), b"0"), (ts(1), b"1"), (ts(2), b"2")]
    assert ring.last(-5) == []
    assert Ring().last(3) == []


def test_ring_since() -> None:
    ring = full_ring(20)
    assert ring.since(ts(17)) == [(ts(17), b"17"), (ts(18), b"18"), (ts(19), b"19")]
    assert ring.since(ts(100)) == []
    assert len(ring.since(ts(-100))) == 20


def test_ring_since_stops_after_one_lap() -> None:
    ring = full_ring()
    got = ring.since(T0 - timedelta(days=1))
    assert got == ring.entries()
    assert len(got) == RING_SIZE


def test_ring_since_stops_at_first_older_entry() -> None:
    ring = Ring(size=4)
    for i in (5, 1, 6, 7):  # a clock step backwards
        ring.push(ts(i), b"%d" % i)
    assert ring.since(ts(5)) == [(ts(6), b"6"), (ts(7), b"7")]


# -- line splitter ------------------------------------------------------------------


def test_split_lines_and_slack() -> None:
    s = LineSplitter()
    assert s.feed(b"hello\nwor") == [b"hello"]
    assert s.slack == b"wor"
    assert s.feed(b"ld\n\n\nbye\n") == [b"world", b"bye"]
    assert s.slack == b""


def test_empty_lines_dropped() -> None:
    assert LineSplitter().feed(b"\n\n\n") == []
    assert LineSplitter().feed(b"\na\n\nb\n") == [b"a", b"b"]


def test_truncation_boundary() -> None:
    s = LineSplitter()
    assert s.feed(b"x" * (MAX_LINE - 1) + b"\n") == [b"x" * (MAX_LINE - 1)]
    assert s.feed(b"y" * MAX_LINE + b"\n") == [b"y" * MAX_LINE + TRUNCATED]
    assert s.feed(b"z" * (MAX_LINE + 1) + b"\nok\n") == [b"z" * MAX_LINE + TRUNCATED, b"ok"]


def test_truncation_across_reads() -> None:
    s = LineSplitter()
    assert s.feed(b"a" * 300) == []
    assert s.feed(b"a" * 211) == []  # 511 buffered: not yet
    assert s.slack == b"a" * 511
    assert s.feed(b"bcc") == [b"a" * 511 + b"b" + TRUNCATED]
    assert s.slack == b""
    assert s.feed(b"c" * 2000) == []  # dropped until the newline
    assert s.feed(b"cc\nnext\n") == [b"next"]


def test_exactly_512_in_one_read_then_newline_later() -> None:
    s = LineSplitter()
    assert s.feed(b"q" * MAX_LINE) == [b"q" * MAX_LINE + TRUNCATED]
    assert s.feed(b"\nafter\n") == [b"after"]


def test_flush_gives_the_tail() -> None:
    s = LineSplitter()
    assert s.feed(b"one\ntwo") == [b"one"]
    assert s.flush() == [b"two"]
    assert s.flush() == []


def reference_lines(data: bytes) -> list[bytes]:
    """The rule stated plainly: complete lines, cut at MAX_LINE, empty ones dropped."""
    *complete, tail = data.split(b"\n")
    out = []
    for line in complete:
        if len(line) >= MAX_LINE:
            out.append(line[:MAX_LINE] + TRUNCATED)
        elif line:
            out.append(line)
    if len(tail) >= MAX_LINE:
        out.append(tail[:MAX_LINE] + TRUNCATED)
    return out


console_bytes = st.lists(
    st.one_of(
        st.just(b"\n"),
        st.binary(max_size=40),
        st.builds(lambda n, c: bytes([c]) * n, st.integers(0, 1200), st.integers(0, 255)),
    ),
    max_size=30,
).map(b"".join)


@given(console_bytes, st.lists(st.integers(1, 1100), min_size=1, max_size=50))
def test_chunking_does_not_matter(data: bytes, sizes: list[int]) -> None:
    whole = LineSplitter().feed(data)
    s = LineSplitter()
    chunked: list[bytes] = []
    pos, i = 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        chunked += s.feed(data[pos : pos + size])
        pos += size
        i += 1
    assert chunked == whole == reference_lines(data)
    assert len(s.slack) < MAX_LINE


# -- state --------------------------------------------------------------------------


class Sub:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __repr__(self) -> str:
        return f"Sub({self.tag})"


def nm(s: str) -> Name:
    return Name.of_string(s)


def test_add_on_path_refused() -> None:
    state: ConsoleState[Sub] = ConsoleState()
    with pytest.raises(ConsoleError, match="path used instead of name"):
        state.add(nm("a:"), 3)
    with pytest.raises(ConsoleError, match="path used instead of name"):
        state.subscribe(nm(":"), Sub("x"), count=1)


def test_subscribe_before_vm_then_add() -> None:
    state: ConsoleState[Sub] = ConsoleState()
    s = Sub("early")
    out = state.subscribe(nm("a:vm"), s, count=10)
    assert (out.reply, out.history, out.kicked) == (WAITING, (), ())
    assert state.entry(nm("a:vm")).ring is None  # type: ignore[union-attr]
    added = state.add(nm("a:vm"), 2)
    assert state.record(nm("a:vm"), added.generation, ts(1), [b"hi"]) == (s,)
    assert added.ring.entries() == [(ts(1), b"hi")]
    later = state.subscribe(nm("a:vm"), Sub("late"), count=10)
    assert later.reply == SUBSCRIBED
    assert later.history == ((ts(1), b"hi"),)


def test_history_by_count_and_since() -> None:
    state: ConsoleState[Sub] = ConsoleState()
    gen = state.add(nm(":vm"), 1).generation
    state.record(nm(":vm"), gen, ts(1), [b"a", b"b"])
    state.record(nm(":vm"), gen, ts(2), [b"c"])
    assert state.subscribe(nm(":vm"), Sub("1"), count=2).history == ((ts(1), b"b"), (ts(2), b"c"))
    assert state.subscribe(nm(":vm"), Sub("2"), count=-3).history == ()
    assert state.subscribe(nm(":vm"), Sub("3"), since=ts(2)).history == ((ts(2), b"c"),)
    with pytest.raises(ValueError):
        state.subscribe(nm(":vm"), Sub("4"))


def test_restart_keeps_ring_and_subscribers() -> None:
    state: ConsoleState[Sub] = ConsoleState()
    first = state.add(nm(":vm"), 1)
    s = Sub("s")
    state.subscribe(nm(":vm"), s, count=0)
    state.record(nm(":vm"), first.generation, ts(1), [b"before"])
    assert state.deactivate(nm(":vm"), first.generation)
    second = state.add(nm(":vm"), 1)
    assert second.ring is first.ring
    assert second.generation != first.generation
    assert state.subscribers(nm(":vm")) == (s,)
    # the old reader finishing late changes nothing
    assert not state.deactivate(nm(":vm"), first.generation)
    assert state.record(nm(":vm"), first.generation, ts(2), [b"stale"]) == ()
    assert state.entry(nm(":vm")).active  # type: ignore[union-attr]
    assert second.ring.entries() == [(ts(1), b"before")]


def test_at_most_n_plus_one_rings_dropping_smallest_inactive() -> None:
    state: ConsoleState[Sub] = ConsoleState()
    gens = {lbl: state.add(nm(f"p:{lbl}"), 2).generation for lbl in ("c", "a", "b")}
    assert state.rings(("p",)) == ["a", "b", "c"]  # n + 1 = 3, all active: nothing dropped
    watcher = Sub("watcher")
    state.subscribe(nm("p:b"), watcher, count=5)
    state.deactivate(nm("p:c"), gens["c"])
    state.deactivate(nm("p:b"), gens["b"])
    out = state.add(nm("p:d"), 2)
    assert out.dropped == (nm("p:b"),)  # smallest inactive, not "a" (active)
    assert out.close == (watcher,)
    assert state.rings(("p",)) == ["a", "c", "d"]
    out = state.add(nm("p:e"), 2)
    assert out.dropped == (nm("p:c"),)
    assert state.rings(("p",)) == ["a", "d", "e"]
    # nothing inactive: one more ring than allowed is kept
    out = state.add(nm("p:f"), 2)
    assert out.dropped == ()
    assert state.rings(("p",)) == ["a", "d", "e", "f"]


def test_waiting_subscriber_is_not_evicted() -> None:
    state: ConsoleState[Sub] = ConsoleState()
    g = state.add(nm("p:x"), 1).generation
    state.deactivate(nm("p:x"), g)
    waiter = Sub("w")
    state.subscribe(nm("p:a"), waiter, count=1)  # no ring yet, smallest label
    out = state.add(nm("p:y"), 1)
    assert out.dropped == (nm("p:x"),)  # the inactive ring goes, not the waiting entry
    assert state.subscribers(nm("p:a")) == (waiter,)
    # the waiter's VM starts: its new ring counts, but y is active
    out = state.add(nm("p:a"), 1)
    assert out.dropped == ()
    assert state.rings(("p",)) == ["a", "y"]


def test_subscriber_limit_is_exact_and_kicks_the_oldest() -> None:
    state: ConsoleState[Sub] = ConsoleState(max_subscribers=3)
    state.add(nm(":vm"), 1)
    subs = [Sub(str(i)) for i in range(5)]
    kicked = [state.subscribe(nm(":vm"), s, count=1).kicked for s in subs]
    assert kicked == [(), (), (), (subs[0],), (subs[1],)]
    assert state.subscribers(nm(":vm")) == tuple(subs[2:])
    assert len(state.subscribers(nm(":vm"))) == 3


def test_max_subscribers_at_least_one() -> None:
    with pytest.raises(ValueError):
        ConsoleState(max_subscribers=0)
    state: ConsoleState[Sub] = ConsoleState(max_subscribers=1)
    state.add(nm(":vm"), 1)
    a, b = Sub("a"), Sub("b")
    state.subscribe(nm(":vm"), a, count=1)
    assert state.subscribe(nm(":vm"), b, count=1).kicked == (a,)


def test_unsubscribe_cleans_up_empty_waiting_entries() -> None:
    state: ConsoleState[Sub] = ConsoleState()
    s = Sub("s")
    state.subscribe(nm("q:vm"), s, count=1)
    assert state.unsubscribe(nm("q:vm"), s)
    assert state.entry(nm("q:vm")) is None
    assert state.path(("q",)) is None
    assert not state.unsubscribe(nm("q:vm"), s)


def test_list_inactive_relative_names() -> None:
    state: ConsoleState[Sub] = ConsoleState()
    for name in ("a:x", "a:y", "a:b:z", "a:b:w", "c:v", "a:live"):
        state.add(nm(name), 10)
    for name in ("a:x", "a:y", "a:b:z", "a:b:w", "c:v"):
        state.deactivate(nm(name), state.entry(nm(name)).generation)  # type: ignore[union-attr]
    state.subscribe(nm("a:waiting"), Sub("s"), count=1)  # inactive but no ring
    got = state.list_inactive(nm("a:"))
    # albatross's order: fold (children first, labels ascending), consed
    assert [str(n) for n in got] == [":y", ":x", "b:z", "b:w"]
    assert [str(n) for n in state.list_inactive(nm(":"))] == [
        "c:v",
        "a:y",
        "a:x",
        "a:b:z",
        "a:b:w",
    ]
    assert state.list_inactive(nm("nothing:")) == ()
    with pytest.raises(ConsoleError, match="name used"):
        state.list_inactive(nm("a:x"))
