"""A user outside the sockets' group is told to join it (issue 14, item 7).

A throwaway user and group (random names, removed at the end) and a real
listening socket, mode 0660, owned by root and that group, in a directory
anyone may enter, as ``/run/albatross/util`` is.  The real client runs as that
user (``runuser``/``setpriv``):

1. not in the group: exit 122, and the message names the group and the
   ``adduser`` line to run;
2. in the group (``/etc/group`` says so), but in a session that started
   before (no supplementary groups): told to log in again;
3. in a fresh session: it connects (the listener answers by closing, so the
   client reports the early close, exit 121, not a permission error).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.system


@contextmanager
def throwaway_user() -> Iterator[tuple[str, str]]:
    user, group = f"alb{secrets.token_hex(3)}", f"albg{secrets.token_hex(3)}"
    subprocess.run(["groupadd", group], check=True)
    try:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", user], check=True)
        try:
            yield user, group
        finally:
            subprocess.run(["userdel", user], check=False)
    finally:
        subprocess.run(["groupdel", group], check=False)


def run_as(user: str, path: Path, *, clear_groups: bool = False) -> tuple[int, str]:
    client = [sys.executable, "-m", "albatross_py.client.cli", "info", "--socket", str(path)]
    if clear_groups:  # a session that started before the user joined the group
        uid, gid = _ids(user)
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *client]
    else:
        cmd = ["runuser", "-u", user, "--", *client]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60,
                            env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"})  # fmt: skip
    return result.returncode, result.stderr


def _ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def answer_by_closing(listener: socket.socket) -> None:
    """Accept connections and close them at once, until the listener is closed."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.close()


def test_permission_denied_names_the_group() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (useradd, chown)")
    for tool in ("useradd", "groupadd", "runuser", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    directory = Path(tempfile.mkdtemp(prefix="albatross-perm-"))
    listener = socket.socket(socket.AF_UNIX)
    try:
        directory.chmod(0o755)
        path = directory / "vmmd.sock"
        listener.bind(str(path))
        listener.listen(4)
        threading.Thread(target=answer_by_closing, args=(listener,), daemon=True).start()
        with throwaway_user() as (user, group):
            os.chown(path, 0, grp.getgrnam(group).gr_gid)
            path.chmod(0o660)

            code, err = run_as(user, path)
            assert code == 122, err
            assert f"{path}: permission denied" in err and f"group {group}" in err
            assert f"`sudo adduser {user} {group}`" in err and "log out and in again" in err

            subprocess.run(["usermod", "-aG", group, user], check=True)
            code, err = run_as(user, path, clear_groups=True)
            assert code == 122, err
            assert f"you are in group {group}, but this session is not yet" in err
            assert f"newgrp {group}" in err

            code, err = run_as(user, path)
            assert code == 121 and "permission denied" not in err, err
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        listener.close()
        shutil.rmtree(directory, ignore_errors=True)
