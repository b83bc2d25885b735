"""Real QEMU/KVM VMs (our tiny guest) through albatrossd's socket.

Create under a tenant policy, console lines, a tap on a real bridge, destroy;
restart-on-failure with a guest exit code; force-create replacing a running
VM; a VM paused by a KVM emulation failure is detected and restarted; no
taps, FIFOs or processes are left behind; albatross-stats attached to
albatrossd reports the VM's CPU, memory, tap counters and KVM counters (QMP).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from albatross_py.daemons.exporters import prometheus_text
from albatross_py.daemons.stats import StatsDaemon, qmp_socket_of
from albatross_py.host import net
from albatross_py.transport import FramedStream, bind_unix, connect_unix, socket_path
from albatross_py.virt import guest
from albatross_py.wire.messages import (
    ConsoleSubscribe,
    DataConsole,
    DataStatistics,
    Header,
    PolicyAdd,
    ReplyString,
    ReplyUnikernelInfo,
    StatsSubscribe,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfoQuery,
    Wire,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import (
    FailBehaviour,
    NetDevice,
    Policy,
    Statistics,
    Typ,
    UnikernelConfig,
)
from tests.integration.stack import Stack, stack
from tests.system.tinyguest_harness import system_skip_reason

pytestmark = pytest.mark.system
_skip = system_skip_reason()
if _skip is not None:
    pytest.skip(_skip, allow_module_level=True)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return guest.build(cache_dir=tmp_path_factory.mktemp("guest")).read_bytes()


@pytest.fixture
def bridge() -> Iterator[str]:
    name = f"albq{secrets.token_hex(3)}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


def qemu(kernel: bytes, *args: str, **kw: object) -> UnikernelConfig:
    kw.setdefault("memory", 32)
    return UnikernelConfig(typ=Typ.QEMU, image=kernel, argv=args, **kw)  # type: ignore[arg-type]


async def console_lines(s: Stack, name: str, want: str, timeout: float = 20) -> list[str]:
    """Subscribe to the VM's console; return lines until one contains ``want``."""
    lines: list[str] = []
    with trio.fail_after(timeout):
        conn = FramedStream(await connect_unix(socket_path(s.tmpdir, "console")))
        async with conn:
            header = Header(name=Name.of_string(name))
            await conn.write_wire(Wire(header, ConsoleSubscribe(count=100)))
            await conn.read_wire()  # subscribed / waiting for VM
            while True:
                msg = await conn.read_wire()
                assert msg is not None, f"console closed; lines so far: {lines}"
                if isinstance(msg.payload, DataConsole):
                    lines.append(msg.payload.line.decode(errors="replace"))
                    if want in lines[-1]:
                        return lines


def qemu_pids(under: Path | None = None) -> set[int]:
    """QEMU processes; ``under``: only those whose command line names that
    directory (ours, not those of tests running beside us)."""
    pattern = "qemu-system-x86_64" + (f".*{under}" if under is not None else "")
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


