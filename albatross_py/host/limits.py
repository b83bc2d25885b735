"""Process limits the daemons need.

Every supervised VM costs albatrossd a pidfd and the console daemon a FIFO
fd; systemd's default soft limit of 1,024 open files would cap a host at a
few hundred VMs.  The hard limit (524,288 under systemd) is the real bound,
so the daemons raise their soft limit to it at start.
"""

from __future__ import annotations

import resource


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
