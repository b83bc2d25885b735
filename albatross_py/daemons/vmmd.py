"""albatrossd: the privileged supervisor daemon (spec 2, 3.8, 5).

Reads like its story: start up (clean what a crashed predecessor left, scan
block devices, discover the root policy, read the state file, restore the
policies, start the saved VMs), then accept connections on
``<tmpdir>/util/vmmd.sock``: decode a command, ask the supervisor, reply
with the request's header.  ``policy add`` answers and keeps reading (the
TLS endpoint sends several on one connection); ``Stats_initial`` hands the
connection to the stats link; block set and dump stream raw data.

Bad input never stops the daemon: an undecodable frame gets a ``Failure``
and the connection is closed; every command error is a ``Failure``.  Every
connection runs under the connection guard (:mod:`albatross_py.transport.guard`):
anything unexpected is logged and answered with a ``Failure``, a request
must arrive within ``--request-timeout``, block data may not stall for
longer than ``--stall-timeout``, and at most ``--max-connections`` are
served at once.  The adopted stats connection is exempt from the read
timeouts: albatrossd only reads albatross-stats' answers on it, each bounded
by the link's own timeout.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from albatross_py.core import bounds
from albatross_py.core.policy import PolicyError
from albatross_py.daemons.common import install_log_handler
from albatross_py.daemons.eventlink import EventLink
from albatross_py.daemons.links import ConsoleLink, PeerError, StatsLink
from albatross_py.daemons.runtime import RuntimeRecord
from albatross_py.daemons.supervisor import OperationError, Supervisor
from albatross_py.defaults import DEFAULT_DBDIR, DEFAULT_TMPDIR
from albatross_py.host import discover, files
from albatross_py.host.limits import raise_nofile_limit
from albatross_py.transport import (
    END,
    Expect,
    FramedStream,
    bind_unix,
    guard,
    socket_path,
    systemd_listener,
)
from albatross_py.virt.base import Backend
from albatross_py.virt.solo5 import Solo5Backend
from albatross_py.wire import State, WireError, read_state
from albatross_py.wire import events as ev
from albatross_py.wire.messages import (
    BlockAdd,
    BlockAddOld,
    BlockDump,
    BlockInfoQuery,
    BlockRemove,
    BlockSet,
    BlockSetOld,
    Command,
    DataBlock,
    Failure,
    Header,
    PolicyAdd,
    PolicyInfoQuery,
    PolicyRemove,
    Reply,
    ReplyBlockDeviceImage,
    ReplyBlockDevices,
    ReplyOldBlockDeviceImage,
    ReplyPolicies,
    ReplyString,
    ReplyUnikernelImage,
    ReplyUnikernelInfo,
    StatsInitial,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfoQuery,
    UnikernelRestart,
    Wire,
)
from albatross_py.wire.names import ROOT, Name
from albatross_py.wire.types import BlockDeviceEntry, NamedPolicy, Typ

log = logging.getLogger("albatrossd")


class StartupError(Exception):
    """albatrossd cannot start; the message says why and what was left untouched."""


@dataclass
class Options:
    tmpdir: Path
    dbdir: Path
    systemd: bool = False
    no_drop_path: bool = False
    stop_grace: float = 5.0
    restart_delay: float = 0.5
    tender_path: str | None = None
    limits: guard.Limits = field(default_factory=guard.Limits)
    #: ``--max-block-size``: the largest block device (MB) one request may
    #: create, on top of the free space of the block directory; None: no flag.
    max_block_size: int | None = None
    #: ``--qemu-cpu``: the QEMU CPU model; None: probed (virt/qemu_host.py).
    qemu_cpu: str | None = None
    #: ``--qemu-accel``: kvm, tcg or auto (a VM's ``qemu.accel=`` overrides it).
    qemu_accel: str = "auto"


class Vmmd:
    """The protocol side: one connection at a time, each in its own task."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    async def serve_connection(self, conn: guard.Connection) -> None:
        framed = conn.framed()  # the guard closes it (after any failure reply)
        try:
            if await self._conversation(framed):
                await self.sup.stats.wait_released()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _conversation(self, framed: FramedStream) -> bool:
        """Serve one connection; True when the stats link adopted it."""
        while True:
            try:
                wire = await framed.read_wire()
            except WireError as exc:
                log.warning("bad input: %s", exc)
                await framed.write_wire(Wire(guard.UNKNOWN_HEADER, Failure(str(exc))))
                return False
            if wire is None:
                return False
            header, cmd = wire.header, wire.payload
            if not isinstance(cmd, Command):
                await framed.write_wire(Wire(header, Failure("expected a command")))
                return False
            try:
                bounds.check_command_values(cmd)
            except bounds.BoundError as exc:
                await framed.write_wire(Wire(header, Failure(str(exc))))
                return False
            if isinstance(cmd, StatsInitial):
                framed.timeouts = None  # the link bounds each answer it reads itself
                await self.sup.stats.attach(framed, header)
                await self.sup.stats_attached()
                return True
            if isinstance(cmd, BlockSet):
                await self._block_set(framed, header, cmd)
                return False
            if isinstance(cmd, BlockDump) and not cmd.old:
                await self._block_dump(framed, header, cmd)
                return False
            try:
                reply: Reply | Failure = await self.dispatch(header.name, cmd)
            except OperationError as exc:
                reply = Failure(str(exc))
            if isinstance(reply, Failure):
                log.error("error while processing command: %s", reply.message)
            await framed.write_wire(Wire(header, reply))
            if not isinstance(cmd, PolicyAdd):
                return False

    async def dispatch(self, name: Name, cmd: Command) -> Reply:
        sup = self.sup
        match cmd:
            case UnikernelCreate(config, force):
                return ReplyString(await sup.create(name, config, force=force))
            case UnikernelDestroy():
                return ReplyString(await sup.destroy(name))
            case UnikernelRestart(args):
                return ReplyString(
                    await sup.restart(name, lambda old: old if args is None else args.apply_to(old))
                )
            case UnikernelInfoQuery(version):
                return ReplyUnikernelInfo(tuple(sup.info(name)), version)
            case UnikernelGet(level):
                return ReplyUnikernelImage(*sup.get_image(name, level))
            case PolicyAdd(policy):
                return ReplyString(await sup.add_policy(name.path, policy))
            case PolicyRemove():
                return ReplyString(await sup.remove_policy(name.path))
            case PolicyInfoQuery():
                entries = sup.resources.policies(name.path)
                return ReplyPolicies(tuple(NamedPolicy(n, p) for n, p in entries))
            case BlockAdd(size):
                return ReplyString(await sup.add_block(name, size))
            case BlockAddOld(size, compressed, data):
                return ReplyString(await sup.add_block(name, size, data, compressed))
            case BlockRemove():
                return ReplyString(await sup.remove_block(name))
            case BlockInfoQuery():
                entries = sup.block_devices(name)
                return ReplyBlockDevices(tuple(BlockDeviceEntry(*e) for e in entries))
            case BlockSetOld(compressed, data):
                await self._fill_block(name, _single(data), compressed)
                return ReplyString("set block device")
            case BlockDump(level, old=True):
                size = await sup.claim_block(name, "dump")
                try:
                    data = b"".join([c async for c in files.dump_block(sup.layout, name, level)])
                finally:
                    await sup.release_block(name)
                del size
                return ReplyOldBlockDeviceImage(level != 0, data)
        raise OperationError("unknown command")

    async def _fill_block(self, name: Name, chunks: AsyncIterator[bytes], compressed: bool) -> None:
        size = await self.sup.claim_block(name, "set")
        try:
            await files.set_block(
                self.sup.layout, name, chunks, size_mb=size, compressed=compressed
            )
        except files.HostFileError as exc:
            raise OperationError(str(exc)) from None
        except OSError as exc:  # the new content goes to a copy: the old one stays
            raise OperationError(
                f"could not write block device {name}: {exc.strerror or exc}; it is unchanged"
            ) from None
        finally:
            await self.sup.release_block(name)

    async def _block_set(self, framed: FramedStream, header: Header, cmd: BlockSet) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            while True:
                chunk = await framed.read_chunk(Expect.DATA)
                if chunk is None:
                    raise OperationError("connection closed before the end of the block data")
                if chunk == END:
                    return
                yield chunk

        try:
            await self._fill_block(header.name, chunks(), cmd.compressed)
            reply: Reply | Failure = ReplyString("set block device")
        except (OperationError, WireError) as exc:
            reply = Failure(str(exc))
        await framed.write_wire(Wire(header, reply))

    async def _block_dump(self, framed: FramedStream, header: Header, cmd: BlockDump) -> None:
        try:
            await self.sup.claim_block(header.name, "dump")
        except OperationError as exc:
            await framed.write_wire(Wire(header, Failure(str(exc))))
            return
        try:
            await framed.write_wire(Wire(header, ReplyBlockDeviceImage(cmd.compression_level != 0)))

            async def send(chunk: bytes) -> None:
                await framed.write_wire(Wire(header, DataBlock(chunk)))

            await files.send_block(self.sup.layout, header.name, cmd.compression_level, send)
            await framed.write_wire(Wire(header, DataBlock(None)))
        except (files.HostFileError, OSError) as exc:
            await framed.write_wire(Wire(header, Failure(str(exc))))
        finally:
            await self.sup.release_block(header.name)


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data


