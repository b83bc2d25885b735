"""Influx line protocol (byte for byte as albatross-influx) and Prometheus text."""

from __future__ import annotations

import re

from albatross_py.daemons.exporters import (
    PolicyUsage,
    escape_label_value,
    influx_lines,
    influx_vm_name,
    policy_usage,
    prometheus_text,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import (
    BlockDeviceEntry,
    FailBehaviour,
    IfData,
    KinfoMem,
    NamedPolicy,
    Policy,
    Rusage,
    Statistics,
    Timeval,
    Typ,
    UnikernelInfo,
)

RU = Rusage(
    utime=Timeval(12, 5),
    stime=Timeval(0, 250000),
    maxrss=2048,
    ixrss=1,
    idrss=2,
    isrss=3,
    minflt=100,
    majflt=7,
    nswap=0,
    inblock=4,
    outblock=5,
    msgsnd=6,
    msgrcv=8,
    nsignals=9,
    nvcsw=10,
    nivcsw=-1,
)
MEM = KinfoMem(
    vsize=123456789,
    rss=2048,
    tsize=30,
    dsize=4000,
    ssize=4000,
    runtime=12_250_005,
    cow=0,
    start=Timeval(1000, 500000),
)
IF = IfData(
    bridge="service",
    flags=4163,
    send_length=-1,
    max_send_length=0,
    send_drops=0,
    mtu=1500,
    baudrate=10_000_000,
    input_packets=11,
    input_errors=0,
    output_packets=22,
    output_errors=1,
    collisions=0,
    input_bytes=1100,
    output_bytes=2200,
    input_mcast=3,
    output_mcast=0,
    input_dropped=4,
    output_dropped=5,
)


def test_influx_lines_exact() -> None:
    stats = Statistics(RU, (IF,), vmm=(("exits, total", 5), ("a=b c", -2)), kinfo_mem=MEM)
    out = influx_lines("hello", stats, now=1010.75)
    assert out == (
        "resource_usage,vm=hello utime=12.000005,stime=0.250000,maxrss=2048i,ixrss=1i,"
        "idrss=2i,isrss=3i,minflt=100i,maxflt=7i,nswap=0i,inblock=4i,outblock=5i,"
        "msgsnd=6i,msgrcv=8i,nsignals=9i,nvcsw=10i,nivcsw=18446744073709551615i\n"
        "kinfo_mem,vm=hello vsize=123456789i,rss=2048i,tsize=30i,dsize=4000i,ssize=4000i,"
        "cow_faults=0i,runtime=12250005i,uptime=10.250000\n"
        "vmm,vm=hello exits\\,\\ total=5i,a\\=b\\ c=18446744073709551614i\n"
        "interface,vm=hello,bridge=service send_queue_length=4294967295i,"
        "max_send_queue_length=0i,send_queue_drops=0i,mtu=1500i,baudrate=10000000i,"
        "vm_to_host_packets=11i,vm_to_host_errors=0i,vm_to_host_bytes=1100i,"
        "vm_to_host_mcast=3i,vm_to_host_dropped=4i,collisions=0i,host_to_vm_packets=22i,"
        "host_to_vm_errors=1i,host_to_vm_bytes=2200i,host_to_vm_mcast=0i,"
        "host_to_vm_dropped=5i\n"
    )


def test_influx_minimal_and_unescaped_tags() -> None:
    out = influx_lines("we ird,vm", Statistics(Rusage()), now=0.0)
    assert out.count("\n") == 1 and out.endswith("\n")
    assert out.startswith("resource_usage,vm=we ird,vm utime=0.000000,stime=0.000000,")
    assert ",maxflt=0i," in out and "majflt" not in out
    negative = influx_lines("x", Statistics(Rusage(utime=Timeval(-1, 0))), now=0.0)
    assert negative.startswith("resource_usage,vm=x utime=18446744073709551615.000000,")


def test_influx_vm_name() -> None:
    assert influx_vm_name(Name.of_string("a:b:vm")) == "vm"
    assert influx_vm_name(Name.of_string("a:b:vm"), no_drop_path=True) == "a:b:vm"
    assert influx_vm_name(Name.of_string("a:b:")) == "a:b:"


_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})?'
    r" (?P<value>[-+]?(?:[0-9.eE+-]+|Inf|NaN))$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def _parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A strict line-by-line reader of the text format; returns {(name, labels): value}."""
    assert text.endswith("\n")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    typed: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert typ in ("counter", "gauge") and name not in typed
            typed[name] = typ
            continue
        m = _SAMPLE.match(line)
        assert m, f"unparseable line {line!r}"
        assert m["name"] in typed, f"{m['name']} has no TYPE"
        if typed[m["name"]] == "counter":
            assert m["name"].endswith("_total")
        labels = frozenset(_LABEL.findall(m["labels"] or ""))
        key = (m["name"], labels)
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(m["value"])
    return samples


