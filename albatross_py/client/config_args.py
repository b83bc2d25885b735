"""albatross-client's command-line values: names, devices, configs, policies (spec 5.10).

Everything here turns strings from the command line into wire values and
raises :class:`CliError` (exit 124) with a message a user can act on:

* ``--block name[:device][@sector-size]``: the sector size must be a power
  of two of at least 512;
* ``--net [name:]bridge[@mac]``: without ``name:`` the guest-side name and
  the bridge are the same (the bridge field stays absent on the wire, as
  albatross sends it);
* block and network names must each be unique ("… must be a set");
* ``--cpu`` defaults to ``[0]``, ``--mem`` to 32 MB, ``--cpus`` to 1.
"""

from __future__ import annotations

import argparse
import enum
from collections.abc import Sequence

from albatross_py.wire.jsonview import mac_of_str
from albatross_py.wire.names import Name, NameError_, Path, path_of_string
from albatross_py.wire.types import (
    BlockDevice,
    FailBehaviour,
    NetDevice,
    Policy,
    Typ,
    UnikernelArguments,
    UnikernelConfig,
)

#: Smallest sector size albatross accepts for ``--block …@N``.
MIN_SECTOR_SIZE = 512


class CliError(ValueError):
    """The command line asks for something invalid (exit 124)."""


# -- names ----------------------------------------------------------------------


def parse_name(s: str) -> Name:
    """A unikernel or block name: ``foo``, ``:foo``, ``a:b:foo`` (``a:`` is a path)."""
    try:
        return Name.of_string(s)
    except NameError_ as exc:
        raise CliError(f"invalid name {s!r}: {exc}") from None


def parse_path(s: str) -> Path:
    """A policy path: ``a:b``, ``a:b:``, ``:`` or empty for the root."""
    try:
        return path_of_string(s)
    except NameError_ as exc:
        raise CliError(f"invalid path {s!r}: {exc}") from None


def parse_name_or_path(s: str | None) -> Name:
    """``info``/``block``/``stats`` targets: default root; ``a:`` is a path."""
    if s is None or s in ("", ":"):
        return Name()
    return parse_name(s)


# -- devices --------------------------------------------------------------------


def _split_at(s: str, what: str) -> tuple[str, str | None]:
    head, sep, tail = s.rpartition("@")
    if not sep:
        return s, None
    if not head or not tail:
        raise CliError(f"invalid {what} {s!r}")
    return head, tail


def parse_block(s: str) -> BlockDevice:
    """``name[:device][@sector-size]``."""
    spec, sector_s = _split_at(s, "block device")
    sector: int | None = None
    if sector_s is not None:
        try:
            sector = int(sector_s)
        except ValueError:
            msg = f"block device {s!r}: sector size {sector_s!r} is not a number"
            raise CliError(msg) from None
        if sector < MIN_SECTOR_SIZE or sector & (sector - 1):
            raise CliError(
                f"block device {s!r}: sector size {sector} must be a power of two "
                f">= {MIN_SECTOR_SIZE}"
            )
    name, sep, device = spec.partition(":")
    if not name or (sep and not device) or ":" in device:
        raise CliError(f"invalid block device {s!r} (expected name[:device][@sector-size])")
    return BlockDevice(name, device or None, sector)


def parse_net(s: str) -> NetDevice:
    """``[name:]bridge[@mac]``."""
    spec, mac_s = _split_at(s, "network device")
    mac: bytes | None = None
    if mac_s is not None:
        try:
            mac = mac_of_str(mac_s)
        except ValueError as exc:
            raise CliError(f"network device {s!r}: {exc}") from None
    parts = spec.split(":")
    if len(parts) > 2 or not all(parts):
        raise CliError(f"invalid network device {s!r} (expected [name:]bridge[@mac])")
    if len(parts) == 1:
        return NetDevice(parts[0], None, mac)
    return NetDevice(parts[0], parts[1], mac)


def _unique(names: Sequence[str], what: str) -> None:
    if len(set(names)) != len(names):
        dups = sorted({n for n in names if names.count(n) > 1})
        raise CliError(f"{what} must be a set (duplicate: {', '.join(dups)})")