# -- startup ------------------------------------------------------------------------


def _read_state(layout: files.Layout) -> State:
    path = layout.state_file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return State()
    try:
        state = read_state(data)
    except WireError as exc:
        raise StartupError(
            f"state file {path} is corrupt ({exc}); not starting. The file is left "
            f"untouched; the previous state is in {path.name}.bak"
        ) from None
    shutil.copyfile(path, path.with_name(path.name + ".started"))
    return state


def _prepare_dirs(layout: files.Layout) -> None:
    (layout.tmpdir / "util").mkdir(parents=True, exist_ok=True)
    fifo = layout.tmpdir / "fifo"
    fifo.mkdir(parents=True, exist_ok=True)
    files.ensure_block_dir(layout)
    # Nothing runs yet: FIFOs and images in tmpdir are leftovers.
    for entry in fifo.iterdir():
        if entry.is_fifo():
            entry.unlink()
    for entry in layout.tmpdir.glob("*.img"):
        entry.unlink()


def make_backends(layout: files.Layout, opts: Options, qemu_cpu: str | None) -> dict[Typ, Backend]:
    """The backends; ``qemu_cpu`` is :func:`qemu_cpu_model`'s answer (None: QEMU's default)."""
    backends: dict[Typ, Backend] = {
        Typ.SOLO5: Solo5Backend(
            layout, search_path=opts.tender_path, drop_path=not opts.no_drop_path
        ),
    }
    try:
        from albatross_py.virt.qemu import QemuBackend, QemuOptions
    except ImportError:  # pragma: no cover - the module ships with the package
        return backends
    overrides: dict[str, object] = {"accel": opts.qemu_accel}
    if qemu_cpu:
        overrides["cpu_model"] = qemu_cpu
    options = QemuOptions.for_host(**overrides)
    backends[Typ.QEMU] = QemuBackend(layout, options)
    return backends


