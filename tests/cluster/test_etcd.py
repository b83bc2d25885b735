"""The etcd client against a real 3-member etcd over mutual TLS (issue 16).

kv, txn compare-and-swap, leases (expiry, keepalive, loss), watch (resume after
a killed member, compaction), failover when a member dies, and refusal of
plain HTTP, of no certificate and of a foreign one.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import pytest
import trio

from albatross_py.cluster import etcd as E
from albatross_py.cluster.etcd import Etcd
from albatross_py.cluster.etcdrun import EtcdCluster
from albatross_py.cluster.pki import write_cluster_pki

pytestmark = pytest.mark.system


async def test_kv_range_prefix_put_delete(etcd: Etcd) -> None:
    r1 = await etcd.put("kv/a", "1")
    r2 = await etcd.put(b"kv/b", b"\x00\xff")
    await etcd.put("kw", "outside the prefix")
    assert r2 > r1
    got = await etcd.range("kv/", prefix=True)
    assert [(kv.key, kv.value) for kv in got.kvs] == [(b"kv/a", b"1"), (b"kv/b", b"\x00\xff")]
    assert got.count == 2 and got.revision >= r2
    assert got.kvs[0].create_revision == got.kvs[0].mod_revision == r1
    old = await etcd.range("kv/", prefix=True, revision=r1)
    assert [kv.key for kv in old.kvs] == [b"kv/a"]
    assert await etcd.delete("kv/", prefix=True) == 2
    assert await etcd.get("kv/a") is None
    assert (await etcd.get("kw")) is not None


async def test_txn_compare_and_swap(etcd: Etcd) -> None:
    create = E.Txn((E.absent("cas/x"),), (E.put("cas/x", "v1"),), (E.get("cas/x"),))
    first = await etcd.txn(create)
    assert first.succeeded
    second = await etcd.txn(create)  # the same create again: refused, current value returned
    assert not second.succeeded
    (current,) = second.responses
    assert isinstance(current, E.RangeResult)
    (kv,) = current.kvs
    assert kv.value == b"v1" and kv.mod_revision == first.revision
    # swap guarded by the mod revision: only the writer who read it wins
    swap = E.Txn((E.mod_revision_is("cas/x", kv.mod_revision),), (E.put("cas/x", "v2"),))
    assert (await etcd.txn(swap)).succeeded
    assert not (await etcd.txn(swap)).succeeded
    # guarded by value, and a delete in the same txn
    both = E.Txn((E.value_is("cas/x", "v2"),), (E.delete("cas/x"), E.put("cas/y", "moved")))
    assert (await etcd.txn(both)).succeeded
    assert await etcd.get("cas/x") is None
    assert (await etcd.get("cas/y")).value == b"moved"  # type: ignore[union-attr]
    assert not (await etcd.txn(E.Txn((E.create_revision_is("cas/y", 1),)))).succeeded


async def test_bad_request_is_a_clear_error(etcd: Etcd) -> None:
    with pytest.raises(E.EtcdError) as info:
        await etcd.put("k", "v", lease=0x7357)
    assert info.value.code == E.GRPC_NOT_FOUND
    assert "lease not found" in str(info.value)


async def test_lease_expiry_removes_keys(etcd: Etcd) -> None:
    lease = await etcd.grant(2)  # etcd's smallest TTL here (3 * election ticks / 2)
    await etcd.put("lease/host", "up", lease=lease)
    rev = (await etcd.range("lease/")).revision
    t0 = time.monotonic()
    with trio.fail_after(10):
        async for batch in etcd.watch("lease/", prefix=True, start_revision=rev + 1):
            if any(ev.type == "DELETE" and ev.kv.key == b"lease/host" for ev in batch.events):
                break
    assert time.monotonic() - t0 >= 1.0
    assert await etcd.get("lease/host") is None
    assert await etcd.time_to_live(lease) == -1


async def test_lease_kept_alive_then_revoked(etcd: Etcd) -> None:
    async with etcd.lease(2) as lease:
        await etcd.put("keep/host", "up", lease=lease.id)
        await trio.sleep(2.7)  # beyond the TTL: the keepalive task refreshed it
        assert (await etcd.get("keep/host")) is not None
        assert 0 < await etcd.time_to_live(lease.id) <= 2
    assert await etcd.get("keep/host") is None  # revoked on exit


async def test_lease_lost_cancels_the_block(etcd: Etcd) -> None:
    reached_end = False
    with pytest.raises(E.LeaseLost):
        async with etcd.lease(2) as lease:
            await etcd.revoke(lease.id)  # someone else revokes it
            await trio.sleep(5)
            reached_end = True
    assert not reached_end and lease.lost.is_set()


async def test_watch_compacted(etcd: Etcd) -> None:
    first = await etcd.put("compact/k", "1")
    last = await etcd.put("compact/k", "2")
    await etcd.compact(last)
    with pytest.raises(E.Compacted) as info, trio.fail_after(5):
        async for _ in etcd.watch("compact/k", start_revision=first):
            pass
    assert info.value.compact_revision == last
    with pytest.raises(E.Compacted):
        await etcd.range("compact/k", revision=first)
    # what a caller does then: read the state, watch from the revision after it
    now = await etcd.range("compact/k")
    assert now.kvs[0].value == b"2"


async def test_watch_resumes_after_member_killed(etcd_cluster: EtcdCluster, etcd: Etcd) -> None:
    """The watch's member dies mid-stream: every event arrives once, in order."""
    watched = Etcd(etcd_cluster.endpoints, ssl_context=etcd_cluster.ssl_context())
    start = await etcd.put("w/seed", "0")
    got: list[bytes] = []
    total = 30
    victim: str | None = None
    try:
        async with trio.open_nursery() as nursery:

            async def watcher() -> None:
                async for batch in watched.watch("w/", prefix=True, start_revision=start + 1):
                    got.extend(ev.kv.value for ev in batch.events)
                    if len(got) >= total:
                        nursery.cancel_scope.cancel()

            nursery.start_soon(watcher)
            with trio.fail_after(20):
                for i in range(total):
                    if i == total // 3:
                        victim = watched.endpoint
                        while etcd.endpoint == victim:  # the writer on another member
                            etcd._current = (etcd._current + 1) % len(etcd.endpoints)
                        etcd_cluster.kill(victim)
                    await etcd.put(f"w/{i % 4}", str(i))
                await trio.sleep_forever()
    finally:
        await watched.aclose()
        if victim is not None:
            etcd_cluster.restart(victim)
    assert got == [str(i).encode() for i in range(total)]
    assert watched.endpoint != victim


