"""A real 3-member etcd over mutual TLS, one per test module (issue 16).

Members are Debian's ``etcd`` (etcd-server 3.4) on loopback with free ports,
their data and certificates in a temporary directory.  Without the binary the
tests skip with a reason; CI (``ALBATROSS_REQUIRE_SYSTEM=1``) turns that skip
into a failure through the ``system`` marker each module sets.  Tests that kill a member start
it again before they end, so the next test of the module finds three.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from albatross_py.cluster.etcd import Etcd
from albatross_py.cluster.etcdrun import EtcdCluster, etcd_binary, start_cluster


@pytest.fixture(scope="module")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    if etcd_binary() is None:
        pytest.skip("etcd is not installed (Debian: apt-get install etcd-server etcd-client)")
    cluster = start_cluster(tmp_path_factory.mktemp("etcd"), 3)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def etcd(etcd_cluster: EtcdCluster) -> AsyncIterator[Etcd]:
    for m in etcd_cluster.members:  # a test that killed one and failed to restart it
        if not m.alive:
            etcd_cluster.restart(m.name)
    client = Etcd(etcd_cluster.endpoints, ssl_context=etcd_cluster.ssl_context())
    try:
        yield client
    finally:
        await client.aclose()
