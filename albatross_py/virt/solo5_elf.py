"""Solo5 ELF notes: read an image's ABI note and device manifest, or make one.

A Solo5 unikernel is an ELF64 executable that carries two notes owned by
``"Solo5"``: the ABI note (which tender runs it, at which ABI version) and the
manifest (the block and network devices it expects).  albatross reads both
before it starts anything (spec 5.3): the ABI picks the tender, and the
manifest must name exactly the devices the config attaches.

Everything here works on ``bytes`` and does no IO, so the daemon, the client
and the stand-in tender used by the tests share one reader.  The generator
:func:`make_solo5_elf` writes a minimal ELF with real Solo5 notes; the tests and
the stand-in tender use it because no Solo5 toolchain exists on these hosts.

Layouts follow Solo5's ``include/elf_abi.h`` and ``include/mft_abi.h`` (v0.7+)
and robur's ``ocaml-solo5-elftool``, which albatross uses.  The note types are
the ASCII tags ``"ABI1"`` and ``"MFT1"`` read little-endian, not small
integers.  Like albatross, notes are looked up in the sections
``.note.solo5.abi`` and ``.note.solo5.manifest``; like the tenders, images
without section headers are searched through their ``PT_NOTE`` segments.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from albatross_py.core.ocaml import quoted

# -- Solo5 constants (one place; see the module docstring for the sources) ----

SOLO5_NOTE_OWNER = b"Solo5"
#: ``ABI1_NOTE_TYPE`` in elf_abi.h: "ABI1" as a little-endian u32.
NOTE_TYPE_ABI1 = 0x31494241
#: ``MFT1_NOTE_TYPE`` in mft_abi.h: "MFT1" as a little-endian u32.
NOTE_TYPE_MFT1 = 0x3154464D
SECTION_ABI = b".note.solo5.abi"
SECTION_MANIFEST = b".note.solo5.manifest"

#: ``struct abi1_info``: abi_target, abi_version, reserved0, reserved1 (u32 each).
ABI1_INFO_SIZE = 16

#: ``enum abi_target``.  albatross runs only hvt and spt; the others are named
#: so the error can say which target an image was built for.
ABI_TARGETS = {1: "hvt", 2: "spt", 3: "virtio", 4: "muen", 5: "genode", 6: "xen"}
SUPPORTED_TARGETS = frozenset({"hvt", "spt"})

MFT_VERSION = 1
#: Solo5's limit, set by the width of ``solo5_handle_set_t`` (64 bits).
MFT_MAX_ENTRIES = 64
#: ``MFT_NAME_SIZE``: device name bytes including the terminating NUL.
MFT_NAME_SIZE = 68
MFT_NAME_MAX = MFT_NAME_SIZE - 1
#: ``sizeof(struct mft_entry)`` on 64-bit hosts: name[68], type u32 at 68,
#: union u (16 bytes) at 72, union b (8 bytes) at 88, bool attached at 96,
#: padded to 8-byte alignment.
MFT_ENTRY_SIZE = 104
#: ``struct mft`` is 8-byte aligned but the note header is 20 bytes long, so
#: the descriptor starts with 4 bytes of padding that count in ``n_descsz``.
MFT_DESC_PAD = 4
MFT_HEADER_SIZE = MFT_DESC_PAD + 8  # padding, version u32, entries u32
MFT_TYPE_BLOCK_BASIC = 1
MFT_TYPE_NET_BASIC = 2
MFT_TYPE_RESERVED_FIRST = 1 << 30

# -- ELF constants (only what this module needs) -----------------------------

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
ELFDATA2MSB = 2
ET_EXEC = 2
EM_X86_64 = 62
PT_LOAD = 1
PT_NOTE = 4
SHT_PROGBITS = 1
SHT_STRTAB = 3
SHT_NOTE = 7
EHDR_SIZE = 64
PHDR_SIZE = 56
SHDR_SIZE = 64


class Solo5ImageError(ValueError):
    """The bytes are not a usable Solo5 image; the message says why."""


class DeviceType(enum.Enum):
    BLOCK_BASIC = MFT_TYPE_BLOCK_BASIC
    NET_BASIC = MFT_TYPE_NET_BASIC


@dataclass(frozen=True, slots=True)
class Abi:
    """The ABI note: target name (``"hvt"``, ``"spt"``, …) and ABI version."""

    target: str
    version: int

    @property
    def tender(self) -> str:
        """The tender's program name, e.g. ``solo5-hvt``."""
        return f"solo5-{self.target}"


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    type: DeviceType


