"""albatross-client's connect errors say what is wrong and what to do (issue 14, item 7).

Real paths and real sockets: a missing socket, a regular file and a
directory where a socket should be, a socket nobody listens on.  The
permission cases (the ``albatross`` group) need a user who is not root:
tests/system/test_client_permissions.py.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from albatross_py.client.cli import main


def client(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_missing_socket_says_how_to_start_the_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = client(capsys, "info", "--tmpdir", str(tmp_path))
    assert code == 122
    assert f"cannot connect to {tmp_path}/util/vmmd.sock: no such socket" in err
    assert "systemctl start albatross_daemon.socket" in err
    assert f"`albatrossd --tmpdir {tmp_path}` as root" in err
    code, err = client(capsys, "console", "web", "--tmpdir", str(tmp_path))
    assert code == 122 and "Is albatross-console (the console daemon) running?" in err
    assert "systemctl start albatross_console.socket" in err
    code, err = client(capsys, "stats", "--socket", str(tmp_path / "x.sock"))
    assert code == 122 and "`albatross-stats`" in err and "--tmpdir" in err


def test_not_a_socket(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    regular = tmp_path / "vmmd.sock"
    regular.write_text("")
    code, err = client(capsys, "info", "--socket", str(regular))
    assert code == 122 and "it is a regular file, not a unix socket" in err
    assert "Connection refused" not in err and "<tmpdir>/util/vmmd.sock" in err
    code, err = client(capsys, "info", "--socket", str(tmp_path))
    assert code == 122 and "it is a directory, not a unix socket" in err
    (tmp_path / "util").mkdir()
    (tmp_path / "util" / "vmmd.sock").write_text("")
    code, err = client(capsys, "info", "--tmpdir", str(tmp_path))
    assert code == 122 and "a regular file, not a unix socket, where albatrossd's socket" in err
    assert "remove it, then start albatrossd" in err


def test_nobody_listens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "vmmd.sock"
    with socket.socket(socket.AF_UNIX) as stale:  # bound, never listening: a dead daemon's
        stale.bind(str(path))
    code, err = client(capsys, "info", "--socket", str(path))
    assert code == 122 and "connection refused: the socket is there, but no albatrossd" in err
    assert "systemctl restart albatross_daemon.service" in err
