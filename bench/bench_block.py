"""Block device transfer benchmark (run by hand, as root: ``python bench/bench_block.py``).

Prints figures; asserts nothing.  albatrossd, albatross-console and
albatross-tls-endpoint run as their own processes; the transfers are made by
``albatross-client`` as a user runs it:

* ``set-block`` and ``dump-block`` of one block over the local socket;
* both over mutual TLS (a leaf signed on the fly from a tenant CA),
  uncompressed and at the remote default (zlib level 9);
* the floor, in the same run and interleaved: ``cat`` of the block file into
  a unix socket whose other end is written to a file (the bytes read, sent
  and written once, no protocol).

For each size of ``--sizes`` (default 64 and 256 MiB).

The block is ``--random`` percent random bytes, the rest zeros (a disk image
is mostly zeros); rounds are interleaved (floor, local, TLS, ...) and the
medians printed with the machine's load and CPU steal over the run.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from albatross_py.client import certs  # noqa: E402
from albatross_py.wire.messages import PolicyAdd  # noqa: E402
from albatross_py.wire.types import Policy  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from bench_tls import free_port, port_open, wait_for  # noqa: E402

TENANT_POLICY = Policy(4, frozenset({0}), 1024, 4096, frozenset())


def cpu_times() -> tuple[int, int]:
    """(total, steal) jiffies from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[7] if len(fields) > 7 else 0


def make_pki(pki: Path) -> None:
    ca, ca_key = certs.generate_ca("root", key_type="ed25519")
    server, server_key = certs.generate_server(
        ca, ca_key, name="localhost", key_type="ed25519", ip_addresses=["127.0.0.1"]
    )
    csr, tenant_key = certs.make_csr("tenant", PolicyAdd(TENANT_POLICY), "ed25519")
    tenant = certs.sign_csr(ca, ca_key, csr)
    certs.write_certs(pki / "cacert.pem", [ca])
    certs.write_certs(pki / "server.pem", [server])
    certs.write_key(pki / "server.key", server_key)
    certs.write_certs(pki / "tenant.pem", [tenant])
    certs.write_key(pki / "tenant.key", tenant_key)


def make_image(path: Path, size_mib: int, random_percent: int) -> None:
    mib = 1 << 20
    with path.open("wb") as out:
        for i in range(size_mib):
            out.write(os.urandom(mib) if i * 100 < random_percent * size_mib else bytes(mib))


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cat_to_socket(src: Path, dst: Path) -> None:
    """The floor: ``cat`` of the file into a unix socket, the other end written to ``dst``."""
    ours, theirs = socket.socketpair()
    with ours, dst.open("wb") as out:

        def drain() -> None:
            while data := ours.recv(1 << 20):
                out.write(data)

        reader = threading.Thread(target=drain)
        reader.start()
        with theirs:
            subprocess.run(["cat", str(src)], stdout=theirs, check=True)
        reader.join()


