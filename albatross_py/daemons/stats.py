"""``albatross-stats``: measure running VMs and stream the numbers (spec 6.3, 3.8).

Two conversations:

* **to albatrossd** (``<tmpdir>/util/vmmd.sock``; we connect, retrying every
  second, and reconnect when it drops): we send ``Stats_initial`` (header
  ``:``, sequence 0) and expect ``Success empty``; from then on albatrossd
  sends ``Stats_add``/``Stats_remove`` on that connection and we answer each
  with ``Success "added"``/``"removed"`` under its own header.  A new
  ``Stats_initial`` conversation starts from an empty VM table, since
  albatrossd re-adds every running VM on it;
* **from subscribers** (``<tmpdir>/util/stat.sock``): ``Stats_subscribe``
  gets ``"subscribed"``, then every interval one ``Data statistics`` per VM
  at or below the subscribed name, with header {subscriber's version,
  sequence 0, the VM's name relative to the subscriber's path}.  The
  subscription lasts until the client sends anything or goes away.
  ``Stats_add``/``Stats_remove`` are also accepted here (as albatross does,
  handy for debugging); ``Stats_initial`` is refused.

Every ``--interval`` seconds the VMs that have a subscriber are measured
(``/proc`` via :mod:`albatross_py.host.procstats`, tap counters via netlink,
both in worker threads); a VM whose process is gone is dropped.  Several
subscribers per name are allowed (albatross's #281 fixed, see
:mod:`albatross_py.core.stats`).  A slow subscriber never holds up the
others: each has a bounded queue drained by its own writer task; data that
does not fit is dropped for that subscriber, and a write that takes longer
than :data:`WRITE_TIMEOUT` closes it.

**KVM counters of QEMU VMs** (``vmm`` in the statistics).  albatross fills
``vmm-stats`` only on FreeBSD, from the bhyve debug counters of the vmm
device named in ``Stats_add``'s ``vmmdev`` (``solo5-<pid>``); on Linux it
sends ``vmmdev = ""`` and no counters.  Our convention: for a QEMU VM
albatrossd sends ``vmmdev = "qmp:<absolute path of the VM's QMP socket>"``
(solo5 VMs keep ``""``).  For such a VM, on every tick in which it has a
subscriber, we open its QMP socket, run ``query-stats`` for target ``vm`` and
target ``vcpu``, and close the connection again at once: QEMU serves one QMP
client at a time and albatrossd's watchdog polls the same socket every
second.  Only provider ``kvm`` is used; the VM's counters are taken as they
are, each vCPU counter is summed over the vCPUs (a vCPU name that clashes
with a VM one becomes ``vcpu_<name>``); only integers are kept (histograms
and booleans are skipped), as (name, value) pairs in QEMU's order.  The
whole exchange is bounded by :data:`QMP_TIMEOUT` (at most half the interval)
and each VM's data is sent as soon as it is gathered, so a stuck QEMU delays
nobody else; when QMP fails or has no KVM counters (TCG) ``vmm`` is simply
absent.  Reading the socket needs the permission to connect to it (QEMU
creates it with albatrossd's umask).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import trio

from albatross_py.core.stats import StatsTable, TrackedVm
from albatross_py.daemons.common import (
    Subscriber,
    daemon_parser,
    drop_root,
    listen,
    serve_until_signalled,
    setup_logging,
)
from albatross_py.host import net, procstats
from albatross_py.transport import (
    Expect,
    FramedStream,
    connect_unix,
    guard,
    socket_path,
)
from albatross_py.virt.qmp import QmpError, StatsResult, open_qmp
from albatross_py.wire import WireError, encode_wire, frame
from albatross_py.wire.messages import (
    DataStatistics,
    Failure,
    Header,
    ReplyEmpty,
    ReplyString,
    StatsAdd,
    StatsInitial,
    StatsRemove,
    StatsSubscribe,
    Wire,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import IfData, Statistics

log = logging.getLogger("albatross.stats")

#: albatross's default gathering interval (``--interval``), seconds.
DEFAULT_INTERVAL = 10.0

#: albatross-stats retries the connection to albatrossd every second (spec 2.4).
VMMD_RETRY = 1.0

#: Largest frame we read: stats commands are tens of bytes plus a few tap names.
MAX_COMMAND_FRAME = 64 * 1024

#: Data messages queued per subscriber; beyond that a round is dropped for it.
SUBSCRIBER_QUEUE = 256

#: Longest a single write to a subscriber may take before we close it.
WRITE_TIMEOUT = 60.0

#: Longest albatrossd may take to answer ``Stats_initial``.
INITIAL_TIMEOUT = 10.0

#: Longest the KVM counters of one QEMU VM may take (connect, negotiate, two
#: queries); capped at half the interval.  QMP answers in milliseconds.
QMP_TIMEOUT = 2.0

#: ``vmmdev`` prefix albatrossd uses for QEMU VMs: the rest is the QMP socket.
QMP_VMMDEV_PREFIX = "qmp:"

#: The ``query-stats`` provider we read.
KVM_PROVIDER = "kvm"

_I64_MIN, _I64_MAX, _U64 = -(1 << 63), (1 << 63) - 1, 1 << 64


class _TaskStatus(Protocol):
    def started(self, value: None = None) -> None: ...


# -- gathering (blocking; runs in worker threads) -----------------------------------------


def resolve_taps(network: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Keep the (netif, tap) pairs whose tap exists, as albatross's ``if_nametoindex``."""
    kept = []
    for netif, tap in network:
        try:
            socket.if_nametoindex(tap)
        except (OSError, ValueError):
            log.debug("failed to get ifindex for %r, dropping it", tap)
            continue
        kept.append((netif, tap))
    return tuple(kept)


