"""KVM counters of QEMU VMs: flattening QMP ``query-stats`` replies (canned, as
QEMU 7.2 sends them under KVM), the short QMP conversation against a stand-in
server, the stats daemon's bounded gathering, and the exporters' output."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trio

from albatross_py.core.stats import TrackedVm
from albatross_py.daemons import links
from albatross_py.daemons import stats as stats_daemon
from albatross_py.daemons.exporters import influx_lines, kvm_metric, prometheus_text
from albatross_py.daemons.links import stats_vmmdev
from albatross_py.daemons.stats import (
    StatsDaemon,
    Subscriber,
    VmmPairs,
    kvm_counters,
    qmp_socket_of,
    query_kvm_counters,
)
from albatross_py.virt.base import Prepared
from albatross_py.virt.qemu import QemuPrepared
from albatross_py.virt.qmp import QmpError, StatsResult
from albatross_py.wire import decode_wire, encode_wire
from albatross_py.wire.messages import DataStatistics, Header, Wire
from albatross_py.wire.names import Name
from albatross_py.wire.types import Rusage, Statistics, Timeval, Typ, UnikernelConfig
from tests.unit.test_qmp import send, serve_once

HIST = [0] * 7 + [150, 2, 0, 1] + [0] * 21
#: ``{"execute": "query-stats", "arguments": {"target": "vm"}}``, trimmed.
VM_REPLY: list[dict[str, Any]] = [
    {
        "provider": "kvm",
        "stats": [
            {"name": "max_mmu_rmap_size", "value": 0},
            {"name": "pages_4k", "value": 3},
            {"name": "mmu_cache_miss", "value": 24},
            {"name": "mmu_shadow_zapped", "value": 40},
            {"name": "remote_tlb_flush_requests", "value": 5},
        ],
    }
]
#: ``... "target": "vcpu"``: two vCPUs, trimmed.
VCPU_REPLY: list[dict[str, Any]] = [
    {
        "provider": "kvm",
        "qom-path": f"/machine/unattached/device[{i}]",
        "stats": [
            {"name": "guest_mode", "value": False},
            {"name": "irq_injections", "value": 153 + i},
            {"name": "exits", "value": 958 * (i + 1)},
            {"name": "blocking", "value": True},
            {"name": "halt_wait_hist", "value": HIST},
            {"name": "halt_wait_ns", "value": 1500038561},
            {"name": "mmu_cache_miss", "value": 1},  # clashes with the VM's counter
        ],
    }
    for i in range(2)
]


def parse(reply: list[dict[str, Any]]) -> list[StatsResult]:
    """As :meth:`QmpClient.query_stats` reads a reply."""
    return [
        StatsResult(e["provider"], e.get("qom-path"), {s["name"]: s["value"] for s in e["stats"]})
        for e in reply
    ]


def test_vm_counters_then_vcpu_sums() -> None:
    pairs = kvm_counters(parse(VM_REPLY), parse(VCPU_REPLY))
    assert pairs == (
        ("max_mmu_rmap_size", 0),
        ("pages_4k", 3),
        ("mmu_cache_miss", 24),
        ("mmu_shadow_zapped", 40),
        ("remote_tlb_flush_requests", 5),
        ("irq_injections", 153 + 154),
        ("exits", 958 + 1916),
        ("halt_wait_ns", 2 * 1500038561),
        ("vcpu_mmu_cache_miss", 2),
    )
    # histograms (lists) and instant flags (booleans) are not counters
    assert not {"halt_wait_hist", "guest_mode", "blocking"} & dict(pairs).keys()


def test_other_providers_odd_values_and_int64() -> None:
    vm = [
        StatsResult("kvm", None, {"big": (1 << 64) - 1, "huge": 1 << 64, "f": 1.5, "n": None}),
        StatsResult("cryptodev", None, {"ops": 7}),
    ]
    vcpus = [
        StatsResult("kvm", "/cpu0", {"x": 1 << 62}),
        StatsResult("kvm", "/cpu1", {"x": 1 << 62}),
    ]
    # u64 counters above 2^63 keep their bits in the wire's Int64 (printed unsigned again)
    assert kvm_counters(vm, vcpus) == (("big", -1), ("x", -(1 << 63)))
    assert kvm_counters([], []) == ()
    assert kvm_counters(parse([{"provider": "kvm", "stats": []}]), []) == ()


def test_vmmdev_convention() -> None:
    assert qmp_socket_of("qmp:/run/albatross/a:vm.qmp") == "/run/albatross/a:vm.qmp"
    for other in ("", "solo5-1234", "qmp:", "qmp:relative.sock", "QMP:/x", "qmp:/a\0b"):
        assert qmp_socket_of(other) is None


async def test_one_short_qmp_conversation(tmp_path: Path) -> None:
    path = tmp_path / "q.sock"
    commands: list[dict[str, Any]] = []

    async def handler(stream: trio.SocketStream, receive: Any) -> None:
        for reply in (VM_REPLY, VCPU_REPLY):
            cmd = await receive()
            commands.append(cmd)
            await send(stream, {"return": reply, "id": cmd["id"]})
        await receive()  # raises EOFError (ending the handler) once the client closed

    async with trio.open_nursery() as nursery:
        await nursery.start(serve_once, path, handler)
        pairs = await query_kvm_counters(str(path), timeout=5)
    assert dict(pairs)["exits"] == 958 * 3
    assert [c["arguments"] for c in commands] == [{"target": "vm"}, {"target": "vcpu"}]
    assert all(c["execute"] == "query-stats" for c in commands)


async def test_silent_qemu_times_out(tmp_path: Path) -> None:
    path = tmp_path / "q.sock"

    async def handler(stream: trio.SocketStream, receive: Any) -> None:
        await trio.sleep_forever()  # negotiated, then never answers

    async with trio.open_nursery() as nursery:
        await nursery.start(serve_once, path, handler)
        with trio.fail_after(5), pytest.raises(QmpError):
            await query_kvm_counters(str(path), timeout=0.2)
        nursery.cancel_scope.cancel()
    with pytest.raises(QmpError):
        await query_kvm_counters(str(tmp_path / "none.sock"), timeout=0.1)


# -- the daemon: bounded, per VM -----------------------------------------------------------

RU = Rusage(Timeval(1, 0), Timeval(2, 0), *([0] * 14))


def fake_gather(vm: TrackedVm) -> Statistics:
    return Statistics(rusage=RU, ifdata=())


async def test_daemon_fills_vmm_and_a_stuck_qemu_delays_nobody(tmp_path: Path) -> None:
    asked: list[tuple[str, float]] = []

    async def query(path: str, timeout: float) -> VmmPairs:
        asked.append((path, timeout))
        if path == "/stuck.qmp":
            await trio.sleep_forever()  # ignores its timeout: the daemon bounds it anyway
        if path == "/broken.qmp":
            raise QmpError("connection refused")
        return (("exits", 42),)

    daemon = StatsDaemon(tmp_path, interval=1.0, gather=fake_gather, query_vmm=query)
    assert daemon.vmm_timeout == 0.5
    for label, vmmdev in [
        ("fast", "qmp:/fast.qmp"),
        ("stuck", "qmp:/stuck.qmp"),
        ("broken", "qmp:/broken.qmp"),
        ("solo5", ""),
    ]:
        daemon.table.add(TrackedVm(Name.of_string(label), 1, vmmdev))
    send_ch, receive_ch = trio.open_memory_channel[Wire](10)
    daemon.table.subscribe(Name.of_string(":"), Subscriber(Name.of_string(":"), 5, send_ch))

    got: dict[str, tuple[float, Statistics]] = {}
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(daemon.tick)
        with trio.fail_after(5):
            for _ in range(4):
                wire = await receive_ch.receive()
                assert isinstance(wire.payload, DataStatistics)
                got[str(wire.header.name)] = (trio.current_time() - start, wire.payload.stats)
    assert got[":fast"][1].vmm == (("exits", 42),)
    assert got[":solo5"][1].vmm is None and got[":broken"][1].vmm is None
    assert got[":stuck"][1].vmm is None
    assert got[":stuck"][0] >= 0.9  # bounded at twice the timeout ...
    assert got[":fast"][0] < 0.5 and got[":broken"][0] < 0.5  # ... and nobody waited for it
    assert sorted(p for p, _ in asked) == ["/broken.qmp", "/fast.qmp", "/stuck.qmp"]


# -- on the wire and in the exporters ----------------------------------------------------------

PAIRS = kvm_counters(parse(VM_REPLY), parse(VCPU_REPLY))


def test_counters_on_the_wire() -> None:
    stats = Statistics(rusage=RU, ifdata=(), vmm=(*PAIRS, ("big", -1)))
    wire = Wire(Header(name=Name.of_string(":vm")), DataStatistics(stats))
    assert decode_wire(encode_wire(wire)) == wire


def test_influx_vmm_line() -> None:
    stats = Statistics(rusage=RU, ifdata=(), vmm=(("exits", 2874), ("big", -1)))
    lines = influx_lines("vm", stats, 0.0).splitlines()
    assert "vmm,vm=vm exits=2874i,big=18446744073709551615i" in lines


def test_prometheus_kvm_series() -> None:
    assert kvm_metric("exits") == ("albatross_vm_kvm_exits_total", "counter")
    assert kvm_metric("pages_4k") == ("albatross_vm_kvm_pages_4k", "gauge")
    assert kvm_metric("max_mmu_rmap_size") == ("albatross_vm_kvm_max_mmu_rmap_size", "gauge")
    assert kvm_metric("number of VM exits") == (
        "albatross_vm_kvm_number_of_vm_exits_total",
        "counter",
    )
    assert kvm_metric("a=b, c") == ("albatross_vm_kvm_a_b_c_total", "counter")
    vms = {
        Name.of_string("a:vm"): Statistics(rusage=RU, ifdata=(), vmm=PAIRS),
        Name.of_string("a:other"): Statistics(rusage=RU, ifdata=(), vmm=(("exits", 1),)),
        Name.of_string("a:solo5"): Statistics(rusage=RU, ifdata=()),
    }
    text = prometheus_text(vms)
    assert 'albatross_vm_kvm_exits_total{name="a:vm"} 2874' in text
    assert 'albatross_vm_kvm_exits_total{name="a:other"} 1' in text
    assert 'albatross_vm_kvm_vcpu_mmu_cache_miss_total{name="a:vm"} 2' in text
    assert 'albatross_vm_kvm_pages_4k{name="a:vm"} 3' in text
    assert text.count("# TYPE albatross_vm_kvm_exits_total counter") == 1
    assert "# TYPE albatross_vm_kvm_pages_4k gauge" in text
    assert 'name="a:solo5"} ' not in "".join(
        line for line in text.splitlines() if line.startswith("albatross_vm_kvm_")
    )
    sample = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$")
    for line in text.splitlines():
        assert line.startswith("#") or sample.match(line), line


def test_albatrossd_sends_the_qmp_socket(tmp_path: Path) -> None:
    cfg = UnikernelConfig(typ=Typ.QEMU, image=b"")
    name = Name.of_string("a:vm")
    prep = QemuPrepared(name, cfg, b"", None, (), qmp_socket=Path("rel/a:vm.qmp"))
    vmmdev = stats_vmmdev(prep)
    assert vmmdev == "qmp:" + str(Path.cwd() / "rel/a:vm.qmp")
    assert qmp_socket_of(vmmdev) == str(Path.cwd() / "rel/a:vm.qmp")
    assert stats_vmmdev(Prepared(name, UnikernelConfig(), b"", None, ())) == ""  # solo5
    assert links.QMP_VMMDEV_PREFIX == stats_daemon.QMP_VMMDEV_PREFIX
