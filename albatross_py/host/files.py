"""Files on the host: the directory layout, console FIFOs, images, block devices, atomic writes.

albatross keeps runtime files under ``tmpdir`` and persistent ones under
``dbdir`` (spec 2.3): ``<tmpdir>/<name>.img``, ``<tmpdir>/fifo/<name>``,
``<dbdir>/block/<name>``, ``<dbdir>/state``.  Names come from tenants, so every
path is built here and only from a validated :class:`Name`, never from a raw
string; :class:`Layout` refuses anything that would not be a plain file name
inside its directory.

Calls are blocking and meant for a worker thread (``trio.to_thread``), except
the async stream helpers, which hop to threads themselves.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trio

from albatross_py.wire.names import Name, NameError_

log = logging.getLogger(__name__)

MIB = 1 << 20
#: Bytes per data frame of a block dump.  albatross reads 4096 bytes per
#: frame (spec 3.5); receivers take frames of any size, and one frame per
#: 4 KiB held a dump to about 11 MiB/s locally (issue 14), so a dump reads
#: and sends 1 MiB at a time, zlib output gathered to the same size.
DUMP_CHUNK = 1 << 20
#: Largest size accepted anywhere: byte sizes must fit a signed 64-bit off_t.
MAX_BLOCK_MB = (1 << 63) // MIB - 1
#: Longest file name most filesystems accept (NAME_MAX).
NAME_MAX = 255
FIFO_MODE = 0o640
BLOCK_DIR_MODE = 0o700
BLOCK_FILE_MODE = 0o600
#: Images may embed secrets (keys, tokens); only root's tender reads them.
IMAGE_MODE = 0o600
#: Temporary files carry ``~``, which no label may contain, so a crash never
#: leaves something the startup scan would take for a block device.
_TMP_SUFFIX = ".tmp~"


class HostFileError(Exception):
    """A file operation failed; the message is meant for the client."""


def _component(name: Name, suffix: str = "") -> str:
    if not isinstance(name, Name):
        raise TypeError(f"expected a Name, got {type(name).__name__}")
    if name.label is None:
        raise HostFileError(f"{name} is a path, not a unikernel or block device name")
    try:
        s = name.file_component() + suffix
    except NameError_ as e:
        raise HostFileError(str(e)) from e
    # Belt and braces: validated labels cannot produce these, but a file name
    # must never be able to leave its directory, whatever Name allows later.
    if "/" in s or "\0" in s or s in (".", ".."):
        raise HostFileError(f"name {s!r} cannot be a file name")
    if len(os.fsencode(s)) > NAME_MAX:
        raise HostFileError(f"name {name} is too long for a file name")
    return s


def _inside(directory: Path, component: str) -> Path:
    path = directory / component
    if path.parent != directory or path.name != component:
        raise HostFileError(f"{component!r} would escape {directory}")
    return path


@dataclass(frozen=True, slots=True)
class Layout:
    """Where albatross keeps things: ``tmpdir`` (runtime) and ``dbdir`` (persistent)."""

    tmpdir: Path
    dbdir: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "tmpdir", Path(self.tmpdir))
        object.__setattr__(self, "dbdir", Path(self.dbdir))

    @property
    def fifo_dir(self) -> Path:
        return self.tmpdir / "fifo"

    @property
    def util_dir(self) -> Path:
        return self.tmpdir / "util"

    @property
    def block_dir(self) -> Path:
        return self.dbdir / "block"

    @property
    def state_file(self) -> Path:
        return self.dbdir / "state"

    def socket_path(self, which: str) -> Path:
        if which not in ("vmmd", "console", "stat"):
            raise ValueError(f"unknown socket {which!r}")
        return self.util_dir / f"{which}.sock"

    def image_file(self, name: Name) -> Path:
        return _inside(self.tmpdir, _component(name, ".img"))

    def fifo_file(self, name: Name) -> Path:
        return _inside(self.fifo_dir, _component(name))

    def block_file(self, name: Name) -> Path:
        return _inside(self.block_dir, _component(name))


# -- console FIFOs --------------------------------------------------------------


def ensure_fifo(path: Path) -> None:
    """Create the console FIFO (mode 0640), or reuse one that is already a FIFO."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISFIFO(st.st_mode):
            return
        raise HostFileError(f"file {path} exists and is not a fifo")
    try:
        os.mkfifo(path, FIFO_MODE)
        # albatross clears the umask's group bits around mkfifo; the umask is
        # process-wide and we run threads, so set the mode explicitly instead.
        os.chmod(path, FIFO_MODE)
    except OSError as e:
        raise HostFileError(f"file {path} error in mkfifo: {e.strerror}") from e


