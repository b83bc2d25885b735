"""Statistics as text for metrics systems: Influx line protocol and Prometheus (pure).

**Influx** (spec 6.4) is albatross-influx's output, byte for byte: measurements
``resource_usage``, ``kinfo_mem``, ``vmm`` (only with VMM counters) and one
``interface`` per IfData, joined by ``\\n`` with a trailing ``\\n``, without
timestamps.  Integers are printed as OCaml's ``%Lu``/``%lu`` print them,
unsigned: a negative Int64 appears as 2^64 + x, a negative int32 field as
2^32 + x.  The key ``maxflt`` carries majflt (albatross's typo, kept).  The
``vm`` and ``bridge`` tags are not escaped, exactly as albatross; only
``vmm`` keys get ``,``, `` `` and ``=`` escaped, as albatross does.

**Prometheus** (text exposition format 0.0.4) is ours: albatross has none
(spec 2.1, 11).  Per VM, labelled ``name`` (the full ``Name.to_string``):

* ``albatross_vm_cpu_seconds_total{mode="user"|"system"}`` from rusage;
* ``albatross_vm_memory_bytes{kind="rss"|"vsize"}`` from kinfo_mem (rss
  pages times the page size; vsize is in bytes already);
* ``albatross_vm_network_{receive,transmit}_{bytes,packets,errors,drops}_total``
  with ``interface`` = the unikernel-side netif.  Direction is **the VM's**,
  like a node exporter inside the guest would count: *receive* is
  host-to-VM, which on the host's tap is transmit (IfData ``output_*``);
  *transmit* is VM-to-host, the tap's receive (IfData ``input_*``);
* ``albatross_vm_start_time_seconds`` (kinfo_mem start) and
  ``albatross_vm_up`` (1 for every VM we have current statistics for);
* ``albatross_vm_kvm_<key>_total`` (counter) or ``albatross_vm_kvm_<key>``
  (gauge: levels and peaks such as ``pages_4k`` or ``max_mmu_rmap_size``)
  for every ``vmm`` pair: for QEMU VMs the KVM counters of QMP
  ``query-stats`` (vCPU counters summed, see :mod:`albatross_py.daemons.stats`).
  The key is sanitised to ``[a-z0-9_]`` (anything else becomes ``_``).

Per policy path (label ``path``, e.g. ``"a:b:"``): limits
``albatross_policy_{max_vms,max_memory_bytes,max_block_bytes}`` and usage
``albatross_policy_{vms,memory_bytes,block_bytes}``; usage counts the whole
subtree below the path (what our supervisor checks at every ancestor).
albatross's MB is 2^20 bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from albatross_py.wire.names import Name, Path, is_prefix, path_to_string
from albatross_py.wire.types import (
    BlockDeviceEntry,
    IfData,
    NamedPolicy,
    Policy,
    Statistics,
    Timeval,
    UnikernelInfo,
)

_U64 = 1 << 64
_U32 = 1 << 32
MB = 1 << 20

# -- Influx line protocol -------------------------------------------------------------


def _u64(v: int) -> str:
    """OCaml ``%Lu``: the Int64's bits as unsigned."""
    return str(v % _U64)


def _u32(v: int) -> str:
    return str(v % _U32)


def _i64(v: int) -> str:
    return _u64(v) + "i"


def _i32(v: int) -> str:
    return _u32(v) + "i"


def _tv(tv: Timeval) -> str:
    """``%Lu.%06d``: unsigned seconds, microseconds zero-padded to six places."""
    return f"{_u64(tv.seconds)}.{tv.microseconds:06d}"


def _fields(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f"{k}={v}" for k, v in pairs)


def _escape_vmm_key(key: str) -> str:
    return key.replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=")


def influx_vm_name(name: Name, *, no_drop_path: bool = False) -> str:
    """The ``vm`` tag: the name's label, or the full string (``--no-drop-path``, or no label)."""
    if no_drop_path or name.label is None:
        return str(name)
    return name.label


