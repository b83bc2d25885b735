"""The supervisor: albatrossd's state and every lifecycle transaction (DESIGN.md 2).

One :class:`Supervisor` owns the resource map, the running VMs and the
create lock; every state change happens under that lock, here.

* **create** = check (name free, every ancestor's policy, blocks, manifest,
  bridges) -> allocate (FIFO, image file, taps) -> console add -> start ->
  commit to the resource map -> persist -> stats add.  A failure at any step
  undoes the steps before it, so nothing leaks.
* **force-create / restart** = check the new config as if the old VM were
  gone, prepare it, stop the old VM, create the new one; if that fails, the
  old one is created again as it was and the reply says both what failed and
  that the old VM is back (albatross leaves the user with neither).
* Each VM has a monitor task that waits for its exit, frees its host
  resources and, unless a destroy or replace has claimed the exit, applies
  the restart rules.  Restarts wait ``restart_delay`` first, so a boot loop
  cannot spin; a destroy in that window cancels the restart.
* State is persisted atomically on every change albatross persists on
  (create, exit without restart, destroy, policy and block changes).
"""

from __future__ import annotations

import logging
import signal
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import trio

from albatross_py.core.policy import PolicyError
from albatross_py.core.resources import Resources
from albatross_py.core.restart import ExitStatus, after_exit
from albatross_py.daemons.links import ConsoleLink, PeerError, StatsLink, stats_vmmdev
from albatross_py.daemons.runtime import RuntimeRecord
from albatross_py.host import discover, files, net
from albatross_py.host.process import ProcessError, VmProcess
from albatross_py.virt.base import CRASH_EXIT_CODE, Backend, BackendError, Prepared, Relaunch
from albatross_py.wire import State, write_state
from albatross_py.wire import events as ev
from albatross_py.wire.names import ROOT, Name
from albatross_py.wire.types import (
    DEFAULT_SECTOR_SIZE,
    BlockInfo,
    Policy,
    Rusage,
    Typ,
    UnikernelConfig,
    UnikernelInfo,
)

log = logging.getLogger("albatrossd")

#: Before asking albatross-console for the last lines of a VM that ended.
TAIL_SETTLE = 0.02

#: albatross's ``max_int``: the console ring limit for the root path.
MAX_INT = 2**62 - 1


class OperationError(Exception):
    """A command failed; the message goes back as the ``Failure`` text."""


class StateNotSaved(OperationError):
    """The state file could not be written (disk full, I/O error); the
    previous one is untouched (:func:`files.atomic_write`)."""


@dataclass(eq=False)
class Vm:
    """A running VM and everything it holds on the host."""

    name: Name
    config: UnikernelConfig
    prepared: Prepared
    backend: Backend
    process: VmProcess
    taps: tuple[str, ...]
    started: datetime
    exited: trio.Event = field(default_factory=trio.Event)
    status: tuple[ExitStatus, Rusage] | None = None
    #: set by a destroy, replace or shutdown that takes charge of the exit
    claimed_by: str | None = None
    #: host resources (taps, files) already freed
    released: bool = False


Undo = Callable[[], Awaitable[None]]


def _network(vm: Vm) -> list[tuple[str, str]]:
    """(netif, tap) pairs, as Stats_add and events carry them."""
    return [(n.netif, tap) for n, tap in zip(vm.config.bridges, vm.taps, strict=True)]


class EventSink:
    """Where lifecycle events go; this one only logs them at debug level.

    ``emit`` never blocks and never fails: the event log must not be able to
    slow down or break the supervisor.
    """

    def emit(self, event: ev.Event) -> None:
        log.debug("event %s", event)