async def wait_for(predicate, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


async def test_qemu_vm_lifecycle(tmp_path: Path, kernel: bytes, bridge: str) -> None:
    before_qemu, before_taps = qemu_pids(), set(net.stale_taps_sync())
    policy = Policy(2, frozenset({0}), 256, None, frozenset({bridge}))
    async with stack(tmp_path) as s:
        assert await s.call("tenant:", PolicyAdd(policy)) == ReplyString("added policy")
        cfg = qemu(kernel, "lines=3", "interval=50", "run", bridges=(NetDevice("net0", bridge),))
        assert await s.call("tenant:vm", UnikernelCreate(cfg)) == ReplyString("created unikernel")
        lines = await console_lines(s, "tenant:vm", "line 3")
        assert any("tinyguest: booted" in line for line in lines), lines
        vm = s.sup.resources.find_unikernel(Name.of_string("tenant:vm"))
        assert vm is not None and len(vm.taps) == 1
        assert net.tap_master_sync(vm.taps[0]) == bridge
        info = await s.call("tenant:", UnikernelInfoQuery())
        assert isinstance(info, ReplyUnikernelInfo)
        ((name, i),) = info.entries
        assert str(name) == ":vm" and i.typ is Typ.QEMU and i.bridges[0].host_device == bridge
        # over the tenant's memory: refused, naming the policy
        big = await s.call("tenant:big", UnikernelCreate(qemu(kernel, "run", memory=512)))
        assert "tenant:" in getattr(big, "message", ""), big
        assert await s.call("tenant:vm", UnikernelDestroy()) == ReplyString("destroyed unikernel")
        assert set(net.stale_taps_sync()) == before_taps
        assert list((s.tmpdir / "fifo").iterdir()) == []
    assert qemu_pids() <= before_qemu


async def test_restart_on_guest_exit_code(tmp_path: Path, kernel: bytes) -> None:
    async with stack(tmp_path, restart_delay=0.2) as s:
        fb = FailBehaviour(restart=True, exit_codes=frozenset({7}))
        cfg = qemu(kernel, "exit=7", fail_behaviour=fb)
        assert await s.call("r", UnikernelCreate(cfg)) == ReplyString("created unikernel")
        first = s.sup.resources.find_unikernel(Name.of_string("r")).process.pid
        await wait_for(
            lambda: (
                (vm := s.sup.resources.find_unikernel(Name.of_string("r"))) is not None
                and vm.process.pid != first
            )
        )
        # exit code 9 is not in the set: no restart
        once = qemu(kernel, "exit=9", fail_behaviour=fb)
        assert await s.call("o", UnikernelCreate(once)) == ReplyString("created unikernel")
        await wait_for(lambda: s.sup.resources.find_unikernel(Name.of_string("o")) is None)
        await trio.sleep(0.5)
        assert s.sup.resources.find_unikernel(Name.of_string("o")) is None
        assert Name.of_string("o") not in s.sup.restarting


async def test_force_create_replaces_a_running_vm(tmp_path: Path, kernel: bytes) -> None:
    async with stack(tmp_path) as s:
        assert await s.call("f", UnikernelCreate(qemu(kernel, "run"))) == ReplyString(
            "created unikernel"
        )
        first = s.sup.resources.find_unikernel(Name.of_string("f")).process.pid
        reply = await s.call("f", UnikernelCreate(qemu(kernel, "lines=1", "run"), force=True))
        assert reply == ReplyString("created unikernel")
        vm = s.sup.resources.find_unikernel(Name.of_string("f"))
        assert vm.process.pid != first and vm.config.argv == ("lines=1", "run")
        assert first not in qemu_pids()


async def test_paused_vm_is_detected_and_restarted(tmp_path: Path, kernel: bytes) -> None:
    async with stack(tmp_path, restart_delay=0.2) as s:
        cfg = qemu(kernel, "crash", fail_behaviour=FailBehaviour(restart=True))
        assert await s.call("c", UnikernelCreate(cfg)) == ReplyString("created unikernel")
        first = s.sup.resources.find_unikernel(Name.of_string("c")).process.pid
        # QEMU stays alive with the VM paused; the watchdog must notice and restart it
        await wait_for(
            lambda: (
                (vm := s.sup.resources.find_unikernel(Name.of_string("c"))) is not None
                and vm.process.pid != first
            ),
            timeout=30,
        )
        assert first not in qemu_pids()
        assert await s.call("c", UnikernelDestroy()) in (
            ReplyString("destroyed unikernel"),
            ReplyString("destroyed: removed from restarting"),
        )


async def test_stats_of_a_qemu_vm(tmp_path: Path, kernel: bytes, bridge: str) -> None:
    """CPU, memory, the tap's counters and KVM counters (QMP ``query-stats``)."""
    async with stack(tmp_path) as s:
        stats = StatsDaemon(s.tmpdir, interval=0.5)
        await s.nursery.start(stats.run, bind_unix(socket_path(s.tmpdir, "stats")))
        await wait_for(lambda: s.sup.stats.connected)  # Stats_initial done
        policy = Policy(2, frozenset({0}), 256, None, frozenset({bridge}))
        assert await s.call("kvm:", PolicyAdd(policy)) == ReplyString("added policy")
        cfg = qemu(kernel, "lines=3", "interval=50", "run", bridges=(NetDevice("net0", bridge),))
        assert await s.call("kvm:vm", UnikernelCreate(cfg)) == ReplyString("created unikernel")
        name = Name.of_string("kvm:vm")
        vm = s.sup.resources.find_unikernel(name)
        tracked = stats.table.vm(name)
        assert tracked is not None and tracked.pid == vm.process.pid
        assert qmp_socket_of(tracked.vmmdev) == str(vm.prepared.qmp_socket.absolute())
        assert tracked.network == (("net0", vm.taps[0]),)
        seen: list[Statistics] = []
        with trio.fail_after(30):
            conn = FramedStream(await connect_unix(socket_path(s.tmpdir, "stats")))
            async with conn:
                await conn.write_wire(Wire(Header(name=name), StatsSubscribe()))
                assert (await conn.read_wire()).payload == ReplyString("subscribed")
                while not seen or not seen[-1].vmm:  # the first QMP query may race the boot
                    data = await conn.read_wire()
                    assert data is not None and isinstance(data.payload, DataStatistics)
                    assert str(data.header.name) == ":vm"
                    seen.append(data.payload.stats)
        st = seen[-1]
        cpu = st.rusage.utime.seconds + st.rusage.stime.seconds
        assert cpu * 1_000_000 + st.rusage.utime.microseconds + st.rusage.stime.microseconds > 0
        assert st.kinfo_mem is not None and st.kinfo_mem.rss > 0
        ((ifd,),) = (st.ifdata,)
        assert ifd.bridge == "net0" and ifd.mtu > 0
        counters = dict(st.vmm or ())
        assert counters["exits"] > 0 and "halt_exits" in counters, counters
        assert all(isinstance(v, int) for v in counters.values())
        text = prometheus_text({name: st})
        assert f'albatross_vm_kvm_exits_total{{name="kvm:vm"}} {counters["exits"]}' in text
        assert 'albatross_vm_network_transmit_bytes_total{name="kvm:vm",interface="net0"}' in text
        assert await s.call("kvm:vm", UnikernelDestroy()) == ReplyString("destroyed unikernel")
        assert stats.table.vm(name) is None


async def test_console_shows_no_qemu_warning(tmp_path: Path, kernel: bytes) -> None:
    """The CPU model is chosen from what the host supports (issue 14 item 2):
    the first console lines are the guest's own, no ``qemu-system-x86_64: warning``."""
    async with stack(tmp_path) as s:
        cfg = qemu(kernel, "lines=2", "interval=20", "run")
        assert await s.call("w", UnikernelCreate(cfg)) == ReplyString("created unikernel")
        lines = await console_lines(s, "w", "line 2")
        vm = s.sup.resources.find_unikernel(Name.of_string("w"))
        model = vm.process.argv[vm.process.argv.index("-cpu") + 1]
        assert not any("warning" in line for line in lines), (model, lines)
        assert "tinyguest: booted" in lines[0], lines
        assert (s.dbdir / "qemu-host.json").is_file()
        assert await s.call("w", UnikernelDestroy()) == ReplyString("destroyed unikernel")
    if model != "qemu64":
        # the check can fail: the bare model on this host does warn
        argv = [a if a != model else "qemu64" for a in vm.process.argv if a != "taskset"]
        argv = argv[argv.index("qemu-system-x86_64") :]
        argv[argv.index("-qmp") + 1] = f"unix:{tmp_path}/ctl.qmp,server=on,wait=off"
        (tmp_path / "k.elf").write_bytes(kernel)
        argv[argv.index("-kernel") + 1] = str(tmp_path / "k.elf")
        r = subprocess.run(
            [*argv[: argv.index("-append") + 1], "exit=3"], capture_output=True, timeout=20
        )
        assert b"qemu-system-x86_64: warning" in r.stdout + r.stderr, r


async def test_destroy_by_signal_and_by_acpi(tmp_path: Path, kernel: bytes) -> None:
    """Destroy signals QEMU (albatross's way); ``qemu.shutdown=acpi`` asks the guest
    first.  Either way the reply comes once the process is reaped."""
    async with stack(tmp_path) as s:
        for name, extra in (("sig", ()), ("acpi", ("qemu.shutdown=acpi",))):
            cfg = qemu(kernel, *extra, "run")
            assert await s.call(name, UnikernelCreate(cfg)) == ReplyString("created unikernel")
            await console_lines(s, name, "tinyguest: booted")
            vm = s.sup.resources.find_unikernel(Name.of_string(name))
            assert vm.prepared.shutdown == (extra[0].split("=")[1] if extra else "signal")
            assert "qemu.shutdown=acpi" not in vm.process.argv[-1]
            reply = await s.call(name, UnikernelDestroy())
            assert reply == ReplyString("destroyed unikernel")
            assert vm.process.result is not None and vm.process.pid not in qemu_pids()


async def test_early_exit_is_explained(tmp_path: Path, kernel: bytes) -> None:
    """A QEMU that refuses its kernel fails the create with QEMU's own words; a
    guest that exits by itself has its last console lines as the exit's reason."""
    from albatross_py.wire.messages import Failure

    async with stack(tmp_path, log=True) as s:
        bad = qemu(b"\x00not a kernel" * 64, "run")
        reply = await s.call("bad", UnikernelCreate(bad))
        assert isinstance(reply, Failure), reply
        assert "QEMU exited at once" in reply.message, reply
        assert "invalid kernel header" in reply.message, reply
        assert s.sup.resources.find_unikernel(Name.of_string("bad")) is None
        assert list((s.tmpdir / "fifo").iterdir()) == []

        cfg = qemu(kernel, "lines=2", "interval=10", "exit=9")
        assert await s.call("ex", UnikernelCreate(cfg)) == ReplyString("created unikernel")
        await wait_for(lambda: s.sup.resources.find_unikernel(Name.of_string("ex")) is None)
        await wait_for(lambda: "unikernel-exited" in _logged(s))
        (line,) = [ln for ln in _logged(s).splitlines() if "unikernel-exited" in ln]
        assert "exit-code=9" in line and "reason=" in line, line
        reason = line.split("reason=", 1)[1]
        assert "line 2" in reason and "warning" not in reason, line


def _logged(s: Stack) -> str:
    return (s.tmpdir.parent / "log" / "events.log").read_text()


async def test_kvm_without_progress_falls_back_to_tcg(
    tmp_path: Path, kernel: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """``kvmstall`` spins before touching any device under KVM only, as a Debian
    kernel does on this nested KVM: ``auto`` starts it again under TCG (and a
    second start of that image goes to TCG at once); ``kvm`` refuses it."""
    from albatross_py.wire.messages import Failure

    async with stack(tmp_path) as s:
        cfg = qemu(kernel, "kvmstall", "lines=3", "run")
        assert await s.call("slow", UnikernelCreate(cfg)) == ReplyString("created unikernel")
        assert "KVM made no progress: 0 device exits" in caplog.text
        assert "starting it under TCG" in caplog.text
        lines = await console_lines(s, "slow", "line 3")
        assert any("tinyguest: booted" in line for line in lines), lines
        vm = s.sup.resources.find_unikernel(Name.of_string("slow"))
        argv = list(vm.process.argv)
        assert argv[argv.index("-accel") + 1] == "tcg" and argv.count("-accel") == 1
        assert qemu_pids(tmp_path) == {vm.process.pid}  # the KVM attempt is gone

        caplog.clear()
        assert await s.call("again", UnikernelCreate(cfg)) == ReplyString("created unikernel")
        assert "no progress" not in caplog.text  # known image: TCG from the start
        argv = list(s.sup.resources.find_unikernel(Name.of_string("again")).process.argv)
        assert argv[argv.index("-accel") + 1] == "tcg"

        # a guest that does make progress stays under KVM (QEMU's kvm-then-tcg list)
        fine = qemu(kernel, "lines=1", "run")
        assert await s.call("fine", UnikernelCreate(fine)) == ReplyString("created unikernel")
        argv = list(s.sup.resources.find_unikernel(Name.of_string("fine")).process.argv)
        assert argv[argv.index("-accel") + 1] == "kvm"

        forced = qemu(kernel, "kvmstall", "run", "qemu.accel=kvm")
        reply = await s.call("forced", UnikernelCreate(forced))
        assert isinstance(reply, Failure), reply
        assert "KVM made no progress" in reply.message and "qemu.accel=tcg" in reply.message
        assert s.sup.resources.find_unikernel(Name.of_string("forced")) is None
        for name in ("slow", "again", "fine"):
            assert await s.call(name, UnikernelDestroy()) == ReplyString("destroyed unikernel")
        assert list((s.tmpdir / "fifo").iterdir()) == []
    assert qemu_pids(tmp_path) == set()
