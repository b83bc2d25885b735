"""albatross-console throughput and memory (run by hand: ``python bench/bench_console.py``).

Prints figures; asserts nothing.  The console daemon runs as its own process
(``python -m albatross_py.daemons.console``), exactly as deployed; this
process plays albatrossd (``Console_add`` on one persistent connection after
creating the FIFO) and the subscribers (blocking unix sockets, one per
subscriber, multiplexed with ``selectors``; they only split frames and count
them, so they are not the bottleneck).

1. **Lines per second.**  A writer process pushes ``--lines`` short lines
   (``tinyguest: line NNNNNNN``, 24 bytes with the newline) into the VM's
   FIFO as fast as the FIFO takes them; the daemon reads it 512 bytes at a
   time (as albatross does), records every line in the ring and queues it
   for each subscriber.  Runs with 0 and with ``--subscribers`` subscribers
   alternate (``--reps`` each; a fresh VM name per run) and medians are
   printed.  Per run: lines/s as the writer saw it (its first write to its
   last, i.e. the daemon's ingest rate within one pipe buffer), lines/s per
   subscriber (writer start to that subscriber's last line), whether any
   subscriber was dropped (the daemon closes a subscriber whose queue of
   1,024 lines is full), and the daemon's CPU time per million lines.
   The aim in the issue: at least 100,000 lines/s per console daemon.
   ``--profile FILE`` runs this daemon under cProfile (``pstats`` FILE).
2. **Memory per VM ring.**  A fresh daemon; RSS at rest; then ``--rings``
   consoles added, each fed ``--ring-lines`` lines of 80 bytes (+ newline;
   the FIFOs' writers stay open, as for running VMs); RSS again once every
   FIFO is drained.  (RSS - baseline) / rings is the cost of one VM's
   console with a full ring; the split into "console with an empty ring"
   and "ring contents" is printed too.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from albatross_py.host.limits import raise_nofile_limit  # noqa: E402
from albatross_py.wire import FrameReader, decode_wire, encode_wire, frame  # noqa: E402
from albatross_py.wire.messages import (  # noqa: E402
    ConsoleAdd,
    ConsoleSubscribe,
    DataConsole,
    Header,
    ReplyEmpty,
    Wire,
)
from albatross_py.wire.names import Name  # noqa: E402

#: The writer: pre-builds its lines, then writes them in 64 KiB chunks and
#: prints the monotonic times of its first and last write.
WRITER = r"""
import os, sys, time
path, n = sys.argv[1], int(sys.argv[2])
data = b"".join(b"tinyguest: line %07d\n" % i for i in range(n))
fd = os.open(path, os.O_WRONLY)
mv = memoryview(data)
t0 = time.monotonic()
off = 0
while off < len(mv):
    off += os.write(fd, mv[off:off + 65536])
