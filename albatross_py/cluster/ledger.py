"""The cluster-wide quota ledger and the placement records: pure, no IO.

A tenant's policies bound what runs below a path on *all* hosts together (issue
16): the sum over the hosts of the unikernels, memory and block storage below
a policy path never exceeds that policy, and the CPU ids and bridges used stay
within it.  etcd holds one ledger entry per policy path (what the cluster runs
below it: unikernels, memory, vCPUs, block MB) and one placement record per
VM name (the host it runs on and what it claimed).  A VM's name exists on at
most one host: the record is created by compare-and-swap before the host is
asked, together with the ledger update, in one transaction.

This module decides and builds; :mod:`albatross_py.cluster.quota` reads, runs
the transactions and retries.  The refusals are the host's own
(:func:`albatross_py.core.policy.check_unikernel_in_subtree`,
:func:`~albatross_py.core.policy.check_block_in_subtree`): they name the bound
and the path, as albatross does.

Key layout (under :data:`ROOT`, one version prefix for later migrations)::

    /albatross/v1/ledger/<path>       Usage JSON         e.g. .../ledger/tenant:team:
    /albatross/v1/placement/<name>    Claim JSON         e.g. .../placement/tenant:team:web
    /albatross/v1/hosts/<host>        host registration  (under the agent's lease)
    /albatross/v1/namespaces/<ns>     namespace          (hosts, policy paths)

Every write is guarded: a reservation requires the placement key absent and
each ledger key still at the revision it was read at; a release requires the
placement record unchanged.  A transaction rerun after a lost reply therefore
fails its compare instead of counting twice; the claim's ``token`` tells the
writer that the record it finds is its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from albatross_py.cluster import kv
from albatross_py.core.policy import (
    PolicyError,
    check_block_in_subtree,
    check_unikernel_in_subtree,
)
from albatross_py.wire.names import ROOT, Name, Path, path_of_string, path_to_string
from albatross_py.wire.types import Policy, UnikernelConfig

ROOT_KEY = b"/albatross/v1/"
LEDGER = ROOT_KEY + b"ledger/"
PLACEMENT = ROOT_KEY + b"placement/"
HOSTS = ROOT_KEY + b"hosts/"
NAMESPACES = ROOT_KEY + b"namespaces/"


class LedgerError(ValueError):
    """The ledger's records disagree with what is asked (an accounting bug or bad data)."""


def ledger_key(path: Path) -> bytes:
    return LEDGER + path_to_string(path).encode()


def path_of_ledger_key(key: bytes) -> Path:
    if not key.startswith(LEDGER):
        raise LedgerError(f"not a ledger key: {key!r}")
    return path_of_string(key[len(LEDGER) :].decode())


def placement_key(name: Name) -> bytes:
    if name.label is None:
        raise LedgerError(f"a placement names a unikernel, not the path {name}")
    return PLACEMENT + str(name).encode()


def host_key(host: str) -> bytes:
    return HOSTS + host.encode()


def namespace_key(namespace: str) -> bytes:
    return NAMESPACES + namespace.encode()


@dataclass(frozen=True, slots=True)
class Usage:
    """What the cluster runs below one policy path."""

    unikernels: int = 0
    memory: int = 0
    cpus: int = 0
    block: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.unikernels + other.unikernels,
            self.memory + other.memory,
            self.cpus + other.cpus,
            self.block + other.block,
        )

    def __sub__(self, other: Usage) -> Usage:
        out = Usage(
            self.unikernels - other.unikernels,
            self.memory - other.memory,
            self.cpus - other.cpus,
            self.block - other.block,
        )
        if min(out.unikernels, out.memory, out.cpus, out.block) < 0:
            raise LedgerError(f"ledger would go negative: {self} - {other}")
        return out

    def to_json(self) -> bytes:
        return json.dumps(
            {"unikernels": self.unikernels, "memory": self.memory, "cpus": self.cpus,
             "block": self.block},
            sort_keys=True,
        ).encode()  # fmt: skip

    @classmethod
    def of_json(cls, data: bytes) -> Usage:
        try:
            d = json.loads(data)
            return cls(int(d["unikernels"]), int(d["memory"]), int(d["cpus"]), int(d["block"]))
        except (ValueError, KeyError, TypeError) as e:
            raise LedgerError(f"bad ledger entry {data[:100]!r}: {e}") from None