def gather_sync(
    vm: TrackedVm, counters: Mapping[str, net.LinkCounters] | None = None
) -> Statistics:
    """One VM's statistics; :class:`procstats.ProcessGone` when its process is gone.

    ``counters`` is a snapshot of every tap's counters taken once for the whole
    tick (:func:`~albatross_py.host.net.counters_many_sync`); without it each
    tap is asked over netlink.  Every IfData's ``bridge`` is the unikernel-side
    netif, as albatross reports it.
    """
    rusage, kinfo = procstats.process_usage(vm.pid)
    ifdata: list[IfData] = []
    for netif, tap in vm.network:
        try:
            link = counters[tap] if counters is not None else net.counters_sync(tap)
            ifdata.append(link.ifdata(netif))
        except (KeyError, net.NetError, OSError) as exc:
            log.warning("failed to get ifdata for %s (%s): %r", tap, vm.name, exc)
    return Statistics(rusage=rusage, ifdata=tuple(ifdata), vmm=None, kinfo_mem=kinfo)


# -- KVM counters over QMP ----------------------------------------------------------------

VmmPairs = tuple[tuple[str, int], ...]


def qmp_socket_of(vmmdev: str) -> str | None:
    """The QMP socket named by a ``vmmdev`` of ``"qmp:<absolute path>"``, else None."""
    if not vmmdev.startswith(QMP_VMMDEV_PREFIX):
        return None
    path = vmmdev[len(QMP_VMMDEV_PREFIX) :]
    return path if path.startswith("/") and "\0" not in path else None


