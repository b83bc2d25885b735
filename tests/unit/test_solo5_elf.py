"""Solo5 ELF notes: generated images round-trip, bad images fail with clear errors."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from albatross_py.virt.solo5_elf import (
    NOTE_TYPE_ABI1,
    NOTE_TYPE_MFT1,
    Abi,
    Device,
    DeviceType,
    Solo5ImageError,
    check_manifest,
    check_target,
    make_solo5_elf,
    read_abi,
    read_manifest,
)


def note_desc_offset(image: bytes, note_type: int) -> int:
    """Offset of a Solo5 note's descriptor: header is namesz, descsz, type, "Solo5\\0\\0\\0"."""
    i = image.index(struct.pack("<I", note_type) + b"Solo5\0\0\0")
    return i + 4 + 8


def test_round_trip_hvt() -> None:
    image = make_solo5_elf("hvt", 2, nets=["service"], blocks=["storage", "data"])
    assert read_abi(image) == Abi("hvt", 2)
    assert read_abi(image).tender == "solo5-hvt"
    manifest = read_manifest(image)
    assert manifest.version == 1
    assert manifest.devices == (
        Device("service", DeviceType.NET_BASIC),
        Device("storage", DeviceType.BLOCK_BASIC),
        Device("data", DeviceType.BLOCK_BASIC),
    )
    assert manifest.blocks == {"storage", "data"}
    assert manifest.nets == {"service"}


def test_round_trip_spt_no_devices() -> None:
    image = make_solo5_elf("spt", 7)
    assert read_abi(image) == Abi("spt", 7)
    assert read_manifest(image).devices == ()


def test_layout_matches_solo5_headers() -> None:
    image = make_solo5_elf("hvt", 2, nets=["a"])
    abi = note_desc_offset(image, NOTE_TYPE_ABI1)
    assert struct.unpack_from("<IIII", image, abi) == (1, 2, 0, 0)
    # namesz 6, descsz 16 precede the type
    assert struct.unpack_from("<II", image, abi - 20) == (6, 16)
    mft = note_desc_offset(image, NOTE_TYPE_MFT1)
    # 4 bytes of padding, version 1, 2 entries (RESERVED_FIRST + "a"), 104 bytes each
    assert struct.unpack_from("<III", image, mft) == (0, 1, 2)
    assert struct.unpack_from("<II", image, mft - 20) == (6, 12 + 2 * 104)
    assert struct.unpack_from("<68sI", image, mft + 12) == (b"\0" * 68, 1 << 30)
    name, typ = struct.unpack_from("<68sI", image, mft + 12 + 104)
    assert (name.rstrip(b"\0"), typ) == (b"a", 2)


def test_image_without_section_headers_uses_pt_note() -> None:
    image = bytearray(make_solo5_elf("hvt", 2, blocks=["disk"]))
    struct.pack_into("<Q", image, 0x28, 0)  # e_shoff
    struct.pack_into("<HHH", image, 0x3A, 0, 0, 0)  # e_shentsize, e_shnum, e_shstrndx
    assert read_abi(bytes(image)) == Abi("hvt", 2)
    assert read_manifest(bytes(image)).blocks == {"disk"}


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"", "not an ELF image"),
        (b"MZ" + b"\0" * 100, "not an ELF image"),
        (b"\x7fELF\x01\x01\x01" + b"\0" * 100, "not a 64-bit ELF image"),
        (b"\x7fELF\x02\x03\x01" + b"\0" * 100, "unknown byte order"),
    ],
)
def test_not_an_elf(image: bytes, message: str) -> None:
    with pytest.raises(Solo5ImageError, match=message):
        read_abi(image)
    with pytest.raises(Solo5ImageError, match=message):
        read_manifest(image)


def test_truncated_image() -> None:
    image = make_solo5_elf("hvt", 2)
    with pytest.raises(Solo5ImageError, match="truncated"):
        read_abi(image[:200])


def test_elf_without_solo5_notes() -> None:
    image = bytearray(make_solo5_elf("hvt", 2))
    owner = image.index(b"Solo5\0")
    image[owner : owner + 5] = b"Xolo5"  # the ABI note is the first one
    with pytest.raises(Solo5ImageError, match="no Solo5 ABI note found"):
        read_abi(bytes(image))
    assert read_manifest(bytes(image)).devices == ()


def test_unsupported_targets() -> None:
    abi = read_abi(make_solo5_elf("virtio", 1))
    assert abi == Abi("virtio", 1)
    with pytest.raises(Solo5ImageError, match=r"^unsupported solo5 target virtio$"):
        check_target(abi)
    assert check_target(Abi("spt", 2)) == Abi("spt", 2)
    with pytest.raises(Solo5ImageError, match="unknown solo5 abi target: 9"):
        read_abi(make_solo5_elf(9, 1))


def test_abi_reserved_fields_must_be_zero() -> None:
    image = bytearray(make_solo5_elf("hvt", 2))
    struct.pack_into("<I", image, note_desc_offset(image, NOTE_TYPE_ABI1) + 8, 1)
    with pytest.raises(Solo5ImageError, match="reserved"):
        read_abi(bytes(image))


