"""Taps and bridges through netlink (pyroute2): what albatrossd does with ``ip``.

albatross gives every network device of a VM its own tap, named with the
lowest free ``vmmtap<N>``, brings it up and enslaves it to the host bridge
(spec 5.3); it lists bridges for the root policy and reads interface counters
for statistics.  It shells out to ``ip``; we speak netlink directly, which is
faster and gives typed errors.

pyroute2's async API is asyncio-only, so every call here is a blocking
function (suffix ``_sync``) opening its own ``IPRoute`` socket, with an async
twin that runs it in a trio worker thread.  Interface names are validated
before they reach the kernel.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import trio
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from albatross_py.wire.types import IfData

TAP_PREFIX = "vmmtap"
#: IFNAMSIZ is 16 including the terminating NUL.
MAX_IFNAME = 15
#: A tap for solo5 and QEMU: no packet-info header, no vnet header, one queue.
#: pyroute2 sets IFF_NO_PI only when all four keys are given (HOST-FACTS).
TAP_IFR = {"no_pi": True, "one_queue": False, "vnet_hdr": False, "multi_queue": False}
_TAP_NAME = re.compile(rf"{TAP_PREFIX}(\d+)\Z")
#: Choosing a free name and creating the tap must not interleave: adding a
#: tap that already exists with the same flags succeeds silently, so two
#: VMs could end up sharing one.
_allocation_lock = threading.Lock()

P = ParamSpec("P")
T = TypeVar("T")


class NetError(Exception):
    """A tap or bridge operation failed; the message is for the client."""


def validate_ifname(name: str) -> str:
    """Linux's ``dev_valid_name``: 1-15 bytes, not ``.``/``..``, no ``/``, ``:`` or space."""
    if not isinstance(name, str):
        raise NetError(f"interface name must be a string, got {type(name).__name__}")
    raw = name.encode("utf-8", "surrogateescape")
    if not 0 < len(raw) <= MAX_IFNAME:
        raise NetError(f"invalid interface name {name!r} (1-{MAX_IFNAME} bytes)")
    if name in (".", "..") or any(c in name for c in "/:\0") or any(c.isspace() for c in name):
        raise NetError(f"invalid interface name {name!r}")
    return name


def _kind(link: Any) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _links(ipr: IPRoute) -> list[tuple[str, str | None, Any]]:
    return [(link.get_attr("IFLA_IFNAME"), _kind(link), link) for link in ipr.get_links()]


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _run(fn: Callable[[IPRoute], T]) -> T:
    try:
        with IPRoute() as ipr:
            return fn(ipr)
    except NetlinkError as e:
        raise NetError(f"netlink: {e}") from e


# -- bridges --------------------------------------------------------------------


def list_bridges_sync() -> list[str]:
    """All bridges on the host, sorted (the root policy's bridges)."""
    return sorted(name for name, kind, _ in _run(_links) if kind == "bridge")


def interface_exists_sync(name: str) -> bool:
    validate_ifname(name)
    return _run(lambda ipr: _index(ipr, name) is not None)


def bridge_exists_sync(name: str) -> bool:
    """True if ``name`` exists and is a bridge (a tap can only be enslaved to one)."""
    validate_ifname(name)
    return any(n == name and kind == "bridge" for n, kind, _ in _run(_links))


def check_bridge_sync(name: str) -> None:
    """albatross's create check, with its message."""
    if not bridge_exists_sync(name):
        raise NetError(f"interface {name} does not exist")


# -- taps ---------------------------------------------------------------------


def _lowest_free(names: set[str]) -> str:
    used = {int(m.group(1)) for n in names if (m := _TAP_NAME.match(n))}
    n = 0
    while n in used:
        n += 1
    return f"{TAP_PREFIX}{n}"


