"""Policy checks: is a policy usable, does one policy fit inside another.

albatross's ``Vmm_core.Policy`` (spec section 5.2) and ``fine_with_policy``
(section 5.3).  A policy limits everything below a path: the number of running
unikernels, their summed memory (MB), the CPU ids and host bridges they may
use, and the summed size of block devices (MB; ``None`` means no block
storage at all).

Every check raises :class:`PolicyError` with a message that says which limit
failed and gives the numbers; the messages are albatross's where it has one.
"""

from __future__ import annotations

from collections.abc import Iterable

from albatross_py.wire.names import Path, path_to_string
from albatross_py.wire.types import Policy, UnikernelConfig

#: ``usable`` requires more than this much memory (MB): albatross's bound.
MIN_USABLE_MEMORY = 16


class PolicyError(ValueError):
    """A policy, or a request checked against a policy, is refused."""


def _ints(xs: Iterable[int]) -> str:
    return ", ".join(str(x) for x in sorted(xs))


def _strs(xs: Iterable[str]) -> str:
    return ", ".join(sorted(xs))


def usable(p: Policy) -> None:
    """Raise :class:`PolicyError` unless ``p`` allows at least one unikernel to run.

    Checked by the client and by ``sign``; albatrossd itself does not check it on
    policy add.
    """
    if p.unikernels <= 0:
        raise PolicyError("Unusable policy with no unikernels")
    if not p.cpuids:
        raise PolicyError("Unusable policy with no CPUids")
    if p.memory <= MIN_USABLE_MEMORY:
        raise PolicyError(f"Unusable policy with memory {p.memory} MB <= {MIN_USABLE_MEMORY} MB")
    if p.block is not None and p.block < 0:
        raise PolicyError(f"Unusable policy with block {p.block} MB < 0 MB")


def block_fits(super_block: int | None, sub_block: int | None) -> bool:
    """albatross's block rule: no storage above forbids any below."""
    if sub_block is None:
        return True
    if super_block is None:
        return False
    return super_block >= sub_block


def is_smaller(super_: Policy, sub: Policy) -> None:
    """Raise :class:`PolicyError` unless ``sub`` fits inside ``super_``.

    Checked in albatross's order: unikernels, memory, cpuids, bridges, block.
    """
    if super_.unikernels < sub.unikernels:
        raise PolicyError(
            f"policy above allows {super_.unikernels} unikernels, "
            f"which is fewer than {sub.unikernels}"
        )
    if super_.memory < sub.memory:
        raise PolicyError(
            f"policy above allows {super_.memory} MB memory, which is fewer than {sub.memory} MB"
        )
    if not sub.cpuids <= super_.cpuids:
        raise PolicyError(f"policy above does not allow CPUids {_ints(sub.cpuids - super_.cpuids)}")
    if not sub.bridges <= super_.bridges:
        raise PolicyError(
            f"policy above allows bridge(s) {_strs(super_.bridges)}, "
            f"which is not a superset of {_strs(sub.bridges)}"
        )
    if not block_fits(super_.block, sub.block):
        raise PolicyError(
            f"policy above allows {super_.block or 0} MB block storage, "
            f"which is fewer than {sub.block or 0} MB"
        )


def smaller(super_: Policy, sub: Policy) -> bool:
    """:func:`is_smaller` as a predicate."""
    try:
        is_smaller(super_, sub)
    except PolicyError:
        return False
    return True


def host_bridges(config: UnikernelConfig) -> frozenset[str]:
    """The host bridges a unikernel attaches to (the bridge, else the netif name)."""
    return frozenset(n.host_bridge for n in config.bridges)


def fine_with_policy(policy: Policy, config: UnikernelConfig) -> None:
    """The client-side and sign-time check of a config against one policy.

    albatross checks only cpuids, memory and bridges here (not the count, not
    usage: those need the daemon's state).
    """
    if not config.cpuids <= policy.cpuids:
        raise PolicyError(
            f"the CPUids {_ints(config.cpuids - policy.cpuids)} requested by the unikernel"
            " are not allowed by policy"
        )
    if config.memory > policy.memory:
        raise PolicyError(
            f"{config.memory} MB memory assigned to unikernel exceeds policy ({policy.memory}MB)"
        )
    bridges = host_bridges(config)
    if not bridges <= policy.bridges:
        raise PolicyError(
            f"Bridge(s) {_strs(bridges - policy.bridges)} not allowed by policy"
            f" (available: {_strs(policy.bridges)})"
        )


# -- usage of a subtree against its policy (the resource map's refusals) ----------------
# One copy of albatross's create and block-add messages, for the host's resource map
# (core.resources) and the cluster-wide ledger (cluster.ledger) alike.


def where(path: Path) -> str:
    """How a refusal names the policy that refused."""
    return f"policy at path {path_to_string(path)!r}"


def check_unikernel_in_subtree(
    path: Path, p: Policy, *, count: int, used_memory: int, config: UnikernelConfig
) -> None:
    """Raise unless one more unikernel ``config`` fits the policy ``p`` at ``path``.

    ``count`` unikernels using ``used_memory`` MB already run below ``path``.
    """
    if count + 1 > p.unikernels:
        raise PolicyError(f"{where(path)}: maximum amount of unikernels ({p.unikernels}) reached")
    if config.memory > p.memory - used_memory:
        raise PolicyError(
            f"{where(path)}: maximum allowed memory ({p.memory}, used {used_memory})"
            f" would be exceeded (requesting {config.memory})"
        )
    if not config.cpuids <= p.cpuids:
        raise PolicyError(
            f"{where(path)}: CPUids {_ints(config.cpuids - p.cpuids)} are not allowed by policy"
        )
    bridges = host_bridges(config)
    if not bridges <= p.bridges:
        raise PolicyError(
            f"{where(path)}: bridges {_strs(bridges - p.bridges)} not allowed by policy"
        )


def check_block_in_subtree(path: Path, p: Policy, *, used: int, size: int) -> None:
    """Raise unless ``size`` MB more block storage fits ``p`` at ``path`` (``used`` MB in use)."""
    if p.block is None:
        raise PolicyError(f"{where(path)}: no block devices are allowed by policy")
    if size > p.block - used:
        raise PolicyError(
            f"{where(path)}: block device policy limit of {p.block} MB"
            f" (used {used} MB) would be exceeded by the request ({size} MB)"
        )