def remove_file(path: Path) -> None:
    """Remove a file if present (cleanup paths must not fail on a missing file)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# -- images -------------------------------------------------------------------


def write_image(layout: Layout, name: Name, image: bytes) -> Path:
    """Write the (uncompressed) unikernel image for the tender; return its path."""
    path = layout.image_file(name)
    _write_replace(path, image, IMAGE_MODE, fsync=False)
    return path


def remove_image(layout: Layout, name: Name) -> None:
    remove_file(layout.image_file(name))


# -- atomic writes ------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes, mode: int, *, fsync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        remove_file(path)
        raise
    os.close(fd)


def _write_replace(path: Path, data: bytes, mode: int, *, fsync: bool) -> None:
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    _write_new(tmp, data, mode, fsync=fsync)
    os.replace(tmp, path)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, backup: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file.

    The previous file is kept as ``<path>.bak``.  ``path`` itself is never
    missing: the backup is made by hard-linking the old file and renaming the
    link over the old backup, then the new file is renamed over ``path``,
    and the directory is synced so the renames survive a power loss.
    """
    path = Path(path)
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    _write_new(tmp, data, mode, fsync=True)
    if backup and os.path.lexists(path):
        bak = path.with_name(path.name + ".bak")
        link = path.with_name(path.name + ".bak" + _TMP_SUFFIX)
        remove_file(link)
        try:
            os.link(path, link)
        except OSError:
            # Filesystems without hard links: a copy is not atomic with the
            # rename below, but the backup is only a courtesy.
            with open(path, "rb") as old:
                _write_replace(bak, old.read(), mode, fsync=True)
        else:
            os.replace(link, bak)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# -- block devices ------------------------------------------------------------


def _bytes_of_mb(size_mb: int) -> int:
    if not isinstance(size_mb, int) or not 0 < size_mb <= MAX_BLOCK_MB:
        raise HostFileError(f"invalid block device size {size_mb} MB")
    return size_mb * MIB