def qemu_cpu_model(layout: files.Layout, opts: Options) -> str | None:
    """``--qemu-cpu``, else the model probed for this host (None without QEMU)."""
    from albatross_py.virt import qemu_host
    from albatross_py.virt.qemu import QEMU_BINARY

    if opts.qemu_cpu:
        return opts.qemu_cpu
    if shutil.which(QEMU_BINARY) is None:
        return None
    return qemu_host.host_cpu_model(QEMU_BINARY, layout.dbdir)


async def start_supervisor(opts: Options) -> tuple[Supervisor, State]:
    """Everything before listening: returns the supervisor and the saved state."""
    layout = files.Layout(opts.tmpdir, opts.dbdir)
    runtime = RuntimeRecord(layout.tmpdir)
    layout.tmpdir.mkdir(parents=True, exist_ok=True)
    cleaned = await trio.to_thread.run_sync(runtime.clean_leftovers, layout)
    if cleaned:
        log.warning("cleaned up after a previous albatrossd: %s", ", ".join(cleaned))
    _prepare_dirs(layout)
    state = _read_state(layout)
    sup = Supervisor(
        layout,
        make_backends(layout, opts, await trio.to_thread.run_sync(qemu_cpu_model, layout, opts)),
        ConsoleLink(socket_path(layout.tmpdir, "console")),
        StatsLink(),
        runtime,
        stop_grace=opts.stop_grace,
        restart_delay=opts.restart_delay,
        events=EventLink(socket_path(layout.tmpdir, "log")),
    )
    for backend in sup.backends.values():
        for command in backend.required_commands():
            if shutil.which(command) is None:
                log.warning("%s not found in PATH", command)
    for name, size in files.scan_block_devices(layout):
        sup.resources.add_block(name, size)
    root = await discover.root_policy(layout.dbdir)
    stored_root = dict(state.policies).get(Name.of_path(ROOT))
    if stored_root is not None and stored_root != root:
        log.warning("root policy changed from %s to %s", stored_root, root)
    log.info("root policy: %s", root)
    # Every request is bounded by the host from now on, whatever the policies say.
    sup.resources.host = discover.host_capacity(root, opts.max_block_size)
    try:
        sup.resources.insert_policy(ROOT, root)
        for name, policy in state.policies:
            if name.path != ROOT:
                sup.resources.insert_policy(name.path, policy)
    except PolicyError as exc:
        raise StartupError(f"policy restore error: {exc}") from None
    try:
        await sup.console.connect()
    except PeerError as exc:
        log.warning("%s; VMs cannot be created until it is", exc)
    else:
        # Only a check: the link connects again for the first VM and sends its
        # Console_add at once (albatross-console drops a connection whose
        # first request does not come within its request timeout).
        await sup.console.close()
    return sup, state


