"""VM lifecycle: albatrossd vs the same QEMU command by hand vs libvirt (run by hand, as root).

``python bench/bench_lifecycle.py [--rounds 15] [--no-libvirt] [--no-install]``

Prints medians (min/max) in milliseconds; asserts nothing.  The guest is our
tiny kernel (``albatross_py.virt.guest``) with ``run`` (it prints its banner
and then a heartbeat a second, until powered off), 32 MB, one vCPU, under
KVM on ``microvm``: the machine albatrossd chooses for a kernel with no
devices.  Per round, interleaved (A B B' C, A B B' C, ...):

* **A, albatrossd**: albatrossd and albatross-console run as their own
  processes.  The client subscribes to the VM's console (a fresh name per
  round, so the subscription waits for the VM), sends ``create`` and times
  until the banner line arrives over the subscription; then ``destroy``
  until its reply (albatrossd answers once QEMU is reaped: ACPI power button
  over QMP, the guest powers off).
* **B, by hand**: the command albatrossd would run (``QemuBackend``'s
  ``taskset -c 0 qemu-system-x86_64 ...``), spawned from this process with a
  fresh console FIFO on its stdio, banner read from the FIFO; SIGTERM and reap.
* **B', by hand, power button**: as B, but stopped as albatrossd stops it
  (QMP ``system_powerdown``, then reap), so A-B' is the like-for-like overhead
  of destroy.
* **C, libvirt**: Debian's libvirt 9.0 (``libvirt-daemon
  libvirt-daemon-driver-qemu libvirt-clients libvirt-daemon-system``,
  installed with apt if missing unless ``--no-install``).  ``libvirtd`` runs
  in the foreground under a small subreaper process
  (``PR_SET_CHILD_SUBREAPER``: libvirtd daemonizes QEMU, and without a
  subreaper the sandbox's PID 1 reaps it only every ~2 s, which libvirt's
  destroy would wait for).  That process also runs libvirtd in a private
  mount namespace in which ``/etc/libvirt/qemu.conf`` is a copy with
  ``user = "root"`` and ``stdio_handler = "file"`` (nothing on the host is
  changed).  ``stdio_handler = "file"``: with the default ``logd`` libvirt
  routes a ``file`` serial through virtlogd, which keeps the file open
  across domains and mangles a FIFO; with ``file`` QEMU gets the FIFO
  itself, as albatross's QEMU does, and no virtlogd is needed.  ``user``:
  with the packaged ``libvirt-qemu`` user and a ``/dev/kvm`` of mode 0600
  (as here) libvirt decides on every create that KVM "is not available now", throws its QEMU
  capabilities cache away and re-probes QEMU twice, ~13 s per create.  The
  domain is the same kernel, ``-append run``, microvm, 32 MiB, serial as a
  ``file`` chardev on a FIFO we read; ``virsh create`` until the banner, and
  ``virsh destroy`` until it returns (then we check the QEMU pid is gone).
  Each virsh invocation costs a process start and a connection; the floor
  (``virsh list``) is printed too.  libvirtd is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Benchmark the checkout this file lives in, not whatever copy is installed.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import trio  # noqa: E402

from albatross_py.host.files import Layout  # noqa: E402
from albatross_py.transport import FramedStream, connect_unix  # noqa: E402
from albatross_py.virt import guest, qmp  # noqa: E402
from albatross_py.virt.qemu import QemuBackend, QemuOptions  # noqa: E402
from albatross_py.wire.messages import (  # noqa: E402
    ConsoleSubscribe,
    DataConsole,
    Header,
    ReplyString,
    UnikernelCreate,
    UnikernelDestroy,
    Wire,
)
from albatross_py.wire.names import Name  # noqa: E402
from albatross_py.wire.types import Typ, UnikernelConfig  # noqa: E402
from tests.system.tinyguest_harness import run_vm, system_skip_reason  # noqa: E402

BANNER = "tinyguest: booted"
MEMORY = 32
LIBVIRT_PACKAGES = (
    "libvirt-daemon", "libvirt-daemon-driver-qemu", "libvirt-clients", "libvirt-daemon-system",
)  # fmt: skip
VIRSH = ("virsh", "-q", "-c", "qemu:///system")
DOMAIN = "albbench"
TIMEOUT = 30.0

#: The subreaper that runs libvirtd (argv[1]: the qemu.conf copy).
SUBREAPER = r"""
import ctypes, os, signal, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER, CLONE_NEWNS = 36, 0x20000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 1 << 14, 1 << 18
assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
assert libc.unshare(CLONE_NEWNS) == 0, "unshare"
assert libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0, "private /"
assert libc.mount(sys.argv[1].encode(), b"/etc/libvirt/qemu.conf", None, MS_BIND, None) == 0
procs = [subprocess.Popen(["libvirtd"])]
def term(*_):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
signal.signal(signal.SIGTERM, term)
while True:
    try:
        os.wait()  # every orphan (QEMU) is reaped the moment it exits
    except ChildProcessError:
        break
    if all(p.poll() is not None for p in procs):
        for t in os.listdir("/proc/self/task"):
            for pid in open(f"/proc/self/task/{t}/children").read().split():
                os.kill(int(pid), signal.SIGKILL)
