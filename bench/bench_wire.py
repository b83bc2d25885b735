"""Wire codec benchmark (run by hand: ``python bench/bench_wire.py``).

Prints figures; asserts nothing.  Measures:
* decoding and encoding an info reply with 1,000 unikernels (aim: decode
  under 50 ms);
* a create command carrying a 10 MB image: time, and peak extra memory in
  units of the image size (how many copies of the image encode/decode make).
"""

from __future__ import annotations

import os
import statistics
import time
import tracemalloc
from datetime import UTC, datetime

from albatross_py.wire.codec import decode_wire, encode_wire
from albatross_py.wire.messages import Header, ReplyUnikernelInfo, UnikernelCreate, Wire
from albatross_py.wire.names import Name
from albatross_py.wire.types import (
    BlockInfo,
    BridgeInfo,
    FailBehaviour,
    Typ,
    UnikernelConfig,
    UnikernelInfo,
)


def median_ms(fn, runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def info_reply(n: int) -> Wire:
    started = datetime(2026, 11, 21, 12, 0, 0, 123000, tzinfo=UTC)
    entries = tuple(
        (
            Name.of_string(f"tenant{i % 10}:vm{i}"),
            UnikernelInfo(
                typ=Typ.SOLO5,
                startup=None,
                fail_behaviour=FailBehaviour(restart=True, exit_codes=frozenset({2, 3})),
                cpuids=frozenset({i % 4}),
                memory=64,
                digest=os.urandom(32),
                blocks=(BlockInfo("storage", f"data{i}", 512, 100),),
                bridges=(BridgeInfo("service", "br0", os.urandom(6)),),
                argv=("--ipv4=10.0.0.2/24", "-l", "*:info"),
                started=started,
            ),
        )
        for i in range(n)
    )
    return Wire(Header(name=Name.of_string(":")), ReplyUnikernelInfo(entries))


def peak_copies(fn, size: int) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    result = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del result
    return (peak - base) / size


def main() -> None:
    image = os.urandom(10 * 1024 * 1024)
    create = Wire(
        Header(name=Name.of_string("tenant:vm")), UnikernelCreate(UnikernelConfig(image=image))
    )
    # memory first, before timing loops leave garbage behind
    enc_copies = peak_copies(lambda: encode_wire(create), len(image))
    cenc = encode_wire(create)
    dec_copies = peak_copies(lambda: decode_wire(cenc), len(image))
    print(f"create with a 10 MB image: {len(cenc):,} bytes")
    print(
        f"  encode: median {median_ms(lambda: encode_wire(create)):.1f} ms, "
        f"peak extra memory {enc_copies:.2f} x image (the result itself is 1.00)"
    )
    print(
        f"  decode: median {median_ms(lambda: decode_wire(cenc)):.1f} ms, "
        f"peak extra memory {dec_copies:.2f} x image (the decoded image itself is 1.00)"
    )

    reply = info_reply(1000)
    enc = encode_wire(reply)
    print(f"info reply, 1,000 unikernels: {len(enc):,} bytes")
    print(f"  encode: median {median_ms(lambda: encode_wire(reply)):.1f} ms")
    print(f"  decode: median {median_ms(lambda: decode_wire(enc)):.1f} ms (aim < 50 ms)")


if __name__ == "__main__":
    main()