@dataclass(frozen=True, slots=True)
class Claim:
    """A placement record: the VM ``name`` runs on ``host`` and counts ``usage``.

    ``paths`` are the policy paths whose ledger entries it was counted in;
    ``token`` is unique per reservation attempt (who wrote the record).
    """

    name: Name
    host: str
    usage: Usage
    paths: tuple[Path, ...]
    token: str

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "name": str(self.name),
                "host": self.host,
                "usage": json.loads(self.usage.to_json()),
                "paths": [path_to_string(p) for p in self.paths],
                "token": self.token,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def of_json(cls, data: bytes) -> Claim:
        try:
            d = json.loads(data)
            return cls(
                Name.of_string(d["name"]),
                str(d["host"]),
                Usage.of_json(json.dumps(d["usage"]).encode()),
                tuple(path_of_string(p) for p in d["paths"]),
                str(d["token"]),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise LedgerError(f"bad placement record {data[:100]!r}: {e}") from None


def usage_of(config: UnikernelConfig, block: int = 0) -> Usage:
    """What one unikernel counts: itself, its memory and vCPUs, ``block`` MB of storage."""
    return Usage(1, config.memory, config.cpus, block)


def ancestors(path: Path) -> list[Path]:
    """``path`` and every path above it, the root first."""
    return [path[:i] for i in range(len(path) + 1)]


def governing_paths(policies: Mapping[Path, Policy], path: Path) -> list[Path]:
    """The paths from ``path`` up to the root that carry a policy, deepest first.

    The host's resource map checks in this order, so the refusal names the same
    (nearest) path.
    """
    return [p for p in reversed(ancestors(path)) if p in policies]


def check_reservation(
    policies: Mapping[Path, Policy],
    usage: Mapping[Path, Usage],
    name: Name,
    config: UnikernelConfig,
    block: int = 0,
) -> dict[Path, Usage]:
    """The ledger entries after adding the unikernel; raise :class:`PolicyError` if over.

    ``usage`` is the ledger now (a path missing runs nothing).  Every policy
    from ``name``'s path up to the root bounds the sum over its whole subtree,
    on all hosts: unikernels, memory and block storage, and the CPU ids and
    bridges the unikernel uses.
    """
    paths = governing_paths(policies, name.path)
    if not paths:
        raise PolicyError(f"no policy covers {name}: the cluster admits nothing without one")
    claim = usage_of(config, block)
    out: dict[Path, Usage] = {}
    for path in paths:
        p = policies[path]
        u = usage.get(path, Usage())
        check_unikernel_in_subtree(path, p, count=u.unikernels, used_memory=u.memory, config=config)
        if block:
            check_block_in_subtree(path, p, used=u.block, size=block)
        out[path] = u + claim
    return out


def release_usage(usage: Mapping[Path, Usage], claim: Claim) -> dict[Path, Usage]:
    """The ledger entries after the claimed unikernel is gone."""
    return {p: usage.get(p, Usage()) - claim.usage for p in claim.paths}


# -- transactions -----------------------------------------------------------------------


@dataclass(slots=True)
class Snapshot:
    """What a reservation or release read: ledger entries and the placement record.

    ``revisions`` holds each read key's mod revision (0: it did not exist), the
    compare the write is guarded by.
    """

    usage: dict[Path, Usage] = field(default_factory=dict)
    claim: Claim | None = None
    revisions: dict[bytes, int] = field(default_factory=dict)


def read_txn(name: Name, paths: Iterable[Path]) -> kv.Txn:
    """One consistent read of the placement record and the ledger entries of ``paths``."""
    gets = [kv.get(placement_key(name))] + [kv.get(ledger_key(p)) for p in paths]
    return kv.Txn(success=tuple(gets))


def snapshot_of(name: Name, paths: Iterable[Path], result: kv.TxnResult) -> Snapshot:
    keys = [placement_key(name)] + [ledger_key(p) for p in paths]
    if len(result.responses) != len(keys):
        raise LedgerError(f"read of {len(keys)} keys answered {len(result.responses)}")
    snap = Snapshot()
    for key, resp in zip(keys, result.responses, strict=True):
        if not isinstance(resp, kv.RangeResult):
            raise LedgerError(f"read of {key!r} did not answer a range")
        found = resp.kvs[0] if resp.kvs else None
        snap.revisions[key] = found.mod_revision if found else 0
        if found is None:
            continue
        if key.startswith(PLACEMENT):
            snap.claim = Claim.of_json(found.value)
        else:
            snap.usage[path_of_ledger_key(key)] = Usage.of_json(found.value)
    return snap


def reserve_txn(snap: Snapshot, claim: Claim, new_usage: Mapping[Path, Usage]) -> kv.Txn:
    """Create the placement record and write the ledger, if nothing changed since ``snap``.

    On failure it reads the placement record back: a record with our token
    means an earlier run of this very txn got through.
    """
    pkey = placement_key(claim.name)
    compares = [kv.absent(pkey)]
    compares += [
        kv.mod_revision_is(ledger_key(p), snap.revisions[ledger_key(p)]) for p in claim.paths
    ]
    writes: list[kv.Op] = [kv.put(ledger_key(p), new_usage[p].to_json()) for p in claim.paths]
    writes.append(kv.put(pkey, claim.to_json()))
    return kv.Txn(tuple(compares), tuple(writes), (kv.get(pkey),))


def release_txn(snap: Snapshot, new_usage: Mapping[Path, Usage]) -> kv.Txn:
    """Delete the placement record and give its usage back, if nothing changed since ``snap``."""
    claim = snap.claim
    if claim is None:
        raise LedgerError("nothing to release: no placement record was read")
    pkey = placement_key(claim.name)
    compares = [kv.mod_revision_is(pkey, snap.revisions[pkey])]
    compares += [
        kv.mod_revision_is(ledger_key(p), snap.revisions[ledger_key(p)]) for p in claim.paths
    ]
    writes: list[kv.Op] = [kv.put(ledger_key(p), new_usage[p].to_json()) for p in claim.paths]
    writes.append(kv.delete(pkey))
    return kv.Txn(tuple(compares), tuple(writes))


__all__ = [
    "HOSTS",
    "LEDGER",
    "NAMESPACES",
    "PLACEMENT",
    "ROOT",
    "ROOT_KEY",
    "Claim",
    "LedgerError",
    "Snapshot",
    "Usage",
    "ancestors",
    "check_reservation",
    "governing_paths",
    "host_key",
    "ledger_key",
    "namespace_key",
    "placement_key",
    "read_txn",
    "release_txn",
    "release_usage",
    "reserve_txn",
    "snapshot_of",
    "usage_of",
]