def test_manifest_version_and_entry_checks() -> None:
    base = make_solo5_elf("hvt", 2, nets=["net0"])
    mft = note_desc_offset(base, NOTE_TYPE_MFT1)

    image = bytearray(base)
    struct.pack_into("<I", image, mft + 4, 2)
    with pytest.raises(Solo5ImageError, match="unsupported Solo5 manifest version 2"):
        read_manifest(bytes(image))

    image = bytearray(base)
    struct.pack_into("<I", image, mft + 8, 3)  # claims 3 entries, holds 2
    with pytest.raises(Solo5ImageError, match="size does not match"):
        read_manifest(bytes(image))

    image = bytearray(base)
    struct.pack_into("<I", image, mft + 12 + 104 + 68, 7)  # unknown device type
    with pytest.raises(Solo5ImageError, match="unknown entry type 7"):
        read_manifest(bytes(image))

    image = bytearray(base)
    image[mft + 12 + 104 + 96] = 1  # "attached" set in the image
    with pytest.raises(Solo5ImageError, match="run-time fields"):
        read_manifest(bytes(image))

    image = bytearray(base)
    image[mft + 12 + 104 : mft + 12 + 104 + 68] = b"x" * 68  # no NUL in the name
    with pytest.raises(Solo5ImageError, match="unterminated"):
        read_manifest(bytes(image))

    image = bytearray(base)
    struct.pack_into("<I", image, mft + 12 + 68, 2)  # entry 0 is not RESERVED_FIRST
    with pytest.raises(Solo5ImageError, match="RESERVED_FIRST"):
        read_manifest(bytes(image))


def test_generator_limits() -> None:
    read_manifest(make_solo5_elf("hvt", 2, blocks=[f"b{i}" for i in range(63)]))
    with pytest.raises(Solo5ImageError, match="too many devices"):
        make_solo5_elf("hvt", 2, blocks=[f"b{i}" for i in range(64)])
    with pytest.raises(Solo5ImageError, match="invalid device name"):
        make_solo5_elf("hvt", 2, nets=["x" * 68])
    with pytest.raises(Solo5ImageError, match="duplicate"):
        make_solo5_elf("hvt", 2, nets=["a"], blocks=["a"])
    with pytest.raises(Solo5ImageError, match="unknown solo5 target"):
        make_solo5_elf("kvm", 2)


def test_manifest_check_matches() -> None:
    manifest = read_manifest(make_solo5_elf("hvt", 2, nets=["service"], blocks=["storage"]))
    check_manifest(manifest, ["storage"], ["service"])
    check_manifest(manifest, iter(["storage"]), ("service",))


def test_manifest_check_block_mismatch_message() -> None:
    manifest = read_manifest(make_solo5_elf("hvt", 2, nets=["service"], blocks=["storage"]))
    with pytest.raises(Solo5ImageError) as e:
        check_manifest(manifest, ["data"], ["service"])
    assert str(e.value) == (
        "specified block device(s) does not match with manifest. "
        'Devices present in manifest: net "service", block "storage"'
    )
    with pytest.raises(Solo5ImageError, match=r"^specified block device\(s\)"):
        check_manifest(manifest, [], ["service"])
    with pytest.raises(Solo5ImageError, match=r"^specified block device\(s\)"):
        check_manifest(manifest, ["storage", "extra"], ["service"])


def test_manifest_check_net_mismatch_message() -> None:
    manifest = read_manifest(make_solo5_elf("hvt", 2, nets=["service"]))
    with pytest.raises(Solo5ImageError) as e:
        check_manifest(manifest, [], ["other"])
    assert str(e.value) == (
        "specified bridge(s) does not match with the manifest. "
        'Devices present in manifest: net "service"'
    )


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=67)


@settings(max_examples=50)
@given(
    target=st.sampled_from(["hvt", "spt"]),
    version=st.integers(0, 2**32 - 1),
    names=st.lists(NAMES, max_size=20, unique=True),
    split=st.integers(0, 20),
)
def test_round_trip_property(target: str, version: int, names: list[str], split: int) -> None:
    nets, blocks = names[:split], names[split:]
    image = make_solo5_elf(target, version, nets, blocks)
    assert read_abi(image) == Abi(target, version)
    manifest = read_manifest(image)
    assert manifest.nets == set(nets)
    assert manifest.blocks == set(blocks)
    check_manifest(manifest, blocks, nets)


_BASE = make_solo5_elf("hvt", 2, nets=["service"], blocks=["storage"])


@settings(max_examples=300)
@given(edits=st.lists(st.tuples(st.integers(0, len(_BASE) - 1), st.integers(0, 255)), max_size=8),
       cut=st.integers(0, len(_BASE)))  # fmt: skip
def test_corrupted_images_only_raise_solo5_errors(edits: list[tuple[int, int]], cut: int) -> None:
    image = bytearray(_BASE)
    for offset, value in edits:
        image[offset] = value
    data = bytes(image[:cut])
    for reader in (read_abi, read_manifest):
        with contextlib.suppress(Solo5ImageError):
            reader(data)
