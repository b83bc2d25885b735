"""Placement: which host of a namespace runs a new VM.  Pure, no IO.

A namespace is a name, a set of hosts and the policy paths it serves (after
minimega's namespaces).  A create goes to the online host of the VM's
namespace with the most free memory that fits the VM; ties go to the host with
the fewest VMs, then to the smaller name (so the choice is deterministic).  A
host fits when

* it is online (its lease is alive) and in the namespace;
* it has the memory free, the CPU ids and vCPUs, every bridge the VM attaches
  to, and the block space the VM brings (the host's own bounds,
  :mod:`albatross_py.core.bounds`, with their messages);
* its per-host policies fit: every policy the host holds on the way from the
  VM's path to the root bounds what that host runs below it, checked with the
  host's own resource-map rules (:func:`albatross_py.core.policy.check_unikernel_in_subtree`).

A refusal (:class:`NoHostFits`) says, host by host, why none fits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from albatross_py.cluster.ledger import Usage, ancestors
from albatross_py.core import bounds
from albatross_py.core.bounds import HostCapacity
from albatross_py.core.policy import (
    PolicyError,
    check_block_in_subtree,
    check_unikernel_in_subtree,
    host_bridges,
)
from albatross_py.wire.names import Name, Path, is_prefix, path_to_string
from albatross_py.wire.types import Policy, UnikernelConfig


class NoHostFits(PolicyError):
    """No host of the namespace can take the VM; ``reasons`` per host."""

    def __init__(self, namespace: str, name: Name, reasons: Mapping[str, str]) -> None:
        self.namespace = namespace
        self.name = name
        self.reasons = dict(reasons)
        why = "; ".join(f"{h}: {r}" for h, r in sorted(self.reasons.items())) or "it has no hosts"
        super().__init__(f"no host of namespace {namespace!r} fits unikernel {name}: {why}")


class NoNamespace(PolicyError):
    """No namespace serves the VM's path."""


@dataclass(frozen=True, slots=True)
class Namespace:
    """A named set of hosts and the policy paths whose VMs go to them."""

    name: str
    hosts: frozenset[str]
    paths: frozenset[Path]

    def serves(self, path: Path) -> bool:
        return any(is_prefix(p, path) for p in self.paths)


@dataclass(frozen=True, slots=True)
class HostView:
    """What placement knows of one host (from its agent's record in etcd)."""

    name: str
    online: bool
    capacity: HostCapacity
    bridges: frozenset[str]
    vms: int = 0
    memory_used: int = 0
    block_used: int = 0
    #: the host's own policies (its root policy ``()`` included, if any), by path
    policies: Mapping[Path, Policy] = field(default_factory=dict)
    #: what the host runs below each of those policy paths
    usage: Mapping[Path, Usage] = field(default_factory=dict)

    @property
    def memory_free(self) -> int:
        return self.capacity.memory - self.memory_used


def namespace_of(namespaces: Iterable[Namespace], path: Path) -> Namespace:
    """The namespace serving ``path``: the one with the longest matching policy path."""
    best: tuple[int, str, Namespace] | None = None
    for ns in namespaces:
        for p in ns.paths:
            if is_prefix(p, path) and (best is None or (len(p), ns.name) > best[:2]):
                best = (len(p), ns.name, ns)
    if best is None:
        raise NoNamespace(f"no namespace serves path {path_to_string(path)!r}")
    return best[2]


def why_not(host: HostView, config: UnikernelConfig, path: Path, block: int = 0) -> str | None:
    """Why ``host`` cannot run ``config`` under ``path`` (None: it can)."""
    if not host.online:
        return "down"
    try:
        bounds.check_config_on_host(config, host.capacity, host.memory_used)
        if block:
            bounds.check_block_on_host(block, host.capacity, host.block_used, None)
        missing = host_bridges(config) - host.bridges
        if missing:
            raise PolicyError(
                f"bridges {', '.join(sorted(missing))} do not exist on this host"
                f" (has: {', '.join(sorted(host.bridges)) or 'none'})"
            )
        for p in reversed(ancestors(path)):
            policy = host.policies.get(p)
            if policy is None:
                continue
            u = host.usage.get(p, Usage())
            check_unikernel_in_subtree(
                p, policy, count=u.unikernels, used_memory=u.memory, config=config
            )
            if block:
                check_block_in_subtree(p, policy, used=u.block, size=block)
    except PolicyError as e:
        return str(e)
    return None


def rank(host: HostView) -> tuple[int, int, str]:
    """Smaller is better: most free memory, then fewest VMs, then name."""
    return (-host.memory_free, host.vms, host.name)


def place(
    namespace: Namespace,
    hosts: Iterable[HostView],
    name: Name,
    config: UnikernelConfig,
    block: int = 0,
) -> HostView:
    """The host of ``namespace`` that runs the new VM ``name``; raise :class:`NoHostFits`."""
    if not namespace.serves(name.path):
        raise NoNamespace(f"namespace {namespace.name!r} does not serve {name}")
    reasons: dict[str, str] = {}
    fitting: list[HostView] = []
    seen: set[str] = set()
    for h in hosts:
        if h.name not in namespace.hosts:
            continue
        seen.add(h.name)
        why = why_not(h, config, name.path, block)
        if why is None:
            fitting.append(h)
        else:
            reasons[h.name] = why
    for missing in sorted(namespace.hosts - seen):
        reasons[missing] = "not registered (no agent has reported it)"
    if not fitting:
        raise NoHostFits(namespace.name, name, reasons)
    return min(fitting, key=rank)


def with_vm(host: HostView, path: Path, config: UnikernelConfig, block: int = 0) -> HostView:
    """``host`` after it started the VM (what the next placement sees)."""
    add = Usage(1, config.memory, config.cpus, block)
    usage = dict(host.usage)
    for p in ancestors(path):
        if p in host.policies:
            usage[p] = usage.get(p, Usage()) + add
    return HostView(
        name=host.name,
        online=host.online,
        capacity=host.capacity,
        bridges=host.bridges,
        vms=host.vms + 1,
        memory_used=host.memory_used + config.memory,
        block_used=host.block_used + block,
        policies=host.policies,
        usage=usage,
    )
