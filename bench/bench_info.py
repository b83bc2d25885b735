"""Local ``info`` throughput against its floor (run by hand, as root).

``python bench/bench_info.py [--requests 2000] [--rounds 5]``

Prints figures; asserts nothing.  albatrossd and albatross-console run as
their own processes with one VM (a stand-in tender, as in ``load.py``).
The floor is a trio server of the same socket type (a unix stream socket, a
new connection per request, as albatross clients do) that reads one frame
and answers with the very bytes albatrossd answered to the same ``info``:
what is left for albatrossd to gain is its own work (decoding, the policy
lookup, encoding the reply).  Both run as their own processes; the client is
this process, with blocking sockets.  Rounds are interleaved (A B A B ...);
medians of requests per second, the ratio, and load and steal are printed.
Issue 15's goal: ratio >= 0.80.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from albatross_py.wire import FrameReader, encode_wire, frame  # noqa: E402
from albatross_py.wire.messages import Header, UnikernelInfoQuery, Wire  # noqa: E402
from albatross_py.wire.names import Name  # noqa: E402

NAME = Name.of_string("probe")


def cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[7] if len(fields) > 7 else 0


def request_bytes() -> bytes:
    return frame(encode_wire(Wire(Header(name=NAME), UnikernelInfoQuery())))


def one(path: str, request: bytes) -> bytes:
    """One request on a new connection; the raw reply frame (length included)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(request)
        reader = FrameReader()
        chunks = []
        while reader.next_frame() is FrameReader.NEED_DATA:
            data = s.recv(65536)
            if not data:
                raise ConnectionError("closed before a reply")
            chunks.append(data)
            reader.feed(data)
        return b"".join(chunks)


def floor_server(path: str, reply_hex: str) -> None:
    """The floor: read a frame, answer the canned reply, close (trio, as albatrossd)."""
    import trio

    from albatross_py.transport import bind_unix

    reply = bytes.fromhex(reply_hex)

    async def handler(stream: trio.SocketStream) -> None:
        reader = FrameReader()
        async with stream:
            while reader.next_frame() is FrameReader.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                reader.feed(data)
            await stream.send_all(reply)

    async def serve() -> None:
        listener = bind_unix(Path(path))
        await trio.serve_listeners(handler, [listener])

    trio.run(serve)


def rate(path: str, request: bytes, count: int) -> float:
    t0 = time.perf_counter()
    for _ in range(count):
        one(path, request)
    return count / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000, help="per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--floor-server", nargs=2, metavar=("SOCKET", "REPLY_HEX"),
                    help=argparse.SUPPRESS)  # fmt: skip
    args = ap.parse_args()
    if args.floor_server:
        floor_server(*args.floor_server)
        return
    if os.geteuid() != 0:
        raise SystemExit("run as root (albatrossd)")
    import trio
    from load import _call, daemons

    from albatross_py.virt.solo5_elf import make_solo5_elf
    from albatross_py.wire.messages import UnikernelCreate
    from albatross_py.wire.types import UnikernelConfig

    request = request_bytes()
    with tempfile.TemporaryDirectory(prefix="abench-info-") as work, daemons(Path(work)) as d:
        config = UnikernelConfig(image=make_solo5_elf("hvt", 2, (), ()), memory=1)
        trio.run(_call, d.vmmd_socket, NAME, UnikernelCreate(config))
        vmmd = str(d.vmmd_socket)
        reply = one(vmmd, request)
        floor_path = str(Path(work) / "floor.sock")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        floor = subprocess.Popen(
            [sys.executable, __file__, "--floor-server", floor_path, reply.hex()], env=env
        )
        try:
            while not Path(floor_path).exists():
                time.sleep(0.02)
            assert one(floor_path, request) == reply
            for path in (vmmd, floor_path):  # warm both up
                rate(path, request, 200)
            total0, steal0 = cpu_times()
            load0 = os.getloadavg()[0]
            ours, floors = [], []
            for _ in range(args.rounds):
                ours.append(rate(vmmd, request, args.requests))
                floors.append(rate(floor_path, request, args.requests))
            total1, steal1 = cpu_times()
        finally:
            floor.terminate()
            floor.wait()
    a, b = statistics.median(ours), statistics.median(floors)
    print(
        f"local info, a new connection each, {args.rounds} rounds x {args.requests} interleaved;"
        f" load {load0:.2f} -> {os.getloadavg()[0]:.2f},"
        f" steal {100 * (steal1 - steal0) / max(1, total1 - total0):.1f}%"
    )
    print(f"  albatrossd        median {a:7,.0f}/s  (min {min(ours):,.0f}, max {max(ours):,.0f})")
    print(
        f"  floor (trio echo) median {b:7,.0f}/s  (min {min(floors):,.0f}, max {max(floors):,.0f})"
    )
    print(f"  ratio {a / b:.2f} (goal >= 0.80); reply {len(reply)} bytes")


if __name__ == "__main__":
    main()
