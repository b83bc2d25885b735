"""A real Linux guest pings the host over our tap and bridge (QEMU under TCG).

The guest is assembled from Debian packages by
:mod:`albatross_py.virt.linux_guest` (cached in the user's cache directory,
so only the first run downloads ~70 MB).  The test makes its own bridge
``albtestbr<N>`` with ``10.77.<N>.1/24``, a private subnet that never leaves
this bridge, a tap on it, and boots the guest with
``albatross.ip=10.77.<N>.2/24 albatross.ping=10.77.<N>.1``; it waits for
``LINUX-GUEST: ping ok`` and checks the tap's counters.  TCG, not KVM: a
Debian kernel does not boot under this hosts' nested KVM (HOST-FACTS); it
works with either on ordinary hosts, TCG is only slower.  The QEMU process
is killed and reaped, the tap and the bridge deleted, whatever happens.

Skipped (with the reason) without root, QEMU or pyroute2, or when the
packages cannot be downloaded; CI turns such skips into failures.
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from albatross_py.virt import linux_guest
from albatross_py.virt.linux_guest import PING_FAILED, PING_OK, LinuxGuest, kernel_cmdline
from albatross_py.virt.qemu import (
    QEMU_BINARY,
    QemuNet,
    QemuOptions,
    QemuVm,
    command_line,
    find_qboot,
)

#: From spawn to the ping line; a TCG boot takes 5-25 s on these shared machines.
PING_BOUND = 120.0
BRIDGE_PREFIX = "albtestbr"
MAC = bytes.fromhex("008041a1b2c3")


# -- pure parts (no root, no network) ----------------------------------------------


def _read_cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of a newc archive."""
    out: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = f[1], f[6], f[11]
        name_at = pos + 110
        name = data[name_at : name_at + namesize - 1].decode()
        pos = name_at + namesize
        pos += -pos % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, data[pos : pos + size])
        pos += size
        pos += -pos % 4


def test_initramfs_layout() -> None:
    modules = [("virtio", b"\x7fELF-a"), ("virtio_net", b"\x7fELF-bb")]
    image = linux_guest.initramfs(b"BUSYBOX", modules)
    assert image == linux_guest.initramfs(b"BUSYBOX", modules)  # deterministic
    files = _read_cpio(gzip.decompress(image))
    mode, init = files["init"]
    assert stat.S_ISREG(mode) and mode & 0o111 and init.startswith(b"#!/bin/sh\n")
    assert PING_OK.encode() in init and PING_FAILED.encode() in init
    assert b"poweroff -f" in init
    assert files["bin/busybox"] == (stat.S_IFREG | 0o755, b"BUSYBOX")
    assert stat.S_ISLNK(files["bin/sh"][0]) and files["bin/sh"][1] == b"busybox"
    assert stat.S_ISCHR(files["dev/console"][0])
    assert files["lib/modules/virtio_net.ko"][1] == b"\x7fELF-bb"
    assert files["lib/modules/load-order"][1] == b"virtio\nvirtio_net\n"


def test_kernel_cmdline() -> None:
    line = kernel_cmdline("10.77.0.2/24", "10.77.0.1")
    args = line.split()
    assert "console=ttyS0" in args and "panic=-1" in args
    assert args[-2:] == ["albatross.ip=10.77.0.2/24", "albatross.ping=10.77.0.1"]
    assert kernel_cmdline("10.77.0.2/24", "10.77.0.1", extra=["loglevel=7"]).endswith(" loglevel=7")
    for ip, ping in (("10.77.0.2", "10.77.0.1"), ("10.77.0.2/24", ""), ("a b/24", "x")):
        with pytest.raises(ValueError):
            kernel_cmdline(ip, ping)


def test_extract_vmlinux_finds_the_xz_elf() -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 64
    bogus = b"\xfd7zXZ\x00 not a stream "
    bzimage = b"MZ setup code " + bogus + lzma.compress(elf, format=lzma.FORMAT_XZ) + b"trailer"
    assert linux_guest.extract_vmlinux(bzimage) == elf
    with pytest.raises(linux_guest.LinuxGuestError):
        linux_guest.extract_vmlinux(b"MZ no kernel here")


