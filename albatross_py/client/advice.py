"""What albatross-client says when it cannot reach a daemon, or a daemon goes away.

Each message names what went wrong and what to do next:

* the socket is missing: which daemon should have made it, and how to start
  it (its systemd socket unit, or the program with ``--tmpdir``);
* the path is not a socket (a regular file, a directory): say so, instead
  of the kernel's "Connection refused";
* permission denied: the socket's group (``albatross`` in the packaged
  set-up) and how to join it, or that a new login is needed when the user
  is in the group but this session is not yet;
* connection refused on a real socket: the daemon stopped or crashed;
* a subscription (console, stats, log) that the daemon ends: what makes it
  do so (:func:`subscription_closed`).
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from pathlib import Path

from albatross_py.transport import socket_path

#: socket service -> (program, its systemd units, what it is)
DAEMONS = {
    "vmmd": ("albatrossd", "albatross_daemon", "the VM supervisor"),
    "console": ("albatross-console", "albatross_console", "the console daemon"),
    "stats": ("albatross-stats", "albatross_stats", "the statistics daemon"),
    "log": ("albatross-log", "albatross_log", "the event log daemon"),
}


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a dangling symbolic link"
    return "not a socket"


def _start_hint(service: str, tmpdir: str | None) -> str:
    program, unit, what = DAEMONS.get(service, DAEMONS["vmmd"])
    run = f"`{program} --tmpdir {tmpdir}`" if tmpdir else f"`{program}`"
    if service == "vmmd":
        run += " as root"
    return (
        f"Is {program} ({what}) running?  Start it: `systemctl start {unit}.socket` with "
        f"the Debian package, or {run}; or point --tmpdir or --socket at the one that runs"
    )


def _group_hint(path: Path, st: os.stat_result) -> str:
    try:
        group = grp.getgrgid(st.st_gid)
    except KeyError:
        return f"{path} is mode {stat.S_IMODE(st.st_mode):04o}, group id {st.st_gid}: run as root"
    try:
        me = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        me = str(os.getuid())
    mode = f"{path} is mode {stat.S_IMODE(st.st_mode):04o}, group {group.gr_name}"
    if group.gr_gid in os.getgroups():
        return f"{mode}, and you are in that group: check the directories above it"
    if me in group.gr_mem:
        return (
            f"{mode}; you are in group {group.gr_name}, but this session is not yet: "
            f"log out and in again (or start a shell with `newgrp {group.gr_name}`)"
        )
    return (
        f"{mode}: join the group with `sudo adduser {me} {group.gr_name}`, then log out and "
        "in again (or run the client as root)"
    )


def connect_failed(path: str | Path, service: str, exc: OSError, tmpdir: str | None) -> str:
    """The message for a failed connect to a daemon's unix socket."""
    path = Path(path)
    head = f"cannot connect to {path}"
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"{head}: no such socket.  {_start_hint(service, tmpdir)}"
    except PermissionError:
        return (
            f"{head}: permission denied on a directory above it "
            "(the albatross runtime directory is for root and group albatross; "
            "join the group with `sudo adduser $USER albatross` and log in again, or run as root)"
        )
    except OSError:
        return f"{head}: {exc.strerror or exc}"
    if not stat.S_ISSOCK(st.st_mode):
        program = DAEMONS.get(service, DAEMONS["vmmd"])[0]
        if tmpdir is None:  # --socket PATH
            return (
                f"{head}: it is {_kind(st.st_mode)}, not a unix socket: give --socket the "
                f"socket {program} listens on ({socket_path('<tmpdir>', service)}), or "
                "--tmpdir the directory it runs in"
            )
        return (
            f"{head}: it is {_kind(st.st_mode)}, not a unix socket, where {program}'s socket "
            f"belongs: remove it, then start {program} (it does not replace a file that is "
            "not a socket)"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{head}: permission denied.  {_group_hint(path, st)}"
    if exc.errno == errno.ECONNREFUSED:
        program, unit, _ = DAEMONS.get(service, DAEMONS["vmmd"])
        return (
            f"{head}: connection refused: the socket is there, but no {program} listens on it "
            f"(it stopped or crashed).  Restart it (`systemctl restart {unit}.service`, "
            f"its log: `journalctl -u {unit}.service`)"
        )
    return f"{head}: {exc.strerror or exc}"


def subscription_closed(service: str | None, name: str) -> str:
    """The message when a daemon ends a console, statistics or event subscription."""
    if service == "console":
        return (
            f"albatross-console closed the console of {name}: it drops the console of a "
            "stopped VM when its path needs the room for newer ones, the oldest subscriber "
            "beyond --max-subscribers, and everything when it stops"
        )
    if service == "stats":
        return f"albatross-stats ended the statistics of {name} (it stopped, or they were removed)"
    if service == "log":
        return f"albatross-log ended the event subscription of {name} (it stopped)"
    return (
        f"the TLS endpoint closed the subscription of {name} (the daemon behind it ended it: "
        "a dropped console, a stopped daemon)"
    )