t1 = time.monotonic()
os.close(fd)
print(t0, t1, flush=True)
"""

_LEN = struct.Struct(">i")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    def __init__(self, tmpdir: Path, max_subscribers: int = 5, profile: str | None = None) -> None:
        self.tmpdir = tmpdir
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        prof = ["-m", "cProfile", "-o", profile] if profile else []
        self.proc = subprocess.Popen(
            [sys.executable, *prof, "-m", "albatross_py.daemons.console", "--tmpdir", str(tmpdir),
             "--max-subscribers", str(max_subscribers), "-q"], env=env)  # fmt: skip
        self.sock = tmpdir / "util" / "console.sock"
        deadline = time.monotonic() + 30
        while not self.sock.exists():
            if time.monotonic() > deadline:
                raise SystemExit("console daemon did not start")
            time.sleep(0.05)
        (tmpdir / "fifo").mkdir(parents=True, exist_ok=True)
        self.control = self.connect()  # albatrossd's persistent connection

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.sock))
        return s

    def fifo(self, name: Name) -> Path:
        return self.tmpdir / "fifo" / name.file_component()

    def add(self, name: Name, limit: int) -> Path:
        path = self.fifo(name)
        os.mkfifo(path, 0o600)
        send(self.control, Wire(Header(name=name), ConsoleAdd(limit)))
        reply = recv(self.control)
        if not isinstance(reply.payload, ReplyEmpty):
            raise SystemExit(f"console add {name}: {reply.payload}")
        return path

    def subscribe(self, name: Name, count: int) -> socket.socket:
        s = self.connect()
        send(s, Wire(Header(name=name), ConsoleSubscribe(count=count)))
        return s

    def stop(self) -> None:
        self.control.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def send(s: socket.socket, wire: Wire) -> None:
    s.sendall(frame(encode_wire(wire)))


_READERS: dict[int, FrameReader] = {}


def recv(s: socket.socket) -> Wire:
    """The next wire on ``s`` (frames that arrived with it are kept for the next call)."""
    reader = _READERS.setdefault(s.fileno(), FrameReader())
    while (got := reader.next_frame()) is FrameReader.NEED_DATA:
        data = s.recv(65536)
        if not data:
            raise ConnectionError("closed")
        reader.feed(data)
    assert isinstance(got, bytes)
    return decode_wire(got)


class Counter:
    """Counts the frames of one subscriber; the first is the subscribe reply."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.frames = 0
        self.last = 0.0
        self.eof = False

    @property
    def lines(self) -> int:
        return max(self.frames - 1, 0)

    def on_readable(self) -> None:
        data = self.sock.recv(1 << 20)
        now = time.monotonic()
        if not data:
            self.eof = True
            return
        buf = self.buf + data
        off, n, frames = 0, len(buf), 0
        unpack = _LEN.unpack_from
        while off + 4 <= n:
            (ln,) = unpack(buf, off)
            if off + 4 + ln > n:
                break
            off += 4 + ln
            frames += 1
        self.buf = buf[off:]
        if frames:
            self.frames += frames
            self.last = now


def throughput_run(d: Daemon, name: Name, lines: int, nsub: int) -> dict[str, float]:
    fifo = d.add(name, 100)
    counters = [Counter(d.subscribe(name, 0)) for _ in range(nsub)]
    sel = selectors.DefaultSelector()
    for c in counters:
        c.sock.setblocking(False)
        sel.register(c.sock, selectors.EVENT_READ, c)
    cpu0 = cpu_seconds(d.proc.pid)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(fifo), str(lines)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    writer_done = None
    idle_since = time.monotonic()
    while True:
        events = sel.select(timeout=0.2)
        for key, _ in events:
            c: Counter = key.data
            c.on_readable()
            if c.eof:
                sel.unregister(c.sock)
        if events:
            idle_since = time.monotonic()
        if writer_done is None and writer.poll() is not None:
            writer_done = time.monotonic()
        if writer_done is not None:
            if all(c.eof or c.lines >= lines for c in counters):
                break
            if time.monotonic() - idle_since > 5:
                break
    t0, t1 = (float(x) for x in writer.stdout.read().split())  # type: ignore[union-attr]
    if not counters:  # let the daemon finish the last pipe buffer before reading its CPU
        time.sleep(0.2)
    cpu = cpu_seconds(d.proc.pid) - cpu0
    # The ring has the last line?
    check = d.subscribe(name, 1)
    recv(check)
    last = recv(check).payload
    _READERS.pop(check.fileno(), None)
    check.close()
    for c in counters:
        c.sock.close()
    sel.close()
    complete = isinstance(last, DataConsole) and last.line == b"tinyguest: line %07d" % (lines - 1)
    out = {
        "writer lines/s": lines / (t1 - t0),
        "cpu s per 1M lines": cpu / lines * 1e6,
        "ring has the last line": float(complete),
        "dropped": float(sum(c.eof for c in counters)),
    }
    for i, c in enumerate(counters):
        out[f"sub{i} lines"] = c.lines
        out[f"sub{i} lines/s"] = c.lines / (c.last - t0) if c.lines else 0.0
    return out


def fionread(fd: int) -> int:
    buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return struct.unpack("i", buf)[0]


