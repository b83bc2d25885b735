"""A small Linux guest assembled from Debian packages: it pings the host bridge.

The proof that traffic flows through our taps and bridges needs a guest
with a real network stack.  This module assembles one from two Debian
packages, downloaded with ``apt-get download`` and never installed on the
host: the current bookworm kernel (the package ``linux-image-amd64``
depends on) and ``busybox-static``.

* **Kernel.**  ``vmlinuz`` is the package's bzImage.  ``vmlinux`` is the
  uncompressed kernel cut out of it (the XZ stream after the setup code,
  what the kernel's ``scripts/extract-vmlinux`` does); it is an ELF with a
  PVH entry note, which QEMU boots directly without decompressing the
  kernel in guest code.  Under TCG that saves seconds, so
  :attr:`LinuxGuest.kernel` is the ``vmlinux`` (the bzImage stays for
  reference and for QEMU builds without PVH support).
* **initramfs** (``initrd.cpio.gz``, newc, written here, so no root and no
  ``cpio`` are needed): busybox, ``/dev/console``, the modules virtio-net
  needs that the kernel does not have built in (``virtio_pci``,
  ``virtio_net`` and their dependencies, found by reading each module's
  ``.modinfo`` ``depends=`` since the package ships no ``modules.dep``),
  in dependency order, and ``/init``.
* **/init** mounts proc, sys and dev, loads the modules, gives ``eth0`` the
  address ``albatross.ip=`` from the kernel command line, pings
  ``albatross.ping=`` three times and prints ``LINUX-GUEST: ping ok`` or
  ``LINUX-GUEST: ping failed`` on the serial console, then powers off
  (``poweroff -f``: ACPI S5, QEMU exits 0).  :func:`kernel_cmdline` writes
  such a command line.

Only the files needed are taken from the kernel package (its data tar is
streamed once; the full ``dpkg -x`` would write 400 MB).  Results live in a
cache directory (default ``$XDG_CACHE_HOME/albatross-py/linux-guest``) with
a manifest naming the package versions and a digest of the build recipe:
a later :func:`build` reuses them while the packages apt offers and the
recipe are unchanged, and without asking apt at all when it cannot (no
package lists, offline) but a build is cached.

Command line (``bin/build-linux-guest`` wraps it):
``python -m albatross_py.virt.linux_guest [--out DIR] [--force]``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shlex
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: The metapackage whose dependency names the current kernel package.
KERNEL_META = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
#: What the guest needs for virtio-net over PCI (the ``pc`` machine): loaded
#: with their dependencies when the kernel has them as modules.
WANTED_MODULES = ("virtio_pci", "virtio_net")
#: Lines /init prints on the serial console.
PING_OK = "LINUX-GUEST: ping ok"
PING_FAILED = "LINUX-GUEST: ping failed"
#: Bounds one apt or dpkg-deb run (a 70 MB download included).
COMMAND_TIMEOUT = 600.0

KERNEL_FILE = "vmlinuz"
VMLINUX_FILE = "vmlinux"
INITRD_FILE = "initrd.cpio.gz"
MANIFEST_FILE = "manifest.json"

INIT_SCRIPT = r"""#!/bin/sh
# albatross-py Linux guest: bring up eth0, ping the host bridge, power off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "LINUX-GUEST: $*"; }
fail() { say "ping failed ($*)"; poweroff -f; }
for m in $(cat /lib/modules/load-order); do
  insmod "/lib/modules/$m.ko" || say "insmod $m failed"
done
ip= target= then=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    albatross.ip=*) ip="${arg#albatross.ip=}" ;;
    albatross.ping=*) target="${arg#albatross.ping=}" ;;
    albatross.then=*) then="${arg#albatross.then=}" ;;
  esac
done
[ -n "$ip" ] && [ -n "$target" ] || fail "no albatross.ip= or albatross.ping= on the command line"
i=0
while [ ! -e /sys/class/net/eth0 ]; do
  i=$((i + 1))
  [ "$i" -le 100 ] || fail "no eth0"
  sleep 0.1
done
ip link set lo up
ip addr add "$ip" dev eth0 || fail "cannot set $ip on eth0"
ip link set eth0 up || fail "cannot bring eth0 up"
say "eth0 $ip up, pinging $target"
if ping -c 3 -i 0.2 -w 20 "$target"; then
  echo "LINUX-GUEST: ping ok"
else
  echo "LINUX-GUEST: ping failed"
