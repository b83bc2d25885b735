"""The virtualizer interface: what the supervisor asks of every hypervisor backend.

After Ciao's launcher (DESIGN.md section 3), a backend knows one hypervisor
and nothing about policies or tenants.  Creating a VM is split so that the
supervisor can check everything before it changes anything:

1. :meth:`Backend.prepare` checks what needs no side effects (the image's
   ABI and manifest, the tender, device names) and returns a
   :class:`Prepared` with everything later steps need;
2. the supervisor allocates (FIFO, taps, image file) through ``host``;
3. :meth:`Backend.command_line` builds the exact argv from the prepared VM
   and the taps it got;
4. :meth:`Backend.start` spawns it with the console FIFO as stdio and
   :meth:`Backend.stop` ends it; both delegate to ``host.process``.

``prepare`` may block briefly (solo5 asks the tender for its ABI version), so
trio callers run it with ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import trio

from albatross_py.host import process
from albatross_py.host.files import Layout
from albatross_py.wire.names import Name
from albatross_py.wire.types import BridgeInfo, Rusage, Typ, UnikernelConfig

#: The exit code reported for a VM that failed without its process exiting
#: (a QEMU VM paused by a KVM emulation failure): not 1 or 60-64, so
#: restart-on-failure applies to it as to any crash.
CRASH_EXIT_CODE = 255

#: How long a VM gets between SIGTERM and SIGKILL.  albatross only sends
#: SIGTERM; a tender handles it at once, so a few seconds is generous.
DEFAULT_STOP_GRACE = 5.0


class BackendError(Exception):
    """A VM cannot be prepared or started; the message is albatross's wording."""


class Relaunch(BackendError):
    """Raised by :meth:`Backend.wait_ready`: this start cannot work, but the
    same VM started as ``prepared`` says may (e.g. under TCG where KVM made no
    progress).  The supervisor stops the process and starts ``prepared`` once
    in its place, keeping everything else it allocated."""

    def __init__(self, prepared: Prepared, reason: str) -> None:
        super().__init__(reason)
        self.prepared = prepared
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked VM, ready for allocation and start.

    ``image`` is what the supervisor must write to ``layout.image_file(name)``
    before the start (None for backends that boot from elsewhere);
    ``host_bridges`` are the bridges that need one tap each, in config order;
    ``digest`` is what ``info`` reports (SHA-256 of the image for solo5).
    """

    name: Name
    config: UnikernelConfig
    digest: bytes
    image: bytes | None
    host_bridges: tuple[str, ...]


class Backend(abc.ABC):
    """One hypervisor.  Subclasses set :attr:`typ` and implement the two abstract methods."""

    typ: ClassVar[Typ]
    #: The VM's console is its stdio (albatross's FIFO on fds 0-2).
    console_on_stdio: ClassVar[bool] = True

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def required_commands(self) -> tuple[str, ...]:
        """Programs the daemon checks for at startup (albatross's ``check_commands``)."""
        return ()

    @abc.abstractmethod
    def prepare(self, name: Name, config: UnikernelConfig) -> Prepared:
        """Check the config and image without side effects; raise :class:`BackendError`."""

    @abc.abstractmethod
    def command_line(
        self, prepared: Prepared, taps: Sequence[str], fifo: Path | None = None
    ) -> list[str]:
        """The exact argv; ``taps`` match ``prepared.host_bridges`` one to one."""

    def bridge_infos(self, prepared: Prepared, taps: Sequence[str]) -> tuple[BridgeInfo, ...]:
        """What ``info`` reports per network device (unikernel side, bridge, MAC)."""
        return ()

    def cleanup(self, prepared: Prepared) -> None:
        """Remove backend-specific leftovers after the VM exited (the supervisor
        removes the image, FIFO and taps itself).  Default: nothing."""
        return None

    async def start(
        self,
        prepared: Prepared,
        taps: Sequence[str],
        fifo: Path,
        *,
        fifo_timeout: float = process.FIFO_READER_TIMEOUT,
        rdwr_fallback: bool = False,
    ) -> process.VmProcess:
        """Spawn the VM with the console FIFO as stdio (see :func:`process.spawn`)."""
        if len(taps) != len(prepared.host_bridges):
            raise BackendError(f"{len(prepared.host_bridges)} taps needed, {len(taps)} given")
        argv = self.command_line(prepared, taps, fifo)
        return await process.spawn(
            argv, fifo, fifo_timeout=fifo_timeout, rdwr_fallback=rdwr_fallback
        )

    async def wait_ready(self, prepared: Prepared, vm: process.VmProcess) -> None:
        """Return once the VM is past its tender's own start-up checks; raise
        :class:`BackendError` if the process exited before, or :class:`Relaunch`
        to be started once more another way.  Default: at once (a solo5 tender
        has no way to say so)."""
        return None

    async def stop(
        self, prepared: Prepared, vm: process.VmProcess, grace: float = DEFAULT_STOP_GRACE
    ) -> tuple[process.ExitStatus, Rusage]:
        """End the VM: SIGTERM, then SIGKILL after ``grace`` (albatross sends SIGTERM)."""
        return await vm.stop(grace)

    def exit_status(self, status: process.ExitStatus) -> process.ExitStatus:
        """The VM's exit as the restart rules should see it (default: the process's)."""
        return status

    async def watch(self, prepared: Prepared, vm: process.VmProcess) -> str:
        """Return a reason when the VM has failed although its process lives on.

        The supervisor then kills the process and treats the exit as a crash
        (:data:`CRASH_EXIT_CODE`), so restart rules apply.  Default: never.
        """
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover


__all__ = [
    "CRASH_EXIT_CODE",
    "DEFAULT_STOP_GRACE",
    "Backend",
    "BackendError",
    "Prepared",
    "Relaunch",
]