async def test_killing_a_member_changes_nothing_a_client_sees(
    etcd_cluster: EtcdCluster, etcd: Etcd
) -> None:
    await etcd.put("fo/k", "before")
    # kill the leader, the worst case: an election before writes go through again
    status = await etcd.status()
    leader = next(
        m for m in etcd_cluster.members if m.name == _member_name(etcd_cluster, status["leader"])
    )
    try:
        async with etcd.lease(5) as lease:  # a host's registration, kept alive throughout
            await etcd.put("fo/host", "up", lease=lease.id)
            # make the client's preferred member the leader, so failover is exercised
            etcd._current = etcd.endpoints.index(leader.client_url)
            etcd_cluster.kill(leader.name)
            t0 = trio.current_time()
            await etcd.put("fo/k", "after")
            failover = trio.current_time() - t0
            assert (await etcd.get("fo/k")).value == b"after"  # type: ignore[union-attr]
            assert etcd.endpoint != leader.client_url
            ok = await etcd.txn(E.Txn((E.value_is("fo/k", "after"),), (E.put("fo/k", "cas"),)))
            assert ok.succeeded
            # past the TTL: the lease's keepalives went through the other members
            await trio.sleep_until(t0 + 6)
            assert (await etcd.get("fo/host")) is not None
        assert not lease.lost.is_set()
        print(f"write after killing the leader took {failover:.2f} s")
    finally:
        etcd_cluster.restart(leader.name)
    assert (await etcd.get("fo/k")).value == b"cas"  # type: ignore[union-attr]
    assert await etcd.get("fo/host") is None  # the lease was revoked on leaving the block