async def restore_unikernels(sup: Supervisor, state: State) -> None:
    """Start the saved VMs by startup priority (ties in trie order), one by one."""
    order = sorted(enumerate(state.unikernels), key=lambda e: (e[1][1].startup_priority, e[0]))
    restored = 0
    for _, (name, config) in order:
        try:
            await sup.create(name, config)
            restored += 1
        except OperationError as exc:
            log.error("failed to restore %s: %s", name, exc)
    log.info("restored %d unikernels and %d policies", restored, len(state.policies))


async def run(
    opts: Options,
    *,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
) -> None:
    sup, state = await start_supervisor(opts)
    listener = systemd_listener() if opts.systemd else None
    if listener is None:
        listener = bind_unix(socket_path(sup.layout.tmpdir, "vmmd"))
    vmmd = Vmmd(sup)
    try:
        async with trio.open_nursery() as nursery:
            sup.attach_nursery(nursery)
            if isinstance(sup.events, EventLink):
                nursery.start_soon(sup.events.run)
            sup.events.emit(ev.Startup("albatrossd"))
            await restore_unikernels(sup, state)
            nursery.start_soon(
                partial(
                    guard.serve,
                    [listener],
                    vmmd.serve_connection,
                    service="vmmd.sock",
                    limits=opts.limits,
                )
            )
            if handle_signals:
                nursery.start_soon(_on_signals, sup, nursery.cancel_scope)
            task_status.started(sup)
    finally:
        with trio.CancelScope(shield=True):
            await sup.shutdown()
            await sup.console.close()
            await sup.stats.close()


