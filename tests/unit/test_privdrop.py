"""Dropping root in the unprivileged daemons (albatross_py/daemons/privdrop.py).

Every drop happens in a child process: a process that gave up root cannot
get it back, and the test runner must keep it.  The tests that need a real
account create a throwaway system user ``albtest<random>`` and always delete
it again.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from albatross_py.daemons import privdrop

IS_ROOT = os.geteuid() == 0
ROOT = Path(__file__).resolve().parents[2]


def _child(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports our package."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    )


def test_not_root_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    calls: list[object] = []
    monkeypatch.setattr(os, "setuid", calls.append)
    monkeypatch.setattr(os, "setgid", calls.append)
    monkeypatch.setattr(os, "setgroups", calls.append)
    assert privdrop.drop_privileges() is False
    assert calls == []


def test_empty_user_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "getuid", lambda: 0)
    monkeypatch.setattr(os, "setuid", pytest.fail)
    assert privdrop.drop_privileges("") is False
    assert privdrop.drop_privileges(None) is False


@pytest.mark.skipif(not IS_ROOT, reason="needs root to start as root")
def test_root_without_the_user_warns_and_stays_root() -> None:
    user = f"albtest{secrets.token_hex(4)}"
    result = _child(
        "import logging, os\n"
        "from albatross_py.daemons.privdrop import drop_privileges\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        f"print(drop_privileges({user!r}), os.getuid(), os.getgid())\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "0", "0"]
    assert "does not exist" in result.stderr


@pytest.mark.skipif(not IS_ROOT, reason="needs root to become another user")
def test_non_root_child_is_a_no_op() -> None:
    result = _child(
        "import os\n"
        "from albatross_py.daemons.privdrop import drop_privileges\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "print(drop_privileges(), os.getuid())\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "65534"]


@pytest.fixture
def throwaway_user() -> Iterator[str]:
    """A system user and group ``albtest<random>``, deleted afterwards."""
    if not IS_ROOT:
        pytest.skip("needs root to create a user")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("useradd/userdel not installed")
    user = f"albtest{secrets.token_hex(4)}"
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell",
         "/usr/sbin/nologin", user],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield user
    finally:
        subprocess.run(["userdel", user], check=False, capture_output=True)
        subprocess.run(["groupdel", user], check=False, capture_output=True)


@pytest.mark.system
def test_drop_to_a_real_user(throwaway_user: str) -> None:
    pw = pwd.getpwnam(throwaway_user)
    gid = grp.getgrnam(throwaway_user).gr_gid
    result = _child(
        "import os\n"
        "from albatross_py.daemons.privdrop import drop_privileges\n"
        "os.umask(0o027)\n"
        f"ok = drop_privileges({throwaway_user!r}, {throwaway_user!r})\n"
        "print(ok, os.getuid(), os.geteuid(), os.getgid(), os.getegid(), "
        "','.join(map(str, os.getgroups())), oct(os.umask(0o022)))\n"
        "try:\n"
        "    os.setuid(0)\n"
        "except PermissionError:\n"
        "    print('root gone')\n"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    ok, uid, euid, g, eg, groups, umask = lines[0].split()
    assert ok == "True"
    assert int(uid) == int(euid) == pw.pw_uid
    assert int(g) == int(eg) == gid
    assert groups == str(gid)
    assert umask == "0o27"  # the umask is left alone
    assert lines[1] == "root gone"


@pytest.mark.system
def test_console_daemon_binds_then_drops(throwaway_user: str) -> None:
    """albatross-console as root: the socket appears 0660, then the process is the user."""
    pw = pwd.getpwnam(throwaway_user)
    tmpdir = Path(tempfile.mkdtemp(prefix="albtest-privdrop-"))
    tmpdir.chmod(0o755)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "albatross_py.daemons.console", "--tmpdir", str(tmpdir),
         "--user", throwaway_user],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        sock = tmpdir / "util" / "console.sock"
        deadline = time.monotonic() + 15
        uid = None
        while time.monotonic() < deadline and proc.poll() is None:
            if sock.exists():
                status = Path(f"/proc/{proc.pid}/status").read_text()
                uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
                uid = [int(x) for x in uid_line.split()[1:]]
                if uid[0] != 0:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert uid == [pw.pw_uid] * 4  # real, effective, saved, filesystem
        assert sock.stat().st_uid == 0  # bound while still root
        assert sock.stat().st_mode & 0o777 == 0o660
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmpdir, ignore_errors=True)
