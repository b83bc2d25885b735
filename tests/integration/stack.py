"""An albatross stack in a temp dir for integration tests: console daemon +
(optionally, ``log=True``, albatross-log with its file at ``<tmp>/log/events.log``) +
albatrossd in-process (the stand-in solo5 tender on a private search path),
and a client that speaks the wire protocol over the real unix socket."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from albatross_py.daemons.console import ConsoleDaemon
from albatross_py.daemons.events import EventsDaemon, LogFile
from albatross_py.daemons.supervisor import Supervisor
from albatross_py.daemons.vmmd import Options, run
from albatross_py.transport import FramedStream, bind_unix, connect_unix, socket_path
from albatross_py.transport.guard import Limits
from albatross_py.wire.messages import Command, Header, Wire
from albatross_py.wire.names import Name
from albatross_py.wire.types import UnikernelConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
from standin import install_standin, write_image  # noqa: E402

TIMEOUT = 20


@dataclass
class Stack:
    tmpdir: Path
    dbdir: Path
    bindir: Path
    sup: Supervisor
    nursery: trio.Nursery
    events: EventsDaemon | None = None

    async def call(self, name: str | Name, cmd: Command, *, seq: int = 0) -> object:
        """One command on a new connection; the reply's payload."""
        n = name if isinstance(name, Name) else Name.of_string(name)
        with trio.fail_after(TIMEOUT):
            conn = FramedStream(await connect_unix(socket_path(self.tmpdir, "vmmd")))
            async with conn:
                await conn.write_wire(Wire(Header(sequence=seq, name=n), cmd))
                reply = await conn.read_wire()
        assert reply is not None, "albatrossd closed without a reply"
        assert reply.header.name == n and reply.header.sequence == seq
        return reply.payload

    def image(self, *, nets: tuple[str, ...] = (), blocks: tuple[str, ...] = ()) -> bytes:
        path = self.bindir / "image.elf"
        write_image(path, nets=nets, blocks=blocks)
        return path.read_bytes()

    def config(self, *args: str, nets: tuple[str, ...] = (), **kw: object) -> UnikernelConfig:
        """A solo5 config running the stand-in with ``args`` (e.g. --exit-code=3)."""
        return UnikernelConfig(image=self.image(nets=nets), argv=args, **kw)  # type: ignore[arg-type]


@asynccontextmanager
async def stack(
    tmp_path: Path,
    *,
    console: bool = True,
    restart_delay: float = 0.1,
    log: bool = False,
    limits: Limits | None = None,
    max_block_size: int | None = None,
) -> AsyncIterator[Stack]:
    """The stack; ``limits`` (the connection guard's) apply to every daemon in it."""
    limits = limits or Limits()
    tmpdir, dbdir = tmp_path / "t", tmp_path / "d"  # socket paths stay under 107 bytes
    bindir = tmp_path / "bin"
    bindir.mkdir()
    install_standin(bindir)
    opts = Options(
        tmpdir=tmpdir, dbdir=dbdir, stop_grace=2.0, restart_delay=restart_delay,
        tender_path=str(bindir), limits=limits, max_block_size=max_block_size,
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        if console:
            listener = bind_unix(socket_path(tmpdir, "console"))
            await nursery.start(ConsoleDaemon(tmpdir, limits=limits).serve, listener)
        events = None
        if log:  # before albatrossd, so its event link finds the socket at once
            logfile = LogFile(tmp_path / "log" / "events.log")
            logfile.open()
            events = EventsDaemon(logfile, limits=limits)
            await nursery.start(events.serve, bind_unix(socket_path(tmpdir, "log")))
        sup = await nursery.start(lambda task_status: run(opts, handle_signals=False,
                                                          task_status=task_status))  # fmt: skip
        try:
            yield Stack(tmpdir, dbdir, bindir, sup, nursery, events)
        finally:
            nursery.cancel_scope.cancel()