def create_tap_sync(bridge: str) -> str:
    """Create the lowest free ``vmmtap<N>``, bring it up, enslave it to ``bridge``."""
    validate_ifname(bridge)

    def create(ipr: IPRoute) -> str:
        with _allocation_lock:
            links = _links(ipr)
            bridge_index = next(
                (link["index"] for n, kind, link in links if n == bridge and kind == "bridge"),
                None,
            )
            if bridge_index is None:
                raise NetError(f"interface {bridge} does not exist")
            tap = _lowest_free({n for n, _, _ in links})
            if len(tap) > MAX_IFNAME:
                raise NetError("no free tap name")
            ipr.link("add", ifname=tap, kind="tuntap", mode="tap", ifr=TAP_IFR)
        try:
            index = _index(ipr, tap)
            if index is None:
                raise NetError(f"tap {tap} vanished after creation")
            ipr.link("set", index=index, state="up", master=bridge_index)
        except BaseException:
            _delete_tap(ipr, tap)
            raise
        return tap

    return _run(create)


def _delete_tap(ipr: IPRoute, tap: str) -> None:
    for name, kind, link in _links(ipr):
        if name == tap:
            # Refuse to delete what is not a tun/tap: a bad name must never
            # take down the host's uplink.
            if kind != "tun":
                raise NetError(f"{tap} is not a tap device")
            ipr.link("del", index=link["index"])
            return


def destroy_tap_sync(tap: str) -> None:
    """Delete a tap; a tap that is already gone is fine (cleanup must not fail)."""
    validate_ifname(tap)
    _run(lambda ipr: _delete_tap(ipr, tap))


def stale_taps_sync() -> list[str]:
    """``vmmtap<N>`` taps present now; at startup no VM uses any, so all are stale."""
    return sorted(n for n, kind, _ in _run(_links) if kind == "tun" and _TAP_NAME.match(n))


def tap_master_sync(tap: str) -> str | None:
    """The bridge a tap is enslaved to, if any."""
    validate_ifname(tap)

    def master(ipr: IPRoute) -> str | None:
        by_index = {link["index"]: n for n, _, link in _links(ipr)}
        for n, _, link in _links(ipr):
            if n == tap:
                m = link.get_attr("IFLA_MASTER")
                return by_index.get(m) if m else None
        raise NetError(f"interface {tap} does not exist")

    return _run(master)


# -- counters -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkCounters:
    """``IFLA_STATS64`` plus flags and MTU.  For a tap, rx is VM-to-host, tx host-to-VM."""

    flags: int
    mtu: int
    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int
    rx_errors: int
    tx_errors: int
    rx_dropped: int
    tx_dropped: int
    multicast: int
    collisions: int

    def ifdata(self, netif: str) -> IfData:
        """The wire's counters, filled as albatross-stats does on Linux (libnl)."""
        return IfData(
            bridge=netif,
            flags=self.flags & 0xFFFFFFFF,
            mtu=self.mtu,
            input_packets=self.rx_packets,
            input_errors=self.rx_errors,
            output_packets=self.tx_packets,
            output_errors=self.tx_errors,
            collisions=self.collisions,
            input_bytes=self.rx_bytes,
            output_bytes=self.tx_bytes,
            input_mcast=self.multicast,
            input_dropped=self.rx_dropped,
            output_dropped=self.tx_dropped,
        )


_STATS64_FIELDS = tuple(f for f in LinkCounters.__dataclass_fields__ if f not in ("flags", "mtu"))


def counters_sync(ifname: str) -> LinkCounters:
    validate_ifname(ifname)

    def read(ipr: IPRoute) -> LinkCounters:
        index = _index(ipr, ifname)
        if index is None:
            raise NetError(f"interface {ifname} does not exist")
        link = ipr.get_links(index)[0]
        stats = link.get_attr("IFLA_STATS64") or {}
        return LinkCounters(
            flags=link["flags"],
            mtu=link.get_attr("IFLA_MTU") or 0,
            **{f: stats.get(f, 0) for f in _STATS64_FIELDS},
        )

    return _run(read)


