"""Build tinyguest, our own tiny multiboot test kernel (``guest/tinyguest.S``).

The guest is assembled with binutils (``as --32``, ``ld -m elf_i386``) into a
cache directory keyed by a digest of the source and the build commands, so an
edited source is rebuilt and an unchanged one is not.  What the guest does is
described at the top of its source; the exit convention the QEMU backend
relies on is summarised here:

* ``exit=N`` (1..127) writes N to isa-debug-exit (port 0xf4), so QEMU exits
  with status ``(N << 1) | 1``; :func:`albatross_py.virt.qemu.guest_exit_code`
  maps it back to N.
* ``poweroff`` (and ``exit=0``, and no action at all) is an ACPI S5 power-off,
  so QEMU exits with status 0.
* ``crash`` makes KVM fail to emulate an instruction: QEMU stays alive with
  the VM paused in run state ``internal-error``.

Command line: ``python -m albatross_py.virt.guest build [OUT]`` builds (or
finds in the cache) the kernel, copies it to OUT if given, and prints its path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: The source, found next to the package in a checkout (``guest/`` at the top).
#: ``ALBATROSS_TINYGUEST_SRC`` overrides it, e.g. for an installed package.
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "guest" / "tinyguest.S"

#: Load address: the conventional 1 MiB of multiboot kernels, above the BIOS
#: area on both machine types.
LOAD_ADDRESS = 0x100000

AS_COMMAND = ("as", "--32")
#: ``-N``: one segment starting at LOAD_ADDRESS.  With ld's default paging
#: layout the ELF headers get a segment of their own at 0xff000, inside the
#: BIOS area, which QEMU's multiboot loader would load over the firmware.
LD_COMMAND = (
    "ld", "-m", "elf_i386", "-static", "-nostdlib", "--build-id=none",
    "-N", "--no-warn-rwx-segments", "-e", "_start", f"-Ttext={LOAD_ADDRESS:#x}",
)  # fmt: skip

#: Bounds a build: two tiny binutils runs take milliseconds.
BUILD_TIMEOUT = 60.0


class GuestBuildError(RuntimeError):
    """binutils is missing or the source does not assemble or link."""


def source_path() -> Path:
    env = os.environ.get("ALBATROSS_TINYGUEST_SRC")
    return Path(env) if env else DEFAULT_SOURCE


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "albatross-py" / "tinyguest"


def _digest(source: bytes) -> str:
    h = hashlib.sha256()
    h.update(source)
    h.update(repr((AS_COMMAND, LD_COMMAND)).encode())
    return h.hexdigest()[:16]


def build(cache_dir: Path | None = None, source: Path | None = None) -> Path:
    """Return the path of the built kernel, building it if the cache lacks it."""
    src = source if source is not None else source_path()
    try:
        text = src.read_bytes()
    except OSError as e:
        raise GuestBuildError(f"cannot read guest source {src}: {e}") from e
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    out = cache / f"tinyguest-{_digest(text)}.elf"
    if out.is_file():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as tmp:
        obj = Path(tmp) / "tinyguest.o"
        elf = Path(tmp) / "tinyguest.elf"
        _run([*AS_COMMAND, "-o", str(obj), str(src)])
        _run([*LD_COMMAND, "-o", str(elf), str(obj)])
        _check_multiboot(elf.read_bytes())
        # rename is atomic: concurrent builders each produce the same bytes.
        os.replace(elf, out)
    for stale in cache.glob("tinyguest-*.elf"):
        if stale != out:
            stale.unlink(missing_ok=True)
    return out


def _run(argv: list[str]) -> None:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except FileNotFoundError as e:
        raise GuestBuildError(f"{argv[0]} not found (install binutils)") from e
    except subprocess.TimeoutExpired as e:
        raise GuestBuildError(f"{argv[0]} timed out") from e
    if r.returncode != 0:
        raise GuestBuildError(f"{' '.join(argv)} failed:\n{r.stderr.strip()}")


MULTIBOOT_MAGIC = 0x1BADB002
#: Multiboot v1 loaders look for the header in the first 8 KiB of the file.
MULTIBOOT_SEARCH = 8192


def _check_multiboot(image: bytes) -> None:
    head = image[:MULTIBOOT_SEARCH]
    for off in range(0, len(head) - 11, 4):
        magic, flags, checksum = (int.from_bytes(head[off + i : off + i + 4], "little")
                                  for i in (0, 4, 8))  # fmt: skip
        if magic == MULTIBOOT_MAGIC and (magic + flags + checksum) & 0xFFFFFFFF == 0:
            return
    raise GuestBuildError("no multiboot header in the first 8 KiB of the linked guest")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "build" or len(args) > 2:
        print("usage: python -m albatross_py.virt.guest build [OUT]", file=sys.stderr)
        return 2
    try:
        path = build()
    except GuestBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if len(args) == 2:
        shutil.copyfile(path, args[1])
        path = Path(args[1])
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
