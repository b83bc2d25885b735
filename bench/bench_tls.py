"""TLS endpoint benchmark (run by hand: ``python bench/bench_tls.py [--time 10]``).

Prints figures; asserts nothing.  albatrossd, albatross-console and
albatross-tls-endpoint run as their own processes (Ed25519 root CA, server
key, tenant sub-CA and client leaves).  Measured:

* remote ``info`` commands per second, a fresh TLS 1.3 connection each, from
  client processes using the standard library's ``ssl`` module (handshake
  with client certificate chain leaf + tenant sub-CA, read the reply until
  the endpoint closes), with p50/p99 latency; one client, then several
  concurrent ones.  The leaf is signed once before the run (valid a day);
  the endpoint derives the name from the chain, uploads the tenant's policy
  to albatrossd and forwards the info on every connection.
* the ceiling: ``openssl s_time -new`` (TLS 1.3, client certificate: a leaf
  signed by the root, see :data:`S_TIME_LEAF`) against the same endpoint.
  s_time counts a connection once its own handshake is done and closes
  without reading, so the endpoint's side of each connection (chain
  verification, the albatrossd round trip) overlaps or is cut short: an
  upper bound for handshakes, not commands.  The endpoint's log is counted
  afterwards to show how many of them it accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from albatross_py.client import certs  # noqa: E402
from albatross_py.wire.codec import decode_wire  # noqa: E402
from albatross_py.wire.messages import (  # noqa: E402
    PolicyAdd,
    ReplyUnikernelInfo,
    UnikernelInfoQuery,
)
from albatross_py.wire.types import Policy  # noqa: E402

#: s_time's ``-cert`` file: s_time sends only its first certificate (tried: with
#: leaf.pem the endpoint accepted none, and s_time still counted every TLS 1.3
#: handshake, since the client finishes before the server verifies), so s_time
#: uses a leaf signed by the root itself.
S_TIME_LEAF = ("rootleaf.pem", "rootleaf.key")
TENANT_POLICY = Policy(4, frozenset({0}), 1024, 100, frozenset())
TENDER = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "ABI version 2" >&2; exit 0; fi
exec sleep 1000000
"""


# -- the client (also run as a separate process: --client) ------------------------------


def _client_context(pki: Path, chain: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # as albatross-client: the CA is the authentication
    ctx.load_verify_locations(cafile=str(pki / "cacert.pem"))
    ctx.load_cert_chain(str(pki / chain), str(pki / key))
    return ctx


def _read_all(tls: ssl.SSLSocket) -> bytes:
    buf = bytearray()
    while True:
        data = tls.recv(65536)
        if not data:
            return bytes(buf)
        buf += data


def one_command(port: int, ctx: ssl.SSLContext) -> bytes:
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with ctx.wrap_socket(raw) as tls:
        return _read_all(tls)


def check_reply(data: bytes) -> None:
    (length,) = struct.unpack(">I", data[:4])
    wire = decode_wire(data[4 : 4 + length])
    if not isinstance(wire.payload, ReplyUnikernelInfo):
        raise SystemExit(f"unexpected reply: {wire.payload}")


def client_main(port: int, pki: Path, seconds: float, start_at: float) -> None:
    """Commands until ``seconds`` have passed; print the latencies (ms) as JSON."""
    ctx = _client_context(pki, "leaf.pem", "leaf.key")
    check_reply(one_command(port, ctx))  # warm-up, and the reply is what we think
    while time.time() < start_at:
        time.sleep(0.001)
    latencies = []
    deadline = time.perf_counter() + seconds
    while (t0 := time.perf_counter()) < deadline:
        data = one_command(port, ctx)
        latencies.append((time.perf_counter() - t0) * 1000)
        if not data:
            raise SystemExit("the endpoint closed without a reply")
    print(json.dumps(latencies))


# -- setup --------------------------------------------------------------------------


def make_pki(pki: Path) -> None:
    ca, ca_key = certs.generate_ca("root", key_type="ed25519")
    server, server_key = certs.generate_server(
        ca, ca_key, name="localhost", key_type="ed25519", ip_addresses=["127.0.0.1"]
    )
    csr, tenant_key = certs.make_csr("tenant", PolicyAdd(TENANT_POLICY), "ed25519")
    tenant = certs.sign_csr(ca, ca_key, csr)
    csr, leaf_key = certs.make_csr(".", UnikernelInfoQuery(), "ed25519")
    leaf = certs.sign_csr(tenant, tenant_key, csr)  # a day: valid for the whole run
    # s_time: a leaf signed by the root itself (see S_TIME_LEAF).
    csr, root_leaf_key = certs.make_csr(".", UnikernelInfoQuery(), "ed25519")
    root_leaf = certs.sign_csr(ca, ca_key, csr)
    certs.write_certs(pki / "cacert.pem", [ca])
    certs.write_certs(pki / "server.pem", [server])
    certs.write_key(pki / "server.key", server_key)
    certs.write_certs(pki / "leaf.pem", [leaf, tenant])
    certs.write_key(pki / "leaf.key", leaf_key)
    certs.write_certs(pki / "rootleaf.pem", [root_leaf])
    certs.write_key(pki / "rootleaf.key", root_leaf_key)


def wait_for(check: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not come up")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def summary(label: str, latencies: list[float], elapsed: float) -> None:
    lat = sorted(latencies)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"{label}: {len(lat) / elapsed:,.0f} commands/s ({len(lat)} in {elapsed:.1f} s); "
          f"latency p50 {statistics.median(lat):.2f} ms, p99 {p99:.2f} ms, "
          f"max {lat[-1]:.1f} ms")  # fmt: skip


def run_clients(n: int, port: int, pki: Path, seconds: float, env: dict[str, str]) -> None:
    start_at = time.time() + 1.5  # every client warmed up and waiting
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                str(port),
                str(pki),
                str(seconds),
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            env=env,
        )
        for _ in range(n)
    ]
    latencies: list[float] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 120)
        if proc.returncode != 0:
            raise SystemExit(f"client failed with {proc.returncode}")
        latencies += json.loads(out)
    label = "1 client, sequential" if n == 1 else f"{n} concurrent clients"
    summary(f"remote info, new TLS connection each, {label}", latencies, seconds)