class Supervisor:
    def __init__(
        self,
        layout: files.Layout,
        backends: dict[Typ, Backend],
        console: ConsoleLink,
        stats: StatsLink,
        runtime: RuntimeRecord,
        *,
        stop_grace: float = 5.0,
        restart_delay: float = 0.5,
        events: EventSink | None = None,
    ) -> None:
        self.layout = layout
        self.backends = backends
        self.console = console
        self.stats = stats
        self.runtime = runtime
        self.stop_grace = stop_grace
        self.restart_delay = restart_delay
        self.events = events or EventSink()
        self.resources: Resources[Vm] = Resources()
        self.lock = trio.Lock()
        self.restarting: dict[Name, trio.CancelScope] = {}
        self.persist = True
        self.shutting_down = False
        self._nursery: trio.Nursery | None = None

    def attach_nursery(self, nursery: trio.Nursery) -> None:
        """The nursery that owns the monitor and restart tasks."""
        self._nursery = nursery

    @property
    def nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("supervisor has no nursery")
        return self._nursery

    # -- persistence ------------------------------------------------------------

    def state(self) -> State:
        return State(
            unikernels=tuple((n, vm.config) for n, vm in self.resources.all_unikernels()),
            policies=tuple(self.resources.all_policies()),
        )

    def dump(self) -> None:
        """Write the state file, or raise :class:`StateNotSaved`.

        A change that can be undone is undone when this fails, so memory and
        file agree and the request is refused (create, policies, blocks); one
        that cannot (a VM that is gone) is reported by :meth:`_dump_after`."""
        if not self.persist or self.shutting_down:
            return
        try:
            files.atomic_write(self.layout.state_file, write_state(self.state()))
        except OSError as exc:
            raise StateNotSaved(
                f"could not save the state file {self.layout.state_file}: {exc.strerror or exc}"
            ) from None
        log.debug("dumped current state")

    def _dump_after(self, done: str) -> str:
        """The reply to a change that cannot be undone: ``done``, and if the
        state could not be saved, that too (the next change saves it)."""
        try:
            self.dump()
        except StateNotSaved as exc:
            log.error("%s, but %s", done, exc)
            return f"{done}, but {exc}; the next change saves it"
        return done

    def _dump_logged(self) -> None:
        """Save the state from a background task: a failure is logged only."""
        try:
            self.dump()
        except StateNotSaved as exc:
            log.error("%s; the next change saves it", exc)

    # -- create ------------------------------------------------------------------

    def _backend(self, typ: Typ) -> Backend:
        try:
            return self.backends[typ]
        except KeyError:
            raise OperationError(f"{typ.name.lower()} unikernels are not supported here") from None

    def _console_limit(self, name: Name) -> int:
        if name.path == ROOT:
            return MAX_INT
        policy = self.resources.find_policy(name.path)
        return 0 if policy is None else policy.unikernels

    async def _prepare(self, name: Name, config: UnikernelConfig) -> tuple[Backend, Prepared]:
        backend = self._backend(config.typ)
        try:
            prepared = await trio.to_thread.run_sync(backend.prepare, name, config)
            for bridge in prepared.host_bridges:
                await net.check_bridge(bridge)
        except (BackendError, net.NetError) as exc:
            raise OperationError(str(exc)) from None
        return backend, prepared

    def _check(self, name: Name, config: UnikernelConfig, *, replace: bool = False) -> None:
        if name.label is None:
            raise OperationError(f"{name} is a path; a unikernel needs a name")
        try:
            if replace:
                self.resources.check_replace(name, config)
            else:
                self.resources.check_create(name, config)
        except PolicyError as exc:
            raise OperationError(str(exc)) from None

    async def _create_locked(
        self,
        name: Name,
        config: UnikernelConfig,
        *,
        dump: bool = True,
        prepared: tuple[Backend, Prepared] | None = None,
    ) -> Vm:
        """The create transaction; the caller holds the lock."""
        if self.resources.find_unikernel(name) is not None:
            raise OperationError("Unikernel with same name is already running")
        self._check(name, config)
        backend, prep = prepared or await self._prepare(name, config)
        undo: list[Undo] = []
        try:
            vm = await self._allocate_and_start(name, config, backend, prep, undo)
            self.resources.insert_unikernel(name, vm)

            async def uncommit() -> None:
                if self.resources.find_unikernel(name) is vm:
                    self.resources.remove_unikernel(name)

            undo.append(uncommit)
            if dump:
                self.dump()
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                for step in reversed(undo):
                    try:
                        await step()
                    except Exception as cleanup_exc:  # keep undoing the rest
                        log.error("cleanup after failed create of %s: %s", name, cleanup_exc)
            if isinstance(exc, PolicyError | OSError | ProcessError | PeerError):
                raise OperationError(f"could not create unikernel: {exc}") from None
            raise
        self.runtime.add(vm)
        self.nursery.start_soon(self._monitor, vm)
        await self._stats_add(vm)
        network = _network(vm)
        blocks = tuple((b.name, b.host_device) for b in config.blocks)
        self.events.emit(
            ev.UnikernelStarted(name, vm.process.pid, tuple(network), blocks, vm.prepared.digest)
        )
        log.info(
            "created %s: pid %d taps %s cmdline %s",
            name, vm.process.pid, list(vm.taps), " ".join(vm.process.argv),
        )  # fmt: skip
        return vm

    async def _allocate_and_start(
        self,
        name: Name,
        config: UnikernelConfig,
        backend: Backend,
        prep: Prepared,
        undo: list[Undo],
    ) -> Vm:
        fifo = self.layout.fifo_file(name)
        files.ensure_fifo(fifo)

        async def remove_fifo() -> None:
            files.remove_file(fifo)

        undo.append(remove_fifo)
        if prep.image is not None:
            image = prep.image
            await trio.to_thread.run_sync(files.write_image, self.layout, name, image)

            async def remove_image() -> None:
                files.remove_image(self.layout, name)

            undo.append(remove_image)
        taps: list[str] = []
        for bridge in prep.host_bridges:
            tap = await net.create_tap(bridge)
            taps.append(tap)

            async def remove_tap(tap: str = tap) -> None:
                await net.destroy_tap(tap)

            undo.append(remove_tap)
        await self._console_add(name)
        process = await backend.start(prep, taps, fifo)

        async def kill() -> None:
            await process.stop(0)

        undo.append(kill)
        try:
            try:
                await backend.wait_ready(prep, process)
            except Relaunch as again:
                # e.g. KVM made no progress: the same VM once more under TCG,
                # on the same taps, FIFO and image (``kill`` stops the new one)
                log.warning("unikernel %s: %s", name, again.reason)
                process.send_signal(signal.SIGKILL)  # not SIGTERM: QEMU would say so on the console
                await process.wait()
                prep = again.prepared
                await self._console_add(name)  # its reader saw the first writer go
                process = await backend.start(prep, taps, fifo)
                await backend.wait_ready(prep, process)
        except BackendError as exc:
            tail = await self._console_tail(name, process)
            raise OperationError(f"could not create unikernel: {exc}{tail}") from None
        return Vm(name, config, prep, backend, process, tuple(taps), process.started)

    async def _console_add(self, name: Name) -> None:
        try:
            await self.console.add(name, self._console_limit(name))
        except PeerError as exc:
            raise OperationError(f"could not create unikernel: console failed: {exc}") from None

    async def _console_tail(self, name: Name, process: VmProcess) -> str:
        """``": <last console lines>"`` of a process that ended, or ``""``.

        The console daemon reads the FIFO to its end on its own time; a
        moment's wait lets it take in what the tender wrote last."""
        await trio.sleep(TAIL_SETTLE)
        try:
            lines = await self.console.tail(name, process.started)
        except Exception:  # a reason is a nicety: never skip what follows for it
            log.exception("reading the last console lines of %s", name)
            return ""
        return ": " + " | ".join(line.strip() for line in lines) if lines else ""

    async def _release_host(self, vm: Vm) -> None:
        """Free what the VM held on the host, once (the monitor or a stop does it)."""
        if vm.released:
            return
        vm.released = True
        for tap in vm.taps:
            try:
                await net.destroy_tap(tap)
            except net.NetError as exc:
                log.error("removing tap %s of %s: %s", tap, vm.name, exc)
        files.remove_image(self.layout, vm.name)
        files.remove_file(self.layout.fifo_file(vm.name))
        vm.backend.cleanup(vm.prepared)
        self.runtime.remove(vm)

    async def _stats_add(self, vm: Vm) -> None:
        await self.stats.add(vm.name, vm.process.pid, _network(vm), stats_vmmdev(vm.prepared))

    async def stats_attached(self) -> None:
        """albatross-stats (re)connected: tell it about every running VM (spec 3.8)."""
        for _, vm in self.resources.all_unikernels():
            await self._stats_add(vm)

    # -- exits and restarts --------------------------------------------------------

    async def _monitor(self, vm: Vm) -> None:
        crash: str | None = None

        async def watchdog(cancel: trio.CancelScope) -> None:
            nonlocal crash
            crash = await vm.backend.watch(vm.prepared, vm.process)
            log.error("unikernel %s failed: %s; killing it", vm.name, crash)
            vm.process.send_signal(signal.SIGKILL)

        async with trio.open_nursery() as watching:
            watching.start_soon(watchdog, watching.cancel_scope)
            raw = await vm.process.wait()
            watching.cancel_scope.cancel()
        status = vm.backend.exit_status(raw[0])
        if crash is not None and vm.claimed_by is None:
            status = ExitStatus.exited(CRASH_EXIT_CODE)
        vm.status = (status, raw[1])
        reason: str | None = crash
        if vm.claimed_by is None and not self.shutting_down:
            # it ended on its own: say why, in its own (or its tender's) words
            tail = (await self._console_tail(vm.name, vm.process)).removeprefix(": ")
            reason = "; ".join(r for r in (crash, tail) if r) or None
        with trio.CancelScope(shield=True):
            await self._release_host(vm)
        vm.exited.set()
        log.info(
            "unikernel %s (PID %d) stopped with %s%s",
            vm.name, vm.process.pid, status, f": {reason}" if reason else "",
        )  # fmt: skip
        self.events.emit(
            ev.UnikernelExited(vm.name, vm.process.pid, status.code, status.signal, reason)
        )
        if vm.claimed_by is not None or self.shutting_down:
            return
        async with self.lock:
            if vm.claimed_by is not None or self.resources.find_unikernel(vm.name) is not vm:
                return
            self.resources.remove_unikernel(vm.name)
            await self.stats.remove(vm.name)
            decision = after_exit(vm.config, status)
            if decision.config is None:
                log.info("unikernel %s exited (%s), not restarting", vm.name, status)
                self._dump_logged()
                return
            log.info("unikernel %s exited (%s), restarting", vm.name, status)
            self.events.emit(ev.UnikernelRestarting(vm.name, f"exited with {status}"))
            scope = trio.CancelScope()
            self.restarting[vm.name] = scope
            # a changed config (retried without --name) is persisted; a plain
            # restart is not (albatross 2.7.0, #249)
            dump = decision.config != vm.config
            self.nursery.start_soon(self._restart_later, vm.name, decision.config, dump, scope)

    async def _restart_later(
        self, name: Name, config: UnikernelConfig, dump: bool, scope: trio.CancelScope
    ) -> None:
        with scope:
            await trio.sleep(self.restart_delay)
            async with self.lock:
                if self.restarting.get(name) is not scope:
                    return
                del self.restarting[name]
                try:
                    await self._create_locked(name, config, dump=dump)
                except OperationError as exc:
                    log.error("restarting %s failed: %s", name, exc)
                    self._dump_logged()

    def _cancel_restart(self, name: Name) -> bool:
        scope = self.restarting.pop(name, None)
        if scope is None:
            return False
        scope.cancel()
        return True

    async def _stop(self, vm: Vm, claimed_by: str) -> None:
        """Stop a VM whose exit the caller handles (destroy, replace, shutdown).

        Self-sufficient: during shutdown the monitor tasks are being cancelled
        with their nursery, so this reaps and releases the VM itself.
        """
        vm.claimed_by = claimed_by
        if vm.status is None:
            try:
                await vm.backend.stop(vm.prepared, vm.process, self.stop_grace)
            except ProcessError as exc:
                log.error("stopping %s: %s", vm.name, exc)
        with trio.CancelScope(shield=True):
            await self._release_host(vm)
        vm.exited.set()

    async def _forget(self, vm: Vm) -> None:
        if self.resources.find_unikernel(vm.name) is vm:
            self.resources.remove_unikernel(vm.name)
        await self.stats.remove(vm.name)

    # -- commands ------------------------------------------------------------------

    async def create(self, name: Name, config: UnikernelConfig, *, force: bool = False) -> str:
        async with self.lock:
            running = self.resources.find_unikernel(name)
            if force and running is not None:
                return await self._replace(running, config)
            if force:
                self._cancel_restart(name)
            await self._create_locked(name, config)
            return "created unikernel"

    async def _replace(self, old: Vm, config: UnikernelConfig) -> str:
        """Stop ``old`` and start ``config`` in its place, or bring ``old`` back."""
        name = old.name
        self._check(name, config, replace=True)
        new = await self._prepare(name, config)  # refuse before touching the old VM
        await self._stop(old, "replace")
        await self._forget(old)
        try:
            await self._create_locked(name, config, prepared=new)
        except OperationError as exc:
            try:
                await self._create_locked(name, old.config)
            except OperationError as again:
                self._dump_logged()
                raise OperationError(
                    f"{exc}; restoring the previous unikernel failed too: {again}"
                ) from None
            raise OperationError(f"{exc}; the previous unikernel was restored") from None
        return "created unikernel"

    async def restart(
        self, name: Name, new_config: Callable[[UnikernelConfig], UnikernelConfig]
    ) -> str:
        async with self.lock:
            vm = self.resources.find_unikernel(name)
            if vm is None:
                return self._not_running(name)
            return await self._replace(vm, new_config(vm.config))

    def _not_running(self, name: Name) -> str:
        if self._cancel_restart(name):
            reply = self._dump_after("destroyed: removed from restarting")
            self.events.emit(ev.UnikernelDestroyed(name))
            return reply
        raise OperationError("destroy: not found")

    async def destroy(self, name: Name) -> str:
        async with self.lock:
            vm = self.resources.find_unikernel(name)
            if vm is None:
                return self._not_running(name)
            await self._stop(vm, "destroy")
            await self._forget(vm)
            reply = self._dump_after("destroyed unikernel")
            self.events.emit(ev.UnikernelDestroyed(name))
            return reply

    async def shutdown(self) -> None:
        """Stop every VM without persisting: the next start restores them all."""
        self.shutting_down = True
        for scope in self.restarting.values():
            scope.cancel()
        async with trio.open_nursery() as nursery:
            for _, vm in self.resources.all_unikernels():
                nursery.start_soon(self._stop, vm, "shutdown")

    # -- queries -------------------------------------------------------------------

    def info(self, name: Name) -> list[tuple[Name, UnikernelInfo]]:
        if name.label is None:
            return [
                (rel, self._info(rel.under(name.path), vm))
                for rel, vm in self.resources.unikernels(name.path)
            ]
        vm = self.resources.find_unikernel(name)
        return [] if vm is None else [(name, self._info(name, vm))]

    def _info(self, name: Name, vm: Vm) -> UnikernelInfo:
        c = vm.config
        blocks = []
        for b in c.blocks:
            state = self.resources.find_block(Name(name.path, b.host_device))
            blocks.append(
                BlockInfo(b.name, b.host_device, b.sector_size or DEFAULT_SECTOR_SIZE,
                          0 if state is None else state.size)
            )  # fmt: skip
        return UnikernelInfo(
            typ=c.typ,
            startup=c.startup,
            fail_behaviour=c.fail_behaviour,
            cpuids=c.cpuids,
            memory=c.memory,
            digest=vm.prepared.digest,
            blocks=tuple(blocks),
            bridges=vm.backend.bridge_infos(vm.prepared, vm.taps),
            argv=c.argv,
            started=vm.started.astimezone(UTC),
            cpus=c.cpus,
            linux_boot_partition=c.linux_boot_partition,
        )

    def get_image(self, name: Name, level: int) -> tuple[bool, bytes]:
        vm = self.resources.find_unikernel(name)
        if vm is None:
            raise OperationError("get: no unikernel found")
        c = vm.config
        if c.compressed:
            if level > 0:
                return True, c.image
            try:
                return False, zlib.decompress(c.image)
            except zlib.error as exc:
                raise OperationError(f"get: cannot decompress the image: {exc}") from None
        if level == 0:
            return False, c.image
        return True, zlib.compress(c.image, min(level, 9))

    # -- policies ------------------------------------------------------------------

    async def add_policy(self, path: tuple[str, ...], policy: Policy) -> str:
        async with self.lock:
            old = self.resources.find_policy(path)
            if old == policy:
                return "no modification of policy"
            try:
                self.resources.insert_policy(path, policy)
            except PolicyError as exc:
                raise OperationError(str(exc)) from None
            try:
                self.dump()
            except StateNotSaved:
                if old is None:
                    self.resources.remove_policy(path)
                else:
                    self.resources.insert_policy(path, old)
                raise
            self.events.emit(ev.PolicyChanged(Name.of_path(path), policy))
            return "added policy"

    async def remove_policy(self, path: tuple[str, ...]) -> str:
        async with self.lock:
            try:
                old = self.resources.remove_policy(path)
            except PolicyError as exc:
                raise OperationError(str(exc)) from None
            try:
                self.dump()
            except StateNotSaved:
                self.resources.insert_policy(path, old)
                raise
            self.events.emit(ev.PolicyChanged(Name.of_path(path), None))
            return "removed policy"

    # -- block devices ---------------------------------------------------------------

    def _block_name(self, name: Name) -> Name:
        if name.label is None:
            raise OperationError(f"{name} is a path; a block device needs a name")
        return name

    async def add_block(self, name: Name, size: int, data: bytes | None = None,
                        compressed: bool = False) -> str:  # fmt: skip
        name = self._block_name(name)
        async with self.lock:
            if self.resources.find_block(name) is not None:
                raise OperationError("block device with same name already exists")
            try:
                free = await trio.to_thread.run_sync(discover.free_space_mb, self.layout.block_dir)
                self.resources.check_block(name, size, free=free)
            except PolicyError as exc:
                raise OperationError(str(exc)) from None
            except OSError as exc:
                raise OperationError(f"cannot measure the block directory: {exc}") from None
            await self._create_block_file(name, size, data, compressed)
            self.resources.add_block(name, size)
            try:
                self.dump()
            except StateNotSaved:
                self.resources.remove_block(name)
                try:
                    await trio.to_thread.run_sync(files.destroy_block, self.layout, name)
                except (OSError, files.HostFileError) as undo_exc:
                    log.error("removing block device %s after a failed save: %s", name, undo_exc)
                raise
            self.events.emit(ev.BlockChanged(name, size))
            return "added block device"

    async def _create_block_file(
        self, name: Name, size: int, data: bytes | None, compressed: bool
    ) -> None:
        """Create the device's file (filled with ``data``), or leave nothing.

        create_block makes nothing when it fails, so only a failed fill has a
        file to remove; if that removal fails too, it is logged and named in
        the error, which still leads with the first failure.
        """
        try:
            await trio.to_thread.run_sync(files.create_block, self.layout, name, size)
        except (OSError, files.HostFileError) as exc:
            raise OperationError(f"could not create block device: {exc}") from None
        if not data:
            return
        try:
            await files.set_block(self.layout, name, _one(data), size_mb=size,
                                  compressed=compressed)  # fmt: skip
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                try:
                    await trio.to_thread.run_sync(files.destroy_block, self.layout, name)
                except (OSError, files.HostFileError) as undo_exc:
                    log.error("removing block device %s after a failed fill: %s", name, undo_exc)
                    if isinstance(exc, OSError | files.HostFileError):
                        raise OperationError(
                            f"could not fill block device: {exc}; removing it failed too:"
                            f" {undo_exc}"
                        ) from None
            if isinstance(exc, OSError | files.HostFileError):
                raise OperationError(f"could not fill block device: {exc}") from None
            raise

    async def remove_block(self, name: Name) -> str:
        name = self._block_name(name)
        async with self.lock:
            state = self.resources.find_block(name)
            if state is None:
                raise OperationError("remove block: not found")
            if state.active:
                raise OperationError("remove block: is in use")
            self.resources.remove_block(name)
            try:
                files.destroy_block(self.layout, name)
            except (OSError, files.HostFileError) as exc:  # gone already: forgotten all the same
                log.warning("removing the file of block device %s: %s", name, exc)
            reply = self._dump_after("removed block")
            self.events.emit(ev.BlockChanged(name, None))
            return reply

    async def claim_block(self, name: Name, what: str) -> int:
        """Mark an idle block device busy for a set or dump; return its size."""
        name = self._block_name(name)
        async with self.lock:
            state = self.resources.find_block(name)
            if state is None:
                raise OperationError(f"{what} block: not found")
            if state.active:
                raise OperationError(f"{what} block: is in use")
            self.resources.set_block_active(name)
            return state.size

    async def release_block(self, name: Name) -> None:
        async with self.lock:
            state = self.resources.find_block(name)
            if state is not None and state.active:
                self.resources.set_block_inactive(name)

    def block_devices(self, name: Name) -> list[tuple[Name, int, bool]]:
        if name.label is None:
            return [(n, s.size, s.active) for n, s in self.resources.block_devices(name.path)]
        state = self.resources.find_block(name)
        return [] if state is None else [(name, state.size, state.active)]


async def _one(data: bytes):  # type: ignore[no-untyped-def]
    yield data


def block_path(layout: files.Layout, name: Name) -> Path:
    return layout.block_file(name)
