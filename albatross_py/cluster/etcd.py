"""A small trio-native client of etcd 3.4's v3 JSON gateway, over httpx.

etcd is the cluster's only replicated state (DESIGN "Many hosts").  The gRPC
clients do not run under trio (HOST-FACTS), so this speaks etcd's grpc-gateway:
``POST /v3/<service>/<method>`` with a JSON body, over mutual TLS.  The facts
it relies on (measured against etcd 3.4.23):

* the prefix is ``/v3/`` (``/v3beta/`` is gone in 3.5); keys and values are
  base64; int64 fields (revisions, lease IDs, TTLs, counts) travel as JSON
  strings and a field at its zero value is left out (a failed txn has no
  ``succeeded``, a PUT watch event no ``type``, an expired lease's keepalive
  no ``TTL``);
* an error is a non-200 reply ``{"error", "message", "code"}`` with a gRPC
  status code (5 NotFound for an unknown lease, 11 OutOfRange for a compacted
  revision, 14 Unavailable while there is no leader, 3 InvalidArgument);
* streaming calls (``lease/keepalive``, ``watch``) answer newline-delimited
  JSON objects ``{"result": ...}`` (or ``{"error": ...}``); one keepalive
  request is one POST, a watch is one long POST that streams events;
* a watch from a compacted revision is created and then canceled with
  ``compact_revision``: the caller must read the state anew (range) and watch
  from there -- :class:`Compacted`;
* with ``Grpc-Metadata-hasleader: true`` (etcd's own client sends the same
  metadata) a member without a leader refuses at once, code 14 ``etcdserver:
  no leader``, where it would otherwise hold a write 7 s and answer ``context
  deadline exceeded``, or accept a watch that never delivers; it also cancels
  a running watch when it loses its leader.

Failover: every call is tried on the members in turn, starting with the one
that answered last, until one answers or ``retry_for`` seconds have passed
(an election takes about 2 s).  A write whose reply was lost may still have
been applied (HOST-FACTS), so a retried write must be idempotent or guarded by
a compare in a :meth:`Etcd.txn`; every write the cluster makes is one of those.

Errors: :class:`EtcdError` (etcd refused, with its code), :class:`Unavailable`
(no member answered), :class:`LeaseLost`, :class:`Compacted`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from albatross_py.cluster.kv import (
    Compare,
    Delete,
    Event,
    Get,
    KeyValue,
    Op,
    Put,
    RangeResult,
    Txn,
    TxnResult,
    WatchBatch,
    absent,
    as_bytes,
    b64,
    create_revision_is,
    delete,
    event_of_json,
    get,
    int_field,
    mod_revision_is,
    prefix_end,
    put,
    range_result,
    txn_result,
    value_is,
)

__all__ = [
    "Compacted",
    "Compare",
    "Delete",
    "Etcd",
    "EtcdError",
    "Event",
    "Get",
    "KeyValue",
    "Lease",
    "LeaseLost",
    "Op",
    "Put",
    "RangeResult",
    "Txn",
    "TxnResult",
    "Unavailable",
    "WatchBatch",
    "absent",
    "client_ssl_context",
    "create_revision_is",
    "delete",
    "get",
    "mod_revision_is",
    "prefix_end",
    "put",
    "value_is",
]

log = logging.getLogger(__name__)

#: The gateway's prefix in etcd 3.4 (``/v3beta`` is 3.3's and gone in 3.5).
PREFIX = "/v3"

# gRPC status codes etcd answers with
GRPC_INVALID_ARGUMENT = 3
GRPC_DEADLINE_EXCEEDED = 4
GRPC_NOT_FOUND = 5
GRPC_FAILED_PRECONDITION = 9
GRPC_OUT_OF_RANGE = 11
GRPC_UNAVAILABLE = 14
#: codes that say "this member cannot serve now; another may": try the next one
RETRY_CODES = frozenset({GRPC_DEADLINE_EXCEEDED, GRPC_UNAVAILABLE})
#: etcd's messages for a member without leader / in an election (code 14 or 2)
_RETRY_MESSAGES = (
    "no leader",
    "leader changed",
    "timed out",
    "too many requests",
    "context deadline exceeded",
)


class EtcdError(Exception):
    """etcd refused a request: its gRPC ``code`` and ``message``."""

    def __init__(self, method: str, code: int, message: str, endpoint: str = "") -> None:
        self.method = method
        self.code = code
        self.message = message
        self.endpoint = endpoint
        where = f" at {endpoint}" if endpoint else ""
        super().__init__(f"etcd {method}{where}: {message} (code {code})")

    @property
    def retryable(self) -> bool:
        return self.code in RETRY_CODES or any(m in self.message for m in _RETRY_MESSAGES)


class Unavailable(EtcdError):
    """No member answered within the retry time; ``errors`` says what each did."""

    def __init__(self, method: str, errors: Sequence[str]) -> None:
        self.errors = tuple(errors)
        last = "; ".join(self.errors[-3:]) or "no endpoints"
        super().__init__(method, GRPC_UNAVAILABLE, f"no etcd member answered: {last}")


class LeaseLost(EtcdError):
    """A lease expired or was revoked while it was being kept alive."""

    def __init__(self, lease_id: int, why: str = "expired") -> None:
        self.lease_id = lease_id
        super().__init__("lease/keepalive", GRPC_NOT_FOUND, f"lease {lease_id:x} {why}")


class Compacted(EtcdError):
    """A watch (or read) asked for revisions etcd has compacted away.

    Read the current state (a range gives its revision) and watch from there.
    """

    def __init__(self, compact_revision: int, method: str = "watch") -> None:
        #: the revision etcd compacted up to (0: etcd did not say, as for a range)
        self.compact_revision = compact_revision
        upto = f" (compacted up to {compact_revision})" if compact_revision else ""
        super().__init__(method, GRPC_OUT_OF_RANGE, f"required revision has been compacted{upto}")


def _error_of(method: str, status: int, text: str, endpoint: str) -> EtcdError:
    """The error of a non-200 reply, or of an ``{"error": ...}`` message in a stream."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    code, msg = 2, f"HTTP {status}: {text[:200]!r}"
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):  # in a stream
            code = int(err.get("grpc_code", err.get("code", 2)))
            msg = str(err.get("message", err))
        elif "code" in body:
            code = int(body["code"])
            msg = str(body.get("message") or err)
    if code == GRPC_OUT_OF_RANGE and "compacted" in msg:
        return Compacted(0, method)
    return EtcdError(method, code, msg, endpoint)