@dataclass(frozen=True, slots=True)
class Manifest:
    version: int
    devices: tuple[Device, ...]

    @property
    def blocks(self) -> frozenset[str]:
        return frozenset(d.name for d in self.devices if d.type is DeviceType.BLOCK_BASIC)

    @property
    def nets(self) -> frozenset[str]:
        return frozenset(d.name for d in self.devices if d.type is DeviceType.NET_BASIC)


# -- reading ------------------------------------------------------------------


class _Reader:
    """Bounds-checked struct access, so a hostile image gives an error, not IndexError."""

    def __init__(self, data: bytes, endian: str) -> None:
        self.data = data
        self.endian = endian

    def unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        size = struct.calcsize(self.endian + fmt)
        if offset < 0 or offset + size > len(self.data):
            raise Solo5ImageError("not a valid ELF image: truncated")
        return struct.unpack_from(self.endian + fmt, self.data, offset)

    def slice(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise Solo5ImageError("not a valid ELF image: truncated")
        return self.data[offset : offset + size]


def _open_elf(image: bytes) -> tuple[_Reader, tuple[int, ...]]:
    if len(image) < EHDR_SIZE or image[:4] != ELF_MAGIC:
        raise Solo5ImageError("not an ELF image")
    if image[4] != ELFCLASS64:
        raise Solo5ImageError("not a 64-bit ELF image (only ELFCLASS64 is supported)")
    if image[5] == ELFDATA2LSB:
        endian = "<"
    elif image[5] == ELFDATA2MSB:
        endian = ">"
    else:
        raise Solo5ImageError("not a valid ELF image: unknown byte order")
    reader = _Reader(image, endian)
    # e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    header = reader.unpack("QQ6xHHHHH", 0x20)
    return reader, header


def _notes(reader: _Reader, offset: int, size: int) -> Iterator[tuple[bytes, int, bytes]]:
    """The (owner, type, descriptor) of each note in a note area."""
    end = offset + size
    while offset + 12 <= end:
        namesz, descsz, ntype = reader.unpack("III", offset)
        name_off = offset + 12
        desc_off = name_off + ((namesz + 3) & ~3)
        next_off = desc_off + ((descsz + 3) & ~3)
        if desc_off + descsz > end:
            raise Solo5ImageError("not a valid ELF image: note exceeds its section")
        owner = reader.slice(name_off, namesz).rstrip(b"\0")
        yield owner, ntype, reader.slice(desc_off, descsz)
        offset = next_off


def _note_areas(reader: _Reader, header: tuple[int, ...], section: bytes) -> list[tuple[int, int]]:
    phoff, shoff, phentsize, phnum, shentsize, shnum, shstrndx = header
    if shoff and shnum:
        if shentsize < SHDR_SIZE or shstrndx >= shnum:
            raise Solo5ImageError("not a valid ELF image: bad section header table")
        shdrs = [reader.unpack("IIQQQQ", shoff + i * shentsize) for i in range(shnum)]
        strtab_off, strtab_size = shdrs[shstrndx][4], shdrs[shstrndx][5]
        strtab = reader.slice(strtab_off, strtab_size)
        for sh_name, sh_type, _flags, _addr, sh_offset, sh_size in shdrs:
            end = strtab.find(b"\0", sh_name)
            if sh_name < len(strtab) and end >= 0 and strtab[sh_name:end] == section:
                if sh_type != SHT_NOTE:
                    raise Solo5ImageError(f"section {section.decode()} is not a note")
                return [(sh_offset, sh_size)]
        return []
    # No section headers (a stripped image): search the notes the loader sees.
    if phentsize < PHDR_SIZE and phnum:
        raise Solo5ImageError("not a valid ELF image: bad program header table")
    areas = []
    for i in range(phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = reader.unpack(
            "IIQQQQ", phoff + i * phentsize
        )
        if p_type == PT_NOTE:
            areas.append((p_offset, p_filesz))
    return areas


def _find_note(image: bytes, section: bytes, note_type: int, what: str) -> bytes:
    reader, header = _open_elf(image)
    for offset, size in _note_areas(reader, header, section):
        for owner, ntype, desc in _notes(reader, offset, size):
            if owner == SOLO5_NOTE_OWNER and ntype == note_type:
                return desc
    raise Solo5ImageError(f"no Solo5 {what} note found (not a Solo5 unikernel image?)")


def read_abi(image: bytes) -> Abi:
    """The image's ABI note, whatever its target (see :func:`check_target`)."""
    desc = _find_note(image, SECTION_ABI, NOTE_TYPE_ABI1, "ABI")
    if len(desc) != ABI1_INFO_SIZE:
        raise Solo5ImageError(f"invalid Solo5 ABI note: size {len(desc)}, expected 16")
    target, version, reserved0, reserved1 = struct.unpack("<IIII", desc)
    if target not in ABI_TARGETS:
        raise Solo5ImageError(f"unknown solo5 abi target: {target}")
    if reserved0 or reserved1:
        raise Solo5ImageError("invalid Solo5 ABI note: reserved fields are not zero")
    return Abi(ABI_TARGETS[target], version)


def check_target(abi: Abi) -> Abi:
    """``abi`` if albatross can run it, else albatross's "unsupported solo5 target"."""
    if abi.target not in SUPPORTED_TARGETS:
        raise Solo5ImageError(f"unsupported solo5 target {abi.target}")
    return abi


def _entry(raw: bytes, index: int) -> tuple[int, str]:
    name_raw = raw[:MFT_NAME_SIZE]
    (typ,) = struct.unpack_from("<I", raw, MFT_NAME_SIZE)
    nul = name_raw.find(b"\0")
    if nul < 0:
        raise Solo5ImageError(f"invalid Solo5 manifest: entry {index} has an unterminated name")
    # The tender fills u, b and attached at run time; an image has them zero.
    if any(raw[72:97]):
        raise Solo5ImageError(f"invalid Solo5 manifest: entry {index} has run-time fields set")
    if typ == MFT_TYPE_RESERVED_FIRST and any(name_raw):
        raise Solo5ImageError("invalid Solo5 manifest: RESERVED_FIRST entry has a name")
    if typ not in (MFT_TYPE_BLOCK_BASIC, MFT_TYPE_NET_BASIC, MFT_TYPE_RESERVED_FIRST):
        raise Solo5ImageError(f"invalid Solo5 manifest: unknown entry type {typ}")
    return typ, name_raw[:nul].decode("utf-8", "surrogateescape")


def read_manifest(image: bytes) -> Manifest:
    """The image's device manifest (without Solo5's RESERVED_FIRST entry)."""
    desc = _find_note(image, SECTION_MANIFEST, NOTE_TYPE_MFT1, "manifest")
    if len(desc) < MFT_HEADER_SIZE + MFT_ENTRY_SIZE:
        raise Solo5ImageError("invalid Solo5 manifest: too small")
    version, entries = struct.unpack_from("<II", desc, MFT_DESC_PAD)
    if version != MFT_VERSION:
        raise Solo5ImageError(f"unsupported Solo5 manifest version {version}")
    if not 0 < entries <= MFT_MAX_ENTRIES:
        raise Solo5ImageError(f"invalid Solo5 manifest: {entries} entries")
    if len(desc) != MFT_HEADER_SIZE + entries * MFT_ENTRY_SIZE:
        raise Solo5ImageError("invalid Solo5 manifest: size does not match entry count")
    devices = []
    for i in range(entries):
        off = MFT_HEADER_SIZE + i * MFT_ENTRY_SIZE
        typ, name = _entry(desc[off : off + MFT_ENTRY_SIZE], i)
        if (typ == MFT_TYPE_RESERVED_FIRST) != (i == 0):
            raise Solo5ImageError("invalid Solo5 manifest: RESERVED_FIRST must be entry 0 only")
        if i:
            devices.append(Device(name, DeviceType(typ)))
    return Manifest(version, tuple(devices))


def describe_manifest(manifest: Manifest) -> str:
    kinds = {DeviceType.BLOCK_BASIC: "block", DeviceType.NET_BASIC: "net"}
    return ", ".join(f"{kinds[d.type]} {quoted(d.name)}" for d in manifest.devices)


def check_manifest(manifest: Manifest, blocks: Iterable[str], nets: Iterable[str]) -> None:
    """Raise albatross's error unless the device name sets equal the manifest's.

    ``blocks`` and ``nets`` are the unikernel-side names (the first
    components of the config's block devices and bridges); blocks are
    checked first, as albatross does.
    """
    present = describe_manifest(manifest)
    if frozenset(blocks) != manifest.blocks:
        raise Solo5ImageError(
            "specified block device(s) does not match with manifest. "
            f"Devices present in manifest: {present}"
        )
    if frozenset(nets) != manifest.nets:
        raise Solo5ImageError(
            "specified bridge(s) does not match with the manifest. "
            f"Devices present in manifest: {present}"
        )


# -- writing ------------------------------------------------------------------

_TARGET_NUMBERS = {name: number for number, name in ABI_TARGETS.items()}
#: Guest load address: hvt refuses segments below 1 MiB (HVT_GUEST_MIN_BASE).
_LOAD_BASE = 0x100000
#: ``hlt; jmp .-1``: a guest that never returns, should a real tender run it.
_TEXT = b"\xf4\xeb\xfd".ljust(16, b"\x90")


def _note(ntype: int, desc: bytes) -> bytes:
    name = SOLO5_NOTE_OWNER + b"\0"
    header = struct.pack("<III", len(name), len(desc), ntype) + name.ljust(8, b"\0")
    return header + desc + b"\0" * (-len(desc) % 4)


def _manifest_desc(devices: list[tuple[str, int]]) -> bytes:
    entries = [struct.pack("<68sI", b"", MFT_TYPE_RESERVED_FIRST).ljust(MFT_ENTRY_SIZE, b"\0")]
    seen = set()
    for name, typ in devices:
        raw = name.encode("utf-8", "surrogateescape")
        if not raw or len(raw) > MFT_NAME_MAX or b"\0" in raw:
            raise Solo5ImageError(f"invalid device name {name!r} (1-{MFT_NAME_MAX} bytes)")
        if name in seen:
            raise Solo5ImageError(f"duplicate device name {name!r}")
        seen.add(name)
        entries.append(struct.pack("<68sI", raw, typ).ljust(MFT_ENTRY_SIZE, b"\0"))
    if len(entries) > MFT_MAX_ENTRIES:
        raise Solo5ImageError(f"too many devices (at most {MFT_MAX_ENTRIES - 1})")
    return b"\0" * MFT_DESC_PAD + struct.pack("<II", MFT_VERSION, len(entries)) + b"".join(entries)


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def make_solo5_elf(
    target: str | int = "hvt",
    abi_version: int = 2,
    nets: Iterable[str] = (),
    blocks: Iterable[str] = (),
) -> bytes:
    """A minimal ELF64 x86_64 executable carrying Solo5 ABI and manifest notes.

    ``target`` is a name from :data:`ABI_TARGETS` or a raw number (to make
    images with unknown targets for tests).  The image has a ``PT_LOAD``
    segment with a halting entry point, one ``PT_NOTE`` segment per note (as
    the tenders read them) and the named note sections (as albatross reads
    them).
    """
    target_number = target if isinstance(target, int) else _TARGET_NUMBERS.get(target)
    if target_number is None:
        raise Solo5ImageError(f"unknown solo5 target {target!r}")
    devices = [(n, MFT_TYPE_NET_BASIC) for n in nets] + [(b, MFT_TYPE_BLOCK_BASIC) for b in blocks]
    abi_note = _note(NOTE_TYPE_ABI1, struct.pack("<IIII", target_number, abi_version, 0, 0))
    mft_note = _note(NOTE_TYPE_MFT1, _manifest_desc(devices))
    shstrtab = b"\0.text\0.note.solo5.abi\0.note.solo5.manifest\0.shstrtab\0"

    phnum = 3
    text_off = _align(EHDR_SIZE + phnum * PHDR_SIZE, 16)
    abi_off = _align(text_off + len(_TEXT), 8)
    mft_off = _align(abi_off + len(abi_note), 8)
    str_off = mft_off + len(mft_note)
    sh_off = _align(str_off + len(shstrtab), 8)
    entry = _LOAD_BASE + text_off

    ehdr = struct.pack(
        "<4sBBBBB7xHHIQQQIHHHHHH",
        ELF_MAGIC, ELFCLASS64, ELFDATA2LSB, 1, 0, 0,
        ET_EXEC, EM_X86_64, 1, entry, EHDR_SIZE, sh_off, 0,
        EHDR_SIZE, PHDR_SIZE, phnum, SHDR_SIZE, 5, 4,
    )  # fmt: skip
    load_size = mft_off + len(mft_note)
    phdrs = struct.pack("<IIQQQQQQ", PT_LOAD, 5, 0, _LOAD_BASE, _LOAD_BASE, load_size, load_size,
                        0x1000)  # fmt: skip
    for off, note in ((abi_off, abi_note), (mft_off, mft_note)):
        vaddr = _LOAD_BASE + off
        phdrs += struct.pack("<IIQQQQQQ", PT_NOTE, 4, off, vaddr, vaddr, len(note), len(note), 4)

    def shdr(name: bytes, typ: int, flags: int, off: int, size: int, align: int) -> bytes:
        addr = _LOAD_BASE + off if flags else 0
        return struct.pack("<IIQQQQIIQQ", shstrtab.index(name + b"\0"), typ, flags, addr, off,
                           size, 0, 0, align, 0)  # fmt: skip

    shdrs = (
        b"\0" * SHDR_SIZE
        + shdr(b".text", SHT_PROGBITS, 0x6, text_off, len(_TEXT), 16)
        + shdr(SECTION_ABI, SHT_NOTE, 0x2, abi_off, len(abi_note), 4)
        + shdr(SECTION_MANIFEST, SHT_NOTE, 0x2, mft_off, len(mft_note), 4)
        + shdr(b".shstrtab", SHT_STRTAB, 0, str_off, len(shstrtab), 1)
    )
    out = bytearray(sh_off + len(shdrs))
    for off, part in (
        (0, ehdr),
        (EHDR_SIZE, phdrs),
        (text_off, _TEXT),
        (abi_off, abi_note),
        (mft_off, mft_note),
        (str_off, shstrtab),
        (sh_off, shdrs),
    ):
        out[off : off + len(part)] = part
    return bytes(out)


__all__ = [
    "ABI_TARGETS",
    "NOTE_TYPE_ABI1",
    "NOTE_TYPE_MFT1",
    "SUPPORTED_TARGETS",
    "Abi",
    "Device",
    "DeviceType",
    "Manifest",
    "Solo5ImageError",
    "check_manifest",
    "check_target",
    "describe_manifest",
    "make_solo5_elf",
    "read_abi",
    "read_manifest",
]