def influx_resource_usage(vm: str, stats: Statistics) -> str:
    ru = stats.rusage
    fields = [
        ("utime", _tv(ru.utime)),
        ("stime", _tv(ru.stime)),
        ("maxrss", _i64(ru.maxrss)),
        ("ixrss", _i64(ru.ixrss)),
        ("idrss", _i64(ru.idrss)),
        ("isrss", _i64(ru.isrss)),
        ("minflt", _i64(ru.minflt)),
        ("maxflt", _i64(ru.majflt)),  # sic: albatross's key
        ("nswap", _i64(ru.nswap)),
        ("inblock", _i64(ru.inblock)),
        ("outblock", _i64(ru.outblock)),
        ("msgsnd", _i64(ru.msgsnd)),
        ("msgrcv", _i64(ru.msgrcv)),
        ("nsignals", _i64(ru.nsignals)),
        ("nvcsw", _i64(ru.nvcsw)),
        ("nivcsw", _i64(ru.nivcsw)),
    ]
    return f"resource_usage,vm={vm} {_fields(fields)}"


def influx_kinfo_mem(vm: str, stats: Statistics, now: float) -> str | None:
    mem = stats.kinfo_mem
    if mem is None:
        return None
    started = float(mem.start.seconds) + mem.start.microseconds / 1_000_000
    fields = [
        ("vsize", _i64(mem.vsize)),
        ("rss", _i64(mem.rss)),
        ("tsize", _i64(mem.tsize)),
        ("dsize", _i64(mem.dsize)),
        ("ssize", _i64(mem.ssize)),
        ("cow_faults", _i64(mem.cow)),
        ("runtime", _i64(mem.runtime)),
        ("uptime", f"{now - started:f}"),
    ]
    return f"kinfo_mem,vm={vm} {_fields(fields)}"


def influx_vmm(vm: str, stats: Statistics) -> str | None:
    if stats.vmm is None:
        return None
    return f"vmm,vm={vm} {_fields((_escape_vmm_key(k), _i64(v)) for k, v in stats.vmm)}"


def influx_interface(vm: str, ifd: IfData) -> str:
    fields = [
        ("send_queue_length", _i32(ifd.send_length)),
        ("max_send_queue_length", _i32(ifd.max_send_length)),
        ("send_queue_drops", _i32(ifd.send_drops)),
        ("mtu", _i32(ifd.mtu)),
        ("baudrate", _i64(ifd.baudrate)),
        ("vm_to_host_packets", _i64(ifd.input_packets)),
        ("vm_to_host_errors", _i64(ifd.input_errors)),
        ("vm_to_host_bytes", _i64(ifd.input_bytes)),
        ("vm_to_host_mcast", _i64(ifd.input_mcast)),
        ("vm_to_host_dropped", _i64(ifd.input_dropped)),
        ("collisions", _i64(ifd.collisions)),
        ("host_to_vm_packets", _i64(ifd.output_packets)),
        ("host_to_vm_errors", _i64(ifd.output_errors)),
        ("host_to_vm_bytes", _i64(ifd.output_bytes)),
        ("host_to_vm_mcast", _i64(ifd.output_mcast)),
        ("host_to_vm_dropped", _i64(ifd.output_dropped)),
    ]
    return f"interface,vm={vm},bridge={ifd.bridge} {_fields(fields)}"


def influx_lines(name_label: str, stats: Statistics, now: float) -> str:
    """All lines for one ``Data statistics``; ``now`` is POSIX seconds (for uptime)."""
    lines = [influx_resource_usage(name_label, stats)]
    for extra in (influx_kinfo_mem(name_label, stats, now), influx_vmm(name_label, stats)):
        if extra is not None:
            lines.append(extra)
    lines.extend(influx_interface(name_label, ifd) for ifd in stats.ifdata)
    return "\n".join(lines) + "\n"


# -- Prometheus text exposition --------------------------------------------------------

#: Content type of the text exposition format we write.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Page size used to turn kinfo_mem's rss (pages) into bytes on our hosts.
DEFAULT_PAGE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class PolicyUsage:
    """One policy path: its limits and what is in use below it (MB for memory/block)."""

    path: Path
    policy: Policy
    vms: int = 0
    memory: int = 0
    block: int = 0