# -- argparse flags -------------------------------------------------------------


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """The unikernel configuration flags shared by ``create`` and ``restart``."""
    p.add_argument("--startup", type=int, help="boot priority, lower starts first (default 50)")
    p.add_argument("--no-add-name", action="store_true",
                   help="do not pass --name=<label> to the unikernel")  # fmt: skip
    p.add_argument("--cpu", type=int, action="append", metavar="N",
                   help="CPU id to pin to, repeatable (default 0)")  # fmt: skip
    p.add_argument("--mem", type=int, default=32, metavar="MB", help="memory (default 32)")
    p.add_argument("--arg", action="append", metavar="ARG", help="boot argument, repeatable")
    p.add_argument("--block", action="append", metavar="NAME[:DEVICE][@SECTOR]",
                   help="block device, repeatable")  # fmt: skip
    p.add_argument("--net", action="append", metavar="[NAME:]BRIDGE[@MAC]",
                   help="network device, repeatable")  # fmt: skip
    p.add_argument("--restart-on-fail", "--restart", dest="restart_on_fail",
                   action="store_true", help="restart the unikernel when it exits")  # fmt: skip
    p.add_argument("--exit-code", type=int, action="append", metavar="N",
                   help="with --restart-on-fail: only restart on these codes")  # fmt: skip
    p.add_argument("--cpus", type=int, default=1, metavar="N", help="number of CPUs (default 1)")
    p.add_argument("--linux-boot", metavar="PARTITION", help="bhyve: grub-bhyve boot partition")


def _common_fields(a: argparse.Namespace) -> dict[str, object]:
    cpuids = a.cpu if a.cpu is not None else [0]
    if not cpuids:
        raise CliError("at least one --cpu is needed")
    if a.mem <= 0:
        raise CliError(f"--mem {a.mem}: memory must be positive")
    if a.cpus <= 0:
        raise CliError(f"--cpus {a.cpus}: must be positive")
    blocks = tuple(parse_block(b) for b in a.block or ())
    nets = tuple(parse_net(n) for n in a.net or ())
    _unique([b.name for b in blocks], "block device names")
    _unique([n.netif for n in nets], "network interface names")
    if a.restart_on_fail:
        fail = FailBehaviour(restart=True, exit_codes=frozenset(a.exit_code or ()) or None)
    else:
        fail = FailBehaviour()
    return {
        "startup": a.startup,
        "add_name": not a.no_add_name,
        "fail_behaviour": fail,
        "cpuids": frozenset(cpuids),
        "memory": a.mem,
        "blocks": blocks,
        "bridges": nets,
        "argv": tuple(a.arg) if a.arg else None,
        "cpus": a.cpus,
        "linux_boot_partition": a.linux_boot,
    }


def config_from_args(a: argparse.Namespace, image: bytes, compressed: bool) -> UnikernelConfig:
    typ = Typ[a.typ.upper()]
    return UnikernelConfig(typ=typ, compressed=compressed, image=image, **_common_fields(a))  # type: ignore[arg-type]


def arguments_from_args(a: argparse.Namespace) -> UnikernelArguments:
    return UnikernelArguments(**_common_fields(a))  # type: ignore[arg-type]


def add_policy_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mem", type=int, default=512, metavar="MB", help="memory (default 512)")
    p.add_argument("--cpu", type=int, action="append", metavar="N",
                   help="allowed CPU id, repeatable (default 0)")  # fmt: skip
    p.add_argument("--block", "--size", dest="block", type=int, metavar="MB",
                   help="block storage (default: none)")  # fmt: skip
    p.add_argument("--network", "--bridge", dest="bridges", action="append", metavar="NAME",
                   help="allowed bridge, repeatable")  # fmt: skip


def policy_from_args(a: argparse.Namespace) -> Policy:
    try:
        unikernels = int(a.unikernels)
    except ValueError:
        raise CliError(f"UNIKERNELS {a.unikernels!r} is not a number") from None
    cpuids = a.cpu if a.cpu is not None else [0]
    return Policy(unikernels, frozenset(cpuids), a.mem, a.block, frozenset(a.bridges or ()))


def parse_stats_bridge(s: str) -> tuple[str, str]:
    """``stats-add --bridge netif:tap``."""
    netif, sep, tap = s.partition(":")
    if not sep or not netif or not tap:
        raise CliError(f"invalid --bridge {s!r} (expected name:tap)")
    return netif, tap


class Exit(enum.IntEnum):
    """albatross-client's exit codes (spec 7.5)."""

    SUCCESS = 0
    CHAIN_FAILURE = 116
    REMOTE_COMMAND_FAILED = 117
    HTTP_FAILURE = 118
    LOCAL_AUTHENTICATION_FAILED = 119
    REMOTE_AUTHENTICATION_FAILED = 120
    COMMUNICATION_FAILED = 121
    CONNECT_FAILED = 122
    CLI_ERROR = 124
    INTERNAL_ERROR = 125