"""

#: Appended to a copy of /etc/libvirt/qemu.conf (see the module comment).
QEMU_CONF_EXTRA = """
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
namespaces = [ ]
stdio_handler = "file"
"""

DOMAIN_XML = """<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='microvm'>hvm</type>
    <kernel>{kernel}</kernel>
    <cmdline>run</cmdline>
  </os>
  <features><acpi/></features>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  <devices>
    <emulator>{qemu}</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <serial type='file'><source path='{fifo}'/><target port='0'/></serial>
  </devices>
</domain>
"""


# -- helpers -------------------------------------------------------------------------------


def summary(xs: list[float]) -> str:
    if not xs:
        return "no data"
    ms = sorted(x * 1000 for x in xs)
    return f"median {statistics.median(ms):7.1f} ms  (min {ms[0]:7.1f}, max {ms[-1]:7.1f})"


def med(xs: list[float]) -> float:
    return statistics.median(xs) * 1000 if xs else float("nan")


def wait_path(path: Path, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear")
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(p) for p in f.read().split()]
    return out


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class LineReader:
    """Lines from a non-blocking fd (a console FIFO), with a wait for a needle."""

    def __init__(self, fd: int) -> None:
        self.stream = trio.lowlevel.FdStream(fd)
        self.buf = b""

    async def wait_for(self, needle: bytes, timeout: float = TIMEOUT) -> float:
        with trio.fail_after(timeout):
            while True:
                *lines, self.buf = self.buf.split(b"\n")
                if any(needle in line for line in lines):
                    return time.monotonic()
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError(f"console closed before {needle!r}")
                self.buf += data


# -- A: albatrossd -------------------------------------------------------------------------


class Albatross:
    def __init__(self, work: Path, kernel: bytes) -> None:
        self.tmpdir, self.dbdir = work / "t", work / "d"
        self.config = UnikernelConfig(typ=Typ.QEMU, image=kernel, argv=("run",), memory=MEMORY)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.argv: list[str] = []

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "albatross_py.daemons.console", "--tmpdir", str(self.tmpdir),
             "-q"], env=env))  # fmt: skip
        wait_path(self.tmpdir / "util" / "console.sock")
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "albatross_py.daemons.vmmd", "--tmpdir", str(self.tmpdir),
             "--dbdir", str(self.dbdir), "-q"], env=env))  # fmt: skip
        wait_path(self.tmpdir / "util" / "vmmd.sock")

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    async def call(self, name: Name, cmd: object) -> object:
        with trio.fail_after(TIMEOUT):
            conn = FramedStream(await connect_unix(self.tmpdir / "util" / "vmmd.sock"))
            async with conn:
                await conn.write_wire(Wire(Header(name=name), cmd))  # type: ignore[arg-type]
                reply = await conn.read_wire()
        assert reply is not None
        return reply.payload

    async def round(self, i: int, res: dict[str, list[float]]) -> None:
        name = Name.of_string(f"lc{i}")
        conn = FramedStream(await connect_unix(self.tmpdir / "util" / "console.sock"))
        async with conn:
            await conn.write_wire(Wire(Header(name=name), ConsoleSubscribe(count=10)))
            await conn.read_wire()  # "waiting for VM"
            t0 = time.monotonic()
            reply = await self.call(name, UnikernelCreate(self.config))
            created = time.monotonic()
            if reply != ReplyString("created unikernel"):
                raise SystemExit(f"albatrossd create failed: {reply}")
            with trio.fail_after(TIMEOUT):
                while True:
                    msg = await conn.read_wire()
                    if msg is None:
                        raise SystemExit("console subscription closed before the banner")
                    if isinstance(msg.payload, DataConsole) and BANNER.encode() in msg.payload.line:
                        break
            seen = time.monotonic()
        vmmd = self.procs[1].pid
        qemu = [p for p in children(vmmd) if alive(p)]
        if not self.argv and qemu:
            with open(f"/proc/{qemu[0]}/cmdline", "rb") as f:
                self.argv = [a.decode() for a in f.read().split(b"\0") if a]
        t1 = time.monotonic()
        reply = await self.call(name, UnikernelDestroy())
        gone = time.monotonic()
        if reply != ReplyString("destroyed unikernel"):
            raise SystemExit(f"albatrossd destroy failed: {reply}")
        if any(alive(p) for p in qemu):
            print(f"  note: QEMU {qemu} still alive after albatrossd's destroy reply")
        res["create reply"].append(created - t0)
        res["first line"].append(seen - t0)
        res["destroy"].append(gone - t1)


# -- B: by hand ------------------------------------------------------------------------------


def hand_argv(work: Path, kernel: bytes) -> tuple[list[str], Path]:
    """What albatrossd's QEMU backend runs for the same config (own tmpdir)."""
    layout = Layout(work / "hand-t", work / "hand-d")
    layout.tmpdir.mkdir(parents=True)
    backend = QemuBackend(layout, QemuOptions.for_host())
    name = Name.of_string("hand")
    config = UnikernelConfig(typ=Typ.QEMU, image=kernel, argv=("run",), memory=MEMORY)
    prepared = backend.prepare(name, config)
    assert prepared.image is not None
    layout.image_file(name).write_bytes(prepared.image)
    return backend.command_line(prepared, []), prepared.qmp_socket  # type: ignore[attr-defined]