fi
if [ "$then" = stay ]; then
  say "staying up"
  while :; do sleep 3600; done
fi
poweroff -f
"""

#: Changes to these invalidate cached builds.
RECIPE_VERSION = 2


class LinuxGuestError(RuntimeError):
    """The packages cannot be found, downloaded or assembled; the message says why."""


@dataclass(frozen=True, slots=True)
class LinuxGuest:
    """A built guest: boot ``kernel`` with ``-initrd initrd`` and :func:`kernel_cmdline`."""

    kernel: Path
    initrd: Path
    #: The bzImage (``kernel`` is the uncompressed PVH ``vmlinux`` cut from it).
    vmlinuz: Path
    kernel_package: str
    kernel_version: str
    busybox_version: str


def kernel_cmdline(
    ip: str, ping: str, *, extra: Iterable[str] = (), stay: bool = False, loglevel: int = 4
) -> str:
    """The command line for a guest that takes ``ip`` (CIDR) and pings ``ping``.

    ``panic=-1`` reboots on a panic, which QEMU's ``-no-reboot`` turns into an
    exit, so a broken guest ends instead of hanging.  ``loglevel=4`` (the
    default of ``loglevel``) keeps the boot log off the console (7 shows all
    of it).  ``stay``: after the ping the guest stays up (``albatross.then=stay``)
    until it is destroyed, instead of powering off.  ``mitigations=off``,
    ``tsc=reliable`` and ``no_timer_check`` skip work that costs seconds
    under TCG (measured: about 30% off the time to the ping, interleaved
    runs).
    """
    for what, value in (("ip", ip), ("ping", ping)):
        if not value or any(c.isspace() for c in value):
            raise ValueError(f"invalid {what} {value!r}")
    if "/" not in ip:
        raise ValueError(f"ip {ip!r} needs a prefix length (10.77.0.2/24)")
    args = ["console=ttyS0", "panic=-1", f"loglevel={loglevel}"]
    args += ["mitigations=off", "tsc=reliable", "no_timer_check"]
    args += [f"albatross.ip={ip}", f"albatross.ping={ping}", *extra]
    if stay:
        args.append("albatross.then=stay")
    return " ".join(args)


#: What :func:`deploy_commands` suggests: a bridge the operator has made with
#: the host's address (``ip link add service type bridge; ip addr add
#: 10.77.0.1/24 dev service; ip link set service up``).
DEPLOY_BRIDGE = "service"
DEPLOY_HOST_IP = "10.77.0.1"
DEPLOY_GUEST_IP = "10.77.0.2/24"
#: Memory for the guest: the kernel, the initramfs unpacked and busybox.
DEPLOY_MEMORY_MB = 256


def deploy_commands(
    guest: LinuxGuest,
    *,
    name: str = "linux",
    bridge: str = DEPLOY_BRIDGE,
    ip: str = DEPLOY_GUEST_IP,
    ping: str = DEPLOY_HOST_IP,
) -> list[str]:
    """``albatross-client`` command lines, quoted for a POSIX shell, that deploy
    ``guest`` as VM ``name`` on ``bridge``: the initramfs as a block device
    ``<name>-initrd`` (passed to QEMU as ``-initrd``), then the kernel under
    ``typ qemu`` with the kernel command line as ``--arg`` words."""
    block = f"{name}-initrd"
    size_mb = max(1, -(-guest.initrd.stat().st_size // (1 << 20)))
    create = ["albatross-client", "create", name, str(guest.kernel), "--typ", "qemu"]
    create += ["--mem", str(DEPLOY_MEMORY_MB), "--net", bridge, "--block", f"initrd:{block}"]
    # loglevel=6: the kernel's notices too ("Linux version ..."), so a console
    # attached after the create shows the kernel's lines and then /init's
    for word in kernel_cmdline(ip, ping, loglevel=6, stay=True).split():
        create += ["--arg", word]
    return [
        shlex.join(["albatross-client", "create-block", block, str(size_mb),
                    "--data", str(guest.initrd)]),
        shlex.join(create),
        shlex.join(["albatross-client", "console", name]),
        shlex.join(["albatross-client", "destroy", name]),
    ]  # fmt: skip


def default_out_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "albatross-py" / "linux-guest"


# -- apt ------------------------------------------------------------------------


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(  # type: ignore[call-overload,no-any-return]
            argv, capture_output=True, check=True, timeout=COMMAND_TIMEOUT, **kw
        )
    except FileNotFoundError as e:
        raise LinuxGuestError(f"{argv[0]} not found (a Debian host is needed)") from e
    except subprocess.TimeoutExpired as e:
        raise LinuxGuestError(f"{' '.join(argv)} timed out") from e
    except subprocess.CalledProcessError as e:
        err = e.stderr.decode(errors="replace").strip()
        raise LinuxGuestError(f"{' '.join(argv)} failed: {err}") from e


def _stanzas(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", block, re.M))
        if fields:
            out.append(fields)
    return out


def resolve_packages() -> dict[str, tuple[str, str]]:
    """``{"kernel": (package, version), "busybox": (package, version)}`` as apt offers now.

    The kernel package is the one the metapackage ``linux-image-amd64``
    depends on (one ``apt-cache`` run: it takes about a second).
    """
    argv = ["apt-cache", "show", "--no-all-versions", KERNEL_META, BUSYBOX_PACKAGE]
    found = {s.get("Package"): s for s in _stanzas(_run(argv).stdout.decode())}
    meta, busybox = found.get(KERNEL_META), found.get(BUSYBOX_PACKAGE)
    if meta is None or busybox is None:
        raise LinuxGuestError(f"apt does not know {KERNEL_META} and {BUSYBOX_PACKAGE}")
    m = re.search(r"(linux-image-[^\s,]+-amd64) \(= ([^)\s]+)\)", meta.get("Depends", ""))
    if m is None:
        raise LinuxGuestError(f"{KERNEL_META} depends on no versioned linux-image package")
    return {"kernel": (m.group(1), m.group(2)), "busybox": (BUSYBOX_PACKAGE, busybox["Version"])}


def download(packages: Iterable[tuple[str, str]], dest: Path) -> list[Path]:
    """``apt-get download package=version...`` into ``dest``; the .debs' paths, in order."""
    wanted = list(packages)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".dl-") as tmp:
        argv = ["apt-get", "download", "-q"]
        if os.geteuid() == 0:
            # apt drops to _apt for downloads, which cannot write our cache
            argv += ["-o", "APT::Sandbox::User=root"]
        _run([*argv, *(f"{p}={v}" for p, v in wanted)], cwd=tmp)
        result = []
        for package, _ in wanted:
            debs = list(Path(tmp).glob(f"{package}_*.deb"))
            if len(debs) != 1:
                raise LinuxGuestError(f"apt-get download {package} gave {len(debs)} files")
            result.append(dest / debs[0].name)
            os.replace(debs[0], result[-1])
        return result


