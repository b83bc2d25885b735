"""What this host really has, and the numbers a valid request may carry.

Policies bound what a tenant may ask for, but a policy is only a number
someone wrote: the root policy itself can be replaced by a ``policy add`` at
``:`` with any 63-bit values, and then nothing else stood between a request
and the host (a block device of 712234361788353638 MB went as far as
``ftruncate``).  :class:`HostCapacity` is what albatrossd measured at
startup (physical memory, online CPU ids, the size of the block directory's
filesystem) plus the operator's ``--max-block-size``; the resource map
(:class:`~albatross_py.core.resources.Resources`, when given one) checks
every request against it on top of the policies, and refuses a root policy
that promises more than the host has.  The free space of the block
directory changes all the time, so the caller measures it at the time of
each block request and passes it in.

The wire admits any 63-bit integer in every numeric field; the checks here
refuse, with a message naming the bound, every value no VM or device can
have (0 or negative memory, a negative CPU id, no vCPU, a sector size a
disk cannot have), before anything touches the host.  Refusals are
:class:`BoundError`, a :class:`~albatross_py.core.policy.PolicyError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from albatross_py.core.policy import PolicyError
from albatross_py.wire.messages import BlockDump, Command, UnikernelGet
from albatross_py.wire.types import Policy, UnikernelConfig

#: A VM needs some memory; 0 or less MB is not a size (solo5 and QEMU refuse it late).
MIN_MEMORY_MB = 1
#: Smallest and largest block sector size: solo5 and QEMU take powers of two
#: from 512 bytes; no disk has sectors over 64 KiB, and every block device
#: (a whole number of MiB) is then a whole number of sectors.
MIN_SECTOR_SIZE = 512
MAX_SECTOR_SIZE = 64 * 1024
#: zlib's levels (spec 3.3: ``get`` and ``dump`` carry a level 0..9; 0 is none).
MAX_COMPRESSION_LEVEL = 9


class BoundError(PolicyError):
    """A request exceeds what the host has, or carries a value nothing can have."""


@dataclass(frozen=True, slots=True)
class HostCapacity:
    """The host as albatrossd measured it at startup (sizes in MB)."""

    #: physical memory
    memory: int
    #: online CPU ids
    cpuids: frozenset[int]
    #: size of the filesystem that holds the block devices: the sum of their
    #: sizes may not exceed it (they are sparse: free space alone does not)
    disk: int
    #: ``--max-block-size``: the largest single block device, None for no flag
    max_block: int | None = None


def _ints(xs: frozenset[int]) -> str:
    return ", ".join(str(x) for x in sorted(xs))


def check_command_values(cmd: Command) -> None:
    """Refuse values of a command's own fields that nothing can serve."""
    if isinstance(cmd, UnikernelGet | BlockDump):
        level = cmd.compression_level
        if not 0 <= level <= MAX_COMPRESSION_LEVEL:
            raise BoundError(
                f"compression level must be from 0 to {MAX_COMPRESSION_LEVEL}, not {level}"
            )


def check_config_values(config: UnikernelConfig) -> None:
    """Refuse values no VM can have, whatever the policies say."""
    if config.memory < MIN_MEMORY_MB:
        raise BoundError(f"memory must be at least {MIN_MEMORY_MB} MB, not {config.memory} MB")
    negative = frozenset(c for c in config.cpuids if c < 0)
    if negative:
        raise BoundError(f"CPU ids cannot be negative: {_ints(negative)}")
    if config.cpus < 1:
        raise BoundError(f"cpus must be at least 1, not {config.cpus}")
    for block in config.blocks:
        size = block.sector_size
        if size is None:
            continue
        if not MIN_SECTOR_SIZE <= size <= MAX_SECTOR_SIZE or size & (size - 1):
            raise BoundError(
                f"sector size of block device {block.name!r} must be a power of two from"
                f" {MIN_SECTOR_SIZE} to {MAX_SECTOR_SIZE} bytes, not {size}"
            )


def check_config_on_host(config: UnikernelConfig, host: HostCapacity, memory_used: int) -> None:
    """Refuse a VM this host cannot run: ``memory_used`` is what the VMs
    already running use (without the one a replace stops)."""
    check_config_values(config)
    if config.memory > host.memory - memory_used:
        raise BoundError(
            f"memory of {config.memory} MB exceeds what this host has: {host.memory} MB"
            f" of physical memory, {memory_used} MB used"
        )
    missing = config.cpuids - host.cpuids
    if missing:
        raise BoundError(
            f"CPU ids {_ints(missing)} do not exist on this host (online: {_ints(host.cpuids)})"
        )
    if config.cpus > len(host.cpuids):
        raise BoundError(
            f"cpus {config.cpus} exceeds the {len(host.cpuids)} online CPUs of this host"
        )


def check_block_on_host(size: int, host: HostCapacity, used: int, free: int | None) -> None:
    """Refuse a new block device of ``size`` MB; ``used`` MB are allocated to
    block devices already, ``free`` MB are free in the block directory now."""
    if size < 1:
        raise BoundError(f"block device size must be at least 1 MB, not {size} MB")
    if host.max_block is not None and size > host.max_block:
        raise BoundError(
            f"block device of {size} MB exceeds --max-block-size of {host.max_block} MB"
        )
    if free is not None and size > free:
        raise BoundError(
            f"block device of {size} MB exceeds the free space of the block directory"
            f" ({free} MB free)"
        )
    if size > host.disk - used:
        raise BoundError(
            f"block device of {size} MB exceeds the block directory's filesystem of"
            f" {host.disk} MB ({used} MB allocated to block devices)"
        )


def check_root_policy(policy: Policy, host: HostCapacity) -> None:
    """The root policy stands for the host: it may not promise more than the host has."""
    if policy.memory > host.memory:
        raise BoundError(
            f"root policy memory {policy.memory} MB exceeds the host's {host.memory} MB"
        )
    missing = policy.cpuids - host.cpuids
    if missing:
        raise BoundError(f"root policy CPU ids {_ints(missing)} do not exist on this host")
    if policy.block is not None and policy.block > host.disk:
        raise BoundError(
            f"root policy block storage {policy.block} MB exceeds the block directory's"
            f" filesystem of {host.disk} MB"
        )


__all__ = [
    "MAX_COMPRESSION_LEVEL",
    "MAX_SECTOR_SIZE",
    "MIN_MEMORY_MB",
    "MIN_SECTOR_SIZE",
    "BoundError",
    "HostCapacity",
    "check_block_on_host",
    "check_command_values",
    "check_config_on_host",
    "check_config_values",
    "check_root_policy",
]
