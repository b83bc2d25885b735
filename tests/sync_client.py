"""A blocking one-command client for tests that drive daemons as processes."""

from __future__ import annotations

import socket
from pathlib import Path

from albatross_py.wire import FrameReader, decode_wire, encode_wire, frame
from albatross_py.wire.messages import Command, Header, Wire
from albatross_py.wire.names import Name


def call(sock_path: Path, name: Name, cmd: Command, timeout: float = 30) -> object:
    """Send one command on a new connection; return the reply's payload."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(frame(encode_wire(Wire(Header(name=name), cmd))))
        reader = FrameReader()
        while (got := reader.next_frame()) is FrameReader.NEED_DATA:
            data = s.recv(65536)
            if not data:
                raise ConnectionError("closed before a reply")
            reader.feed(data)
    assert isinstance(got, bytes)
    return decode_wire(got).payload
