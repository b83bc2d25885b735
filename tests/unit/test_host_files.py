"""Host files: layout paths from Names only, FIFOs, block devices, atomic writes."""

from __future__ import annotations

import os
import stat
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from albatross_py.host import files
from albatross_py.host.files import HostFileError, Layout
from albatross_py.wire.names import Name

MIB = 1 << 20


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    (tmp_path / "run" / "fifo").mkdir(parents=True)
    (tmp_path / "db").mkdir()
    return Layout(tmp_path / "run", tmp_path / "db")


def n(s: str) -> Name:
    return Name.of_string(s)


# -- layout ---------------------------------------------------------------------


def test_layout_paths() -> None:
    lay = Layout(Path("/run/albatross"), Path("/var/lib/albatross"))
    assert lay.image_file(n("foo:hello")) == Path("/run/albatross/foo:hello.img")
    assert lay.image_file(n("hello")) == Path("/run/albatross/:hello.img")
    assert lay.fifo_file(n("a:b:c")) == Path("/run/albatross/fifo/a:b:c")
    assert lay.block_file(n("foo:data")) == Path("/var/lib/albatross/block/foo:data")
    assert lay.state_file == Path("/var/lib/albatross/state")
    assert lay.socket_path("vmmd") == Path("/run/albatross/util/vmmd.sock")
    with pytest.raises(ValueError, match="unknown socket"):
        lay.socket_path("../x")


def test_layout_refuses_non_names() -> None:
    lay = Layout(Path("/run/albatross"), Path("/var/lib/albatross"))
    with pytest.raises(TypeError, match="expected a Name"):
        lay.block_file("../../etc/passwd")  # type: ignore[arg-type]
    with pytest.raises(HostFileError, match="is a path"):
        lay.fifo_file(n("foo:"))
    long = Name.of_string(":".join(["a" * 63] * 5))
    with pytest.raises(HostFileError, match="too long"):
        lay.image_file(long)


def test_dot_labels_stay_inside() -> None:
    lay = Layout(Path("/run/albatross"), Path("/var/lib/albatross"))
    # ".." is a valid label, but every name string contains ':', so it is a plain file name.
    for name in (Name.make((), ".."), Name.make(("..",), ".."), Name.make((".",), ".")):
        path = lay.block_file(name)
        assert path.parent == lay.block_dir
        assert os.path.normpath(path) == str(path)


LABEL = st.from_regex(r"[a-z0-9.][a-z0-9.-]{0,20}", fullmatch=True)


@given(path=st.lists(LABEL, max_size=4), label=LABEL)
def test_every_name_maps_into_its_directory(path: list[str], label: str) -> None:
    lay = Layout(Path("/t"), Path("/d"))
    name = Name.make(tuple(path), label)
    assert lay.block_file(name).parent == Path("/d/block")
    assert lay.fifo_file(name).parent == Path("/t/fifo")
    assert lay.image_file(name).parent == Path("/t")
    assert lay.block_file(name).name == str(name)


# -- FIFOs --------------------------------------------------------------------


def test_fifo_created_and_reused(layout: Layout) -> None:
    path = layout.fifo_file(n("foo:bar"))
    old = os.umask(0o077)
    try:
        files.ensure_fifo(path)
    finally:
        os.umask(old)
    st_ = os.lstat(path)
    assert stat.S_ISFIFO(st_.st_mode)
    assert stat.S_IMODE(st_.st_mode) == 0o640
    files.ensure_fifo(path)  # reuse
    assert os.lstat(path).st_ino == st_.st_ino


def test_fifo_path_taken_by_other_file(layout: Layout) -> None:
    path = layout.fifo_file(n("foo:bar"))
    path.write_text("x")
    with pytest.raises(HostFileError, match=f"^file {path} exists and is not a fifo$"):
        files.ensure_fifo(path)
    path.unlink()
    target = layout.tmpdir / "elsewhere"
    os.mkfifo(target)
    path.symlink_to(target)  # a symlink to a FIFO is not our FIFO
    with pytest.raises(HostFileError, match="exists and is not a fifo"):
        files.ensure_fifo(path)


def test_fifo_error_in_missing_directory(tmp_path: Path) -> None:
    lay = Layout(tmp_path / "nope", tmp_path)
    with pytest.raises(HostFileError, match="error in mkfifo"):
        files.ensure_fifo(lay.fifo_file(n("foo:bar")))


def test_image_write_and_remove(layout: Layout) -> None:
    path = files.write_image(layout, n("foo:bar"), b"\x7fELF...")
    assert path == layout.tmpdir / "foo:bar.img"
    assert path.read_bytes() == b"\x7fELF..."
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    files.remove_image(layout, n("foo:bar"))
    assert not path.exists()
    files.remove_image(layout, n("foo:bar"))  # already gone is fine