def s_time(port: int, pki: Path, seconds: int, log: Path) -> None:
    before = log.read_text().count(" login ")
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-tls1_3",
            "-time", str(seconds), "-cert", str(pki / S_TIME_LEAF[0]),
            "-key", str(pki / S_TIME_LEAF[1]), "-CAfile", str(pki / "cacert.pem")]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    time.sleep(2)  # let the endpoint finish what s_time left behind
    text = log.read_text()
    accepted = text.count(" login ") - before
    match = re.search(r"(\d+) connections in ([\d.]+)s; ([\d.]+) connections/user sec", proc.stdout)
    print("openssl s_time -new -tls1_3 (client certificate, Ed25519):")
    if match is None:
        print(f"  no figures (exit {proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}")
        return
    conns, real = int(match.group(1)), float(match.group(2))
    print(f"  {conns} handshakes in {real:.1f} s of s_time's CPU = {match.group(3)}/s (user "
          f"sec); {conns / seconds:,.0f}/s wall clock over {seconds} s")  # fmt: skip
    print(f"  the endpoint accepted (logged in) {accepted} chains meanwhile")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--time", type=int, default=10, help="seconds per measurement")
    ap.add_argument("--clients", type=int, default=4, help="concurrent client processes")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="abench-tls-"))
    tmpdir, dbdir, bindir, pki = work / "t", work / "d", work / "bin", work / "pki"
    for d in (bindir, pki):
        d.mkdir()
    (bindir / "solo5-hvt").write_text(TENDER)
    (bindir / "solo5-hvt").chmod(0o755)
    make_pki(pki)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    port = free_port()
    log = work / "endpoint.log"
    daemons: list[subprocess.Popen[bytes]] = []
    try:
        daemons.append(subprocess.Popen(
            [sys.executable, "-m", "albatross_py.daemons.console", "--tmpdir", str(tmpdir),
             "--user", "", "-q"], env=env))  # fmt: skip
        wait_for(lambda: (tmpdir / "util" / "console.sock").exists(), "albatross-console")
        daemons.append(subprocess.Popen(
            [sys.executable, "-m", "albatross_py.daemons.vmmd", "--tmpdir", str(tmpdir),
             "--dbdir", str(dbdir), "--tender-path", str(bindir), "-q"], env=env))  # fmt: skip
        wait_for(lambda: (tmpdir / "util" / "vmmd.sock").exists(), "albatrossd")
        with log.open("wb") as out:
            daemons.append(subprocess.Popen(
                [sys.executable, "-m", "albatross_py.daemons.tls_endpoint",
                 str(pki / "cacert.pem"), str(pki / "server.pem"), str(pki / "server.key"),
                 "--ip", "127.0.0.1", "--port", str(port), "--tmpdir", str(tmpdir),
                 "--dbdir", str(dbdir), "--user", ""],
                env=env, stdout=out, stderr=subprocess.STDOUT))  # fmt: skip
        wait_for(lambda: port_open(port), "albatross-tls-endpoint")
        print(f"python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION}, {os.cpu_count()} "
              "CPUs; endpoint, albatrossd, console: one process each")  # fmt: skip
        run_clients(1, port, pki, args.time, env)
        run_clients(args.clients, port, pki, args.time, env)
        s_time(port, pki, args.time, log)
    finally:
        for proc in reversed(daemons):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(int(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    else:
        main()
