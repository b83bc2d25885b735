"""JSON views of wire values, in the conventions of the conformance vectors.

The vectors under ``shared/vectors/albatross-2.7.2`` write decoded values
with the field labels of albatross's ASN.1 grammar (see their README).  The
same conventions serve ``albatross-wire decode --json`` and the client's
``--json`` output, so one reading of a message works everywhere:

* SEQUENCE: an object with every field label; CHOICE: ``{"alternative": v}``;
* OCTET STRING: lowercase hex; MAC: ``"00:de:ad:be:ef:00"``;
* a Name: its canonical string; sets: sorted lists.
"""

from __future__ import annotations

from typing import Any

from albatross_py.wire.types import (
    BlockDevice,
    FailBehaviour,
    NetDevice,
    Policy,
    Typ,
    UnikernelArguments,
    UnikernelConfig,
)

Json = Any


def mac_to_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_of_str(s: str) -> bytes:
    parts = s.split(":")
    if len(parts) != 6 or any(len(p) != 2 for p in parts):
        raise ValueError(f"MAC address {s!r} must be six two-digit hex octets")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError as exc:
        raise ValueError(f"MAC address {s!r} is not hexadecimal") from exc


def typ_to_json(typ: Typ) -> Json:
    return {typ.name.lower(): None}


def typ_of_json(j: Json) -> Typ:
    (key,) = j.keys()
    return Typ[key.upper()]


def fail_to_json(fb: FailBehaviour) -> Json:
    if not fb.restart:
        return {"quit": None}
    return {"restart-exit-codes": sorted(fb.exit_codes or ())}


def fail_of_json(j: Json) -> FailBehaviour:
    if "quit" in j:
        return FailBehaviour()
    codes = j["restart-exit-codes"]
    return FailBehaviour(restart=True, exit_codes=frozenset(codes) or None)


def policy_to_json(p: Policy) -> Json:
    return {
        "cpuids": sorted(p.cpuids),
        "unikernels": p.unikernels,
        "memory": p.memory,
        "block": p.block,
        "bridges": sorted(p.bridges),
    }


def policy_of_json(j: Json) -> Policy:
    return Policy(
        unikernels=j["unikernels"],
        cpuids=frozenset(j["cpuids"]),
        memory=j["memory"],
        block=j["block"],
        bridges=frozenset(j["bridges"]),
    )


def block_to_json(b: BlockDevice) -> Json:
    return {
        "block-name": b.name,
        "block-device-name": b.device,
        "block-sector-size": b.sector_size,
    }


def block_of_json(j: Json) -> BlockDevice:
    return BlockDevice(j["block-name"], j.get("block-device-name"), j.get("block-sector-size"))


def net_to_json(n: NetDevice) -> Json:
    return {
        "netif": n.netif,
        "bridge": n.bridge,
        "mac": None if n.mac is None else mac_to_str(n.mac),
    }


def net_of_json(j: Json) -> NetDevice:
    mac = j.get("mac")
    return NetDevice(j["netif"], j.get("bridge"), None if mac is None else mac_of_str(mac))


def _argv_to_json(argv: tuple[str, ...] | None) -> Json:
    return None if argv is None else list(argv)


def config_to_json(c: UnikernelConfig) -> Json:
    return {
        "typ": typ_to_json(c.typ),
        "compressed": c.compressed,
        "image": c.image.hex(),
        "startup": c.startup,
        "add_name": c.add_name,
        "fail-behaviour": fail_to_json(c.fail_behaviour),
        "cpuids": sorted(c.cpuids),
        "memory": c.memory,
        "blocks": [block_to_json(b) for b in c.blocks],
        "bridges": [net_to_json(n) for n in c.bridges],
        "arguments": _argv_to_json(c.argv),
        "cpus": c.cpus,
        "linux_boot_partition": c.linux_boot_partition,
    }


def config_of_json(j: Json) -> UnikernelConfig:
    argv = j.get("arguments")
    return UnikernelConfig(
        typ=typ_of_json(j["typ"]),
        compressed=j["compressed"],
        image=bytes.fromhex(j["image"]),
        startup=j.get("startup"),
        add_name=j.get("add_name", True),
        fail_behaviour=fail_of_json(j["fail-behaviour"]),
        cpuids=frozenset(j["cpuids"]),
        memory=j["memory"],
        blocks=tuple(block_of_json(b) for b in j.get("blocks") or ()),
        bridges=tuple(net_of_json(n) for n in j.get("bridges") or ()),
        argv=None if argv is None else tuple(argv),
        cpus=j.get("cpus", 1),
        linux_boot_partition=j.get("linux_boot_partition"),
    )


def arguments_to_json(a: UnikernelArguments) -> Json:
    return {
        "fail-behaviour": fail_to_json(a.fail_behaviour),
        "startup": a.startup,
        "add_name": a.add_name,
        "cpuids": sorted(a.cpuids),
        "memory": a.memory,
        "blocks": [block_to_json(b) for b in a.blocks],
        "bridges": [net_to_json(n) for n in a.bridges],
        "arguments": _argv_to_json(a.argv),
        "cpus": a.cpus,
        "linux_boot_partition": a.linux_boot_partition,
    }


# -- whole messages --------------------------------------------------------------


def raw_to_json(v: Any) -> Json:
    """JSON of a grammar-level value (dicts, ``(alternative, value)`` pairs, leaves)."""
    from dataclasses import fields, is_dataclass
    from datetime import datetime

    from albatross_py.wire.names import Name

    match v:
        case None | bool() | int() | str():
            return v
        case Typ():
            return typ_to_json(v)
        case FailBehaviour():
            return fail_to_json(v)
        case Policy():
            return policy_to_json(v)
        case UnikernelConfig():
            return config_to_json(v)
        case UnikernelArguments():
            return arguments_to_json(v)
        case Name():
            return str(v)
        case bytes():
            return v.hex()
        case datetime():
            return v.isoformat()
        case frozenset() | set():
            return sorted(raw_to_json(x) for x in v)
        case (str() as alt, inner):
            return {alt: raw_to_json(inner)}
        case dict():
            return {k: raw_to_json(x) for k, x in v.items()}
        case list() | tuple():
            return [raw_to_json(x) for x in v]
        case _ if is_dataclass(v):
            return {f.name: raw_to_json(getattr(v, f.name)) for f in fields(v)}
    raise TypeError(f"no JSON view for {type(v).__name__}")


def wire_to_json(wire: Any) -> Json:
    """A whole message in the vectors' ``decoded`` convention."""
    from albatross_py.wire import grammar
    from albatross_py.wire.messages import Command, Data, Failure, Reply

    p = wire.payload
    if isinstance(p, Command):
        payload = {"command": raw_to_json(grammar.command_to_raw(p))}
    elif isinstance(p, Reply):
        payload = {"reply": raw_to_json(grammar.reply_to_raw(p))}
    elif isinstance(p, Failure):
        payload = {"failure": p.message}
    elif isinstance(p, Data):
        payload = {"data": raw_to_json(grammar.data_to_raw(p))}
    else:
        raise TypeError(f"not a payload: {p!r}")
    h = wire.header
    return {
        "header": {"version": h.version, "sequence": h.sequence, "name": str(h.name)},
        "payload": payload,
    }