def escape_label_value(value: str) -> str:
    """Backslash, double quote and newline escaped, as the exposition format asks."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _number(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def _counter_value(v: int) -> int:
    """Counters are unsigned on the wire's side; read the Int64 bits as such."""
    return v % _U64


class _Family:
    __slots__ = ("help", "name", "samples", "typ")

    def __init__(self, name: str, typ: str, help_: str) -> None:
        self.name, self.typ, self.help = name, typ, help_
        self.samples: list[tuple[dict[str, str], float]] = []

    def add(self, labels: dict[str, str], value: float) -> None:
        self.samples.append((labels, value))

    def render(self) -> list[str]:
        if not self.samples:
            return []
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.typ}"]
        out.extend(f"{self.name}{_labels(lb)} {_number(v)}" for lb, v in self.samples)
        return out


_NET = (
    # (direction from the VM's view, what, IfData field)
    ("receive", "bytes", "output_bytes"),
    ("receive", "packets", "output_packets"),
    ("receive", "errors", "output_errors"),
    ("receive", "drops", "output_dropped"),
    ("transmit", "bytes", "input_bytes"),
    ("transmit", "packets", "input_packets"),
    ("transmit", "errors", "input_errors"),
    ("transmit", "drops", "input_dropped"),
)


def _seconds(tv: Timeval) -> float:
    return tv.seconds + tv.microseconds / 1_000_000


#: KVM statistics that are levels or peaks ("instant"/"peak" in QEMU's
#: ``query-stats-schemas``), not cumulative: Prometheus gauges.
KVM_GAUGES = frozenset(
    {"blocking", "guest_mode", "mmu_unsync", "nx_lpage_splits", "pages_1g", "pages_2m",
     "pages_4k", "max_mmu_page_hash_collisions", "max_mmu_rmap_size"}
)  # fmt: skip


def sanitize_metric_part(key: str) -> str:
    """``key`` as part of a Prometheus metric name: lower case ``[a-z0-9_]``,
    runs of anything else one ``_``, never empty."""
    out, last = [], ""
    for ch in key.lower():
        c = ch if ("a" <= ch <= "z" or "0" <= ch <= "9") else "_"
        if c == "_" and last == "_":
            continue
        out.append(c)
        last = c
    return "".join(out).strip("_") or "_"


def kvm_metric(key: str) -> tuple[str, str]:
    """The (metric name, type) a ``vmm`` pair is exported as."""
    part = sanitize_metric_part(key)
    if part in KVM_GAUGES or part.startswith(("max_", "pages_")):
        return f"albatross_vm_kvm_{part}", "gauge"
    return f"albatross_vm_kvm_{part.removesuffix('_total')}_total", "counter"


