"""What albatrossd has running, written down so a successor can clean up.

albatross leaves taps behind when it dies (issue #12, open since 2018) and
cannot tell its own leftovers from anyone else's.  We keep
``<tmpdir>/albatrossd.vms``: for every running VM its pid, its argv and its
taps, rewritten atomically on every start and exit.  After a crash (``kill
-9``) the next albatrossd reads it, stops the VM processes that are still
there (only if the pid's kernel start time is still the one recorded, so a
recycled pid is never hit; the command line would not do, as tenders are
exec'd through ``taskset``), removes their taps, FIFOs and image files, and then
restores the VMs from the state file: nothing is lost, nothing duplicated,
no tap is left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Protocol

from albatross_py.host import files, net
from albatross_py.wire.names import Name

log = logging.getLogger("albatrossd")

RECORD_NAME = "albatrossd.vms"
#: How long a leftover VM gets between SIGTERM and SIGKILL during cleanup.
LEFTOVER_GRACE = 3.0


class _RunningVm(Protocol):
    name: Name
    taps: tuple[str, ...]

    @property
    def process(self) -> Any: ...


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat``
    field 22), or None if there is no such process or it is a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def _wait_gone(pid: int, started: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if start_time(pid) != started:
            return True
        time.sleep(0.02)
    return start_time(pid) != started


class RuntimeRecord:
    def __init__(self, tmpdir: Path) -> None:
        self.path = Path(tmpdir) / RECORD_NAME
        self.entries: dict[str, dict[str, Any]] = {}

    def _write(self) -> None:
        files.atomic_write(self.path, json.dumps(self.entries).encode(), backup=False)

    def add(self, vm: _RunningVm) -> None:
        self.entries[str(vm.name)] = {
            "pid": vm.process.pid,
            "start": start_time(vm.process.pid),
            "taps": list(vm.taps),
        }
        self._write()

    def remove(self, vm: _RunningVm) -> None:
        if self.entries.pop(str(vm.name), None) is not None:
            self._write()

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def clean_leftovers(self, layout: files.Layout) -> list[str]:
        """Stop and clean up what a previous albatrossd left running; return the names."""
        cleaned = []
        for name_str, entry in self.load().items():
            try:
                name = Name.of_string(name_str)
                pid, taps = int(entry["pid"]), list(entry["taps"])
                started = entry["start"]
            except (ValueError, KeyError, TypeError):
                continue
            if started is not None and start_time(pid) == started:
                log.warning("stopping leftover VM %s (pid %d) of a previous albatrossd", name, pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                if not _wait_gone(pid, started, LEFTOVER_GRACE):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    _wait_gone(pid, started, LEFTOVER_GRACE)
            for tap in taps:
                try:
                    if net.interface_exists_sync(tap):
                        net.destroy_tap_sync(tap)
                except net.NetError as exc:
                    log.error("removing leftover tap %s: %s", tap, exc)
            files.remove_image(layout, name)
            files.remove_file(layout.fifo_file(name))
            cleaned.append(str(name))
        self.entries = {}
        self._write()
        return cleaned
