"""The stats table (core.stats) and the /proc mapping (host.procstats)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from albatross_py.core.stats import StatsTable, TrackedVm, relative_name
from albatross_py.host import procstats
from albatross_py.wire.names import Name
from albatross_py.wire.types import Timeval

N = Name.of_string


def test_add_remove_replace() -> None:
    t: StatsTable[str] = StatsTable()
    vm = TrackedVm(N("a:vm"), 42, "", (("service", "vmmtap0"),))
    assert t.add(vm) is None
    assert t.vm(N("a:vm")) == vm
    newer = TrackedVm(N("a:vm"), 43)
    assert t.add(newer) == vm  # albatross asserts here; we replace
    assert t.vms() == [newer]
    assert t.remove(N("a:vm")) == newer
    assert t.remove(N("a:vm")) is None
    assert t.vms() == []


def test_subscribers_at_name_and_ancestors_with_relative_names() -> None:
    t: StatsTable[str] = StatsTable()
    t.subscribe(N(":"), "root")
    t.subscribe(N("a:"), "path-a")
    t.subscribe(N("a:vm"), "the-vm")
    t.subscribe(N("a:vm:"), "path-equal-to-vm")
    t.subscribe(N("b:"), "other")
    t.subscribe(N("a:b:"), "deeper")
    got = t.subscribers_for(N("a:vm"))
    assert [(s, str(n)) for s, n in got] == [
        ("root", "a:vm"),
        ("path-a", ":vm"),
        ("the-vm", ":vm"),
        ("path-equal-to-vm", ":vm"),
    ]


def test_several_subscribers_per_name_fixes_281() -> None:
    t: StatsTable[str] = StatsTable(max_per_name=3)
    assert t.subscribe(N(":"), "mollymawk") == []
    assert t.subscribe(N(":"), "influx") == []
    assert [s for s, _ in t.subscribers_for(N(":vm"))] == ["mollymawk", "influx"]
    assert t.subscribe(N(":"), "prometheus") == []
    assert t.subscribe(N(":"), "fourth") == ["mollymawk"]  # the oldest goes
    assert t.subscriber_count() == 3
    assert t.unsubscribe(N(":"), "influx")
    assert not t.unsubscribe(N(":"), "influx")
    assert [s for s, _ in t.subscribers_for(N(":vm"))] == ["prometheus", "fourth"]


def test_unsubscribe_by_identity() -> None:
    t: StatsTable[list[int]] = StatsTable()
    a, b = [1], [1]  # equal but distinct
    t.subscribe(N(":"), a)
    t.subscribe(N(":"), b)
    assert t.unsubscribe(N(":"), b)
    assert next(s for s, _ in t.subscribers_for(N(":x"))) is a
    assert t.unsubscribe(N(":"), a)
    assert t.subscriber_count() == 0


def test_watched_only_vms_with_subscribers() -> None:
    t: StatsTable[str] = StatsTable()
    t.add(TrackedVm(N("a:one"), 1))
    t.add(TrackedVm(N("b:two"), 2))
    assert list(t.watched()) == []
    t.subscribe(N("b:"), "s")
    watched = list(t.watched())
    assert [(vm.name, subs) for vm, subs in watched] == [(N("b:two"), [("s", N(":two"))])]
    t.clear_vms()
    assert list(t.watched()) == []


labels = st.lists(st.sampled_from(["a", "b", "c"]), max_size=3)


@given(labels, labels, st.sampled_from(["x", "y"]))
def test_relative_name_places_back_under_the_subscription(
    sub_path: list[str], vm_path: list[str], label: str
) -> None:
    vm = Name(tuple(vm_path), label)
    at = Name(tuple(sub_path), None)
    t: StatsTable[str] = StatsTable()
    t.subscribe(at, "s")
    got = t.subscribers_for(vm)
    matches = tuple(sub_path) == vm.labels()[: len(sub_path)]
    assert bool(got) == matches
    if got and tuple(sub_path) == vm.path[: len(sub_path)]:
        assert relative_name(at, vm).under(at.path) == vm


# -- /proc ------------------------------------------------------------------------------

STAT = (
    "1234 (qemu (x) y) S 1 1234 1234 0 -1 4194560 "
    "111 0 222 0 350 125 0 0 20 0 3 0 98765 987654321 2500 "
    "18446744073709551615 1 1 0 0 0 0 0 4096 0 0 7 0 17 1 0 0 0 0 0\n"
)
STATM = "241126 2500 600 30 0 4000 0\n"
STATUS = "Name:\tqemu\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n"


def test_proc_mapping_exactly_per_spec() -> None:
    ru, mem = procstats.usage_of_proc(STAT, STATM, STATUS, Timeval(1700000000, 5), hz=100)
    assert ru.minflt == 111 and ru.majflt == 222
    assert ru.utime == Timeval(3, 500000) and ru.stime == Timeval(1, 250000)
    assert ru.maxrss == 2500 and ru.nswap == 7
    assert (ru.nvcsw, ru.nivcsw) == (12, 3)
    assert (ru.ixrss, ru.idrss, ru.isrss, ru.inblock, ru.outblock) == (0, 0, 0, 0, 0)
    assert (ru.msgsnd, ru.msgrcv, ru.nsignals) == (0, 0, 0)
    assert mem.vsize == 987654321 and mem.rss == 2500
    assert (mem.tsize, mem.dsize, mem.ssize) == (30, 4000, 4000)
    assert mem.runtime == 4_750_000 and mem.cow == 0
    assert mem.start == Timeval(1700000000, 5)


def test_process_usage_of_ourselves() -> None:
    ru, mem = procstats.process_usage(os.getpid())
    assert mem.rss > 0 and mem.vsize > 0 and ru.maxrss == mem.rss
    assert mem.start.seconds > 1_500_000_000


def test_vanished_pid_is_a_clear_error() -> None:
    with pytest.raises(procstats.ProcessGone, match="does not exist"):
        procstats.process_usage(2**22 + 12345)
    with pytest.raises(procstats.ProcessGone):
        procstats.process_usage(0)
