"""VM processes: spawn with the console FIFO as stdio, wait for the exit with rusage, stop.

albatross starts every tender with stdin, stdout and stderr all set to the
unikernel's console FIFO opened ``O_WRONLY|O_APPEND`` (spec 5.7), waits for it
with ``waitpid`` and destroys it with SIGTERM.  Here a VM is a direct child of
the daemon (the sandbox's init reaps orphans only every few seconds), watched
through a pidfd so that trio can wait for it without a SIGCHLD handler, and
reaped with ``wait4`` so its resource usage comes back with its exit status.
Signals go through the pidfd as well, so a recycled PID is never hit.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import trio

from albatross_py.core.restart import ExitStatus
from albatross_py.wire.types import Rusage, Timeval

#: How long to wait for the console daemon to open the FIFO: it does so on
#: ``Console_add``, which albatrossd sends just before starting the VM.
FIFO_READER_TIMEOUT = 5.0
#: Polling step while waiting for a FIFO reader (open with O_NONBLOCK fails
#: with ENXIO until one exists; a blocking open could not be cancelled).
_FIFO_POLL = 0.01
#: After SIGKILL, a process can still take a moment to be torn down (a VM
#: unmapping gigabytes); past this we report it as stuck rather than hang.
KILL_TIMEOUT = 10.0
#: Signals CPython ignores; ignored dispositions survive exec, so reset them.
_RESET_SIGNALS = frozenset(
    s for s in (getattr(signal, "SIGPIPE", None), getattr(signal, "SIGXFSZ", None)) if s
)


class ProcessError(Exception):
    """Starting or stopping a VM process failed; the message is for the client."""


def exit_status_of_wait(status: int) -> ExitStatus:
    """A ``wait4`` status as the core's :class:`ExitStatus`."""
    if os.WIFEXITED(status):
        return ExitStatus.exited(os.WEXITSTATUS(status))
    if os.WIFSIGNALED(status):
        return ExitStatus.signalled(os.WTERMSIG(status))
    if os.WIFSTOPPED(status):
        return ExitStatus.stopped(os.WSTOPSIG(status))
    raise ValueError(f"wait status {status:#x} is neither an exit nor a signal")


def _timeval(seconds: float) -> Timeval:
    whole = int(seconds)
    return Timeval(whole, round((seconds - whole) * 1_000_000))


def rusage_of(ru: resource.struct_rusage) -> Rusage:
    return Rusage(
        utime=_timeval(ru.ru_utime),
        stime=_timeval(ru.ru_stime),
        maxrss=ru.ru_maxrss,
        ixrss=ru.ru_ixrss,
        idrss=ru.ru_idrss,
        isrss=ru.ru_isrss,
        minflt=ru.ru_minflt,
        majflt=ru.ru_majflt,
        nswap=ru.ru_nswap,
        inblock=ru.ru_inblock,
        outblock=ru.ru_oublock,
        msgsnd=ru.ru_msgsnd,
        msgrcv=ru.ru_msgrcv,
        nsignals=ru.ru_nsignals,
        nvcsw=ru.ru_nvcsw,
        nivcsw=ru.ru_nivcsw,
    )