def ensure_block_dir(layout: Layout) -> Path:
    directory = layout.block_dir
    directory.mkdir(mode=BLOCK_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(directory, BLOCK_DIR_MODE)
    return directory


def create_block(layout: Layout, name: Name, size_mb: int, data: bytes = b"") -> Path:
    """Create ``<dbdir>/block/<name>`` of ``size_mb`` MB (sparse), starting with ``data``."""
    size = _bytes_of_mb(size_mb)
    if len(data) > size:
        raise HostFileError("data exceeds block device size")
    path = layout.block_file(name)
    ensure_block_dir(layout)
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            BLOCK_FILE_MODE,
        )  # fmt: skip
    except FileExistsError as e:
        raise HostFileError("file already exists") from e
    try:
        os.fchmod(fd, BLOCK_FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        remove_file(path)
        raise
    os.close(fd)
    return path


def destroy_block(layout: Layout, name: Name) -> None:
    try:
        os.unlink(layout.block_file(name))
    except FileNotFoundError as e:
        raise HostFileError("file does not exist") from e


def block_size_mb(path: Path) -> int:
    """Size in MB of a block file; albatross rejects sizes that are 0 or not MB-aligned."""
    size = os.stat(path).st_size
    if size == 0 or size % MIB:
        raise HostFileError("size is either 0 or not MB aligned")
    return size // MIB


def scan_block_devices(layout: Layout) -> list[tuple[Name, int]]:
    """The block devices found at startup: (name, size MB), all to be inactive.

    Files are skipped (with a warning) unless they are regular files whose
    size is a non-zero multiple of 1 MiB and whose name is the canonical
    string of a Name: ``foo`` parses as ``:foo`` but would then be looked
    up as ``block/:foo``, so it is not a device.
    """
    directory = layout.block_dir
    try:
        entries = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        path = directory / entry
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            log.warning("block directory: %s is not a regular file, skipped", path)
            continue
        if st.st_size == 0 or st.st_size % MIB:
            log.warning("block directory: %s size is either 0 or not MB aligned", path)
            continue
        try:
            name = Name.of_string(entry)
        except NameError_ as e:
            log.warning("block directory: %s name error: %s", path, e)
            continue
        if name.label is None or str(name) != entry:
            log.warning("block directory: %s is not a canonical block device name", path)
            continue
        found.append((name, st.st_size // MIB))
    return found


class BlockWriter:
    """Replace a block device's contents from chunks (spec 3.5 "Block set").

    Data goes to a temporary file next to the device, capped at the device's
    size (after decompression when ``compressed``), then is truncated to the
    size and renamed over the device.  albatross deletes the device first, so
    a failed upload loses it; here a failure leaves the old contents.
    """

    def __init__(self, layout: Layout, name: Name, size_mb: int, *, compressed: bool) -> None:
        self.path = layout.block_file(name)
        self.size = _bytes_of_mb(size_mb)
        self._tmp = self.path.with_name(self.path.name + _TMP_SUFFIX)
        self._written = 0
        self._inflate = zlib.decompressobj() if compressed else None
        ensure_block_dir(layout)
        self._fd: int | None = os.open(
            self._tmp,
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
            BLOCK_FILE_MODE,
        )
        os.fchmod(self._fd, BLOCK_FILE_MODE)

    def _put(self, data: bytes) -> None:
        if len(data) > self.size - self._written:
            raise HostFileError("stream exceeds size")
        view = memoryview(data)
        while view:
            assert self._fd is not None
            view = view[os.write(self._fd, view) :]
        self._written += len(data)

    def write(self, chunk: bytes) -> None:
        if self._fd is None:
            raise HostFileError("block writer is closed")
        try:
            if self._inflate is None:
                self._put(chunk)
                return
            if self._inflate.eof:
                if chunk:
                    raise HostFileError("data after the end of the compressed stream")
                return
            data = chunk
            while data:
                # Bounded output per step: a small zlib bomb cannot allocate
                # more than the device's remaining space plus one byte.
                out = self._inflate.decompress(data, self.size - self._written + 1)
                self._put(out)
                data = self._inflate.unconsumed_tail
            if self._inflate.unused_data:
                raise HostFileError("data after the end of the compressed stream")
        except zlib.error as e:
            self.abort()
            raise HostFileError(f"failed to uncompress: {e}") from e
        except BaseException:
            self.abort()
            raise

    def finish(self) -> Path:
        """Truncate to the device size and put the new contents in place."""
        if self._fd is None:
            raise HostFileError("block writer is closed")
        try:
            if self._inflate is not None:
                self._put(self._inflate.flush())
                if not self._inflate.eof:
                    raise HostFileError("failed to uncompress: truncated zlib stream")
            os.ftruncate(self._fd, self.size)
            os.fsync(self._fd)
        except BaseException:
            self.abort()
            raise
        os.close(self._fd)
        self._fd = None
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        remove_file(self._tmp)


async def set_block(
    layout: Layout,
    name: Name,
    chunks: AsyncIterable[bytes],
    *,
    size_mb: int,
    compressed: bool,
) -> Path:
    """Fill a block device from an async stream of chunks (file writes run in threads)."""
    writer = await trio.to_thread.run_sync(
        lambda: BlockWriter(layout, name, size_mb, compressed=compressed)
    )
    try:
        async for chunk in chunks:
            await trio.to_thread.run_sync(writer.write, chunk)
        return await trio.to_thread.run_sync(writer.finish)
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(writer.abort)
        raise


def dump_block_chunks(layout: Layout, name: Name, level: int = 0) -> Iterator[bytes]:
    """The device's bytes: 4096-byte reads, or a zlib stream at ``level`` (1-9)."""
    path = layout.block_file(name)
    if not 0 <= level <= 9:
        raise HostFileError(f"invalid compression level {level}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise HostFileError("file does not exist") from e
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise HostFileError("file does not exist") from e
        raise
    return _dump(fd, level)


def _dump(fd: int, level: int) -> Iterator[bytes]:
    deflate = zlib.compressobj(level) if level else None
    pending: list[bytes] = []
    size = 0
    try:
        while chunk := os.read(fd, DUMP_CHUNK):
            if deflate is None:
                yield chunk
                continue
            if out := deflate.compress(chunk):
                pending.append(out)
                size += len(out)
            if size >= DUMP_CHUNK:
                yield b"".join(pending)
                pending, size = [], 0
        if deflate is not None:
            pending.append(deflate.flush())
            yield b"".join(pending)
    finally:
        os.close(fd)


async def dump_block(layout: Layout, name: Name, level: int = 0) -> AsyncIterator[bytes]:
    """:func:`dump_block_chunks` with each read in a worker thread."""
    chunks = await trio.to_thread.run_sync(dump_block_chunks, layout, name, level)
    try:
        while True:
            chunk = await trio.to_thread.run_sync(next, chunks, None)
            if chunk is None:
                return
            yield chunk
    finally:
        chunks.close()


async def send_block(
    layout: Layout, name: Name, level: int, send: Callable[[bytes], Awaitable[object]]
) -> None:
    """Each chunk of :func:`dump_block_chunks` to ``send``, reading ahead.

    The next chunk is read (and compressed) in a worker thread while the
    previous one is being sent, so disk and socket overlap.  An error of the
    reader is raised here as itself (not in an exception group); one of
    ``send`` stops the reader after its current chunk.
    """
    chunks = await trio.to_thread.run_sync(dump_block_chunks, layout, name, level)
    failed: BaseException | None = None
    ahead_send, ahead = trio.open_memory_channel[bytes](1)

    async def read_ahead() -> None:
        nonlocal failed
        async with ahead_send:
            while True:
                try:
                    chunk = await trio.to_thread.run_sync(next, chunks, None)
                except Exception as exc:  # raised to the caller below
                    failed = exc
                    return
                if chunk is None:
                    return
                try:
                    await ahead_send.send(chunk)
                except trio.BrokenResourceError:  # send failed; its error is raised
                    return

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_ahead)
            async with ahead:
                async for chunk in ahead:
                    await send(chunk)
    except BaseExceptionGroup as group:
        # Only the sending side can fail here: raise its error as itself.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        chunks.close()
    if failed is not None:
        raise failed


__all__ = [
    "DUMP_CHUNK",
    "MIB",
    "BlockWriter",
    "HostFileError",
    "Layout",
    "atomic_write",
    "block_size_mb",
    "create_block",
    "destroy_block",
    "dump_block",
    "dump_block_chunks",
    "ensure_block_dir",
    "ensure_fifo",
    "remove_file",
    "remove_image",
    "scan_block_devices",
    "send_block",
    "set_block",
    "write_image",
]