# -- block devices ------------------------------------------------------------


def test_create_block(layout: Layout) -> None:
    path = files.create_block(layout, n("foo:data"), 3, data=b"hello")
    assert path == layout.dbdir / "block" / "foo:data"
    assert stat.S_IMODE(os.stat(layout.block_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.stat(path).st_size == 3 * MIB
    assert path.read_bytes()[:6] == b"hello\0"
    assert files.block_size_mb(path) == 3
    with pytest.raises(HostFileError, match=r"^file already exists$"):
        files.create_block(layout, n("foo:data"), 1)
    with pytest.raises(HostFileError, match="invalid block device size"):
        files.create_block(layout, n("foo:zero"), 0)
    with pytest.raises(HostFileError, match="data exceeds"):
        files.create_block(layout, n("foo:small"), 1, data=b"x" * (MIB + 1))
    assert not (layout.block_dir / "foo:small").exists()
    files.destroy_block(layout, n("foo:data"))
    assert not path.exists()
    with pytest.raises(HostFileError, match=r"^file does not exist$"):
        files.destroy_block(layout, n("foo:data"))


def test_scan_block_devices(layout: Layout) -> None:
    assert files.scan_block_devices(layout) == []  # no block directory yet
    files.create_block(layout, n("foo:data"), 2)
    files.create_block(layout, n("root"), 1)
    d = layout.block_dir
    (d / "foo:half").write_bytes(b"x" * (MIB // 2))  # not MB aligned
    (d / "foo:empty").write_bytes(b"")  # size 0
    (d / "Bad_Name").write_bytes(b"\0" * MIB)  # not a name
    (d / "plain").write_bytes(b"\0" * MIB)  # parses as ":plain", but is not that file
    (d / "FOO:upper").write_bytes(b"\0" * MIB)  # parses, but to "foo:upper"
    (d / "foo:data.tmp~").write_bytes(b"\0" * MIB)  # an interrupted write
    (d / "foo:link").symlink_to(d / "foo:data")
    (d / "foo:dir").mkdir()
    assert files.scan_block_devices(layout) == [(n(":root"), 1), (n("foo:data"), 2)]


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_set_block_plain_and_compressed(layout: Layout) -> None:
    name = n("foo:data")
    files.create_block(layout, name, 1, data=b"old")
    await files.set_block(layout, name, chunks(b"new ", b"data"), size_mb=1, compressed=False)
    data = layout.block_file(name).read_bytes()
    assert data[:8] == b"new data" and len(data) == MIB
    assert stat.S_IMODE(os.stat(layout.block_file(name)).st_mode) == 0o600

    payload = os.urandom(3000) * 100
    z = zlib.compress(payload, 6)
    parts = [z[i : i + 777] for i in range(0, len(z), 777)]
    await files.set_block(layout, name, chunks(*parts), size_mb=1, compressed=True)
    data = layout.block_file(name).read_bytes()
    assert data[: len(payload)] == payload and len(data) == MIB
    assert not list(layout.block_dir.glob("*~"))


async def test_set_block_size_cap_keeps_old_contents(layout: Layout) -> None:
    name = n("foo:data")
    files.create_block(layout, name, 1, data=b"precious")
    too_big = b"\1" * (MIB + 1)
    with pytest.raises(HostFileError, match=r"^stream exceeds size$"):
        await files.set_block(layout, name, chunks(too_big), size_mb=1, compressed=False)
    # A zlib bomb: 64 MiB of zeros in ~64 KiB, capped long before it is inflated.
    bomb = zlib.compress(b"\0" * (64 * MIB), 9)
    with pytest.raises(HostFileError, match=r"^stream exceeds size$"):
        await files.set_block(layout, name, chunks(bomb), size_mb=1, compressed=True)
    with pytest.raises(HostFileError, match="truncated zlib stream"):
        z = zlib.compress(b"abc" * 1000)
        await files.set_block(layout, name, chunks(z[:-8]), size_mb=1, compressed=True)
    with pytest.raises(HostFileError, match="failed to uncompress"):
        await files.set_block(layout, name, chunks(b"garbage!"), size_mb=1, compressed=True)
    assert layout.block_file(name).read_bytes()[:8] == b"precious"
    assert not list(layout.block_dir.glob("*~"))


def test_block_writer_exactly_full(layout: Layout) -> None:
    name = n("foo:data")
    files.create_block(layout, name, 1)
    writer = files.BlockWriter(layout, name, 1, compressed=False)
    writer.write(b"\2" * MIB)
    writer.finish()
    assert layout.block_file(name).read_bytes() == b"\2" * MIB
    with pytest.raises(HostFileError, match="closed"):
        writer.write(b"x")


def test_dump_block(layout: Layout) -> None:
    name = n("foo:data")
    content = os.urandom(5000) + b"\0" * (3 * MIB - 5000)
    files.create_block(layout, name, 3, data=content[:5000])
    plain = list(files.dump_block_chunks(layout, name, 0))
    assert {len(c) for c in plain} == {files.DUMP_CHUNK}
    assert len(plain) == 3 * MIB // files.DUMP_CHUNK
    assert b"".join(plain) == content
    packed = list(files.dump_block_chunks(layout, name, 9))
    assert zlib.decompress(b"".join(packed)) == content
    assert sum(map(len, packed)) < MIB // 10
    # zlib output is gathered: a compressible block is one frame, not one per read
    assert len(packed) == 1
    random_name = n("foo:random")
    noise = os.urandom(3 * MIB)
    files.create_block(layout, random_name, 3, data=noise)
    packed = list(files.dump_block_chunks(layout, random_name, 1))
    assert zlib.decompress(b"".join(packed)) == noise
    assert all(len(c) >= files.DUMP_CHUNK for c in packed[:-1])
    with pytest.raises(HostFileError, match=r"^file does not exist$"):
        files.dump_block_chunks(layout, n("foo:none"))
    with pytest.raises(HostFileError, match="compression level"):
        files.dump_block_chunks(layout, name, 10)


async def test_dump_block_async(layout: Layout) -> None:
    name = n("foo:data")
    files.create_block(layout, name, 1, data=b"abc")
    out = [c async for c in files.dump_block(layout, name, 0)]
    assert b"".join(out)[:3] == b"abc" and len(b"".join(out)) == MIB


async def test_send_block(layout: Layout) -> None:
    name = n("foo:data")
    noise = os.urandom(3 * MIB)
    files.create_block(layout, name, 3, data=noise)
    sent: list[bytes] = []

    async def collect(chunk: bytes) -> None:
        await trio.sleep(0)
        sent.append(chunk)

    await files.send_block(layout, name, 0, collect)
    assert b"".join(sent) == noise
    sent.clear()
    await files.send_block(layout, name, 6, collect)
    assert zlib.decompress(b"".join(sent)) == noise


async def test_send_block_errors_are_themselves(layout: Layout) -> None:
    name = n("foo:data")
    files.create_block(layout, name, 3)

    async def broken(chunk: bytes) -> None:
        raise trio.BrokenResourceError("client went away")

    with pytest.raises(trio.BrokenResourceError, match="went away"):
        await files.send_block(layout, name, 0, broken)
    with pytest.raises(HostFileError, match="does not exist"):
        await files.send_block(layout, n("foo:none"), 0, broken)


# -- atomic writes ------------------------------------------------------------


def test_atomic_write_keeps_backup(tmp_path: Path) -> None:
    path = tmp_path / "state"
    files.atomic_write(path, b"one")
    assert path.read_bytes() == b"one"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not (tmp_path / "state.bak").exists()
    files.atomic_write(path, b"two")
    assert path.read_bytes() == b"two"
    assert (tmp_path / "state.bak").read_bytes() == b"one"
    files.atomic_write(path, b"three", mode=0o640)
    assert path.read_bytes() == b"three"
    assert (tmp_path / "state.bak").read_bytes() == b"two"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    files.atomic_write(path, b"four", backup=False)
    assert (tmp_path / "state.bak").read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state", "state.bak"]


def test_atomic_write_failure_leaves_old_file(tmp_path: Path) -> None:
    path = tmp_path / "state"
    files.atomic_write(path, b"good")
    with pytest.raises(TypeError):
        files.atomic_write(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_proc_net_dev_parsing() -> None:
    from albatross_py.host.net import parse_proc_net_dev

    text = (
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets"
        " errs drop fifo colls carrier compressed\n"
        "vmmtap3: 1000 10 1 2 0 0 0 3 2000 20 4 5 0 6 0 0\n"
        "    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n"
    )
    table = parse_proc_net_dev(text)
    assert table["vmmtap3"] == {
        "rx_bytes": 1000, "rx_packets": 10, "rx_errors": 1, "rx_dropped": 2, "multicast": 3,
        "tx_bytes": 2000, "tx_packets": 20, "tx_errors": 4, "tx_dropped": 5, "collisions": 6,
    }  # fmt: skip
    assert set(table) == {"vmmtap3", "lo"}