async def _on_signals(sup: Supervisor, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s, stopping all unikernels", signal.Signals(signum).name)
            await sup.shutdown()
            scope.cancel()
            return


def setup_logging(verbosity: int, syslog: bool, prog: str = "albatrossd") -> None:
    """Info by default, ``-v`` debug (ours; other libraries' from ``-vvv``), ``-q`` errors."""
    level = {-1: logging.ERROR, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler: logging.Handler
    if syslog:
        handler = logging.handlers.SysLogHandler(address="/dev/log")
    else:
        handler = logging.StreamHandler(sys.stdout)
    install_log_handler(handler, prog, level, verbosity)


def _block_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size in MB {text!r}") from None
    if not 1 <= value <= files.MAX_BLOCK_MB:
        raise argparse.ArgumentTypeError(f"must be from 1 to {files.MAX_BLOCK_MB} MB")
    return value


def parse_args(argv: list[str] | None = None) -> tuple[Options, argparse.Namespace]:
    p = argparse.ArgumentParser(
        prog="albatrossd",
        description="The albatross supervisor: runs VMs under policies delegated by certificates.",
        epilog="example: albatrossd --tmpdir /run/albatross --dbdir /var/lib/albatross -v",
    )
    p.add_argument("--tmpdir", default=DEFAULT_TMPDIR, help="runtime directory (sockets, FIFOs)")
    p.add_argument("--dbdir", default=DEFAULT_DBDIR, help="state and block device directory")
    p.add_argument("--systemd-socket-activation", action="store_true", dest="systemd")
    p.add_argument("--syslog", action="store_true", help="log to syslog instead of stdout")
    p.add_argument("--no-drop-path", action="store_true", help="full name in --name=")
    p.add_argument("--stop-timeout", type=float, default=5.0, help="SIGTERM to SIGKILL (s)")
    p.add_argument("--restart-delay", type=float, default=0.5, help="before a restart (s)")
    p.add_argument("--tender-path", help="search path for solo5 tenders instead of $PATH")
    p.add_argument(
        "--max-block-size",
        type=_block_size,
        metavar="MB",
        help="largest block device one request may create (default: no bound but the "
        "free space of DBDIR/block)",
    )
    p.add_argument(
        "--qemu-cpu",
        metavar="MODEL",
        help="QEMU CPU model for every VM, e.g. qemu64,-pni (default: the first of qemu64 and "
        "kvm64 that is migration-safe, minus what this host lacks, probed once and cached "
        "in DBDIR/qemu-host.json)",
    )
    p.add_argument(
        "--qemu-accel",
        choices=("auto", "kvm", "tcg"),
        default="auto",
        help="QEMU accelerator (default auto: KVM, QEMU's TCG where KVM cannot be "
        "opened); a VM's argv word qemu.accel=kvm|tcg|auto overrides it",
    )
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="debug logging (-vvv: other libraries' debug output too)")  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="errors only")
    guard.add_limit_options(p, stall=True)
    ns = p.parse_args(argv)
    opts = Options(
        tmpdir=Path(ns.tmpdir),
        dbdir=Path(ns.dbdir),
        systemd=ns.systemd,
        no_drop_path=ns.no_drop_path,
        stop_grace=ns.stop_timeout,
        restart_delay=ns.restart_delay,
        tender_path=ns.tender_path,
        limits=guard.limits_from_args(ns),
        max_block_size=ns.max_block_size,
        qemu_cpu=ns.qemu_cpu,
        qemu_accel=ns.qemu_accel,
    )
    return opts, ns


def main(argv: list[str] | None = None) -> int:
    opts, ns = parse_args(argv)
    setup_logging(-1 if ns.quiet else ns.verbose, ns.syslog)
    raise_nofile_limit()
    if os.geteuid() != 0:
        log.warning("not running as root: taps and bridges will not work")
    try:
        trio.run(run, opts)
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