# -- the kernel package ----------------------------------------------------------------


def _stream_members(deb: Path, want: Callable[[str], bool]) -> dict[str, bytes]:
    """Regular files of ``deb``'s data for which ``want(path)`` holds (paths without ``./``)."""
    found: dict[str, bytes] = {}
    proc = subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", os.fspath(deb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if member.isfile() and want(name):
                    f = tar.extractfile(member)
                    assert f is not None
                    found[name] = f.read()
        _, err = proc.communicate(timeout=COMMAND_TIMEOUT)
    except (tarfile.TarError, OSError) as e:
        raise LinuxGuestError(f"cannot read {deb.name}: {e}") from e
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise LinuxGuestError(f"dpkg-deb --fsys-tarfile {deb.name} failed: {err.decode().strip()}")
    return found


def modinfo(ko: bytes) -> dict[str, str]:
    """A kernel module's ``.modinfo`` section (ELF64 little-endian) as a dict."""
    if ko[:6] != b"\x7fELF\x02\x01":
        raise LinuxGuestError("not an ELF64 little-endian module (compressed modules?)")
    (shoff,) = struct.unpack_from("<Q", ko, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ko, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _, _, _, offset, size = struct.unpack_from("<IIQQQQ", ko, shoff + i * shentsize)
        return name, offset, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        end = ko.index(b"\0", stroff + name)
        if ko[stroff + name : end] == b".modinfo":
            info: dict[str, str] = {}
            for entry in ko[offset : offset + size].split(b"\0"):
                key, sep, value = entry.decode(errors="replace").partition("=")
                if sep:
                    info.setdefault(key, value)
            return info
    return {}


def _modname(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return base.removesuffix(".ko").replace("-", "_")


@dataclass(frozen=True, slots=True)
class KernelParts:
    release: str
    vmlinuz: bytes
    #: (module name, .ko contents) in load order: dependencies first.
    modules: tuple[tuple[str, bytes], ...]


def _likely_module(path: str) -> bool:
    """Module paths read in the first pass: virtio and the net core drivers."""
    m = re.match(r"lib/modules/[^/]+/kernel/(.*\.ko)\Z", path)
    if m is None:
        return False
    rel = m.group(1)
    return rel.startswith("drivers/virtio/") or bool(
        re.match(r"(drivers/net|net/core)/[^/]+\.ko\Z", rel)
    )


def kernel_parts(deb: Path, wanted: Iterable[str] = WANTED_MODULES) -> KernelParts:
    """The bzImage and the modules ``wanted`` needs (with dependencies) from a kernel .deb."""

    def first(path: str) -> bool:
        return (
            bool(re.match(r"boot/vmlinuz-[^/]+\Z", path))
            or bool(re.match(r"lib/modules/[^/]+/modules\.(order|builtin)\Z", path))
            or _likely_module(path)
        )

    files = _stream_members(deb, first)
    kernels = [p for p in files if p.startswith("boot/vmlinuz-")]
    if len(kernels) != 1:
        raise LinuxGuestError(f"{deb.name} has {len(kernels)} kernels in /boot")
    release = kernels[0].removeprefix("boot/vmlinuz-")
    moddir = f"lib/modules/{release}/"
    try:
        order = files[moddir + "modules.order"].decode().split()
        builtin = files[moddir + "modules.builtin"].decode().split()
    except KeyError as e:
        raise LinuxGuestError(f"{deb.name} has no {e.args[0]}") from e
    paths = {_modname(p): moddir + p for p in order}
    builtins = {_modname(p) for p in builtin}

    # The dependency closure, reading modules the first pass missed in
    # further passes (never needed for the Debian kernels seen so far).
    infos: dict[str, dict[str, str]] = {}
    todo = [m.replace("-", "_") for m in wanted]
    while todo:
        missing = {paths[m] for m in todo if m in paths and paths[m] not in files}
        if missing:
            files.update(_stream_members(deb, missing.__contains__))
        nxt: list[str] = []
        for m in todo:
            if m in builtins or m in infos:
                continue
            if m not in paths or paths[m] not in files:
                raise LinuxGuestError(f"kernel {release} has no module {m}")
            infos[m] = modinfo(files[paths[m]])
            nxt += [d for d in infos[m].get("depends", "").split(",") if d]
        todo = nxt

    ordered: list[str] = []

    def visit(m: str, stack: tuple[str, ...]) -> None:
        if m in ordered or m not in infos:
            return
        if m in stack:
            raise LinuxGuestError(f"module dependency cycle: {' -> '.join((*stack, m))}")
        for d in infos[m].get("depends", "").split(","):
            if d:
                visit(d, (*stack, m))
        ordered.append(m)

    for m in wanted:
        visit(m.replace("-", "_"), ())
    return KernelParts(
        release=release,
        vmlinuz=files[kernels[0]],
        modules=tuple((m, files[paths[m]]) for m in ordered),
    )


XZ_MAGIC = b"\xfd7zXZ\x00"


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The uncompressed ELF kernel inside an XZ-compressed bzImage (``extract-vmlinux``)."""
    pos = bzimage.find(XZ_MAGIC)
    while pos >= 0:
        with contextlib.suppress(lzma.LZMAError):
            out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[pos:])
            if out[:4] == b"\x7fELF":
                return out
        pos = bzimage.find(XZ_MAGIC, pos + 1)
    raise LinuxGuestError("no XZ-compressed ELF kernel in the bzImage")


def busybox_binary(deb: Path) -> bytes:
    files = _stream_members(deb, lambda p: p == "bin/busybox")
    if "bin/busybox" not in files:
        raise LinuxGuestError(f"{deb.name} has no bin/busybox")
    return files["bin/busybox"]


# -- the initramfs ------------------------------------------------------------------


class Cpio:
    """A newc ("070701") archive, as the kernel's initramfs unpacker reads it."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._ino = 0

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)):
        self._ino += 1
        raw = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, *rdev, len(raw), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._buf.write(header + raw + b"\0" * (-(len(header) + len(raw)) % 4))
        self._buf.write(data + b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._buf.getvalue()


def initramfs(busybox: bytes, modules: Iterable[tuple[str, bytes]]) -> bytes:
    """The gzip-compressed initramfs (deterministic: no timestamps)."""
    mods = list(modules)
    c = Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"):
        c.dir(d)
    # the console /init inherits: devtmpfs is not mounted yet when it starts
    c.chardev("dev/console", 5, 1)
    c.file("bin/busybox", busybox, 0o755)
    c.symlink("bin/sh", "busybox")
    for name, ko in mods:
        c.file(f"lib/modules/{name}.ko", ko)
    c.file("lib/modules/load-order", "".join(f"{n}\n" for n, _ in mods).encode())
    c.file("init", INIT_SCRIPT.encode(), 0o755)
    return gzip.compress(c.finish(), compresslevel=9, mtime=0)


# -- build and cache -------------------------------------------------------------------


def recipe_digest() -> str:
    h = hashlib.sha256(repr((RECIPE_VERSION, INIT_SCRIPT, WANTED_MODULES)).encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _cached(out: Path, packages: dict[str, tuple[str, str]] | None) -> LinuxGuest | None:
    try:
        manifest = json.loads((out / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("recipe") != recipe_digest():
        return None
    got = {k: tuple(v) for k, v in manifest.get("packages", {}).items()}
    if packages is not None and got != packages:
        return None
    guest = _guest(out, manifest)
    if guest is None or not all(p.is_file() for p in (guest.kernel, guest.initrd, guest.vmlinuz)):
        return None
    return guest


def _guest(out: Path, manifest: dict[str, object]) -> LinuxGuest | None:
    try:
        packages = manifest["packages"]
        kpkg, kver = packages["kernel"]  # type: ignore[index]
        _, bver = packages["busybox"]  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None
    return LinuxGuest(
        kernel=out / VMLINUX_FILE,
        initrd=out / INITRD_FILE,
        vmlinuz=out / KERNEL_FILE,
        kernel_package=kpkg,
        kernel_version=kver,
        busybox_version=bver,
    )


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def build(out_dir: Path | None = None, *, force: bool = False) -> LinuxGuest:
    """The guest in ``out_dir`` (default :func:`default_out_dir`), built if not cached."""
    out = (Path(out_dir) if out_dir is not None else default_out_dir()).absolute()
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        try:
            packages = resolve_packages()
        except LinuxGuestError:
            # no apt (or no package lists): any cached build will do
            if not force and (guest := _cached(out, None)) is not None:
                return guest
            raise
        if not force and (guest := _cached(out, packages)) is not None:
            return guest
        debs = out / "debs"
        debs.mkdir(exist_ok=True)
        kernel_deb, busybox_deb = download((packages["kernel"], packages["busybox"]), debs)
        for old in debs.glob("*.deb"):
            if old not in (kernel_deb, busybox_deb):
                old.unlink()
        parts = kernel_parts(kernel_deb)
        busybox = busybox_binary(busybox_deb)
        (out / MANIFEST_FILE).unlink(missing_ok=True)
        _write(out / KERNEL_FILE, parts.vmlinuz)
        _write(out / VMLINUX_FILE, extract_vmlinux(parts.vmlinuz))
        _write(out / INITRD_FILE, initramfs(busybox, parts.modules))
        manifest = {
            "recipe": recipe_digest(),
            "packages": packages,
            "release": parts.release,
            "modules": [m for m, _ in parts.modules],
        }
        _write(out / MANIFEST_FILE, json.dumps(manifest, indent=2).encode() + b"\n")
        guest = _guest(out, manifest)
        assert guest is not None
        return guest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="build-linux-guest",
        description="Assemble the Linux test guest (kernel + busybox initramfs) "
        "from Debian packages; print the paths of the results.",
    )
    parser.add_argument("--out", type=Path, help=f"cache directory (default {default_out_dir()})")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    try:
        guest = build(args.out, force=args.force)
    except LinuxGuestError as e:
        print(f"build-linux-guest: {e}", file=sys.stderr)
        return 1
    print(f"kernel  {guest.kernel}")
    print(f"vmlinuz {guest.vmlinuz}")
    print(f"initrd  {guest.initrd}")
    print(f"# {guest.kernel_package} {guest.kernel_version}, busybox {guest.busybox_version}")
    print(
        f"# deploy it through albatrossd (add --destination HOST:PORT ... for a remote"
        f" one); the bridge {DEPLOY_BRIDGE} with {DEPLOY_HOST_IP}/24 must exist:"
    )
    for line in deploy_commands(guest):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    "PING_FAILED",
    "PING_OK",
    "LinuxGuest",
    "LinuxGuestError",
    "build",
    "default_out_dir",
    "deploy_commands",
    "extract_vmlinux",
    "initramfs",
    "kernel_cmdline",
    "kernel_parts",
    "modinfo",
    "resolve_packages",
]