def memory(tmp: Path, rings: int, ring_lines: int) -> None:
    d = Daemon(tmp / "mem")
    fds: list[int] = []
    try:
        time.sleep(1.0)
        base = rss_kib(d.proc.pid)
        names = [Name.of_string(f"t{i % 10}:vm{i:04d}") for i in range(rings)]
        paths = [d.add(n, rings + 10) for n in names]
        for p in paths:  # open every writer first: a console with an empty ring
            fds.append(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
        time.sleep(1.0)
        empty = rss_kib(d.proc.pid)
        for i, fd in enumerate(fds):
            os.set_blocking(fd, True)
            pad = b"x" * 63
            data = b"".join(b"vm%04d line %04d %s\n" % (i, j, pad) for j in range(ring_lines))
            os.write(fd, data)  # blocking: the daemon drains it as we go
        deadline = time.monotonic() + 120
        while any(fionread(fd) for fd in fds) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        full = rss_kib(d.proc.pid)
        # sanity: one ring really holds ring_lines lines of 80 bytes
        s = d.subscribe(names[rings // 2], ring_lines)
        recv(s)
        got = [recv(s).payload for _ in range(min(ring_lines, 1024))]
        _READERS.pop(s.fileno(), None)
        s.close()
        sizes = {len(p.line) for p in got if isinstance(p, DataConsole)}
        per = (full - base) / rings
        print(f"memory: {rings} consoles x {ring_lines} lines of 80 bytes "
              f"(sanity: a ring returned {len(got)} lines, sizes {sorted(sizes)})")  # fmt: skip
        print(f"  RSS baseline {base / 1024:.1f} MiB, {rings} consoles with empty rings "
              f"{empty / 1024:.1f} MiB, full rings {full / 1024:.1f} MiB")  # fmt: skip
        print(f"  per VM: {per:.0f} KiB in all = {(empty - base) / rings:.1f} KiB console "
              f"+ {(full - empty) / rings:.0f} KiB ring contents "
              f"({(full - empty) * 1024 / rings / ring_lines:.0f} B per 80-byte line)")  # fmt: skip
    finally:
        for fd in fds:
            os.close(fd)
        d.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--subscribers", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rings", type=int, default=1000)
    ap.add_argument("--ring-lines", type=int, default=1024)
    ap.add_argument("--profile", metavar="FILE", help="cProfile the throughput daemon into FILE")
    args = ap.parse_args()
    raise_nofile_limit()
    tmp = Path(tempfile.mkdtemp(prefix="acb-"))
    try:
        d = Daemon(tmp / "tp", max_subscribers=max(args.subscribers, 1), profile=args.profile)
        runs: dict[int, list[dict[str, float]]] = {0: [], args.subscribers: []}
        try:
            for rep in range(args.reps):
                for nsub in runs:
                    r = throughput_run(d, Name.of_string(f"tp{rep}x{nsub}"), args.lines, nsub)
                    runs[nsub].append(r)
                    subs = [r[f"sub{i} lines/s"] for i in range(nsub)]
                    print(f"run {rep} with {nsub} subscribers: writer {r['writer lines/s']:,.0f} "
                          f"lines/s; per subscriber {', '.join(f'{x:,.0f}' for x in subs) or '-'}"
                          f" lines/s; dropped {int(r['dropped'])}; daemon CPU "
                          f"{r['cpu s per 1M lines']:.2f} s per 1M lines; "
                          f"ring complete {bool(r['ring has the last line'])}",
                          flush=True)  # fmt: skip
        finally:
            d.stop()
        print(f"throughput, {args.lines:,} lines of 24 bytes, medians of {args.reps} runs:")
        for nsub, rs in runs.items():
            writer = statistics.median(r["writer lines/s"] for r in rs)
            cpu = statistics.median(r["cpu s per 1M lines"] for r in rs)
            line = f"  {nsub} subscribers: ingest {writer:,.0f} lines/s, daemon CPU {cpu:.2f} s/1M"
            if nsub:
                per = [r[f"sub{i} lines/s"] for r in rs for i in range(nsub)]
                short = sum(r[f"sub{i} lines"] < args.lines for r in rs for i in range(nsub))
                dropped = sum(int(r["dropped"]) for r in rs)
                line += (f"; per subscriber median {statistics.median(per):,.0f} lines/s "
                         f"(min {min(per):,.0f}); dropped {dropped} of {nsub * len(rs)}, "
                         f"{short} got fewer than all lines")  # fmt: skip
            print(line)
        memory(tmp, args.rings, args.ring_lines)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
