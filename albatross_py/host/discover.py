"""Root policy discovery: what this host offers, recomputed at every daemon start.

albatross (``Vmm_unix.root_policy``, spec 5.2) does not trust a stored root
policy; at startup it replaces it with the host's real capacity: every online
CPU, the physical memory, the size of the filesystem that holds the block
devices, and every bridge.  The number of unikernels is unbounded
(OCaml's ``max_int``).

The same figures, as :class:`~albatross_py.core.bounds.HostCapacity`, bound
every request whatever the policies say (a root policy is only a number a
client may replace); :func:`free_space_mb` is measured again for every block
device request, since what is free changes all the time.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from albatross_py.core.bounds import HostCapacity
from albatross_py.host import net
from albatross_py.wire.types import Policy

#: OCaml's ``max_int`` on 64-bit hosts (63-bit integers): albatross's "no limit".
MAX_INT = 2**62 - 1
MIB = 1 << 20


def cpu_count() -> int:
    """Online CPUs, as albatross's ``sysconf(_SC_NPROCESSORS_ONLN)``."""
    n = os.sysconf("SC_NPROCESSORS_ONLN")
    if n < 1:
        raise OSError("sysconf(_SC_NPROCESSORS_ONLN) failed")
    return n


def memory_mb() -> int:
    """Physical memory in MB: ``_SC_PHYS_PAGES * _SC_PAGE_SIZE`` (as albatross) or /proc/meminfo."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        pages = page_size = -1
    if pages > 0 and page_size > 0:
        return pages * page_size // MIB
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise OSError("cannot determine physical memory")


def _statvfs(path: Path) -> os.statvfs_result:
    """statvfs of ``path``, or of its nearest existing ancestor: the block
    directory may not exist yet on a fresh host, and will be created on the
    same filesystem as that ancestor."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return os.statvfs(p)


def disk_space_mb(path: Path) -> int:
    """Size in MB of the filesystem holding ``path`` (statvfs f_blocks * f_frsize)."""
    st = _statvfs(path)
    return st.f_blocks * st.f_frsize // MIB


def free_space_mb(path: Path) -> int:
    """MB free for ordinary files on the filesystem holding ``path`` (statvfs
    f_bavail * f_frsize: the blocks reserved for root are left to the system)."""
    st = _statvfs(path)
    return st.f_bavail * st.f_frsize // MIB


def root_policy_sync(dbdir: Path, bridges: list[str] | None = None) -> Policy:
    """The root policy of this host; ``bridges`` defaults to the host's bridges."""
    if bridges is None:
        bridges = net.list_bridges_sync()
    return Policy(
        unikernels=MAX_INT,
        cpuids=frozenset(range(cpu_count())),
        memory=memory_mb(),
        block=disk_space_mb(Path(dbdir) / "block"),
        bridges=frozenset(bridges),
    )


async def root_policy(dbdir: Path) -> Policy:
    return await trio.to_thread.run_sync(root_policy_sync, dbdir)


def host_capacity(root: Policy, max_block: int | None = None) -> HostCapacity:
    """The bounds of every request: the discovered root policy's figures
    (physical memory, online CPUs, the block filesystem) and ``--max-block-size``."""
    return HostCapacity(
        memory=root.memory,
        cpuids=root.cpuids,
        disk=root.block or 0,
        max_block=max_block,
    )


__all__ = [
    "MAX_INT",
    "cpu_count",
    "disk_space_mb",
    "free_space_mb",
    "host_capacity",
    "memory_mb",
    "root_policy",
    "root_policy_sync",
]