# -- TLS ----------------------------------------------------------------------------


def client_ssl_context(
    ca: str | Path, cert: str | Path | None = None, key: str | Path | None = None
) -> ssl.SSLContext:
    """Trust ``ca`` only and present ``cert``/``key`` (mutual TLS).

    httpx 0.28+ takes the context as ``verify=``; its ``cert=`` did not send the
    certificate (HOST-FACTS).
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), None if key is None else str(key))
    return ctx


# -- the client ---------------------------------------------------------------------


class Etcd:
    """A client of one etcd cluster, given its members' client URLs.

    Use as ``async with Etcd(endpoints, ssl_context=...) as etcd: ...``.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 2.0,
        retry_for: float = 6.0,
    ) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self._current = 0
        self.timeout = timeout
        self.retry_for = retry_for
        self._client = httpx.AsyncClient(
            verify=ssl_context if ssl_context is not None else True,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 1.0)),
            headers={"Grpc-Metadata-hasleader": "true"},
        )

    async def __aenter__(self) -> Etcd:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    @property
    def endpoint(self) -> str:
        """The member that answered last (tried first next time)."""
        return self.endpoints[self._current]

    def _rotate(self, bad: int) -> None:
        if self._current == bad:
            self._current = (bad + 1) % len(self.endpoints)

    async def _call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``/v3/<method>``: failover across members, then raise."""
        deadline = time.monotonic() + self.retry_for
        errors: list[str] = []
        delay = 0.05
        while True:
            for _ in range(len(self.endpoints)):
                i = self._current
                ep = self.endpoints[i]
                try:
                    r = await self._client.post(f"{ep}{PREFIX}/{method}", json=body)
                except httpx.HTTPError as e:
                    errors.append(f"{ep}: {_describe(e)}")
                    self._rotate(i)
                    continue
                if r.status_code == 200:
                    try:
                        reply = r.json()
                    except ValueError:
                        reply = None
                    if not isinstance(reply, dict):
                        raise EtcdError(
                            method, 2, f"reply is not a JSON object: {r.text[:200]!r}", ep
                        )
                    if isinstance(reply.get("error"), dict):
                        err = _error_of(method, r.status_code, r.text, ep)
                    else:
                        if "result" in reply and isinstance(reply["result"], dict):
                            reply = reply["result"]  # a streaming call's first message
                        return reply
                else:
                    err = _error_of(method, r.status_code, r.text, ep)
                if not err.retryable:
                    raise err
                errors.append(f"{ep}: {err.message}")
                self._rotate(i)
            if time.monotonic() + delay >= deadline:
                raise Unavailable(method, errors)
            await trio.sleep(delay)
            delay = min(delay * 2, 0.5)

    # -- kv ---------------------------------------------------------------------------

    async def range(
        self,
        key: bytes | str,
        *,
        prefix: bool = False,
        range_end: bytes | None = None,
        revision: int = 0,
        limit: int = 0,
        serializable: bool = False,
        keys_only: bool = False,
    ) -> RangeResult:
        """The keys ``key`` (or with the prefix ``key``), at ``revision`` (0: now)."""
        k = as_bytes(key)
        body: dict[str, Any] = {"key": b64(k)}
        end = prefix_end(k) if prefix else range_end
        if end is not None:
            body["range_end"] = b64(end)
        if revision:
            body["revision"] = str(revision)
        if limit:
            body["limit"] = str(limit)
        if serializable:
            body["serializable"] = True
        if keys_only:
            body["keys_only"] = True
        reply = await self._call("kv/range", body)
        return range_result(reply)

    async def get(self, key: bytes | str) -> KeyValue | None:
        r = await self.range(key)
        return r.kvs[0] if r.kvs else None

    async def put(self, key: bytes | str, value: bytes | str, *, lease: int = 0) -> int:
        """Write ``key``; returns the revision of the write.  Idempotent: retried."""
        reply = await self._call("kv/put", put(key, value, lease).to_json()["request_put"])
        return int_field(reply.get("header", {}), "revision")

    async def delete(self, key: bytes | str, *, prefix: bool = False) -> int:
        """Remove ``key`` (or the prefix); returns how many keys went."""
        body = delete(key, prefix=prefix).to_json()["request_delete_range"]
        reply = await self._call("kv/deleterange", body)
        return int_field(reply, "deleted")

    async def txn(self, txn: Txn) -> TxnResult:
        """Run ``txn`` atomically.

        Retried on another member when a member fails: a txn whose compares
        guard its writes is safe to rerun (the second run finds them done and
        fails its compare -- callers that care read back what they wrote).
        """
        return txn_result(await self._call("kv/txn", txn.to_json()))

    async def compact(self, revision: int, *, physical: bool = True) -> None:
        await self._call("kv/compaction", {"revision": str(revision), "physical": physical})

    async def status(self) -> dict[str, Any]:
        """The answering member's ``maintenance/status`` (version, leader, raft index)."""
        return await self._call("maintenance/status", {})

    # -- leases -----------------------------------------------------------------------

    async def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; returns its ID."""
        reply = await self._call("lease/grant", {"TTL": str(ttl)})
        return int(reply["ID"])

    async def keepalive_once(self, lease_id: int) -> int:
        """Refresh the lease; returns its new TTL.  Raises :class:`LeaseLost` if gone."""
        reply = await self._call("lease/keepalive", {"ID": str(lease_id)})
        ttl = int_field(reply, "TTL")
        if ttl <= 0:
            raise LeaseLost(lease_id)
        return ttl

    async def revoke(self, lease_id: int) -> None:
        """Revoke the lease (its keys go with it); an unknown lease is no error."""
        try:
            await self._call("lease/revoke", {"ID": str(lease_id)})
        except EtcdError as e:
            if e.code != GRPC_NOT_FOUND:
                raise

    async def time_to_live(self, lease_id: int) -> int:
        """Seconds the lease has left (-1: it does not exist)."""
        reply = await self._call("lease/timetolive", {"ID": str(lease_id)})
        return int(reply.get("TTL", 0))

    async def keep_alive(
        self,
        lease_id: int,
        ttl: int,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Refresh the lease every ``ttl/3`` seconds until cancelled.

        Raises :class:`LeaseLost` once etcd says the lease is gone, or once no
        refresh got through for ``ttl`` seconds (by then etcd has let it expire).
        """
        interval = max(ttl / 3, 0.2)
        task_status.started()
        last_ok = time.monotonic()
        while True:
            await trio.sleep(interval)
            try:
                with trio.fail_after(max(last_ok + ttl - time.monotonic(), 0.01)):
                    await self.keepalive_once(lease_id)
            except trio.TooSlowError:
                raise LeaseLost(lease_id, f"not refreshed for {ttl} s") from None
            except Unavailable as e:
                if time.monotonic() - last_ok >= ttl:
                    raise LeaseLost(lease_id, f"not refreshed for {ttl} s") from e
                continue
            last_ok = time.monotonic()

    @contextlib.asynccontextmanager
    async def lease(self, ttl: int) -> AsyncIterator[Lease]:
        """A lease kept alive while the block runs, revoked after it.

        If the lease is lost meanwhile, the block is cancelled and
        :class:`LeaseLost` raised from the ``async with``.
        """
        lease = Lease(await self.grant(ttl), ttl)
        lost: list[LeaseLost] = []
        try:
            with _one_error():
                async with trio.open_nursery() as nursery:

                    async def keeper() -> None:
                        try:
                            await self.keep_alive(lease.id, ttl)
                        except LeaseLost as e:
                            lost.append(e)
                            lease.lost.set()
                            nursery.cancel_scope.cancel()

                    nursery.start_soon(keeper)
                    try:
                        yield lease
                    finally:
                        nursery.cancel_scope.cancel()
        finally:
            if not lost:
                with trio.CancelScope(shield=True), trio.move_on_after(self.timeout):
                    try:
                        await self.revoke(lease.id)
                    except EtcdError as e:
                        log.warning("revoking lease %x: %s", lease.id, e)
        if lost:
            raise lost[0]

    # -- watch ------------------------------------------------------------------------

    async def watch(
        self,
        key: bytes | str,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[WatchBatch]:
        """The changes to ``key`` (or the prefix) from ``start_revision`` (0: from now).

        A broken stream (member killed, leader lost, ``idle_timeout`` seconds
        without a message) is resumed on the next member from the revision after
        the last one delivered, so no event is lost or repeated.  Raises
        :class:`Compacted` if the revisions asked for are gone, and
        :class:`Unavailable` if no member takes the watch for ``retry_for`` s.
        """
        k = as_bytes(key)
        next_rev = start_revision
        errors: list[str] = []
        failing_since: float | None = None
        delay = 0.05
        while True:
            i = self._current
            ep = self.endpoints[i]
            create: dict[str, Any] = {"key": b64(k), "progress_notify": True}
            if prefix:
                create["range_end"] = b64(prefix_end(k))
            if next_rev:
                create["start_revision"] = str(next_rev)
            if prev_kv:
                create["prev_kv"] = True
            timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 1.0), read=idle_timeout)
            created = False
            try:
                async with self._client.stream(
                    "POST",
                    f"{ep}{PREFIX}/watch",
                    json={"create_request": create},
                    timeout=timeout,
                ) as r:
                    if r.status_code != 200:
                        raise _error_of("watch", r.status_code, (await r.aread()).decode(), ep)
                    async for line in r.aiter_lines():
                        if not line.strip():
                            continue
                        msg = json.loads(line)
                        if "error" in msg:
                            raise _error_of("watch", 200, line, ep)
                        res = msg.get("result", {})
                        header_rev = int_field(res.get("header", {}), "revision")
                        if res.get("created"):
                            created = True
                            failing_since, delay = None, 0.05
                            if not next_rev:
                                next_rev = header_rev + 1
                        if res.get("canceled"):
                            compact = int_field(res, "compact_revision")
                            if compact:
                                raise Compacted(compact)
                            raise EtcdError(
                                "watch",
                                GRPC_UNAVAILABLE,
                                str(res.get("cancel_reason") or "watch canceled"),
                                ep,
                            )
                        events = tuple(event_of_json(e) for e in res.get("events", ()))
                        if events:
                            next_rev = events[-1].kv.mod_revision + 1
                            yield WatchBatch(events, events[-1].kv.mod_revision)
                        elif not res.get("created") and header_rev:
                            # a progress notification: nothing up to header_rev is missing
                            next_rev = max(next_rev, header_rev + 1)
                    raise EtcdError("watch", GRPC_UNAVAILABLE, "stream ended", ep)
            except (httpx.HTTPError, EtcdError, ValueError) as e:
                if isinstance(e, Compacted):
                    raise
                if isinstance(e, EtcdError) and not e.retryable:
                    raise
                errors.append(f"{ep}: {_describe(e)}")
                log.info("watch on %s broke (%s); resuming from revision %d", ep, e, next_rev)
                self._rotate(i)
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                elif now - failing_since > self.retry_for:
                    raise Unavailable("watch", errors) from e
                await trio.sleep(delay if not created else 0)
                delay = min(delay * 2, 0.5)


def _describe(e: BaseException) -> str:
    """An exception and its causes in one line (httpx's own text may be empty)."""
    parts: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen and len(parts) < 4:
        seen.add(id(cur))
        text = str(cur)
        parts.append(f"{type(cur).__name__}: {text}" if text else type(cur).__name__)
        cur = cur.__cause__ or cur.__context__
    return " <- ".join(parts)


@contextlib.contextmanager
def _one_error() -> Iterator[None]:
    """Unwrap a nursery's group of one (the block's own exception, as raised)."""
    try:
        yield
    except BaseExceptionGroup as eg:
        if len(eg.exceptions) == 1 and not isinstance(eg.exceptions[0], BaseExceptionGroup):
            raise eg.exceptions[0] from None
        raise


@dataclass(slots=True)
class Lease:
    """A lease granted by :meth:`Etcd.lease`: its ID, TTL, and whether it was lost."""

    id: int
    ttl: int
    lost: trio.Event = field(default_factory=trio.Event)
