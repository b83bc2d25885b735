"""``albatross-wire``: look inside albatross wire messages and state files.

For operators and for debugging interop:

  albatross-wire decode 3020301302...           # a message, readably
  albatross-wire decode --json - < msg.hex      # the same as JSON
  albatross-wire reencode < lines.hex           # decode + re-encode each line
  albatross-wire state /var/lib/albatross/state # unikernels and policies

Hex input may carry the 4-byte frame length prefix; it is recognised and
skipped.  Exit status: 0 on success, 1 when the input is not valid.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any

from albatross_py.wire.codec import decode_wire, encode_wire
from albatross_py.wire.errors import WireError
from albatross_py.wire.jsonview import config_to_json, policy_to_json, wire_to_json
from albatross_py.wire.state import read_state


def _unhex(text: str) -> bytes:
    cleaned = "".join(text.split())
    if cleaned.startswith(("0x", "0X")):
        cleaned = cleaned[2:]
    try:
        data = bytes.fromhex(cleaned)
    except ValueError:
        raise WireError("input is not hexadecimal") from None
    if len(data) >= 4 and data[0] == 0 and int.from_bytes(data[:4], "big") == len(data) - 4:
        data = data[4:]  # a framed message: drop the length prefix
    return data


def _render(value: Any, indent: int = 0) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, v in value.items():
            if isinstance(v, dict | list) and v:
                lines.append(f"{pad}{key}:")
                lines.extend(_render(v, indent + 1))
            else:
                lines.append(f"{pad}{key}: {_scalar(v)}")
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict | list) and v:
                lines.append(f"{pad}-")
                lines.extend(_render(v, indent + 1))
            else:
                lines.append(f"{pad}- {_scalar(v)}")
    else:
        lines.append(pad + _scalar(value))
    return lines


def _scalar(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict | list):
        return "{}" if isinstance(v, dict) else "[]"
    return str(v)


def cmd_decode(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.hex == "-" else args.hex
    try:
        wire = decode_wire(_unhex(text))
    except WireError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    view = wire_to_json(wire)
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        print("\n".join(_render(view)))
    return 0


def cmd_reencode(args: argparse.Namespace) -> int:
    status = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            print(encode_wire(decode_wire(_unhex(line))).hex())
        except WireError as exc:
            print(f"error: {exc}")
            status = 1
    return status


def _state_view(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        state = read_state(f.read())
    unikernels = []
    for name, config in state.unikernels:
        view = config_to_json(config)
        image = view.pop("image")
        view["image"] = {
            "bytes": len(image) // 2,
            "sha256": hashlib.sha256(config.image).hexdigest(),
        }
        unikernels.append({"name": str(name), "config": view})
    policies = [{"path": str(n), "policy": policy_to_json(p)} for n, p in state.policies]
    return {"layout": state.layout, "unikernels": unikernels, "policies": policies}


def cmd_state(args: argparse.Namespace) -> int:
    try:
        view = _state_view(args.file)
    except (OSError, WireError) as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    print(f"state layout [{view['layout']}]")
    print(f"{len(view['unikernels'])} unikernels:")
    for u in view["unikernels"]:
        print(f"  {u['name']}")
        print("\n".join(_render(u["config"], 2)))
    print(f"{len(view['policies'])} policies:")
    for p in view["policies"]:
        print(f"  {p['path']}")
        print("\n".join(_render(p["policy"], 2)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="albatross-wire",
        description="Decode, re-encode and inspect albatross wire messages and state files.",
        epilog="example: albatross-wire decode 3020301302010504080000000000000000"
        "0c043a666f6fa009a007a205a103020114",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("decode", help="print one hex-encoded message readably")
    p.add_argument("hex", help="the message in hex, or - to read it from stdin")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_decode)
    p = sub.add_parser("reencode", help="decode and re-encode hex messages, one per stdin line")
    p.set_defaults(func=cmd_reencode)
    p = sub.add_parser("state", help="print a state file's unikernels and policies")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_state)
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