def parse_proc_net_dev(text: str) -> dict[str, dict[str, int]]:
    """``/proc/net/dev``: per interface, the kernel's 64-bit counters by name."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        v = [int(x) for x in rest.split()]
        if len(v) < 16:
            continue
        out[name.strip()] = {
            "rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
            "multicast": v[7], "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10],
            "tx_dropped": v[11], "collisions": v[13],
        }  # fmt: skip
    return out


IFF_UP, IFF_RUNNING, IFF_LOWER_UP, IFF_DORMANT = 0x1, 0x40, 0x10000, 0x20000
IFF_PROMISC, IFF_ALLMULTI = 0x100, 0x200


def _runtime_flags(sys_dir: str, flags: int) -> int:
    """sysfs ``flags`` is ``dev->flags``; netlink reports ``dev_get_flags()``,
    which adds RUNNING, LOWER_UP and DORMANT from the link state and shows
    PROMISC/ALLMULTI only when a user asked for them (a bridge port has them
    in ``dev->flags`` because the bridge set them; our taps never ask)."""
    flags &= ~(IFF_PROMISC | IFF_ALLMULTI)
    if not flags & IFF_UP:
        return flags
    with open(f"{sys_dir}/operstate") as f:
        oper = f.read().strip()
    if oper in ("up", "unknown"):
        flags |= IFF_RUNNING
    elif oper == "dormant":
        flags |= IFF_DORMANT
    try:
        with open(f"{sys_dir}/carrier") as f:
            if f.read().strip() == "1":
                flags |= IFF_LOWER_UP
    except OSError:  # EINVAL while the device is down
        pass
    return flags


def counters_many_sync(ifnames: Iterable[str]) -> dict[str, LinkCounters]:
    """Counters of several interfaces from one read of ``/proc/net/dev`` (plus
    flags and MTU from sysfs); interfaces that do not exist are left out.

    The stats daemon's per-tick path: one netlink round trip per tap (and
    pyroute2's event loop per ``IPRoute``) cost milliseconds each, which for
    a thousand taps was seconds of CPU per tick.  The numbers are the same
    64-bit counters the kernel reports over netlink.
    """
    with open("/proc/net/dev") as f:
        table = parse_proc_net_dev(f.read())
    out: dict[str, LinkCounters] = {}
    for name in ifnames:
        counters = table.get(name)
        if counters is None:
            continue
        try:
            sys_dir = f"/sys/class/net/{validate_ifname(name)}"
            with open(f"{sys_dir}/flags") as f:
                flags = int(f.read().strip(), 16)
            with open(f"{sys_dir}/mtu") as f:
                mtu = int(f.read().strip())
            flags = _runtime_flags(sys_dir, flags)
        except (OSError, ValueError, NetError):
            continue  # vanished between the two reads
        out[name] = LinkCounters(flags=flags, mtu=mtu, **counters)
    return out


# -- async twins --------------------------------------------------------------


async def _in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))


async def list_bridges() -> list[str]:
    return await _in_thread(list_bridges_sync)


async def interface_exists(name: str) -> bool:
    return await _in_thread(interface_exists_sync, name)


async def bridge_exists(name: str) -> bool:
    return await _in_thread(bridge_exists_sync, name)


async def check_bridge(name: str) -> None:
    await _in_thread(check_bridge_sync, name)


async def create_tap(bridge: str) -> str:
    return await _in_thread(create_tap_sync, bridge)


async def destroy_tap(tap: str) -> None:
    await _in_thread(destroy_tap_sync, tap)


async def stale_taps() -> list[str]:
    return await _in_thread(stale_taps_sync)


async def tap_master(tap: str) -> str | None:
    return await _in_thread(tap_master_sync, tap)


async def counters(ifname: str) -> LinkCounters:
    return await _in_thread(counters_sync, ifname)


__all__ = [
    "MAX_IFNAME",
    "TAP_IFR",
    "TAP_PREFIX",
    "LinkCounters",
    "NetError",
    "bridge_exists",
    "bridge_exists_sync",
    "check_bridge",
    "check_bridge_sync",
    "counters",
    "counters_sync",
    "create_tap",
    "create_tap_sync",
    "destroy_tap",
    "destroy_tap_sync",
    "interface_exists",
    "interface_exists_sync",
    "list_bridges",
    "list_bridges_sync",
    "stale_taps",
    "stale_taps_sync",
    "tap_master",
    "tap_master_sync",
    "validate_ifname",
]
