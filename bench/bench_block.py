"""Block device transfer benchmark (run by hand, as root: ``python bench/bench_block.py``).

Prints figures; asserts nothing.  albatrossd, albatross-console and
albatross-tls-endpoint run as their own processes; the transfers are made by
``albatross-client`` as a user runs it:

* ``set-block`` and ``dump-block`` of one block over the local socket;
* ``dump-block`` over mutual TLS (a leaf signed on the fly from a tenant CA),
  uncompressed and at the remote default (zlib level 9);
* the floor, in the same run and interleaved: ``cat`` of the block file to
  another file on the same filesystem (the bytes read and written once, no
  protocol).

The block is ``--random`` percent random bytes, the rest zeros (a disk image
is mostly zeros); rounds are interleaved (floor, local, TLS, ...) and the
medians printed with the machine's load and CPU steal over the run.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256, help="block size in MiB")
    ap.add_argument("--random", type=int, default=25, help="percent of random bytes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-tls", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (albatrossd)")

    work = Path(tempfile.mkdtemp(prefix="abench-block-"))
    tmpdir, dbdir, pki = work / "t", work / "d", work / "pki"
    pki.mkdir()
    make_pki(pki)
    image = work / "image.raw"
    make_image(image, args.size, args.random)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    client = [str(Path(sys.executable).parent / "albatross-client")]
    local = ["--socket", str(tmpdir / "util" / "vmmd.sock")]
    port = free_port()
    remote = [
        "-d",
        f"127.0.0.1:{port}",
        "--ca",
        str(pki / "tenant.pem"),
        "--ca-key",
        str(pki / "tenant.key"),
        "--server-ca",
        str(pki / "cacert.pem"),
    ]

    def run(*argv: str) -> None:
        subprocess.run(
            [*client, *argv, "-q"], env=env, check=True, cwd=work, stdout=subprocess.DEVNULL
        )

    daemons: list[subprocess.Popen[bytes]] = []
    try:
        daemons.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "albatross_py.daemons.console",
                    "--tmpdir",
                    str(tmpdir),
                    "--user",
                    "",
                    "-q",
                ],
                env=env,
            )
        )
        wait_for(lambda: (tmpdir / "util" / "console.sock").exists(), "albatross-console")
        daemons.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "albatross_py.daemons.vmmd",
                    "--tmpdir",
                    str(tmpdir),
                    "--dbdir",
                    str(dbdir),
                    "-q",
                ],
                env=env,
            )
        )
        wait_for(lambda: (tmpdir / "util" / "vmmd.sock").exists(), "albatrossd")
        if not args.no_tls:
            daemons.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "albatross_py.daemons.tls_endpoint",
                        str(pki / "cacert.pem"),
                        str(pki / "server.pem"),
                        str(pki / "server.key"),
                        "--ip",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--tmpdir",
                        str(tmpdir),
                        "--dbdir",
                        str(dbdir),
                        "--user",
                        "",
                        "-q",
                    ],
                    env=env,
                )
            )
            wait_for(lambda: port_open(port), "albatross-tls-endpoint")

        run("add-policy", "tenant", "4", "--mem", "1024", "--cpu", "0", "--block", "4096", *local)
        run("create-block", "tenant:disk", str(args.size), *local)
        block_file = dbdir / "block" / "tenant:disk"
        figures: dict[str, list[float]] = {}
        total0, steal0 = cpu_times()
        load0 = os.getloadavg()[0]
        out = work / "out.raw"
        cases: list[tuple[str, Callable[[], None]]] = [
            ("floor: cat block file > file", lambda: run_cat(block_file, out)),
            (
                "set-block, local socket",
                lambda: run("set-block", "tenant:disk", str(image), *local),
            ),
            (
                "dump-block, local socket",
                lambda: run("dump-block", "tenant:disk", "-o", str(out), *local),
            ),
        ]
        if not args.no_tls:
            cases += [
                (
                    "dump-block, TLS, level 0",
                    lambda: run(
                        "dump-block", "disk", "-o", str(out), "--compression-level", "0", *remote
                    ),
                ),
                (
                    "dump-block, TLS, level 9 (default)",
                    lambda: run("dump-block", "disk", "-o", str(out), *remote),
                ),
            ]
        for _ in range(args.rounds):
            for label, fn in cases:
                figures.setdefault(label, []).append(timed(fn))
                if label.startswith("dump-block") and out.read_bytes() != image.read_bytes():
                    raise SystemExit(f"{label}: the dumped bytes differ from the image")
        total1, steal1 = cpu_times()
        print(
            f"{args.size} MiB block, {args.random}% random; {args.rounds} rounds interleaved; "
            f"load {load0:.2f} -> {os.getloadavg()[0]:.2f}, steal "
            f"{100 * (steal1 - steal0) / max(1, total1 - total0):.1f}%"
        )
        floor = statistics.median(figures[cases[0][0]])
        for label, times in figures.items():
            med = statistics.median(times)
            print(
                f"  {label:38s} median {med:6.2f} s  {args.size / med:7.1f} MiB/s"
                f"  {med / floor:5.1f}x floor"
            )
    finally:
        for proc in reversed(daemons):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_cat(src: Path, dst: Path) -> None:
    with dst.open("wb") as out:
        subprocess.run(["cat", str(src)], stdout=out, check=True)


if __name__ == "__main__":
    main()