def prometheus_text(
    vms: Mapping[Name, Statistics] | Iterable[tuple[Name, Statistics]],
    policies: Iterable[PolicyUsage] = (),
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    extra: Iterable[tuple[str, str, str, float]] = (),
) -> str:
    """The ``/metrics`` body.  ``extra`` adds (name, type, help, value) unlabelled gauges."""
    items = sorted(vms.items() if isinstance(vms, Mapping) else vms, key=lambda kv: kv[0])
    cpu = _Family("albatross_vm_cpu_seconds_total", "counter", "CPU time used by the VM process")
    mem = _Family("albatross_vm_memory_bytes", "gauge", "Memory of the VM process")
    net = {
        (d, w): _Family(
            f"albatross_vm_network_{d}_{w}_total",
            "counter",
            f"Network {w} {'received by' if d == 'receive' else 'transmitted by'} the VM "
            f"({'host-to-VM' if d == 'receive' else 'VM-to-host'})",
        )
        for d, w, _ in _NET
    }
    start = _Family("albatross_vm_start_time_seconds", "gauge", "Start time of the VM process")
    up = _Family("albatross_vm_up", "gauge", "1 if statistics of the VM are current")
    kvm: dict[str, _Family] = {}
    for name, st in items:
        who = {"name": str(name)}
        cpu.add({**who, "mode": "user"}, _seconds(st.rusage.utime))
        cpu.add({**who, "mode": "system"}, _seconds(st.rusage.stime))
        if st.kinfo_mem is not None:
            mem.add({**who, "kind": "rss"}, _counter_value(st.kinfo_mem.rss) * page_size)
            mem.add({**who, "kind": "vsize"}, _counter_value(st.kinfo_mem.vsize))
            start.add(who, _seconds(st.kinfo_mem.start))
        for ifd in st.ifdata:
            for d, w, fld in _NET:
                value = _counter_value(getattr(ifd, fld))
                net[(d, w)].add({**who, "interface": ifd.bridge}, value)
        up.add(who, 1)
        seen: set[str] = set()
        for key, value in st.vmm or ():
            metric, typ = kvm_metric(key)
            if metric in seen:  # two keys sanitised alike: the first one wins
                continue
            seen.add(metric)
            if metric not in kvm:
                kvm[metric] = _Family(metric, typ, f"KVM statistic {key} of the VM")
            kvm[metric].add(who, _counter_value(value))

    pol = {
        key: _Family(f"albatross_policy_{key}", "gauge", text)
        for key, text in (
            ("max_vms", "Most VMs the policy allows below the path"),
            ("max_memory_bytes", "Most memory the policy allows below the path"),
            ("max_block_bytes", "Most block storage the policy allows (0: none)"),
            ("vms", "VMs running below the path"),
            ("memory_bytes", "Memory assigned to VMs running below the path"),
            ("block_bytes", "Block storage allocated below the path"),
        )
    }
    for pu in sorted(policies, key=lambda p: p.path):
        where = {"path": path_to_string(pu.path)}
        pol["max_vms"].add(where, pu.policy.unikernels)
        pol["max_memory_bytes"].add(where, pu.policy.memory * MB)
        pol["max_block_bytes"].add(where, (pu.policy.block or 0) * MB)
        pol["vms"].add(where, pu.vms)
        pol["memory_bytes"].add(where, pu.memory * MB)
        pol["block_bytes"].add(where, pu.block * MB)

    lines: list[str] = []
    kvm_families = (kvm[m] for m in sorted(kvm))
    for fam in (cpu, mem, *net.values(), start, up, *kvm_families, *pol.values()):
        lines.extend(fam.render())
    for name, typ, help_, value in extra:
        fam = _Family(name, typ, help_)
        fam.add({}, value)
        lines.extend(fam.render())
    return "\n".join(lines) + "\n" if lines else ""


def policy_usage(
    policies: Iterable[NamedPolicy],
    unikernels: Iterable[tuple[Name, UnikernelInfo]] = (),
    blocks: Iterable[BlockDeviceEntry] = (),
) -> list[PolicyUsage]:
    """Limits and subtree usage per policy path, from albatrossd's three info replies.

    The names are those of replies to queries at ``:`` (absolute).  A policy
    entry's name is a path (``a:b:``) or, from old encoders, a name (``a:b``);
    either way its labels are the path.
    """
    uks: Sequence[tuple[Name, UnikernelInfo]] = list(unikernels)
    blks: Sequence[BlockDeviceEntry] = list(blocks)
    out: list[PolicyUsage] = []
    for np in policies:
        path = np.name.labels()
        below = [info for name, info in uks if is_prefix(path, name.path)]
        out.append(
            PolicyUsage(
                path=path,
                policy=np.policy,
                vms=len(below),
                memory=sum(info.memory for info in below),
                block=sum(b.size for b in blks if is_prefix(path, b.name.path)),
            )
        )
    return out


__all__ = [
    "DEFAULT_PAGE_SIZE",
    "KVM_GAUGES",
    "MB",
    "PROMETHEUS_CONTENT_TYPE",
    "PolicyUsage",
    "escape_label_value",
    "influx_interface",
    "influx_kinfo_mem",
    "influx_lines",
    "influx_resource_usage",
    "influx_vm_name",
    "influx_vmm",
    "kvm_metric",
    "policy_usage",
    "prometheus_text",
    "sanitize_metric_part",
]
