"""Resource usage of a process from ``/proc``: albatross-stats' Linux mapping (spec 6.3).

albatross-stats reads these files on Linux (``stats/albatross_stats_stubs.c``)
and fills the FreeBSD-shaped ``rusage`` and ``kinfo_mem`` with them:

* ``/proc/<pid>/stat`` (0-based fields, ``comm`` counted as one): minflt 9,
  majflt 11, utime 13 and stime 14 in clock ticks, vsize 22 in bytes, rss 23
  in pages, nswap 35;
* ``/proc/<pid>/statm``: tsize is field 3 (text), dsize *and* ssize are both
  field 5 (data + stack), in pages;
* ``/proc/<pid>/status``: ``voluntary_ctxt_switches`` and
  ``nonvoluntary_ctxt_switches``;
* maxrss = rss (pages), runtime = utime + stime in microseconds, cow = 0,
  start = the ctime of ``/proc/<pid>`` (when the kernel made the directory,
  which is when the process started, to within a tick).

The remaining rusage fields (ixrss, idrss, isrss, inblock, outblock, msgsnd,
msgrcv, nsignals) are 0, as in albatross.  Everything here blocks on file
reads; call it through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import os

from albatross_py.wire.types import KinfoMem, Rusage, Timeval

#: Clock ticks per second, for the tick counts in ``/proc/<pid>/stat``.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_MICRO = 1_000_000


class ProcessGone(Exception):
    """The process does not exist (any more), or its /proc entry is unreadable."""


def ticks_to_timeval(ticks: int, hz: int = CLOCK_TICKS) -> Timeval:
    """Clock ticks as seconds and microseconds."""
    seconds, rest = divmod(ticks, hz)
    return Timeval(seconds, rest * _MICRO // hz)


def parse_stat(text: str) -> list[str]:
    """Fields of ``/proc/<pid>/stat`` with ``comm`` as field 1 however odd it is.

    ``comm`` is in parentheses and may itself hold spaces and parentheses, so
    split at the *last* ``)``.
    """
    head, sep, tail = text.rpartition(")")
    if not sep:
        raise ValueError("no ')' in /proc stat line")
    pid, _, comm = head.partition(" (")
    return [pid.strip(), comm, *tail.split()]


def parse_status_switches(text: str) -> tuple[int, int]:
    """(voluntary, nonvoluntary) context switches from ``/proc/<pid>/status``."""
    found = {"voluntary_ctxt_switches": 0, "nonvoluntary_ctxt_switches": 0}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in found:
            found[key] = int(value.split()[0])
    return found["voluntary_ctxt_switches"], found["nonvoluntary_ctxt_switches"]


def usage_of_proc(
    stat: str, statm: str, status: str, start: Timeval, hz: int = CLOCK_TICKS
) -> tuple[Rusage, KinfoMem]:
    """The pure part: the three files' contents (and the start time) to wire values."""
    fields = parse_stat(stat)
    mem = statm.split()
    utime, stime = int(fields[13]), int(fields[14])
    rss = int(fields[23])
    nvcsw, nivcsw = parse_status_switches(status)
    rusage = Rusage(
        utime=ticks_to_timeval(utime, hz),
        stime=ticks_to_timeval(stime, hz),
        maxrss=rss,
        minflt=int(fields[9]),
        majflt=int(fields[11]),
        nswap=int(fields[35]),
        nvcsw=nvcsw,
        nivcsw=nivcsw,
    )
    kinfo = KinfoMem(
        vsize=int(fields[22]),
        rss=rss,
        tsize=int(mem[3]),
        dsize=int(mem[5]),
        ssize=int(mem[5]),
        runtime=(utime + stime) * _MICRO // hz,
        cow=0,
        start=start,
    )
    return rusage, kinfo


def process_usage(pid: int, proc: str = "/proc") -> tuple[Rusage, KinfoMem]:
    """rusage and kinfo_mem of a live process; :class:`ProcessGone` if it is not there.

    Blocking (file reads).  A pid that exits between the reads gives
    ``ProcessGone`` too, never a half-filled result.
    """
    if not isinstance(pid, int) or pid <= 0:
        raise ProcessGone(f"invalid pid {pid!r}")
    base = f"{proc}/{pid}"
    try:
        st = os.stat(base)
        with open(f"{base}/stat", encoding="utf-8", errors="surrogateescape") as f:
            stat = f.read()
        with open(f"{base}/statm", encoding="ascii") as f:
            statm = f.read()
        with open(f"{base}/status", encoding="utf-8", errors="surrogateescape") as f:
            status = f.read()
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise ProcessGone(f"process {pid} does not exist") from exc
    except OSError as exc:
        raise ProcessGone(f"cannot read /proc of process {pid}: {exc}") from exc
    start = Timeval(*divmod(st.st_ctime_ns // 1000, _MICRO))
    try:
        return usage_of_proc(stat, statm, status, start)
    except (ValueError, IndexError) as exc:
        # An exited (zombie or reaped mid-read) process can leave empty files.
        raise ProcessGone(f"unreadable /proc entry of process {pid}: {exc}") from exc


__all__ = [
    "CLOCK_TICKS",
    "ProcessGone",
    "parse_stat",
    "parse_status_switches",
    "process_usage",
    "ticks_to_timeval",
    "usage_of_proc",
]
