"""Unix-socket listeners and connections with albatross's rules (spec 2.3, 2.5).

* Sockets live at ``<tmpdir>/util/<name>.sock``; a stale file is removed
  before bind (only if it is a socket: we never unlink a regular file).
* Local access control is file permissions only: the socket is made
  group read/write (mode 0660) and, when the ``albatross`` group exists and
  we may, owned by that group.
* systemd socket activation: ``LISTEN_FDS``/``LISTEN_PID`` hand us fd 3.
"""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import stat
from pathlib import Path

import trio

#: The group whose members may use the local sockets.
SOCKET_GROUP = "albatross"
SOCKET_MODE = 0o660

#: First file descriptor systemd passes (SD_LISTEN_FDS_START).
SD_LISTEN_FDS_START = 3

SOCKET_NAMES = {"vmmd": "vmmd.sock", "console": "console.sock", "stats": "stat.sock",
                "log": "log.sock"}  # fmt: skip


def socket_path(tmpdir: str | Path, service: str) -> Path:
    """``<tmpdir>/util/<socket>`` for a service name (vmmd, console, stats, log)."""
    return Path(tmpdir) / "util" / SOCKET_NAMES[service]


def _remove_stale(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket; refusing to remove it")
    path.unlink()


def _set_group(path: Path) -> None:
    with contextlib.suppress(KeyError, PermissionError):
        os.chown(path, -1, grp.getgrnam(SOCKET_GROUP).gr_gid)


def bind_unix(path: str | Path, backlog: int = 16) -> trio.SocketListener:
    """A listening unix socket at ``path`` (mode 0660, group albatross if present).

    albatross listens with a backlog of 1; we allow a small queue so that a
    burst of clients (the TLS endpoint, stats, the console) is not refused.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)  # the socket file is created 0660, never wider
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    # Listen at once: a client that sees the file may connect (and is refused
    # until listen); the mode is right from the umask, the group follows.
    sock.listen(backlog)
    os.chmod(path, SOCKET_MODE)
    _set_group(path)
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


def systemd_listener() -> trio.SocketListener | None:
    """The socket systemd passed us, if we were socket-activated."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    if int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


async def connect_unix(path: str | Path) -> trio.SocketStream:
    return await trio.open_unix_socket(str(path))
