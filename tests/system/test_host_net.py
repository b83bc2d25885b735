"""Real taps and bridges through netlink (root, CAP_NET_ADMIN).

Each test gets its own bridge ``albtest<random>``; every tap and the bridge
are removed afterwards whatever happens.  A stand-in tender attaches to a
tap with TUNSETIFF exactly as solo5-hvt does, which fails if the tap's flags
(IFF_NO_PI, no vnet header) are wrong.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from albatross_py.host import files, net
from albatross_py.host.files import Layout
from albatross_py.host.net import NetError
from albatross_py.virt.solo5 import Solo5Backend, derive_mac, format_mac
from albatross_py.virt.solo5_elf import make_solo5_elf
from albatross_py.wire.names import Name
from albatross_py.wire.types import NetDevice, UnikernelConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from standin import install_standin

pytestmark = pytest.mark.system

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_PERSIST = 0x0002, 0x1000, 0x0800


class Taps:
    """Remembers taps made by a test so the fixture can always remove them."""

    def __init__(self, bridge: str) -> None:
        self.bridge = bridge
        self.made: list[str] = []

    def create(self) -> str:
        tap = net.create_tap_sync(self.bridge)
        self.made.append(tap)
        return tap


def _delete_link(name: str) -> None:
    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=name):
            ipr.link("del", index=index)


def _cleanup(bridge: str, taps: list[str]) -> None:
    for tap in taps:
        with contextlib.suppress(NetError):
            net.destroy_tap_sync(tap)
    _delete_link(bridge)


@pytest.fixture
def bridge() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_NET_ADMIN) to create bridges and taps")
    name = f"albtest{secrets.token_hex(3)}"
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=name, kind="bridge")
    except NetlinkError as e:
        pytest.skip(f"cannot create a bridge here (no CAP_NET_ADMIN?): {e}")
    try:
        yield name
    finally:
        _delete_link(name)


@pytest.fixture
def taps(bridge: str) -> Iterator[Taps]:
    t = Taps(bridge)
    try:
        yield t
    finally:
        _cleanup(bridge, t.made)


def test_bridges_are_listed(bridge: str) -> None:
    assert bridge in net.list_bridges_sync()
    assert net.bridge_exists_sync(bridge)
    assert not net.bridge_exists_sync("lo")  # exists, but is no bridge
    assert net.interface_exists_sync("lo")
    missing = f"albnone{secrets.token_hex(3)}"
    assert not net.bridge_exists_sync(missing)
    with pytest.raises(NetError, match=f"^interface {missing} does not exist$"):
        net.check_bridge_sync(missing)


def test_interface_names_are_validated() -> None:
    for bad in ("", "a" * 16, "a/b", "a:b", "a b", ".", ".."):
        with pytest.raises(NetError, match="invalid interface name"):
            net.validate_ifname(bad)
    assert net.validate_ifname("a" * 15) == "a" * 15


def test_tap_lifecycle(taps: Taps) -> None:
    tap = taps.create()
    assert tap.startswith("vmmtap")
    assert net.tap_master_sync(tap) == taps.bridge
    flags = int(Path(f"/sys/class/net/{tap}/flags").read_text(), 16)
    assert flags & 0x1, "tap is not up"
    assert tap in net.stale_taps_sync()
    # Exactly a persistent tap without packet info: no vnet header, one queue,
    # the flags solo5's tap_attach asks for.
    tun_flags = int(Path(f"/sys/class/net/{tap}/tun_flags").read_text(), 16)
    assert tun_flags == IFF_TAP | IFF_NO_PI | IFF_PERSIST
    net.destroy_tap_sync(tap)
    assert not net.interface_exists_sync(tap)
    net.destroy_tap_sync(tap)  # gone already: fine


def test_lowest_free_name_is_reused(taps: Taps) -> None:
    first, second = taps.create(), taps.create()
    assert int(first[6:]) < int(second[6:])
    net.destroy_tap_sync(first)
    again = taps.create()
    # Another test run on this host could take the name in between; the
    # lowest free one right now is what we must have got.
    assert again == first or net.interface_exists_sync(first)


def test_refuses_to_delete_non_taps(taps: Taps) -> None:
    with pytest.raises(NetError, match="is not a tap device"):
        net.destroy_tap_sync(taps.bridge)
    assert net.bridge_exists_sync(taps.bridge)


def test_tap_on_missing_bridge() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    missing = f"albnone{secrets.token_hex(3)}"
    with pytest.raises(NetError, match=f"^interface {missing} does not exist$"):
        net.create_tap_sync(missing)


def test_counters_see_frames_from_the_vm_side(taps: Taps) -> None:
    tap = taps.create()
    before = net.counters_sync(tap)
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", tap.encode(), IFF_TAP | IFF_NO_PI))
        frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + b"albatross" * 6
        for _ in range(3):
            os.write(fd, frame)
    finally:
        os.close(fd)
    after = net.counters_sync(tap)
    # Counters are host-side: what the VM sends is the tap's rx.
    assert after.rx_packets - before.rx_packets == 3
    assert after.rx_bytes - before.rx_bytes == 3 * len(frame)
    data = after.ifdata("service")
    assert data.bridge == "service"
    assert data.input_packets == after.rx_packets
    assert data.output_packets == after.tx_packets
    assert data.mtu == 1500


async def test_async_api(bridge: str) -> None:
    made: list[str] = []
    try:
        tap = await net.create_tap(bridge)
        made.append(tap)
        assert await net.tap_master(tap) == bridge
        assert bridge in await net.list_bridges()
        assert (await net.counters(tap)).mtu > 0
        await net.destroy_tap(tap)
        assert not await net.interface_exists(tap)
    finally:
        _cleanup(bridge, made)


async def test_standin_attaches_to_real_tap(taps: Taps, tmp_path: Path) -> None:
    for d in ("run/fifo", "db", "bin"):
        (tmp_path / d).mkdir(parents=True)
    layout = Layout(tmp_path / "run", tmp_path / "db")
    install_standin(layout.dbdir)
    backend = Solo5Backend(layout, search_path=str(tmp_path / "bin"))
    name = Name.of_string("tenant:web")
    config = UnikernelConfig(
        image=make_solo5_elf("hvt", 2, nets=["service"]),
        bridges=(NetDevice("service", taps.bridge),),
        argv=("--exit-code=0",),
    )
    prepared = backend.prepare(name, config)
    net.check_bridge_sync(prepared.host_bridges[0])
    tap = taps.create()
    files.write_image(layout, name, prepared.image or b"")
    fifo = layout.fifo_file(name)
    files.ensure_fifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        vm = await backend.start(prepared, [tap], fifo)
        with trio.fail_after(10):
            status, _ = await vm.wait()
        output = os.read(reader, 65536).decode()
    finally:
        os.close(reader)
    assert status.code == 0, output
    mac = format_mac(derive_mac("service", name))
    assert f"standin: net service tap={tap} mac={mac}" in output


def test_batched_counters_equal_netlink(taps: Taps) -> None:
    """The stats tick's /proc/net/dev + sysfs path reports what netlink reports."""
    first, second = taps.create(), taps.create()
    batched = net.counters_many_sync([first, second, "lo", "no-such-if0"])
    assert set(batched) == {first, second, "lo"}
    for name in (first, second):  # idle: nothing changes between the two reads
        assert batched[name] == net.counters_sync(name), name
    # lo carries whatever else this machine does meanwhile: it only grows
    now = net.counters_sync("lo")
    assert 0 < batched["lo"].rx_bytes <= now.rx_bytes and batched["lo"].tx_packets <= now.tx_packets
