"""The solo5 backend: run a MirageOS unikernel under solo5-hvt or solo5-spt, as albatross does.

This is ``Vmm_unix.prepare``/``exec`` for ``typ = solo5`` (spec 5.3, 5.7):
decompress the image, hash it, read its ABI note to pick the tender, find the
tender and check that it speaks that ABI version, check the manifest against
the config, derive MAC addresses, and build the exact command line, byte for
byte the one albatross runs, so that unikernels and operators see no
difference.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from albatross_py.host.files import Layout
from albatross_py.virt import solo5_elf
from albatross_py.virt.base import Backend, BackendError, Prepared
from albatross_py.virt.solo5_elf import Abi, Solo5ImageError
from albatross_py.wire.names import Name, NameError_
from albatross_py.wire.types import BridgeInfo, Typ, UnikernelConfig

#: "VEB Kombinat Robotron": the OUI albatross puts in front of derived MACs.
MAC_PREFIX = b"\x00\x80\x41"
#: albatross decompresses without a bound; a few MB of zlib could expand to
#: all of the daemon's memory, so we stop at a size no unikernel comes near.
MAX_IMAGE_BYTES = 1 << 30
#: ``<tender> --version`` prints two lines and exits; it must not hang a create.
TENDER_VERSION_TIMEOUT = 10.0


def derive_mac(netif: str, name: Name) -> bytes:
    """``00:80:41`` + the first 3 bytes of MD5(netif ^ Name.to_string name), no separator."""
    digest = hashlib.md5((netif + str(name)).encode("utf-8", "surrogateescape")).digest()
    return MAC_PREFIX + digest[:3]


def format_mac(mac: bytes) -> str:
    """``Macaddr.to_string``: lower-case hex pairs joined by ``:``."""
    if len(mac) != 6:
        raise BackendError(f"a MAC address has 6 bytes, not {len(mac)}")
    return ":".join(f"{b:02x}" for b in mac)


def uncompressed_image(config: UnikernelConfig, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """The image as the tender needs it (zlib, RFC 1950, when ``compressed``)."""
    if not config.compressed:
        return config.image
    inflate = zlib.decompressobj()
    try:
        image = inflate.decompress(config.image, limit + 1)
    except zlib.error as e:
        raise BackendError(f"failed to uncompress: {e}") from e
    if len(image) > limit:
        raise BackendError(f"failed to uncompress: image larger than {limit} bytes")
    if not inflate.eof:
        raise BackendError("failed to uncompress: truncated zlib stream")
    return image


def check_image(image: bytes, config: UnikernelConfig) -> Abi:
    """ABI (hvt or spt only) and manifest check of an uncompressed image.

    Also what ``restart`` runs before stopping the old VM (spec 5.4).
    """
    try:
        abi = solo5_elf.check_target(solo5_elf.read_abi(image))
        manifest = solo5_elf.read_manifest(image)
        solo5_elf.check_manifest(
            manifest, (b.name for b in config.blocks), (n.netif for n in config.bridges)
        )
    except Solo5ImageError as e:
        raise BackendError(str(e)) from e
    return abi


@dataclass(frozen=True, slots=True)
class Solo5Prepared(Prepared):
    abi: Abi
    tender: Path
    #: (unikernel-side name, block device Name, sector size if given), in config order.
    blocks: tuple[tuple[str, Name, int | None], ...]


class Solo5Backend(Backend):
    typ = Typ.SOLO5

    def __init__(
        self,
        layout: Layout,
        *,
        search_path: str | None = None,
        drop_path: bool = True,
        platform: str = sys.platform,
    ) -> None:
        """``search_path`` replaces ``$PATH`` for finding tenders; ``drop_path``
        False is ``albatrossd --no-drop-path`` (``--name`` gets the full name)."""
        super().__init__(layout)
        self.search_path = search_path
        self.drop_path = drop_path
        self.platform = platform

    def required_commands(self) -> tuple[str, ...]:
        return ("cpuset",) if self.platform.startswith("freebsd") else ("taskset",)

    # -- tender -----------------------------------------------------------------

    def tender_candidates(self, abi: Abi) -> list[tuple[str, Path | None]]:
        """albatross's search order: (program name, ``<dbdir>`` path or None for PATH)."""
        out: list[tuple[str, Path | None]] = []
        for program in (f"{abi.tender}.{abi.version}", abi.tender):
            out += [(program, self.layout.dbdir / program), (program, None)]
        return out

    def find_tender(self, abi: Abi) -> Path:
        """The first tender found, which must report ``ABI version <abi.version>``."""
        tender = None
        for program, path in self.tender_candidates(abi):
            if path is not None:
                if path.is_file() and os.access(path, os.X_OK):
                    tender = path
                    break
            elif found := shutil.which(program, path=self.search_path):
                tender = Path(found)
                break
        if tender is None:
            looked = ", ".join(str(p) if p else n for n, p in self.tender_candidates(abi))
            raise BackendError(f"tender does not exist, looked for {looked}")
        self._check_tender_version(tender, abi.version)
        return tender

    def _check_tender_version(self, tender: Path, version: int) -> None:
        # Tenders print the version on stderr; albatross merges it into stdout.
        try:
            run = subprocess.run(
                [str(tender), "--version"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=TENDER_VERSION_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BackendError(f"cannot run {tender} --version: {e}") from e
        out = run.stdout.decode("utf-8", "replace")
        if run.returncode != 0:
            raise BackendError(f"{tender} --version exited with {run.returncode}: {out}")
        for line in out.splitlines():
            words = line.split(" ")
            if words[:2] == ["ABI", "version"] and len(words) == 3 and words[2] == str(version):
                return
        raise BackendError(
            "unexpected solo5 tender --version output, expected one line with "
            f"'ABI version {version}', got {out.rstrip(chr(10))}"
        )

    # -- the interface ------------------------------------------------------------

    def prepare(self, name: Name, config: UnikernelConfig) -> Solo5Prepared:
        if config.typ is not Typ.SOLO5:
            raise BackendError(f"solo5 backend cannot run typ {config.typ.name.lower()}")
        if name.label is None:
            raise BackendError(f"{name} is a path, not a unikernel name")
        if not config.cpuids:
            raise BackendError("no CPU ids given")
        image = uncompressed_image(config)
        digest = hashlib.sha256(image).digest()
        try:
            abi = solo5_elf.check_target(solo5_elf.read_abi(image))
        except Solo5ImageError as e:
            raise BackendError(str(e)) from e
        tender = self.find_tender(abi)
        check_image(image, config)
        blocks = []
        for b in config.blocks:
            try:
                block_name = Name.make(name.path, b.host_device)
            except NameError_ as e:
                raise BackendError(f"invalid block device name {b.host_device!r}: {e}") from e
            blocks.append((b.name, block_name, b.sector_size))
        return Solo5Prepared(
            name=name,
            config=config,
            digest=digest,
            image=image,
            host_bridges=tuple(n.host_bridge for n in config.bridges),
            abi=abi,
            tender=tender,
            blocks=tuple(blocks),
        )

    def macs(self, prepared: Prepared) -> list[bytes]:
        return [n.mac or derive_mac(n.netif, prepared.name) for n in prepared.config.bridges]

    def pin_command(self, cpuids: frozenset[int]) -> list[str]:
        cpus = ",".join(str(c) for c in sorted(cpuids))
        if self.platform.startswith("freebsd"):
            return ["cpuset", "-l", cpus]
        return ["taskset", "-c", cpus]

    def name_argument(self, name: Name) -> str:
        if self.drop_path and name.label is not None:
            return f"--name={name.label}"
        return f"--name={name}"

    def command_line(
        self, prepared: Prepared, taps: Sequence[str], fifo: Path | None = None
    ) -> list[str]:
        """spec 5.7; the console is the process's stdio, so ``fifo`` is unused here."""
        if not isinstance(prepared, Solo5Prepared):
            raise BackendError("not prepared by the solo5 backend")
        config = prepared.config
        if len(taps) != len(config.bridges):
            raise BackendError(f"{len(config.bridges)} taps needed, {len(taps)} given")
        for tap in taps:
            if not tap or len(tap) > 15 or any(c in tap for c in "=/: \t\n\0"):
                raise BackendError(f"invalid tap name {tap!r}")
        macs = self.macs(prepared)
        argv = [*self.pin_command(config.cpuids), str(prepared.tender), f"--mem={config.memory}"]
        argv += [f"--net:{n.netif}={tap}" for n, tap in zip(config.bridges, taps, strict=True)]
        argv += [
            f"--net-mac:{n.netif}={format_mac(m)}"
            for n, m in zip(config.bridges, macs, strict=True)
        ]
        argv += [f"--block:{dev}={self.layout.block_file(bn)}" for dev, bn, _ in prepared.blocks]
        argv += [
            f"--block-sector-size:{dev}={size}"
            for dev, _, size in prepared.blocks
            if size is not None
        ]
        argv += ["--", str(self.layout.image_file(prepared.name))]
        if config.add_name:
            argv.append(self.name_argument(prepared.name))
        argv += list(config.argv or ())
        return argv

    def bridge_infos(self, prepared: Prepared, taps: Sequence[str]) -> tuple[BridgeInfo, ...]:
        return tuple(
            BridgeInfo(unikernel_device=n.netif, host_device=n.host_bridge, mac=m)
            for n, m in zip(prepared.config.bridges, self.macs(prepared), strict=True)
        )


__all__ = [
    "MAC_PREFIX",
    "MAX_IMAGE_BYTES",
    "Solo5Backend",
    "Solo5Prepared",
    "check_image",
    "derive_mac",
    "format_mac",
    "uncompressed_image",
]
