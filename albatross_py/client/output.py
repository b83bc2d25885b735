"""How albatross-client prints what it receives (spec 7.4), and its progress bars.

Default output mirrors albatross's ``Vmm_commands.pp_wire``:

* ``host <name>: success: <string>`` / ``host <name>: success``;
* list replies: one entry per line (``<name>: <entry>``), the first line
  prefixed with ``host <name>: ``; empty lists print ``no unikernels``,
  ``no policies``, ``no block devices``;
* ``console <rfc3339>: <line>`` with the line escaped like OCaml's
  ``String.escaped`` (albatross 2.7.0 escapes console data);
* ``stats: …``;
* an event-log event: its line as in albatross-log's file
  (:func:`albatross_py.core.eventlog.line`), e.g.
  ``2026-08-03T10:11:12.345Z login tenant: address=192.0.2.1:4711``;
* a failure: ``host <name>: command failed <message>`` (on stderr, as
  albatross logs it as a warning).

With ``--json`` every message is one JSON object per line in the
conformance vectors' conventions (:func:`albatross_py.wire.jsonview.wire_to_json`),
and results of local operations are JSON objects too.
"""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from albatross_py.core.eventlog import line as event_line
from albatross_py.core.ocaml import escaped
from albatross_py.wire.jsonview import mac_to_str, wire_to_json
from albatross_py.wire.messages import (
    DataBlock,
    DataConsole,
    DataEvent,
    DataStatistics,
    Failure,
    ReplyBlockDeviceImage,
    ReplyBlockDevices,
    ReplyConsoles,
    ReplyEmpty,
    ReplyOldBlockDeviceImage,
    ReplyPolicies,
    ReplyString,
    ReplyUnikernelImage,
    ReplyUnikernelInfo,
    Wire,
)
from albatross_py.wire.names import Name
from albatross_py.wire.types import FailBehaviour, Policy, Statistics, UnikernelInfo


def ocaml_escaped(data: bytes) -> str:
    """OCaml's ``String.escaped``, as albatross prints console lines (2.7.0)."""
    return escaped(data)


def rfc3339(t: datetime) -> str:
    """``Ptime.pp_rfc3339 ()``: seconds precision, unknown offset ``-00:00``."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + "-00:00"


def _ints(xs: Any) -> str:
    return ", ".join(str(x) for x in sorted(xs))


def pp_policy(p: Policy) -> str:
    block = "no" if p.block is None else f"{p.block} MB"
    return (
        f"policy: {p.unikernels} unikernels, {p.memory} MB memory, {block} block, "
        f"cpuids {_ints(p.cpuids)}, bridges {', '.join(sorted(p.bridges))}"
    )


def pp_fail(fb: FailBehaviour) -> str:
    if not fb.restart:
        return "quit"
    if fb.exit_codes is None:
        return "restart"
    return f"restart on exit codes {_ints(fb.exit_codes)}"


def pp_info(i: UnikernelInfo, verbose: bool = False) -> str:
    blocks = ", ".join(
        f"{b.unikernel_device} -> {b.host_device} ({b.size} MB, sector size {b.sector_size})"
        for b in i.blocks
    )
    nets = ", ".join(
        f"{n.unikernel_device} -> {n.host_device} ({mac_to_str(n.mac)})" for n in i.bridges
    )
    parts = [
        f"typ {i.typ.name.lower()}",
        f"started {rfc3339(i.started)}",
        f"startup {'default (50)' if i.startup is None else i.startup}",
        f"fail behaviour {pp_fail(i.fail_behaviour)}",
        f"CPUids {_ints(i.cpuids)}",
        f"{i.memory} MB memory",
        f"block devices {blocks or 'none'}",
        f"bridges {nets or 'none'}",
        f"digest {i.digest.hex()}",
        f"#cpus {i.cpus}",
    ]
    if i.linux_boot_partition is not None:
        parts.append(f"linux boot partition {i.linux_boot_partition}")
    if verbose and i.argv is not None:
        parts.append("argv " + " ".join(i.argv))
    return " ".join(parts)


def pp_stats(s: Statistics) -> str:
    r = s.rusage
    parts = [
        f"utime {r.utime.seconds}.{r.utime.microseconds:06d}s",
        f"stime {r.stime.seconds}.{r.stime.microseconds:06d}s",
        f"maxrss {r.maxrss}",
    ]
    if s.kinfo_mem is not None:
        parts.append(f"rss {s.kinfo_mem.rss} vsize {s.kinfo_mem.vsize}")
    for i in s.ifdata:
        parts.append(
            f"net {i.bridge}: in {i.input_bytes} bytes {i.input_packets} packets, "
            f"out {i.output_bytes} bytes {i.output_packets} packets"
        )
    for key, value in s.vmm or ():
        parts.append(f"{key} {value}")
    return ", ".join(parts)


def _listing(empty: str, lines: list[str]) -> list[str]:
    return lines or [empty]


def pp_wire(wire: Wire, verbose: bool = False) -> list[str]:
    """The lines albatross prints for one message."""
    p = wire.payload
    host = f"host {wire.header.name}: "
    match p:
        case Failure(msg):
            return [f"{host}command failed {msg}"]
        case DataConsole(ts, line):
            return [f"console {rfc3339(ts)}: {ocaml_escaped(line)}"]
        case DataStatistics(stats):
            return [f"stats: {pp_stats(stats)}"]
        case DataEvent(ts, event):
            return [event_line(ts, event).rstrip("\n")]
        case DataBlock(chunk):
            return ["block data " + ("eof" if chunk is None else f"{len(chunk)} bytes")]
        case ReplyEmpty():
            lines = ["success"]
        case ReplyString(text):
            lines = [f"success: {text}"]
        case ReplyPolicies(entries):
            lines = _listing("no policies", [f"{e.name}: {pp_policy(e.policy)}" for e in entries])
        case ReplyUnikernelInfo(entries):
            lines = _listing("no unikernels", [f"{n}: {pp_info(i, verbose)}" for n, i in entries])
        case ReplyBlockDevices(entries):
            lines = _listing(
                "no block devices",
                [f"block {e.name} size {e.size} MB active {str(e.active).lower()}"
                 for e in entries],
            )  # fmt: skip
        case ReplyConsoles(names):
            lines = _listing("no inactive consoles", [str(n) for n in names])
        case ReplyUnikernelImage(compressed, image):
            lines = [f"image (compression {str(compressed).lower()}) {len(image)} bytes"]
        case ReplyOldBlockDeviceImage(compressed, image):
            lines = [f"old block device compressed {str(compressed).lower()}, {len(image)} bytes"]
        case ReplyBlockDeviceImage(compressed):
            lines = [f"block device compressed {str(compressed).lower()}"]
        case _:
            lines = [repr(p)]
    return [host + lines[0], *lines[1:]]


class Printer:
    """Writes messages and local results, human-readable or as JSON lines."""

    def __init__(
        self,
        json_mode: bool = False,
        verbose: bool = False,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.json_mode = json_mode
        self.verbose = verbose
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def wire(self, wire: Wire) -> None:
        if self.json_mode:
            self._json(wire_to_json(wire))
            return
        stream = self.err if isinstance(wire.payload, Failure) else self.out
        for line in pp_wire(wire, self.verbose):
            print(line, file=stream, flush=True)

    def result(self, text: str, data: dict[str, Any] | None = None) -> None:
        """A local operation's result: ``text`` for humans, ``data`` for ``--json``."""
        if self.json_mode:
            self._json(data if data is not None else {"result": text})
        else:
            print(text, file=self.out, flush=True)

    def error(self, text: str) -> None:
        if self.json_mode:
            self._json({"error": text})
        print(f"albatross-client: {text}", file=self.err, flush=True)

    def _json(self, obj: Any) -> None:
        print(json.dumps(obj, sort_keys=False), file=self.out, flush=True)


