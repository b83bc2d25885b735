"""Reserve and release a VM's placement and cluster-wide quota in etcd.

The edge around :mod:`albatross_py.cluster.ledger`: one consistent read (a txn
of gets), the pure decision, one guarded write; when the guard fails because
another controller wrote meanwhile, read again and decide again.  A refusal by
a policy is final (:class:`~albatross_py.core.policy.PolicyError`, naming the
bound and the path); a name already placed raises :class:`NameTaken`.

A write whose reply was lost may have been applied (the client retries it on
another member): the failed rerun reads the placement record back, and a
record carrying this attempt's token means the first run got through.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Mapping

import trio

from albatross_py.cluster import kv
from albatross_py.cluster.etcd import Etcd
from albatross_py.cluster.ledger import (
    LEDGER,
    PLACEMENT,
    Claim,
    LedgerError,
    Snapshot,
    Usage,
    check_reservation,
    governing_paths,
    path_of_ledger_key,
    read_txn,
    release_txn,
    release_usage,
    reserve_txn,
    snapshot_of,
    usage_of,
)
from albatross_py.core.policy import PolicyError
from albatross_py.wire.names import Name, Path
from albatross_py.wire.types import Policy, UnikernelConfig

#: how often a guarded write is retried after losing to a concurrent writer
MAX_ATTEMPTS = 200


class NameTaken(PolicyError):
    """The VM's name is already placed (on ``claim.host``)."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        super().__init__(f"unikernel {claim.name} already exists (placed on host {claim.host})")


class Contended(LedgerError):
    """A guarded write lost to concurrent writers :data:`MAX_ATTEMPTS` times in a row."""


async def _read(etcd: Etcd, name: Name, paths: list[Path]) -> Snapshot:
    return snapshot_of(name, paths, await etcd.txn(read_txn(name, paths)))


async def _backoff(attempt: int) -> None:
    await trio.sleep(random.uniform(0, min(0.002 * (attempt + 1), 0.05)))


def _own(result: kv.TxnResult, token: str) -> Claim | None:
    """The placement record a failed reservation read back, if it is our own."""
    for r in result.responses:
        if isinstance(r, kv.RangeResult) and r.kvs:
            claim = Claim.of_json(r.kvs[0].value)
            if claim.token == token:
                return claim
    return None


async def reserve(
    etcd: Etcd,
    policies: Mapping[Path, Policy],
    name: Name,
    config: UnikernelConfig,
    host: str,
    *,
    block: int = 0,
) -> Claim:
    """Place ``name`` on ``host`` and count it against every policy above it, atomically.

    ``policies`` are the tenant's (from its certificate chain), by path.
    Raises :class:`PolicyError` when a bound would be exceeded (nothing is
    written), :class:`NameTaken` when the name is placed already.
    """
    paths = governing_paths(policies, name.path)
    token = secrets.token_hex(8)
    for attempt in range(MAX_ATTEMPTS):
        snap = await _read(etcd, name, paths)
        if snap.claim is not None:
            if snap.claim.token == token:  # our earlier attempt got through after all
                return snap.claim
            raise NameTaken(snap.claim)
        new_usage = check_reservation(policies, snap.usage, name, config, block)
        claim = Claim(name, host, usage_of(config, block), tuple(paths), token)
        result = await etcd.txn(reserve_txn(snap, claim, new_usage))
        if result.succeeded:
            return claim
        own = _own(result, token)
        if own is not None:
            return own
        await _backoff(attempt)
    raise Contended(f"reserving {name}: lost to concurrent writers {MAX_ATTEMPTS} times")


async def release(etcd: Etcd, name: Name) -> Claim | None:
    """Remove ``name``'s placement record and give its usage back; None if not placed.

    Idempotent: releasing a name that is not placed changes nothing.
    """
    for attempt in range(MAX_ATTEMPTS):
        snap = await _read(etcd, name, [])
        if snap.claim is None:
            return None
        claim = snap.claim
        snap = await _read(etcd, name, list(claim.paths))
        if snap.claim != claim:
            continue
        result = await etcd.txn(release_txn(snap, release_usage(snap.usage, claim)))
        if result.succeeded:
            return claim
        await _backoff(attempt)
    raise Contended(f"releasing {name}: lost to concurrent writers {MAX_ATTEMPTS} times")


async def ledger(etcd: Etcd) -> dict[Path, Usage]:
    """Every ledger entry (for the operator view and the tests)."""
    r = await etcd.range(LEDGER, prefix=True)
    return {path_of_ledger_key(k.key): Usage.of_json(k.value) for k in r.kvs}


async def placements(etcd: Etcd) -> dict[Name, Claim]:
    """Every placement record."""
    r = await etcd.range(PLACEMENT, prefix=True)
    return {c.name: c for c in (Claim.of_json(k.value) for k in r.kvs)}