def _l(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


def test_prometheus_text_parses_and_has_values() -> None:
    stats = Statistics(RU, (IF,), kinfo_mem=MEM)
    policy = Policy(unikernels=3, cpuids=frozenset({0}), memory=512, block=None, bridges=[])
    text = prometheus_text(
        {Name.of_string("a:vm"): stats, Name.of_string(":b"): Statistics(Rusage())},
        [PolicyUsage(("a",), policy, vms=1, memory=64, block=0)],
        page_size=4096,
    )
    s = _parse(text)
    vm = {"name": "a:vm"}
    assert s[("albatross_vm_cpu_seconds_total", _l(**vm, mode="user"))] == 12.000005
    assert s[("albatross_vm_cpu_seconds_total", _l(**vm, mode="system"))] == 0.25
    assert s[("albatross_vm_memory_bytes", _l(**vm, kind="rss"))] == 2048 * 4096
    assert s[("albatross_vm_memory_bytes", _l(**vm, kind="vsize"))] == 123456789
    nic = {**vm, "interface": "service"}
    # receive = host-to-VM = the tap's transmit (output_*)
    assert s[("albatross_vm_network_receive_bytes_total", _l(**nic))] == 2200
    assert s[("albatross_vm_network_receive_packets_total", _l(**nic))] == 22
    assert s[("albatross_vm_network_receive_errors_total", _l(**nic))] == 1
    assert s[("albatross_vm_network_receive_drops_total", _l(**nic))] == 5
    assert s[("albatross_vm_network_transmit_bytes_total", _l(**nic))] == 1100
    assert s[("albatross_vm_network_transmit_packets_total", _l(**nic))] == 11
    assert s[("albatross_vm_network_transmit_drops_total", _l(**nic))] == 4
    assert s[("albatross_vm_start_time_seconds", _l(**vm))] == 1000.5
    assert s[("albatross_vm_up", _l(**vm))] == 1
    assert s[("albatross_vm_up", _l(name=":b"))] == 1
    assert ("albatross_vm_memory_bytes", _l(name=":b", kind="rss")) not in s
    where = _l(path="a:")
    assert s[("albatross_policy_max_vms", where)] == 3
    assert s[("albatross_policy_max_memory_bytes", where)] == 512 * 2**20
    assert s[("albatross_policy_max_block_bytes", where)] == 0
    assert s[("albatross_policy_vms", where)] == 1
    assert s[("albatross_policy_memory_bytes", where)] == 64 * 2**20
    assert s[("albatross_policy_block_bytes", where)] == 0


def test_prometheus_label_escaping() -> None:
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    odd = IfData(bridge='x"y\\z\nw', output_bytes=1)
    text = prometheus_text([(Name.of_string(":vm"), Statistics(Rusage(), (odd,)))])
    s = _parse(text)
    key = ("albatross_vm_network_receive_bytes_total", _l(name=":vm", interface='x\\"y\\\\z\\nw'))
    assert s[key] == 1
    assert prometheus_text([]) == ""


def test_prometheus_extra_gauges() -> None:
    text = prometheus_text([], extra=[("albatross_exporter_albatrossd_up", "gauge", "h", 0)])
    assert _parse(text) == {("albatross_exporter_albatrossd_up", frozenset()): 0}


def _info(memory: int) -> UnikernelInfo:
    return UnikernelInfo(Typ.SOLO5, None, FailBehaviour(), frozenset({0}), memory, b"")


def test_policy_usage_counts_the_subtree() -> None:
    pol = Policy(unikernels=10, cpuids=frozenset({0}), memory=1024, block=100, bridges=[])
    usage = policy_usage(
        [NamedPolicy(Name.of_string(":"), pol), NamedPolicy(Name.of_string("a:"), pol)],
        [
            (Name.of_string("a:one"), _info(32)),
            (Name.of_string("a:b:two"), _info(64)),
            (Name.of_string(":three"), _info(16)),
        ],
        [BlockDeviceEntry(Name.of_string("a:disk"), 50, True)],
    )
    by_path = {u.path: u for u in usage}
    assert (by_path[()].vms, by_path[()].memory, by_path[()].block) == (3, 112, 50)
    assert (by_path[("a",)].vms, by_path[("a",)].memory, by_path[("a",)].block) == (2, 96, 50)