# -- the real guest --------------------------------------------------------------------


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (bridges, taps)"
    if shutil.which(QEMU_BINARY) is None:
        return f"{QEMU_BINARY} not installed (apt-get install qemu-system-x86)"
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return "needs apt-get and dpkg-deb (a Debian host) to assemble the guest"
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return "pyroute2 not installed"
    return None


@pytest.fixture(scope="module")
def guest() -> LinuxGuest:
    if (reason := _skip_reason()) is not None:
        pytest.skip(reason)
    try:
        return linux_guest.build()
    except linux_guest.LinuxGuestError as e:
        pytest.skip(f"cannot assemble the Linux guest from Debian packages: {e}")


def _delete_link(name: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=name):
            ipr.link("del", index=index)


@pytest.fixture
def bridge() -> Iterator[tuple[str, int]]:
    """A fresh bridge ``albtestbr<N>`` with 10.77.<N>.1/24, up; deleted afterwards."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    name = None
    with IPRoute() as ipr:
        for n in range(1, 255):
            try:
                ipr.link("add", ifname=f"{BRIDGE_PREFIX}{n}", kind="bridge")
            except NetlinkError as e:
                if e.code == 17:  # EEXIST: another run's bridge
                    continue
                raise
            name = f"{BRIDGE_PREFIX}{n}"
            break
        if name is None:
            pytest.fail(f"no free {BRIDGE_PREFIX}<N> name")
    try:
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=name)[0]
            ipr.addr("add", index=index, address=f"10.77.{n}.1", prefixlen=24)
            ipr.link("set", index=index, state="up")
        yield name, n
    finally:
        _delete_link(name)


@pytest.fixture
def workdir() -> Iterator[Path]:
    # short: the QMP socket path must fit in sun_path
    with tempfile.TemporaryDirectory(prefix="lg-") as d:
        yield Path(d)


@pytest.mark.slow
@pytest.mark.system
async def test_guest_pings_host_bridge(
    guest: LinuxGuest, bridge: tuple[str, int], workdir: Path
) -> None:
    from albatross_py.host import net
    from tests.system.tinyguest_harness import run_vm

    bridge_name, n = bridge
    tap = net.create_tap_sync(bridge_name)
    try:
        assert net.tap_master_sync(tap) == bridge_name
        vm = QemuVm(
            name="test:linux-guest",
            memory=256,
            qmp_socket=workdir / "qmp.sock",
            kernel=guest.kernel,
            initrd=guest.initrd,
            append=kernel_cmdline(f"10.77.{n}.2/24", f"10.77.{n}.1"),
            nets=(QemuNet(tap, MAC),),
        )
        # pc (+ qboot where installed): virtio-net over PCI; TCG, see the module comment
        options = QemuOptions(accel="tcg", machine="pc", qboot=find_qboot())
        argv = command_line(vm, options)
        async with run_vm(workdir, argv) as running:
            seen = await running.console.wait_for("LINUX-GUEST: ping", timeout=PING_BOUND)
            elapsed = seen - running.spawned
            text = running.console.text()
            assert PING_FAILED not in text, f"guest could not ping:\n{text}"
            assert running.console.find(PING_OK) is not None, text
            print(f"\nlinux guest ({guest.kernel_package} {guest.kernel_version}, TCG):")
            print(f"spawn to '{PING_OK}': {elapsed:.2f} s")
            with trio.fail_after(30):
                status, _ = await running.process.wait()
            assert status.code == 0, f"QEMU exit {status}; console:\n{running.console.text()}"
        counters = net.counters_sync(tap)
        # rx is VM-to-host (3 echo requests, an ARP), tx host-to-VM (the replies)
        assert counters.rx_packets >= 3 and counters.tx_packets >= 3, counters
        assert counters.rx_errors == 0 and counters.tx_errors == 0, counters
    finally:
        net.destroy_tap_sync(tap)
    assert not net.interface_exists_sync(tap)


@pytest.mark.slow
@pytest.mark.system
async def test_linux_guest_through_albatrossd_and_tls(
    guest: LinuxGuest,
    bridge: tuple[str, int],
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What a user does: the builder's own command lines, pasted as they are
    (plus ``--destination``), deploy the guest through the TLS endpoint and
    albatrossd with the default accelerator (``auto``: KVM where it makes
    progress, TCG on this nested KVM); its kernel and userland lines come to
    a remote ``console``, it pings across the bridge, a remote ``destroy``
    leaves nothing behind."""
    import shlex
    import subprocess
    import sys

    from albatross_py.client.cli import main
    from albatross_py.host import net
    from albatross_py.wire.names import Name
    from tests.integration.stack import stack
    from tests.integration.test_client_remote import start_endpoint
    from tests.system.test_qemu_vmmd import qemu_pids

    bridge_name, n = bridge
    pki = workdir / "pki"
    pki.mkdir()
    monkeypatch.chdir(pki)
    assert main(["generate", "root", "db"]) == 0
    assert main(["add-policy", "tenant", "2", "--mem", "512", "--block", "8",
                 "--bridge", bridge_name, "--csr"]) == 0  # fmt: skip
    assert main(["sign", "cacert.pem", "db", "root.key", "tenant.req"]) == 0
    dest = ["-d", "127.0.0.1:{port}", "--ca", "tenant.pem", "--ca-key", "tenant.key",
            "--server-ca", "cacert.pem"]  # fmt: skip
    commands = [
        shlex.split(line)
        for line in linux_guest.deploy_commands(
            guest, name="linux", bridge=bridge_name, ip=f"10.77.{n}.2/24", ping=f"10.77.{n}.1"
        )
    ]
    assert [c[:2] for c in commands] == [
        ["albatross-client", "create-block"],
        ["albatross-client", "create"],
        ["albatross-client", "console"],
        ["albatross-client", "destroy"],
    ]
    before_qemu, before_taps = qemu_pids(), set(net.stale_taps_sync())

    async def client(argv: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await trio.to_thread.run_sync(main, argv)
        out, err = capsys.readouterr()
        return code, out, err

    (workdir / "s").mkdir()
    async with stack(workdir / "s") as s:
        port = await start_endpoint(s, pki)
        remote = [w.format(port=port) for w in dest]
        for argv in commands[:2]:
            code, out, err = await client([*argv[1:], *remote])
            assert code == 0, (argv, out, err)
        vm = s.sup.resources.find_unikernel(Name.of_string("tenant:linux"))
        assert vm is not None and net.tap_master_sync(vm.taps[0]) == bridge_name

        # the console, remotely, as a user runs it: a separate process
        console = subprocess.Popen(
            [sys.executable, "-c", "import sys; from albatross_py.client.cli import main;"
             " sys.exit(main())", *commands[2][1:], *remote],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            seen: list[str] = []

            def read_until_ping() -> None:
                assert console.stdout is not None
                for line in console.stdout:
                    seen.append(line)
                    if "LINUX-GUEST: ping" in line:
                        return

            with trio.fail_after(PING_BOUND):
                await trio.to_thread.run_sync(read_until_ping, abandon_on_cancel=True)
        finally:
            console.kill()
            _, console_err = console.communicate(timeout=10)
        text = "".join(seen)
        assert PING_OK in text, f"{text}\n{console_err}"
        assert "LINUX-GUEST: eth0" in text, text  # userland
        assert "] Linux version" in text and "] Kernel command line" in text, text  # kernel
        assert "qemu-system" not in text, text  # no QEMU warnings on the console
        counters = net.counters_sync(vm.taps[0])
        assert counters.rx_packets >= 3 and counters.tx_packets >= 3, counters

        code, out, err = await client([*commands[3][1:], *remote])
        assert code == 0 and "destroyed unikernel" in out, (out, err)
        assert s.sup.resources.find_unikernel(Name.of_string("tenant:linux")) is None
        assert set(net.stale_taps_sync()) == before_taps
        assert list((s.tmpdir / "fifo").iterdir()) == []
    assert qemu_pids() <= before_qemu