def daemon(env: dict[str, str], module: str, *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", f"albatross_py.daemons.{module}", *argv], env=env
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="64,256", help="block sizes in MiB, comma-separated")
    ap.add_argument("--random", type=int, default=25, help="percent of random bytes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-tls", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (albatrossd)")
    sizes = [int(x) for x in args.sizes.split(",")]

    work = Path(tempfile.mkdtemp(prefix="abench-block-"))
    tmpdir, dbdir, pki = work / "t", work / "d", work / "pki"
    pki.mkdir()
    make_pki(pki)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    client = [str(Path(sys.executable).parent / "albatross-client")]
    local = ["--socket", str(tmpdir / "util" / "vmmd.sock")]
    port = free_port()
    ca = ["--ca", str(pki / "tenant.pem"), "--ca-key", str(pki / "tenant.key")]
    remote = ["-d", f"127.0.0.1:{port}", *ca, "--server-ca", str(pki / "cacert.pem")]

    def run(*argv: str) -> None:
        subprocess.run(
            [*client, *argv, "-q"], env=env, check=True, cwd=work, stdout=subprocess.DEVNULL
        )

    daemons: list[subprocess.Popen[bytes]] = []
    try:
        daemons.append(daemon(env, "console", "--tmpdir", str(tmpdir), "--user", "", "-q"))
        wait_for(lambda: (tmpdir / "util" / "console.sock").exists(), "albatross-console")
        daemons.append(daemon(env, "vmmd", "--tmpdir", str(tmpdir), "--dbdir", str(dbdir), "-q"))
        wait_for(lambda: (tmpdir / "util" / "vmmd.sock").exists(), "albatrossd")
        if not args.no_tls:
            daemons.append(daemon(
                env, "tls_endpoint", str(pki / "cacert.pem"), str(pki / "server.pem"),
                str(pki / "server.key"), "--ip", "127.0.0.1", "--port", str(port),
                "--tmpdir", str(tmpdir), "--dbdir", str(dbdir), "--user", "", "-q",
            ))  # fmt: skip
            wait_for(lambda: port_open(port), "albatross-tls-endpoint")
        run("add-policy", "tenant", "4", "--mem", "1024", "--cpu", "0", "--block", "4096", *local)
        for size in sizes:
            bench_size(args, size, work, dbdir, run, local, remote)
    finally:
        for proc in reversed(daemons):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def bench_size(
    args: argparse.Namespace,
    size: int,
    work: Path,
    dbdir: Path,
    run: Callable[..., None],
    local: list[str],
    remote: list[str],
) -> None:
    image, out = work / f"image-{size}.raw", work / "out.raw"
    make_image(image, size, args.random)
    block = f"disk{size}"
    run("create-block", f"tenant:{block}", str(size), *local)
    run("set-block", f"tenant:{block}", str(image), *local)  # the floor copies the image too
    block_file = dbdir / "block" / f"tenant:{block}"
    cases: list[tuple[str, str, Callable[[], None]]] = [
        ("floor", "cat block file > unix socket > file", lambda: cat_to_socket(block_file, out)),
        ("set", "set-block, local socket", lambda: run("set-block", f"tenant:{block}",
                                                       str(image), *local)),
        ("dump", "dump-block, local socket", lambda: run("dump-block", f"tenant:{block}",
                                                         "-o", str(out), *local)),
    ]  # fmt: skip
    if not args.no_tls:
        for level in ("0", "9"):
            cases.append(
                (
                    "set",
                    f"set-block, TLS, level {level}",
                    lambda level=level: run(
                        "set-block", block, str(image), "--compression-level", level, *remote
                    ),
                )
            )
            cases.append(
                (
                    "dump",
                    f"dump-block, TLS, level {level}",
                    lambda level=level: run(
                        "dump-block", block, "-o", str(out), "--compression-level", level, *remote
                    ),
                )
            )
    figures: dict[str, list[float]] = {}
    total0, steal0 = cpu_times()
    load0 = os.getloadavg()[0]
    expected = image.read_bytes()
    for _ in range(args.rounds):
        for kind, label, fn in cases:
            figures.setdefault(label, []).append(timed(fn))
            if kind != "set" and out.read_bytes() != expected:
                raise SystemExit(f"{label}: the bytes differ from the image")
    total1, steal1 = cpu_times()
    print(
        f"{size} MiB block, {args.random}% random; {args.rounds} rounds interleaved; "
        f"load {load0:.2f} -> {os.getloadavg()[0]:.2f}, steal "
        f"{100 * (steal1 - steal0) / max(1, total1 - total0):.1f}%"
    )
    floor = statistics.median(figures[cases[0][1]])
    for _, label, _ in cases:
        med = statistics.median(figures[label])
        print(
            f"  {label:38s} median {med:6.2f} s  {size / med:7.1f} MiB/s  {med / floor:5.1f}x floor"
        )


if __name__ == "__main__":
    main()
