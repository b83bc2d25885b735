"""Deploying from a "laptop": albatross-client --destination against the real TLS endpoint.

root CA (operator) -> tenant sub-CA (``add-policy --csr`` + ``sign``) -> the
tenant's client signs a 5-minute leaf per command and talks TLS 1.3 to an
in-process albatross-tls-endpoint in front of an in-process albatrossd.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from albatross_py.client import cli
from albatross_py.client.cli import main
from albatross_py.daemons.tls_endpoint import TlsEndpoint, make_server_context
from albatross_py.wire.names import Name
from tests.integration.stack import Stack, stack


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await trio.to_thread.run_sync(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def start_endpoint(s: Stack, pki: Path) -> int:
    ctx = make_server_context(pki / "cacert.pem", pki / "server.pem", pki / "server.key")
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    await s.nursery.start(TlsEndpoint(ctx, s.tmpdir, s.dbdir).serve, listener)
    return int(listener.socket.getsockname()[1])


@pytest.fixture
def pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The operator's CA and a tenant sub-CA (2 unikernels, 256 MB, 10 MB block)."""
    d = tmp_path / "pki"
    d.mkdir()
    monkeypatch.chdir(d)
    assert main(["generate", "root", "db"]) == 0
    assert main(["add-policy", "tenant", "2", "--mem", "256", "--block", "10", "--csr"]) == 0
    assert main(["sign", "cacert.pem", "db", "root.key", "tenant.req"]) == 0
    return d


async def test_deploy_from_a_laptop(
    tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack(tmp_path) as s:
        port = await start_endpoint(s, pki)
        dest = ["-d", f"127.0.0.1:{port}", "--ca", "tenant.pem", "--ca-key", "tenant.key",
                "--server-ca", "cacert.pem"]  # fmt: skip
        s.image()
        image = str(s.bindir / "image.elf")

        code, out, err = await run(capsys, "create", "web", image, *dest)
        assert code == 0, err
        assert "success: created unikernel" in out
        assert s.sup.resources.find_unikernel(Name.of_string("tenant:web")) is not None

        # a large image is streamed as raw chunks after the handshake
        monkeypatch.setattr(cli, "INLINE_IMAGE_LIMIT", 0)
        code, out, err = await run(capsys, "create", "big", image, "--mem", "64", *dest)
        assert code == 0, err
        assert s.sup.resources.find_unikernel(Name.of_string("tenant:big")) is not None

        code, out, _ = await run(capsys, "info", *dest)
        assert code == 0 and ":web: typ solo5" in out and ":big: typ solo5" in out

        # the tenant's own policy is checked before anything is sent
        code, _, err = await run(capsys, "create", "huge", image, "--mem", "512", *dest)
        assert code == 124 and "exceeds policy" in err
        # ... and the daemon enforces the count (policy uploaded from the chain)
        code, _, err = await run(capsys, "create", "third", image, *dest)
        assert code == 117 and "command failed" in err

        # block devices remotely: create with data, dump, compare
        data = os.urandom(200_000)
        (tmp_path / "blk").write_bytes(data)
        code, _, err = await run(capsys, "create-block", "disk", "1", "--data",
                                 str(tmp_path / "blk"), *dest)  # fmt: skip
        assert code == 0, err
        code, _, err = await run(capsys, "dump-block", "disk", "-o", str(tmp_path / "back"),
                                 *dest)  # fmt: skip
        assert code == 0, err
        assert (tmp_path / "back").read_bytes() == data + bytes(1024 * 1024 - len(data))

        for name in ("web", "big"):
            code, out, err = await run(capsys, "destroy", name, *dest)
            assert code == 0 and "destroyed unikernel" in out, err
        assert s.sup.resources.find_unikernel(Name.of_string("tenant:web")) is None


async def test_chain_and_connect_failures(
    tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    os.chdir(other)
    assert main(["generate", "stranger", "db"]) == 0
    os.chdir(pki)
    async with stack(tmp_path) as s:
        port = await start_endpoint(s, pki)
        base = ["info", "-d", f"127.0.0.1:{port}", "--ca", "tenant.pem", "--ca-key", "tenant.key"]
        # our chain does not lead to the given server CA: refused before connecting
        code, _, err = await run(capsys, *base, "--server-ca", str(other / "cacert.pem"))
        assert code == 116 and "chain failure" in err
        # a sub-CA the server does not trust is rejected in the handshake
        os.chdir(other)
        code, _, err = await run(capsys, "info", "-d", f"127.0.0.1:{port}", "--ca",
                                 "cacert.pem", "--ca-key", "stranger.key",
                                 "--server-ca", "cacert.pem")  # fmt: skip
        assert code == 120 and "not trusted" in err, err
        os.chdir(pki)
        code, _, err = await run(capsys, "info", "-d", "127.0.0.1:1", "--ca", "tenant.pem",
                                 "--ca-key", "tenant.key")  # fmt: skip
        assert code == 122 and "cannot connect" in err
        # -d - prints the chain that would be sent
        code, out, _ = await run(capsys, *base[:1], "-d", "-", *base[3:])
        assert code == 0 and out.count("BEGIN CERTIFICATE") == 2