def _counter(value: Any) -> int | None:
    """An integer counter as the wire's Int64 (a u64 above 2^63 keeps its bits), or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None  # histograms are lists, "instant" flags are booleans
    if _I64_MAX < value < _U64:
        return value - _U64
    return value if _I64_MIN <= value <= _I64_MAX else None


def kvm_counters(vm: Iterable[StatsResult], vcpus: Iterable[StatsResult]) -> VmmPairs:
    """Flatten ``query-stats`` answers (target ``vm``, target ``vcpu``) into
    (name, value) pairs: provider ``kvm`` only, integers only, the VM's
    counters first, then each vCPU counter summed over the vCPUs."""
    out: dict[str, int] = {}
    for entry in vm:
        if entry.provider != KVM_PROVIDER:
            continue
        for key, value in entry.values.items():
            if (v := _counter(value)) is not None:
                out.setdefault(key, v)
    summed: dict[str, int] = {}
    for entry in vcpus:
        if entry.provider != KVM_PROVIDER:
            continue
        for key, value in entry.values.items():
            if isinstance(value, bool) or not isinstance(value, int):
                continue
            summed[key] = summed.get(key, 0) + value
    for key, total in summed.items():
        if (v := _counter(total)) is not None:
            out[f"vcpu_{key}" if key in out else key] = v
    return tuple(out.items())


async def query_kvm_counters(path: str, timeout: float = QMP_TIMEOUT) -> VmmPairs:
    """One short QMP conversation (open, two ``query-stats``, close) within ``timeout``.

    Raises :class:`QmpError` (:class:`~albatross_py.virt.qmp.QmpTimeout` when
    QEMU is too slow), ``OSError`` or ``trio.BrokenResourceError``.
    """
    try:
        with trio.fail_after(timeout):
            async with open_qmp(path, timeout=timeout) as qmp:
                vm = await qmp.query_stats("vm", timeout=timeout)
                vcpus = await qmp.query_stats("vcpu", timeout=timeout)
    except trio.TooSlowError:
        raise QmpError(f"no KVM counters from {path} within {timeout} s") from None
    return kvm_counters(vm, vcpus)


# -- the daemon -----------------------------------------------------------------------------


class StatsDaemon:
    """The stats service; decisions in :class:`~albatross_py.core.stats.StatsTable`."""

    def __init__(
        self,
        tmpdir: str | Path,
        *,
        interval: float = DEFAULT_INTERVAL,
        queue_size: int = SUBSCRIBER_QUEUE,
        gather: Callable[[TrackedVm], Statistics] = gather_sync,
        resolve: Callable[[Sequence[tuple[str, str]]], tuple[tuple[str, str], ...]] = (
            resolve_taps
        ),
        query_vmm: Callable[[str, float], Awaitable[VmmPairs]] = query_kvm_counters,
        vmm_timeout: float | None = None,
        limits: guard.Limits | None = None,
    ) -> None:
        self.tmpdir = Path(tmpdir)
        self.limits = limits or guard.Limits()
        self.interval = interval
        self.queue_size = queue_size
        self.table: StatsTable[Subscriber] = StatsTable()
        self._gather = gather
        self._resolve = resolve
        self._query_vmm = query_vmm
        #: Bound on one VM's KVM counters: :data:`QMP_TIMEOUT`, at most half the interval.
        self.vmm_timeout = (
            vmm_timeout if vmm_timeout is not None else min(QMP_TIMEOUT, interval / 2)
        )
        #: VMs whose KVM counters failed last time (warned once, then quiet).
        self._vmm_failing: set[Name] = set()
        #: Set while a Stats_initial conversation with albatrossd is live.
        self.vmmd_connected = False

    # -- the whole daemon ----------------------------------------------------------------
    async def run(
        self,
        listener: trio.SocketListener,
        *,
        task_status: _TaskStatus = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``listener``, talk to albatrossd and tick, until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.serve, listener)
            nursery.start_soon(self.vmmd_loop)
            nursery.start_soon(self.ticker)
            task_status.started()

    async def ticker(self) -> None:
        while True:
            await trio.sleep(self.interval)
            await self.tick()

    def _gather_all(self, vms: list[TrackedVm]) -> list[Statistics | BaseException]:
        """Every VM of a tick, in one worker thread, with one counters snapshot.

        A thread hop and a netlink session per VM cost seconds of CPU per tick
        for a thousand VMs; /proc reads and one /proc/net/dev read do not.
        """
        counters = None
        if self._gather is gather_sync:
            try:
                counters = net.counters_many_sync({tap for vm in vms for _, tap in vm.network})
            except OSError as exc:
                log.warning("cannot read interface counters: %s", exc)
        results: list[Statistics | BaseException] = []
        for vm in vms:
            try:
                if counters is not None:
                    results.append(gather_sync(vm, counters))
                else:
                    results.append(self._gather(vm))
            except Exception as exc:  # reported per VM by the caller
                results.append(exc)
        return results

    async def tick(self) -> None:
        """One round: measure every watched VM and queue the data for its subscribers."""
        watched = list(self.table.watched())
        if not watched:
            return
        results = await trio.to_thread.run_sync(self._gather_all, [vm for vm, _ in watched])
        async with trio.open_nursery() as nursery:
            for (vm, subs), result in zip(watched, results, strict=True):
                nursery.start_soon(self._measure, vm, subs, result)

    async def _measure(
        self,
        vm: TrackedVm,
        subs: list[tuple[Subscriber, Name]],
        result: Statistics | BaseException,
    ) -> None:
        """Add KVM counters if any and queue the data (a slow QEMU delays only itself)."""
        try:
            if isinstance(result, BaseException):
                raise result
            stats = result
        except procstats.ProcessGone as exc:
            log.info("removing %s: %s", vm.name, exc)
            # Gone; but only forget it if albatrossd has not re-added it meanwhile.
            if self.table.vm(vm.name) is vm:
                self.table.remove(vm.name)
                self._vmm_failing.discard(vm.name)
            return
        except Exception as exc:  # a gatherer bug must not kill the daemon
            log.error("gathering statistics of %s failed: %r", vm.name, exc)
            return
        if stats.vmm is None:
            vmm = await self._vmm(vm)
            if vmm:
                stats = dataclasses.replace(stats, vmm=vmm)
        for sub, relative in subs:
            wire = Wire(Header(sub.version, 0, relative), DataStatistics(stats))
            if not sub.offer(wire) and sub.dropped and sub.dropped % 100 == 1:
                log.info("subscriber at %s is slow: %d rounds dropped", sub.name, sub.dropped)

    async def _vmm(self, vm: TrackedVm) -> VmmPairs | None:
        """The VM's KVM counters if its ``vmmdev`` names a QMP socket; None on failure."""
        path = qmp_socket_of(vm.vmmdev)
        if path is None:
            return None
        key = vm.name
        try:
            with trio.move_on_after(self.vmm_timeout * 2):  # even if query_vmm ignores it
                pairs = await self._query_vmm(path, self.vmm_timeout)
                self._vmm_failing.discard(key)
                return pairs or None
            raise QmpError(f"no KVM counters from {path} within {self.vmm_timeout} s")
        except (QmpError, OSError, trio.BrokenResourceError) as exc:
            (log.debug if key in self._vmm_failing else log.warning)(
                "no KVM counters for %s: %s", vm.name, exc
            )
            self._vmm_failing.add(key)
            return None

    # -- the table (both sockets) ----------------------------------------------------------
    def handle_add(self, name: Name, cmd: StatsAdd) -> Failure | ReplyString:
        if name.is_path:
            return Failure("path used instead of name")
        if cmd.pid < 1:
            return Failure(f"invalid pid {cmd.pid}")
        vm = TrackedVm(name, cmd.pid, cmd.vmmdev, self._resolve(cmd.network))
        old = self.table.add(vm)
        if old is not None:
            log.warning(
                "stats add for %s, which was already there (pid %d): replaced", name, old.pid
            )
        self._vmm_failing.discard(name)
        log.info("adding %s pid %d %s %r", name, cmd.pid, list(vm.network), vm.vmmdev)
        return ReplyString("added")

    def handle_remove(self, name: Name) -> ReplyString:
        self._vmm_failing.discard(name)
        if self.table.remove(name) is not None:
            log.info("removing %s", name)
        return ReplyString("removed")

    def _table_command(self, wire: Wire) -> Failure | ReplyString | None:
        """Reply to add/remove; None for anything else."""
        match wire.payload:
            case StatsAdd():
                return self.handle_add(wire.header.name, wire.payload)
            case StatsRemove():
                return self.handle_remove(wire.header.name)
        return None

    # -- albatrossd --------------------------------------------------------------------------
    async def vmmd_loop(self) -> None:
        """Keep a Stats_initial conversation with albatrossd going, forever."""
        path = socket_path(self.tmpdir, "vmmd")
        warned = False
        while True:
            try:
                stream = await connect_unix(path)
            except OSError as exc:
                # albatross logs every attempt; once is enough to say why we wait.
                (log.debug if warned else log.warning)("cannot connect to %s: %s", path, exc)
                warned = True
                await trio.sleep(VMMD_RETRY)
                continue
            warned = False
            try:
                await self._vmmd_conversation(FramedStream(stream, MAX_COMMAND_FRAME))
            except (trio.BrokenResourceError, trio.ClosedResourceError, WireError) as exc:
                log.warning("connection to albatrossd lost: %s", exc)
            finally:
                self.vmmd_connected = False
                await trio.aclose_forcefully(stream)
            await trio.sleep(VMMD_RETRY)

    async def _vmmd_conversation(self, conn: FramedStream) -> None:
        header = Header(name=Name())
        await conn.write_wire(Wire(header, StatsInitial()))
        reply = None
        with trio.move_on_after(INITIAL_TIMEOUT):
            reply = await conn.read_wire()
        if reply is None:
            log.error("albatrossd did not answer stats initial")
            return
        if not (isinstance(reply.payload, ReplyEmpty) and reply.header.sequence == header.sequence):
            log.error("unexpected reply to stats initial: %s", reply)
            return
        log.info("connected to albatrossd")
        self.table.clear_vms()
        self.vmmd_connected = True
        while True:
            wire = await conn.read_wire()
            if wire is None:
                log.warning("albatrossd closed the stats connection")
                return
            answer = self._table_command(wire)
            if answer is None:
                log.error("unexpected %s from albatrossd", type(wire.payload).__name__)
                answer = Failure("unexpected command")
            await conn.write_wire(Wire(wire.header, answer))

    # -- stat.sock -----------------------------------------------------------------------------
    async def serve(
        self,
        listener: trio.SocketListener,
        *,
        task_status: _TaskStatus = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections until cancelled; closes ``listener`` at the end."""
        await guard.serve(
            [listener],
            self._connection,
            service="stat.sock",
            limits=self.limits,
            task_status=task_status,
        )

    async def _connection(self, connection: guard.Connection) -> None:
        conn = connection.framed(max_frame=MAX_COMMAND_FRAME)
        try:
            while True:
                try:
                    wire = await conn.read_wire()
                except WireError as exc:
                    log.warning("bad input: %s", exc)
                    await self._send(conn, Wire(Header(), Failure(str(exc))))
                    return
                if wire is None:
                    return
                if isinstance(wire.payload, StatsSubscribe):
                    await self._subscribe(conn, wire.header)
                    return
                answer = self._table_command(wire)
                if answer is None:
                    if isinstance(wire.payload, StatsInitial):
                        answer = Failure("unexpected message initial")
                    else:
                        log.warning("unexpected %s", type(wire.payload).__name__)
                        answer = Failure("unexpected command")
                if not await self._send(conn, Wire(wire.header, answer)):
                    return
                if isinstance(answer, Failure):
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.info("connection lost: %s", exc)

    async def _send(self, conn: FramedStream, *wires: Wire) -> bool:
        """Write wires in one go; False when the peer is gone or too slow."""
        data = b"".join(frame(encode_wire(wire)) for wire in wires)
        with trio.move_on_after(WRITE_TIMEOUT):
            try:
                await conn.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
            return True
        log.info("write to a stats subscriber timed out")
        return False

    async def _subscribe(self, conn: FramedStream, header: Header) -> None:
        queue, pending = trio.open_memory_channel[Wire](self.queue_size)
        sub = Subscriber(header.name, header.version, queue)
        for kicked in self.table.subscribe(header.name, sub):
            log.info("too many subscribers at %s: closing the oldest", header.name)
            kicked.close()
        log.info("subscribed at %s", header.name)
        try:
            with sub.scope:
                if not await self._send(conn, Wire(header, ReplyString("subscribed"))):
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, conn, pending, nursery.cancel_scope)
                    with contextlib.suppress(
                        trio.BrokenResourceError, trio.ClosedResourceError, WireError
                    ):
                        await conn.read_chunk(Expect.QUIET)  # a subscriber is quiet
                    nursery.cancel_scope.cancel()
        finally:
            self.table.unsubscribe(header.name, sub)
            queue.close()
            pending.close()

    async def _pump(
        self,
        conn: FramedStream,
        pending: trio.MemoryReceiveChannel[Wire],
        done: trio.CancelScope,
    ) -> None:
        async for wire in pending:
            batch = [wire]
            with contextlib.suppress(trio.WouldBlock):
                while len(batch) < self.queue_size:
                    batch.append(pending.receive_nowait())
            if not await self._send(conn, *batch):
                break
        done.cancel()


# -- the executable ---------------------------------------------------------------------------


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid interval {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("the interval must be positive")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = daemon_parser(
        "albatross-stats",
        "Gathers statistics (CPU, memory, network) of the unikernels albatrossd "
        "reports and streams them to subscribers.",
        "example: albatross-stats --tmpdir /run/albatross --interval 10",
    )
    parser.add_argument(
        "--interval",
        type=_interval,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help="interval between statistics gatherings (default %(default)s)",
    )
    return parser.parse_args(argv)


async def run(
    tmpdir: str,
    interval: float,
    systemd: bool,
    user: str | None = None,
    limits: guard.Limits | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; the exit status."""
    listener = listen("stats", tmpdir, systemd)
    if listener is None:
        return 1
    drop_root(user)
    daemon = StatsDaemon(tmpdir, interval=interval, limits=limits)
    await serve_until_signalled(daemon.run, listener)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("albatross-stats", args.verbose, args.quiet)
    return trio.run(
        run,
        args.tmpdir,
        args.interval,
        args.systemd_socket_activation,
        args.user,
        guard.limits_from_args(args),
    )


if __name__ == "__main__":
    sys.exit(main())