async def open_fifo_writer(
    fifo: Path, *, timeout: float = FIFO_READER_TIMEOUT, rdwr_fallback: bool = False
) -> int:
    """Open the console FIFO for the VM's stdio: ``O_WRONLY|O_APPEND``, blocking.

    A write-only open blocks until a reader (the console daemon) has the
    FIFO open, so we poll a non-blocking open until one appears or
    ``timeout`` passes, then switch the descriptor back to blocking: the VM
    must block, not fail, when its console falls behind, as in albatross.

    With ``rdwr_fallback`` a FIFO without a reader is opened ``O_RDWR``
    instead (Linux allows that without blocking).  Use it only for tools and
    tests: the VM then holds a read end itself, so its output queues in the
    64 KiB pipe buffer and it blocks once that is full, and a reader that
    comes later never sees end-of-file.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NONBLOCK
    with trio.move_on_after(timeout):
        while True:
            try:
                fd = os.open(fifo, flags)
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise ProcessError(f"cannot open console fifo {fifo}: {e.strerror}") from e
            else:
                os.set_blocking(fd, True)
                return fd
            await trio.sleep(_FIFO_POLL)
    if rdwr_fallback:
        return os.open(fifo, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
    raise ProcessError(f"no reader on console fifo {fifo} (is albatross-console running?)")


class VmProcess:
    """A running (or finished) VM process, owned by the task that spawned it."""

    def __init__(self, pid: int, argv: Sequence[str]) -> None:
        self.pid = pid
        self.argv = tuple(argv)
        self.started = datetime.now(UTC)
        self._pidfd: int | None = os.pidfd_open(pid)
        self._result: tuple[ExitStatus, Rusage] | None = None
        self._wait_lock = trio.Lock()

    @property
    def result(self) -> tuple[ExitStatus, Rusage] | None:
        """(status, rusage) once reaped, else None."""
        return self._result

    @property
    def running(self) -> bool:
        return self._result is None

    def _reap(self, options: int) -> bool:
        try:
            pid, status, ru = os.wait4(self.pid, options)
        except ChildProcessError:
            # Someone else reaped it (a stray waitpid(-1)): the status is gone.
            self._finish(ExitStatus.unknown(), Rusage())
            return True
        if pid == 0:
            return False
        self._finish(exit_status_of_wait(status), rusage_of(ru))
        return True

    def _finish(self, status: ExitStatus, rusage: Rusage) -> None:
        self._result = (status, rusage)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def poll(self) -> tuple[ExitStatus, Rusage] | None:
        """Reap without blocking if the process has exited."""
        if self._result is None and not self._wait_lock.locked():
            self._reap(os.WNOHANG)
        return self._result

    async def wait(self) -> tuple[ExitStatus, Rusage]:
        """Wait for the exit; any number of tasks may wait, each gets the result."""
        # trio allows one waiter per fd; the lock queues the others, and a
        # cancelled waiter hands over to the next.
        async with self._wait_lock:
            while self._result is None:
                assert self._pidfd is not None
                await trio.lowlevel.wait_readable(self._pidfd)
                self._reap(os.WNOHANG)
        return self._result

    def send_signal(self, sig: int) -> bool:
        """Signal the process; False if it has already exited."""
        if self._pidfd is None:
            return False
        try:
            signal.pidfd_send_signal(self._pidfd, sig)
        except ProcessLookupError:
            return False
        return True

    async def stop(
        self, grace: float, *, kill_timeout: float = KILL_TIMEOUT
    ) -> tuple[ExitStatus, Rusage]:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
        if self._result is not None:
            return self._result
        self.send_signal(signal.SIGTERM)
        with trio.move_on_after(grace):
            return await self.wait()
        self.send_signal(signal.SIGKILL)
        with trio.move_on_after(kill_timeout):
            return await self.wait()
        raise ProcessError(f"process {self.pid} did not die after SIGKILL")

    def __repr__(self) -> str:
        state = "running" if self._result is None else str(self._result[0])
        return f"<VmProcess pid={self.pid} {state} {self.argv[:1]}>"


def spawn_with_stdio(
    argv: Sequence[str],
    stdio_fd: int,
    *,
    env: Mapping[str, str] | None = None,
    new_process_group: bool = True,
) -> VmProcess:
    """Start ``argv`` (looked up in PATH) with ``stdio_fd`` as fds 0, 1 and 2.

    The VM gets its own process group so that a Ctrl-C at the daemon's
    terminal does not reach every VM; albatross destroys VMs explicitly.
    """
    if not argv:
        raise ProcessError("empty command line")
    actions = [(os.POSIX_SPAWN_DUP2, stdio_fd, target) for target in (0, 1, 2)]
    try:
        pid = os.posix_spawnp(
            argv[0],
            list(argv),
            dict(os.environ if env is None else env),
            file_actions=actions,
            setpgroup=0 if new_process_group else None,
            setsigmask=(),
            setsigdef=_RESET_SIGNALS,
        )
    except OSError as e:
        raise ProcessError(f"cmd {' '.join(argv)} exits: {e.strerror}") from e
    return VmProcess(pid, argv)


async def spawn(
    argv: Sequence[str],
    fifo: Path,
    *,
    env: Mapping[str, str] | None = None,
    fifo_timeout: float = FIFO_READER_TIMEOUT,
    rdwr_fallback: bool = False,
) -> VmProcess:
    """Start a VM process whose stdin, stdout and stderr are the console FIFO."""
    fd = await open_fifo_writer(fifo, timeout=fifo_timeout, rdwr_fallback=rdwr_fallback)
    try:
        return spawn_with_stdio(argv, fd, env=env)
    finally:
        # The child has its copies; keeping ours would hide its exit from
        # the console reader (no EOF while any writer is open).
        os.close(fd)


def proc_memory_kib(pid: int) -> dict[str, int]:
    """VmHWM, VmRSS, VmSize of a live process in KiB (wait4's maxrss is useless for VMs)."""
    wanted = ("VmHWM", "VmRSS", "VmSize")
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in wanted:
                    found[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


__all__ = [
    "FIFO_READER_TIMEOUT",
    "ExitStatus",
    "ProcessError",
    "VmProcess",
    "exit_status_of_wait",
    "open_fifo_writer",
    "proc_memory_kib",
    "rusage_of",
    "spawn",
    "spawn_with_stdio",
]
