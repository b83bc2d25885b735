"""trio helpers shared by every daemon: framed streams, unix listeners, activation."""

from albatross_py.transport.framed import END, FramedStream
from albatross_py.transport.unix import bind_unix, connect_unix, socket_path, systemd_listener

__all__ = ["END", "FramedStream", "bind_unix", "connect_unix", "socket_path", "systemd_listener"]
