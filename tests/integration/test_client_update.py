"""``albatross-client update`` against a builds server on loopback (spec 7.3).

A small stand-in for builder-web (``http.server`` in a thread, on
127.0.0.1) answers the three requests albatross's update flow makes:
``/hash?sha256=`` and ``/job/<job>/build/latest`` with redirects, and
``/job/<job>/build/<uuid>/main-binary`` with the image.  The unikernel runs
under a real in-process albatrossd (the solo5 stand-in tender), so the
force-create is real: afterwards ``info`` reports the new image's digest and
the old configuration.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import trio

from albatross_py.client import cli as cli_module
from albatross_py.client.cli import main
from albatross_py.virt.solo5_elf import make_solo5_elf
from albatross_py.wire.codec import decode_wire
from albatross_py.wire.messages import ReplyUnikernelInfo, UnikernelInfoQuery
from tests.integration.stack import Stack, stack
from tests.integration.test_client_remote import pki, run, start_endpoint

__all__ = ["pki"]  # a fixture, used by name

OLD = "0f0e1d2c-0000-4000-8000-000000000001"
NEW = "0f0e1d2c-0000-4000-8000-000000000002"
JOB = "hello"


@dataclass
class Builds:
    """What the fake builder-web knows: builds by image digest, the latest, binaries."""

    by_digest: dict[str, str] = field(default_factory=dict)  # sha256 hex -> uuid
    latest: str = OLD
    binaries: dict[str, bytes] = field(default_factory=dict)  # uuid -> image
    binary_status: int = 200
    requests: list[str] = field(default_factory=list)


@contextmanager
def builder_web(builds: Builds) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name for it
            builds.requests.append(self.path)
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if url.path == "/hash":
                uuid = builds.by_digest.get(parse_qs(url.query).get("sha256", [""])[0])
                self.redirect(f"/job/{JOB}/build/{uuid}" if uuid else None)
            elif parts == ["job", JOB, "build", "latest"]:
                self.redirect(f"/job/{JOB}/build/{builds.latest}")
            elif (
                len(parts) == 5 and parts[:3] == ["job", JOB, "build"] and parts[4] == "main-binary"
            ):
                body = builds.binaries.get(parts[3])
                if body is None or builds.binary_status != 200:
                    self.send_error(404 if body is None else builds.binary_status)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def redirect(self, location: str | None) -> None:
            if location is None:
                self.send_error(404)
                return
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def cli(capsys: pytest.CaptureFixture[str], s: Stack, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await trio.to_thread.run_sync(main, [*argv, "--tmpdir", str(s.tmpdir)])
    out, err = capsys.readouterr()
    return code, out, err


async def digest_and_info(s: Stack, name: str) -> tuple[str, object]:
    reply = await s.call(name, UnikernelInfoQuery())
    assert isinstance(reply, ReplyUnikernelInfo) and len(reply.entries) == 1
    info = reply.entries[0][1]
    return info.digest.hex(), info


async def test_update_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = make_solo5_elf()
    v2 = v1 + b"\0build 2"  # another image, the same (empty) manifest
    wrong = make_solo5_elf(nets=["service"])  # wants a network device the VM lacks
    (tmp_path / "v1.hvt").write_bytes(v1)
    builds = Builds(by_digest={hashlib.sha256(v1).hexdigest(): OLD}, binaries={NEW: v2})
    async with stack(tmp_path) as s:
        code, _, err = await cli(capsys, s, "create", "web", str(tmp_path / "v1.hvt"),
                                 "--mem", "48", "--arg=--lines=1", "--restart-on-fail")  # fmt: skip
        assert code == 0, err
        before, info_before = await digest_and_info(s, "web")
        assert before == hashlib.sha256(v1).hexdigest()

        with builder_web(builds) as host:
            # the latest build is the running one
            code, out, err = await cli(capsys, s, "update", "web", "--http-host", host + "/")
            assert (code, out) == (0, "already up to date\n"), err
            assert builds.requests == [f"/hash?sha256={before}", f"/job/{JOB}/build/latest"]

            # a newer one: dry-run says where to compare and changes nothing
            builds.latest, builds.requests = NEW, []
            code, out, err = await cli(capsys, s, "update", "web", "--http-host", host,
                                       "--dry-run")  # fmt: skip
            assert (code, out) == (0, f"compare at {host}/compare/{OLD}/{NEW}\n"), err
            assert not any(r.endswith("main-binary") for r in builds.requests)
            assert (await digest_and_info(s, "web"))[0] == before

            # HTTP failures: exit 118, nothing changed
            builds.binary_status = 500
            code, _, err = await cli(capsys, s, "update", "web", "--http-host", host)
            assert code == 118 and "unexpected HTTP reply 500" in err, err
            builds.binary_status = 200
            builds.binaries[NEW] = wrong
            code, _, err = await cli(capsys, s, "update", "web", "--http-host", host)
            assert code == 125 and "manifest failed" in err and "service" in err, err
            assert (await digest_and_info(s, "web"))[0] == before

            # the update: download, force-create with the same configuration
            builds.binaries[NEW] = v2
            code, out, err = await cli(capsys, s, "update", "web", "--http-host", host)
            assert code == 0, err
            assert out == (f"compare at {host}/compare/{OLD}/{NEW}\n"
                           "host :web: success: created unikernel\n")  # fmt: skip
            assert builds.requests[-1] == f"/job/{JOB}/build/{NEW}/main-binary"
            after, info_after = await digest_and_info(s, "web")
            assert after == hashlib.sha256(v2).hexdigest()
            for kept in ("memory", "argv", "fail_behaviour", "cpuids", "cpus", "startup"):
                assert getattr(info_after, kept) == getattr(info_before, kept), kept

            # the running image is not in the repository
            code, _, err = await cli(capsys, s, "update", "web", "--http-host", host)
            assert code == 118 and "couldn't find the unikernel" in err, err
            # no such unikernel
            code, _, err = await cli(capsys, s, "update", "nope", "--http-host", host)
            assert code == 121 and "no unikernel :nope" in err, err

        # the server is gone: 118, not a traceback
        code, _, err = await cli(capsys, s, "update", "web", "--http-host", host)
        assert code == 118 and "error in HTTP interaction" in err, err
        assert (await cli(capsys, s, "destroy", "web"))[0] == 0


def test_update_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    # --socket -: the info query it starts with, as albatross prints it
    assert main(["update", "web", "--socket", "-"]) == 121
    wire = decode_wire(bytes.fromhex(capsys.readouterr().out.strip()))
    assert wire.payload == UnikernelInfoQuery() and str(wire.header.name) == ":web"
    assert main(["update", "web", "--http-host", "ftp://builds", "--socket", "-"]) == 124
    assert "expected http[s]://hostname" in capsys.readouterr().err
    assert main(["update", "web", "--http-host", "https://h/x", "--socket", "-"]) == 124
    assert main(["update", "web", "--csr"]) == 124
    assert "not supported" in capsys.readouterr().err


async def test_update_over_tls(
    tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same flow through the TLS endpoint, the new image streamed after the leaf."""
    v1 = make_solo5_elf()
    v2 = v1 + b"\0build 2"
    (tmp_path / "v1.hvt").write_bytes(v1)
    builds = Builds(by_digest={hashlib.sha256(v1).hexdigest(): OLD}, latest=NEW,
                    binaries={NEW: v2})  # fmt: skip
    monkeypatch.setattr(cli_module, "INLINE_IMAGE_LIMIT", 0)
    async with stack(tmp_path) as s:
        port = await start_endpoint(s, pki)
        dest = ["-d", f"127.0.0.1:{port}", "--ca", "tenant.pem", "--ca-key", "tenant.key",
                "--server-ca", "cacert.pem"]  # fmt: skip
        code, _, err = await run(capsys, "create", "web", str(tmp_path / "v1.hvt"), *dest)
        assert code == 0, err
        with builder_web(builds) as host:
            code, out, err = await run(capsys, "update", "web", "--http-host", host, *dest)
        assert code == 0, err
        assert out.endswith("success: created unikernel\n"), out
        digest, _ = await digest_and_info(s, "tenant:web")
        assert digest == hashlib.sha256(v2).hexdigest()
