"""Disk full (issue 13 item 7): albatrossd's dbdir on a small tmpfs that fills up.

State writes that fail leave the previous state file intact and loadable;
a change that can be undone (a policy, a create, a block device) is undone
and refused with a clear error naming the disk; one that cannot (a destroy)
is done and says the state was not saved; a block upload that does not fit
leaves the block as it was; the daemon keeps serving, and once there is
space again the next change saves everything.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from albatross_py.client.cli import main
from albatross_py.wire.messages import (
    BlockAdd,
    Failure,
    PolicyAdd,
    ReplyString,
    ReplyUnikernelInfo,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfoQuery,
)
from albatross_py.wire.names import Name
from albatross_py.wire.state import read_state
from albatross_py.wire.types import Policy
from tests.integration.stack import stack

pytestmark = pytest.mark.system

NO_SPACE = os.strerror(errno.ENOSPC)
TMPFS_SIZE = "4m"


@pytest.fixture
def dbdir(tmp_path: Path) -> Iterator[Path]:
    """``<tmp>/d`` (the stack's dbdir) on a tmpfs of :data:`TMPFS_SIZE`."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d = tmp_path / "d"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs",
                    str(d)], check=True)  # fmt: skip
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; return it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\xff" * size)
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bavail == 0
    return filler


def state_of(dbdir: Path) -> tuple[bytes, set[str], set[str]]:
    """(bytes, unikernel names, policy paths) of the state file; it must load."""
    data = (dbdir / "state").read_bytes()
    state = read_state(data)
    return data, {str(n) for n, _ in state.unikernels}, {str(p) for p, _ in state.policies}


async def test_a_full_disk_refuses_changes_and_keeps_the_state(
    tmp_path: Path, dbdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with stack(tmp_path) as s:
        policy = Policy(4, frozenset({0}), 64, 2, frozenset())
        assert await s.call("t:", PolicyAdd(policy)) == ReplyString("added policy")
        assert await s.call("t:a", UnikernelCreate(s.config())) == ReplyString("created unikernel")
        assert await s.call("t:blk", BlockAdd(1)) == ReplyString("added block device")
        block = dbdir / "block" / "t:blk"
        saved, vms, policies = state_of(dbdir)
        assert "t:a" in vms

        filler = fill(dbdir)

        # a policy: refused, undone in memory, the file as it was
        reply = await s.call("u:", PolicyAdd(policy))
        assert isinstance(reply, Failure) and NO_SPACE in reply.message, reply
        assert "state file" in reply.message, reply
        assert s.sup.resources.find_policy(("u",)) is None
        # a create: refused, rolled back (no process, no FIFO)
        reply = await s.call("t:b", UnikernelCreate(s.config()))
        assert isinstance(reply, Failure) and NO_SPACE in reply.message, reply
        assert s.sup.resources.find_unikernel(Name.of_string("t:b")) is None
        assert sorted(p.name for p in (s.tmpdir / "fifo").iterdir()) == ["t:a"]
        # a block: the free-space bound refuses it before anything is made
        reply = await s.call("t:blk2", BlockAdd(1))
        assert isinstance(reply, Failure) and "free" in reply.message, reply
        assert not (dbdir / "block" / "t:blk2").exists()
        # a block upload that does not fit: refused, the block as it was
        data = tmp_path / "data"
        data.write_bytes(os.urandom(1 << 20))
        argv = ["set-block", "t:blk", str(data), "--socket", str(s.tmpdir / "util" / "vmmd.sock")]
        assert await trio.to_thread.run_sync(main, argv) == 117
        out = "".join(capsys.readouterr())
        assert f"could not write block device t:blk: {NO_SPACE}; it is unchanged" in out, out
        assert block.read_bytes() == bytes(1 << 20)
        # the state file never changed and loads
        assert state_of(dbdir) == (saved, vms, policies)
        # a destroy happens, and says the state could not be saved
        reply = await s.call("t:a", UnikernelDestroy())
        assert isinstance(reply, ReplyString), reply
        assert reply.text.startswith("destroyed unikernel, but") and NO_SPACE in reply.text
        assert state_of(dbdir) == (saved, vms, policies)
        # the daemon serves
        info = await s.call("t:", UnikernelInfoQuery())
        assert isinstance(info, ReplyUnikernelInfo) and info.entries == ()
        assert block.stat().st_size == 1 << 20
        assert not list((dbdir / "block").glob("*~"))

        filler.unlink()
        assert await s.call("u:", PolicyAdd(policy)) == ReplyString("added policy")
        _, vms, policies = state_of(dbdir)
        assert "t:a" not in vms and {"t", "u"} <= {p.strip(":") for p in policies}
