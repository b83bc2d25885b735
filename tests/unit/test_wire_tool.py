"""``albatross-wire``, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.vectors import VECTORS, require_vectors

SUBSCRIBE = "30203013020105040800000000000000000c043a666f6fa009a007a205a103020114"


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "albatross_py.wire.tool", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def test_decode_readable_and_json_and_framed() -> None:
    out = run("decode", SUBSCRIBE)
    assert out.returncode == 0
    assert "name: :foo" in out.stdout and "count: 20" in out.stdout
    js = run("decode", "--json", "-", stdin="00000022" + SUBSCRIBE + "\n")
    assert json.loads(js.stdout)["payload"] == {
        "command": {"console": {"subscribe": {"count": 20}}}
    }


def test_decode_error_exit_status() -> None:
    out = run("decode", SUBSCRIBE[:-2])
    assert out.returncode == 1
    assert out.stderr.startswith("error: ")


def test_reencode_lines() -> None:
    from albatross_py.wire.codec import encode_wire
    from albatross_py.wire.messages import Header, UnikernelCreate, Wire
    from albatross_py.wire.names import Name
    from albatross_py.wire.types import UnikernelConfig

    create = UnikernelConfig(cpuids=frozenset({1, 2}))
    sorted_set = encode_wire(Wire(Header(name=Name.of_string("hello")), UnikernelCreate(create)))
    # the same message with its SET OF cpuids written out of order: re-encoding sorts it
    unsorted_set = sorted_set.hex().replace("3106020101020102", "3106020102020101")
    assert unsorted_set != sorted_set.hex()
    lines = "\n".join([SUBSCRIBE, "zz", "3000", unsorted_set]) + "\n"
    out = run("reencode", stdin=lines).stdout.splitlines()
    assert out[0] == SUBSCRIBE
    assert out[1] == "error: input is not hexadecimal"
    assert out[2] == "error: message has no header"
    assert out[3] == sorted_set.hex()


def test_state_file() -> None:
    require_vectors()
    path = VECTORS / "state" / "wire5_unikernel3_with_mac.der"
    out = run("state", "--json", str(path))
    view = json.loads(out.stdout)
    assert view["layout"] == 3
    assert [u["name"] for u in view["unikernels"]][:2] == ["bar:hello", "bar:my.nice.unikernel"]
    text = run("state", str(path)).stdout
    assert "mac: 00:de:ad:be:ef:00" in text and "4 unikernels:" in text
    bad = run("state", str(VECTORS / "state" / "wire5_unikernel3_with_mac.json"))
    assert bad.returncode == 1 and "error:" in bad.stderr