class Progress:
    """A one-line text progress bar on stderr, drawn only when stderr is a tty."""

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = -1

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.total:
            pct = min(100, self.done * 100 // self.total)
            if pct == self._last:
                return
            self._last = pct
            bar = "#" * (pct // 5)
            text = f"\r{self.label} [{bar:<20}] {pct:3d}% {self.done}/{self.total} bytes"
        else:
            text = f"\r{self.label} {self.done} bytes"
        self.stream.write(text)
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled and (self.done or self.total):
            self.stream.write("\n")
            self.stream.flush()


# -- where downloaded data goes (get, dump-block) -----------------------------------


def image_sink(path: Path, name: Name, printer: Printer) -> Callable[[Wire], bool]:
    """``get``: write the (decompressed) image of the reply to ``path``."""

    def on_wire(wire: Wire) -> bool:
        if not isinstance(wire.payload, ReplyUnikernelImage):
            return False
        image = wire.payload.image
        if wire.payload.compressed:
            image = zlib.decompress(image)
        path.write_bytes(image)
        printer.result(
            f"host {name}: wrote image ({len(image)} bytes) to {path}",
            {"image-file": str(path), "size": len(image)},
        )
        return True

    return on_wire


class _DumpSink:
    """``dump-block``: the streamed chunks, decompressed if need be, into a file."""

    def __init__(self, path: Path, name: Name, printer: Printer) -> None:
        self.path, self.name, self.printer = path, name, printer
        self.file: BinaryIO | None = None
        self.z: Any = None
        self.progress = Progress(f"dumping {name}", None)

    def __call__(self, wire: Wire) -> bool:
        p = wire.payload
        if isinstance(p, ReplyBlockDeviceImage):
            self.file = open(self.path, "wb")  # noqa: SIM115 - closed at the end marker
            self.z = zlib.decompressobj() if p.compressed else None
            return False
        if not isinstance(p, DataBlock) or self.file is None:
            return False
        if p.chunk is not None:
            self.file.write(self.z.decompress(p.chunk) if self.z else p.chunk)
            self.progress.advance(len(p.chunk))
            return True
        if self.z:
            self.file.write(self.z.flush())
        self.file.close()
        self.progress.finish()
        self.printer.result(
            f"host {self.name}: dumped block device to {self.path}",
            {"block-file": str(self.path)},
        )
        return True


def dump_sink(path: Path, name: Name, printer: Printer) -> Callable[[Wire], bool]:
    return _DumpSink(path, name, printer)
