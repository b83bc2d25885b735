"""trio helpers shared by every daemon: framed streams, unix listeners, activation,
and the connection guard every listener serves through (:mod:`.guard`)."""

from albatross_py.transport.framed import END, Expect, FramedStream
from albatross_py.transport.unix import bind_unix, connect_unix, socket_path, systemd_listener

__all__ = [
    "END",
    "Expect",
    "FramedStream",
    "bind_unix",
    "connect_unix",
    "socket_path",
    "systemd_listener",
]
