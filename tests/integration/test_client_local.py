"""albatross-client against a real in-process albatrossd + albatross-console (local sockets)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from albatross_py.client.cli import main
from tests.integration.stack import Stack, stack

ROOT = Path(__file__).resolve().parents[2]


async def cli(capsys: pytest.CaptureFixture[str], s: Stack, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    local = argv[0] in ("inspect-dump", "extract-dump")
    tmpdir = [] if local else ["--tmpdir", str(s.tmpdir)]
    code = await trio.to_thread.run_sync(main, [*argv, *tmpdir])
    out, err = capsys.readouterr()
    return code, out, err


def image_file(s: Stack, tmp_path: Path, **kw: tuple[str, ...]) -> Path:
    s.image(**kw)
    path = tmp_path / "web.hvt"
    path.write_bytes((s.bindir / "image.elf").read_bytes())
    return path


async def test_create_info_console_destroy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with stack(tmp_path) as s:
        image = image_file(s, tmp_path)
        code, out, _ = await cli(capsys, s, "create", "web", str(image), "--arg=--lines=3")
        assert (code, out) == (0, "host :web: success: created unikernel\n")

        code, out, _ = await cli(capsys, s, "info")
        assert code == 0
        assert out.startswith("host :: :web: typ solo5 started ")
        assert "32 MB memory" in out and "CPUids 0" in out
        code, out, _ = await cli(capsys, s, "info", "web", "--json")
        (reply,) = [json.loads(line) for line in out.splitlines()]
        assert reply["header"]["name"] == ":web"
        assert "unikernel-info" in json.dumps(reply["payload"])

        # console --count: history then live tail, until SIGTERM detaches cleanly
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "albatross_py.client.cli", "console", "web", "--count", "10",
             "--tmpdir", str(s.tmpdir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        assert proc.stdout is not None
        seen = b""
        with trio.fail_after(20):
            while b"standin: line 2" not in seen:
                chunk = await proc.stdout.receive_some(4096)
                assert chunk, f"console client exited early: {seen!r}"
                seen += chunk
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await proc.wait() == 0
        lines = seen.decode().splitlines()
        assert all(line.startswith("console ") for line in lines[1:])
        assert lines[0] == "host :web: success: subscribed"
        assert any(line.endswith(": standin: line 1") for line in lines)

        code, out, _ = await cli(capsys, s, "destroy", "web")
        assert (code, out) == (0, "host :web: success: destroyed unikernel\n")
        code, out, err = await cli(capsys, s, "destroy", "web")
        assert code == 117 and out == ""
        assert "host :web: command failed destroy: not found" in err
        code, out, _ = await cli(capsys, s, "info")
        assert (code, out) == (0, "host :: no unikernels\n")


async def test_get_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with stack(tmp_path) as s:
        image = image_file(s, tmp_path)
        assert (await cli(capsys, s, "create", "web", str(image), "--compression-level", "9"))[
            0
        ] == 0
        out_file = tmp_path / "got.img"
        code, out, _ = await cli(capsys, s, "get", "web", "-o", str(out_file))
        assert code == 0 and str(out_file) in out
        assert out_file.read_bytes() == image.read_bytes()
        # the state file, read offline
        dbdir = ["--dbdir", str(s.dbdir)]
        code, out, _ = await cli(capsys, s, "inspect-dump", *dbdir)
        assert code == 0 and "unikernel :web: typ solo5 compressed true" in out
        code, out, _ = await cli(capsys, s, "inspect-dump", "--json", *dbdir)
        assert json.loads(out)["unikernels"][":web"]["memory"] == 32
        extracted = tmp_path / "extracted.img"
        code, out, _ = await cli(capsys, s, "extract-dump", "web", "-o", str(extracted), *dbdir)
        assert code == 0 and extracted.read_bytes() == image.read_bytes()
        assert (await cli(capsys, s, "extract-dump", "nope", *dbdir))[0] == 124
        assert (await cli(capsys, s, "destroy", "web"))[0] == 0


async def test_policy_add_info_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with stack(tmp_path) as s:
        code, out, _ = await cli(capsys, s, "add-policy", "tenant", "1", "--mem", "64")
        assert (code, out) == (0, "host tenant:: success: added policy\n")
        code, out, _ = await cli(capsys, s, "policy", "tenant")
        assert code == 0 and "policy: 1 unikernels, 64 MB memory, no block, cpuids 0" in out
        code, out, _ = await cli(capsys, s, "policy", "--json")
        policies = json.loads(out)["payload"]["reply"]
        assert "tenant:" in json.dumps(policies)
        # the daemon's refusal names the policy and the limit
        image = image_file(s, tmp_path)
        code, _, err = await cli(capsys, s, "create", "tenant:big", str(image), "--mem", "128")
        assert code == 117 and "command failed" in err and "memory" in err
        code, out, _ = await cli(capsys, s, "remove-policy", "-p", "tenant")
        assert (code, out) == (0, "host tenant:: success: removed policy\n")
        code, _, err = await cli(capsys, s, "remove-policy", "tenant")
        assert code == 117 and "command failed" in err


async def test_block_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = os.urandom(300_000)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    async with stack(tmp_path) as s:
        code, out, _ = await cli(capsys, s, "create-block", "disk", "1", "--data", str(src))
        assert code == 0 and "success: set block device" in out
        code, out, _ = await cli(capsys, s, "block")
        assert code == 0 and "block :disk size 1 MB active false" in out
        plain = tmp_path / "plain.bin"
        code, out, _ = await cli(capsys, s, "dump-block", "disk", "-o", str(plain))
        assert code == 0 and "block device compressed false" in out
        assert plain.read_bytes() == data + bytes(1024 * 1024 - len(data))
        # compressed both ways
        again = os.urandom(1000)
        src.write_bytes(again)
        assert (await cli(capsys, s, "set-block", "disk", str(src), "--compression-level", "9"))[
            0
        ] == 0
        packed = tmp_path / "packed.bin"
        code, out, _ = await cli(capsys, s, "dump_block", "disk", "-o", str(packed),
                                 "--compression-level", "6")  # fmt: skip
        assert code == 0 and "block device compressed true" in out
        assert packed.read_bytes() == again + bytes(1024 * 1024 - len(again))
        # too big for the device: refused by the client before sending
        src.write_bytes(bytes(2 * 1024 * 1024))
        code, _, err = await cli(capsys, s, "create-block", "disk2", "1", "--data", str(src))
        assert code == 124 and "does not fit" in err
        code, out, _ = await cli(capsys, s, "destroy-block", "disk")
        assert (code, out) == (0, "host :disk: success: removed block\n")


async def test_connect_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = await trio.to_thread.run_sync(main, ["info", "--socket", str(tmp_path / "none.sock")])
    assert code == 122
    assert "cannot connect" in capsys.readouterr().err
