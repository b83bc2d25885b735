"""etcd's data and requests as the v3 JSON gateway spells them: pure, no IO.

Keys and values travel base64; int64 fields (revisions, lease IDs, counts) as
JSON strings, and a field at its zero value is left out.  The builders here
(:class:`Compare`, :class:`Put`, :class:`Delete`, :class:`Get`, :class:`Txn`)
make the request bodies the client (:mod:`albatross_py.cluster.etcd`) sends,
and the cluster's pure core (:mod:`albatross_py.cluster.ledger`) makes its
compare-and-swap transactions with them without touching the network.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal

# -- encoding ---------------------------------------------------------------------


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def unb64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def as_bytes(k: bytes | str) -> bytes:
    return k.encode() if isinstance(k, str) else k


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes a range cover every key starting with ``prefix``.

    etcd's rule: the prefix with its last byte below 0xff incremented and the rest
    dropped; an all-0xff (or empty) prefix means "to the end": ``b"\\0"``.
    """
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\0"


def int_field(d: dict[str, Any], k: str) -> int:
    return int(d.get(k, 0))


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def of_json(cls, d: dict[str, Any]) -> KeyValue:
        return cls(
            key=unb64(d.get("key")),
            value=unb64(d.get("value")),
            create_revision=int_field(d, "create_revision"),
            mod_revision=int_field(d, "mod_revision"),
            version=int_field(d, "version"),
            lease=int_field(d, "lease"),
        )


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: tuple[KeyValue, ...]
    count: int
    revision: int
    more: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """The events of one watch response (all events of a revision come together)."""

    events: tuple[Event, ...]
    revision: int


# -- txn building (pure) ------------------------------------------------------------

CompareTarget = Literal["VERSION", "CREATE", "MOD", "VALUE", "LEASE"]
CompareResult = Literal["EQUAL", "GREATER", "LESS", "NOT_EQUAL"]
_TARGET_FIELD = {
    "VERSION": "version",
    "CREATE": "create_revision",
    "MOD": "mod_revision",
    "VALUE": "value",
    "LEASE": "lease",
}


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a txn: ``key``'s ``target`` compared with ``value``."""

    key: bytes
    target: CompareTarget
    result: CompareResult
    value: int | bytes

    def to_json(self) -> dict[str, Any]:
        v = self.value
        encoded = b64(v) if isinstance(v, bytes) else str(v)
        return {
            "key": b64(self.key),
            "target": self.target,
            "result": self.result,
            _TARGET_FIELD[self.target]: encoded,
        }


def absent(key: bytes | str) -> Compare:
    """``key`` does not exist (its create revision is 0)."""
    return Compare(as_bytes(key), "CREATE", "EQUAL", 0)


def mod_revision_is(key: bytes | str, revision: int) -> Compare:
    """``key`` was last written at ``revision`` (0: it does not exist)."""
    return Compare(as_bytes(key), "MOD", "EQUAL", revision)


def create_revision_is(key: bytes | str, revision: int) -> Compare:
    return Compare(as_bytes(key), "CREATE", "EQUAL", revision)


def value_is(key: bytes | str, value: bytes | str) -> Compare:
    return Compare(as_bytes(key), "VALUE", "EQUAL", as_bytes(value))


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes
    lease: int = 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(self.key), "value": b64(self.value)}
        if self.lease:
            body["lease"] = str(self.lease)
        return {"request_put": body}


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes
    prefix: bool = False

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(self.key)}
        if self.prefix:
            body["range_end"] = b64(prefix_end(self.key))
        return {"request_delete_range": body}


@dataclass(frozen=True, slots=True)
class Get:
    key: bytes
    prefix: bool = False

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(self.key)}
        if self.prefix:
            body["range_end"] = b64(prefix_end(self.key))
        return {"request_range": body}


Op = Put | Delete | Get


def put(key: bytes | str, value: bytes | str, lease: int = 0) -> Put:
    return Put(as_bytes(key), as_bytes(value), lease)


def delete(key: bytes | str, *, prefix: bool = False) -> Delete:
    return Delete(as_bytes(key), prefix)


def get(key: bytes | str, *, prefix: bool = False) -> Get:
    return Get(as_bytes(key), prefix)


@dataclass(frozen=True, slots=True)
class Txn:
    """If every compare holds, the ``success`` ops run, else the ``failure`` ops: atomically."""

    compare: tuple[Compare, ...] = ()
    success: tuple[Op, ...] = ()
    failure: tuple[Op, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "compare": [c.to_json() for c in self.compare],
            "success": [o.to_json() for o in self.success],
            "failure": [o.to_json() for o in self.failure],
        }


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    #: per op of the branch that ran: a RangeResult for a Get, else the raw reply
    responses: tuple[RangeResult | dict[str, Any], ...] = field(default=())


def range_result(d: dict[str, Any], revision: int | None = None) -> RangeResult:
    kvs = tuple(KeyValue.of_json(kv) for kv in d.get("kvs", ()))
    rev = revision if revision is not None else int_field(d.get("header", {}), "revision")
    return RangeResult(kvs, int_field(d, "count"), rev, bool(d.get("more", False)))


def txn_result(reply: dict[str, Any]) -> TxnResult:
    rev = int_field(reply.get("header", {}), "revision")
    out: list[RangeResult | dict[str, Any]] = []
    for r in reply.get("responses", ()):
        if "response_range" in r:
            out.append(range_result(r["response_range"], rev))
        else:
            out.append(r)
    return TxnResult(bool(reply.get("succeeded", False)), rev, tuple(out))


def event_of_json(d: dict[str, Any]) -> Event:
    prev = d.get("prev_kv")
    return Event(
        "DELETE" if d.get("type") == "DELETE" else "PUT",
        KeyValue.of_json(d.get("kv", {})),
        None if prev is None else KeyValue.of_json(prev),
    )