async def test_without_quorum_a_clear_error_at_once(etcd_cluster: EtcdCluster, etcd: Etcd) -> None:
    """Two of three members dead: the last one has no leader and says so."""
    survivor, *others = etcd_cluster.members
    lonely = Etcd([survivor.client_url], ssl_context=etcd_cluster.ssl_context(), retry_for=0.5)
    try:
        for m in others:
            etcd_cluster.kill(m.name)
        with trio.fail_after(10):  # until the survivor notices (an election timeout or so)
            while True:
                try:
                    await lonely.status()  # served locally, refused once leaderless
                except E.Unavailable:
                    break
                await trio.sleep(0.1)
        t0 = trio.current_time()
        with pytest.raises(E.Unavailable, match="no leader"):
            await lonely.put("quorum/k", "v")
        with pytest.raises(E.Unavailable, match="no leader"):
            async for _ in lonely.watch("quorum/k"):
                pass
        # without the hasleader metadata the write would hang 7 s and time out: here
        # the member says "no leader" at once, and the retries end after retry_for
        assert trio.current_time() - t0 < 1.5
    finally:
        await lonely.aclose()
        for m in others:
            etcd_cluster.restart(m.name, wait=False)
        etcd_cluster.wait_healthy()
    assert await etcd.put("quorum/k", "back") > 0


async def test_watch_idle_timeout_reconnects_without_loss(etcd: Etcd) -> None:
    start = await etcd.put("idle/seed", "0")
    got: list[bytes] = []
    async with trio.open_nursery() as nursery:

        async def watcher() -> None:
            async for batch in etcd.watch("idle/", prefix=True, start_revision=start + 1,
                                          idle_timeout=0.2):  # fmt: skip
                got.extend(ev.kv.value for ev in batch.events)
                if len(got) == 8:
                    nursery.cancel_scope.cancel()

        nursery.start_soon(watcher)
        with trio.fail_after(15):
            for i in range(8):
                await trio.sleep(0.1 if i % 2 else 0.45)  # quiet spells beyond the idle timeout
                await etcd.put(f"idle/{i}", str(i))
            await trio.sleep_forever()
    assert got == [str(i).encode() for i in range(8)]


def _member_name(cluster: EtcdCluster, member_id: str) -> str:
    import http.client
    import json

    m0 = next(m for m in cluster.members if m.alive)
    conn = http.client.HTTPSConnection(m0.host, m0.client_port, context=cluster.ssl_context())
    conn.request("POST", "/v3/cluster/member/list", body=b"{}")
    members = json.loads(conn.getresponse().read())["members"]
    conn.close()
    return next(m["name"] for m in members if m["ID"] == member_id)


def _raw_health(host: str, port: int, ctx: ssl.SSLContext, *, ask: bool = True) -> bytes:
    """One TLS connection; ``ask=False`` only waits for what the server sends unasked.

    In TLS 1.3 the member checks the client's certificate after the handshake:
    a request sent before its alert arrives may make it reset the connection
    (the alert lost), so the refused cases only listen.
    """
    with (
        socket.create_connection((host, port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname=host) as tls,
    ):
        if ask:
            tls.sendall(b"GET /health HTTP/1.1\r\nHost: etcd\r\nConnection: close\r\n\r\n")
        return tls.recv(100)


async def test_plain_http_no_cert_and_foreign_cert_refused(
    etcd_cluster: EtcdCluster, etcd: Etcd, tmp_path: Path
) -> None:
    m = etcd_cluster.members[0]
    foreign = write_cluster_pki(tmp_path, [], ["intruder"])["intruder"]
    ca = etcd_cluster.client_tls.ca
    no_cert = E.client_ssl_context(ca)
    foreign_cert = E.client_ssl_context(ca, foreign.cert, foreign.key)
    # at the TLS level: the member answers the handshake with a bad-certificate alert
    for ctx in (no_cert, foreign_cert):
        with pytest.raises(ssl.SSLError, match="BAD_CERTIFICATE"):
            _raw_health(m.host, m.client_port, ctx, ask=False)
    assert _raw_health(m.host, m.client_port, etcd_cluster.ssl_context()).startswith(
        b"HTTP/1.1 200"
    )
    # through the client: neither reads nor writes get through
    attempts = {
        "plain HTTP": Etcd([f"http://{m.host}:{m.client_port}"], retry_for=0.2),
        "no certificate": Etcd([m.client_url], ssl_context=no_cert, retry_for=0.2),
        "foreign certificate": Etcd([m.client_url], ssl_context=foreign_cert, retry_for=0.2),
    }
    for what, client in attempts.items():
        try:
            with pytest.raises(E.Unavailable, match="Error"):
                await client.put("intrusion", what)
            with pytest.raises(E.Unavailable):
                await client.range("", prefix=True)
        finally:
            await client.aclose()
    assert await etcd.get("intrusion") is None