async def hand_round(work: Path, argv: list[str], sock: Path, powerdown: bool,
                     res: dict[str, list[float]]) -> None:  # fmt: skip
    t0 = time.monotonic()
    async with run_vm(work, argv) as vm:
        seen = await vm.console.wait_for(BANNER)
        if powerdown:
            with trio.fail_after(TIMEOUT):  # QMP is up once the guest prints
                while True:
                    try:
                        async with qmp.open_qmp(sock) as q:
                            t1 = time.monotonic()
                            await q.system_powerdown()
                            break
                    except (OSError, qmp.QmpError):
                        await trio.sleep(0.005)
        else:
            t1 = time.monotonic()
            vm.process.send_signal(signal.SIGTERM)
        await vm.process.wait()
        gone = time.monotonic()
    res["first line"].append(seen - t0)
    res["destroy"].append(gone - t1)


# -- C: libvirt -------------------------------------------------------------------------------


def libvirt_available(install: bool) -> str | None:
    """None when libvirtd and virsh are there (installing them if allowed), else why not."""
    if shutil.which("libvirtd") and shutil.which("virsh"):
        return None
    if not install:
        return "libvirt is not installed (--no-install given)"
    print(f"installing {' '.join(LIBVIRT_PACKAGES)} with apt ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *LIBVIRT_PACKAGES]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return f"apt-get install failed: {r.stderr.strip()[-300:]}"
    if not (shutil.which("libvirtd") and shutil.which("virsh")):
        return "libvirtd or virsh missing after the install"
    return None


class Libvirt:
    def __init__(self, work: Path, kernel: Path) -> None:
        self.work = work
        self.kernel = kernel
        self.helper: subprocess.Popen[bytes] | None = None
        self.log = work / "libvirtd.log"
        self.fifo = work / "lv-console.fifo"
        self.xml = work / "domain.xml"

    def start(self) -> str | None:
        """Start libvirtd under the subreaper; None or why it failed."""
        stray = subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True, text=True)
        if stray.stdout.strip():
            return f"a libvirtd is already running (pid {stray.stdout.split()[0]}); not touching it"
        conf = self.work / "qemu.conf"
        base = Path("/etc/libvirt/qemu.conf").read_text()
        conf.write_text(base + QEMU_CONF_EXTRA)
        with open(self.log, "wb") as log:
            self.helper = subprocess.Popen(
                [sys.executable, "-c", SUBREAPER, str(conf)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.helper.poll() is not None:
                return f"libvirtd's subreaper exited: {self.log.read_text()[-500:]}"
            r = subprocess.run([*VIRSH, "version"], capture_output=True, text=True)
            if r.returncode == 0:
                break
            time.sleep(0.2)
        else:
            return "libvirtd did not answer within 30 s"
        os.mkfifo(self.fifo, 0o600)
        self.xml.write_text(DOMAIN_XML.format(
            name=DOMAIN, memory=MEMORY, kernel=self.kernel, fifo=self.fifo,
            qemu=shutil.which("qemu-system-x86_64")))  # fmt: skip
        return None

    def stop(self) -> None:
        if self.helper is None:
            return
        subprocess.run([*VIRSH, "destroy", DOMAIN], capture_output=True)
        self.helper.send_signal(signal.SIGTERM)
        try:
            self.helper.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.helper.kill()
            self.helper.wait()
        for leftover in ("libvirtd", "virtlogd", "virtlockd"):
            r = subprocess.run(["pgrep", "-x", leftover], capture_output=True, text=True)
            if r.stdout.strip():
                print(f"WARNING: {leftover} still running: {r.stdout.split()}")

    async def virsh(self, *args: str) -> None:
        r = await trio.run_process([*VIRSH, *args], capture_stdout=True, capture_stderr=True,
                                   check=False)  # fmt: skip
        if r.returncode != 0:
            raise RuntimeError(f"virsh {' '.join(args)}: {r.stderr.decode().strip()}")

    async def round(self, res: dict[str, list[float]]) -> None:
        # O_RDWR: we hold a writer too, so reads never see EOF before libvirt opens it.
        fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        reader = LineReader(fd)
        try:
            t0 = time.monotonic()
            seen: list[float] = []

            async def read() -> None:
                seen.append(await reader.wait_for(BANNER.encode()))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await self.virsh("create", str(self.xml))
                res["create reply"].append(time.monotonic() - t0)
            res["first line"].append(seen[0] - t0)
            pid = int(Path(f"/run/libvirt/qemu/{DOMAIN}.pid").read_text())
            t1 = time.monotonic()
            await self.virsh("destroy", DOMAIN)
            res["destroy"].append(time.monotonic() - t1)
            with trio.fail_after(TIMEOUT):
                while alive(pid):
                    await trio.sleep(0.001)
            res["destroy, until the pid is gone"].append(time.monotonic() - t1)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.run_process([*VIRSH, "destroy", DOMAIN], capture_stdout=True,
                                       capture_stderr=True, check=False)  # fmt: skip
            raise
        finally:
            await reader.stream.aclose()
        t0 = time.monotonic()
        await self.virsh("list")
        res["(virsh list alone)"].append(time.monotonic() - t0)


# -- main -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    kernel_path = guest.build()
    kernel = kernel_path.read_bytes()
    work = Path(tempfile.mkdtemp(prefix="alc-"))
    work.chmod(0o755)
    lv_kernel = work / "tinyguest.elf"
    shutil.copyfile(kernel_path, lv_kernel)
    lv_kernel.chmod(0o644)

    names = ("A albatrossd", "B by hand (SIGTERM)", "B' by hand (power button)", "C libvirt")
    res: dict[str, dict[str, list[float]]] = {
        n: {k: [] for k in ("create reply", "first line", "destroy",
                            "destroy, until the pid is gone", "(virsh list alone)")}
        for n in names
    }  # fmt: skip
    alb = Albatross(work, kernel)
    argv, sock = hand_argv(work, kernel)
    lv: Libvirt | None = None
    lv_why: str | None = "disabled (--no-libvirt)"
    try:
        alb.start()
        if not args.no_libvirt:
            lv_why = libvirt_available(not args.no_install)
            if lv_why is None:
                lv = Libvirt(work, lv_kernel)
                lv_why = lv.start()
                if lv_why is None:  # one warm-up create (the first one probes QEMU)
                    try:
                        await lv.round({k: [] for k in res["C libvirt"]})
                    except Exception as e:
                        print(f"libvirt warm-up failed: {e}")
        await alb.round(0, {k: [] for k in res["A albatrossd"]})  # warm-up
        print(f"tinyguest {kernel_path.name}; {args.rounds} rounds, interleaved A B B' C")
        for i in range(1, args.rounds + 1):
            await alb.round(i, res["A albatrossd"])
            await hand_round(work, argv, sock, False, res["B by hand (SIGTERM)"])
            await hand_round(work, argv, sock, True, res["B' by hand (power button)"])
            if lv is not None and lv_why is None:
                try:
                    await lv.round(res["C libvirt"])
                except Exception as e:  # keep A and B going
                    lv_why = f"failed during round {i}: {e}"
            print(".", end="", flush=True)
        print()
    finally:
        alb.stop()
        if lv is not None:
            lv.stop()
    print(f"albatrossd ran:  taskset -c 0 (exec'd) {' '.join(alb.argv)}")
    print(f"by hand ran:     {' '.join(argv)}")
    for n in names:
        print(f"{n}:")
        for key, xs in res[n].items():
            if xs:
                print(f"  {key:<32} {summary(xs)}")
    if lv_why is not None:
        print(f"C libvirt: not measured: {lv_why}")
    a, b, b2, c = (res[n] for n in names)

    def diff(label: str, x: list[float], y: list[float]) -> None:
        print(f"  {label:<48} {med(x) - med(y):+7.1f} ms")

    print("overhead (differences of medians):")
    diff("albatrossd vs by hand, create -> first line", a["first line"], b["first line"])
    diff("albatrossd vs by hand (power button), destroy", a["destroy"], b2["destroy"])
    diff("albatrossd destroy vs by-hand SIGTERM", a["destroy"], b["destroy"])
    if c["first line"]:
        diff("libvirt vs by hand, create -> first line", c["first line"], b["first line"])
        diff("libvirt vs by hand (SIGTERM), destroy", c["destroy"], b["destroy"])
        diff("libvirt vs albatrossd, create -> first line", c["first line"], a["first line"])
        diff("libvirt vs albatrossd, destroy", c["destroy"], a["destroy"])
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--no-libvirt", action="store_true")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install libvirt")
    args = ap.parse_args()
    reason = system_skip_reason()
    if reason is not None:
        raise SystemExit(f"cannot run: {reason}")
    trio.run(run, args)


if __name__ == "__main__":
    main()
