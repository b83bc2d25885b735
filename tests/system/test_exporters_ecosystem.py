"""The exporters against the real thing: InfluxDB 1.x and Prometheus (Debian packages).

Each test starts its own server on loopback with a temporary config and data
directory (Debian's ``influxdb`` 1.6 and ``prometheus`` 2.42; CI installs
them, elsewhere the tests skip).  A tiny fake albatross-stats on
``<tmp>/util/stat.sock`` streams statistics of one fake VM, so what reaches
the server is known exactly.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from albatross_py.daemons.metrics import HttpInflux, InfluxExporter, PrometheusExporter
from albatross_py.transport import FramedStream, bind_unix, socket_path
from albatross_py.wire.messages import DataStatistics, Header, ReplyString, StatsSubscribe, Wire
from albatross_py.wire.names import Name
from albatross_py.wire.types import IfData, KinfoMem, Rusage, Statistics, Timeval

pytestmark = pytest.mark.slow

FAKE_VM = Name.of_string(":fakevm")
STATS = Statistics(
    rusage=Rusage(utime=Timeval(3, 250000), stime=Timeval(1, 0), maxrss=900, majflt=4242),
    ifdata=(IfData("service", mtu=1500, input_bytes=1000, output_bytes=2000),),
    kinfo_mem=KinfoMem(vsize=1 << 26, rss=900, start=Timeval(1_700_000_000, 0)),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fake_stats(
    tmpdir: Path, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED
) -> None:
    """albatross-stats stand-in: every 0.2 s one Data statistics for FAKE_VM."""

    async def serve(stream: trio.abc.Stream) -> None:
        conn = FramedStream(stream)
        wire = await conn.read_wire()
        assert wire is not None and isinstance(wire.payload, StatsSubscribe)
        await conn.write_wire(Wire(wire.header, ReplyString("subscribed")))
        data_header = Header(wire.header.version, 0, FAKE_VM)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while True:
                await conn.write_wire(Wire(data_header, DataStatistics(STATS)))
                await trio.sleep(0.2)

    listener = bind_unix(socket_path(tmpdir, "stats"))
    await trio.serve_listeners(serve, [listener], task_status=task_status)


@contextlib.asynccontextmanager
async def server(argv: list[str], log: Path) -> AsyncIterator[trio.Process]:
    with open(log, "wb") as out:
        proc = await trio.lowlevel.open_process(argv, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        proc.terminate()
        with trio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _get(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, data=data, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def get(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    return await trio.to_thread.run_sync(_get, url, data)


async def wait_until_up(url: str, proc: trio.Process, log: Path) -> None:
    while True:
        if proc.returncode is not None:
            pytest.fail(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            status, _ = await get(url)
            if status < 500:
                return
        await trio.sleep(0.2)


@pytest.mark.skipif(
    shutil.which("influxd") is None, reason="influxd not installed (Debian: influxdb)"
)
async def test_influx_exporter_writes_to_real_influxdb(tmp_path: Path) -> None:
    http_port, rpc_port = free_port(), free_port()
    base = tmp_path / "influx"
    conf = tmp_path / "influxdb.conf"
    conf.write_text(
        f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{base}/meta"
[data]
  dir = "{base}/data"
  wal-dir = "{base}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
"""
    )
    url = f"http://127.0.0.1:{http_port}"
    log = tmp_path / "influxd.log"
    with trio.fail_after(60):
        async with server(["influxd", "run", "-config", str(conf)], log) as proc:
            await wait_until_up(f"{url}/ping", proc, log)
            q = urllib.parse.urlencode({"q": "CREATE DATABASE albatross"}).encode()
            assert (await get(f"{url}/query", q))[0] == 200
            exporter = InfluxExporter(HttpInflux(f"{url}/write?db=albatross"), retry=0.5)
            async with trio.open_nursery() as nursery:
                await nursery.start(fake_stats, tmp_path)
                nursery.start_soon(exporter.run, tmp_path, Name())
                select = urllib.parse.urlencode(
                    {"db": "albatross", "q": "SELECT * FROM resource_usage"}
                )
                while True:
                    status, body = await get(f"{url}/query?{select}")
                    assert status == 200, body
                    series = json.loads(body)["results"][0].get("series")
                    if series:
                        break
                    await trio.sleep(0.2)
                select_if = urllib.parse.urlencode(
                    {"db": "albatross", "q": "SELECT * FROM interface"}
                )
                _, body_if = await get(f"{url}/query?{select_if}")
                nursery.cancel_scope.cancel()
    (s,) = series
    assert s["name"] == "resource_usage"
    row = dict(zip(s["columns"], s["values"][0], strict=True))
    assert row["maxflt"] == 4242
    assert row["vm"] == "fakevm"
    assert row["utime"] == 3.25
    (iface,) = json.loads(body_if)["results"][0]["series"]
    row = dict(zip(iface["columns"], iface["values"][0], strict=True))
    assert (row["bridge"], row["vm_to_host_bytes"], row["host_to_vm_bytes"]) == (
        "service",
        1000,
        2000,
    )
    assert exporter.written >= 1


@pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus not installed (Debian: prometheus)"
)
async def test_real_prometheus_scrapes_the_exporter(tmp_path: Path) -> None:
    exporter_port, prom_port = free_port(), free_port()
    conf = tmp_path / "prometheus.yml"
    conf.write_text(
        f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: albatross
    scrape_interval: 1s
    static_configs:
      - targets: ['127.0.0.1:{exporter_port}']
"""
    )
    argv = [
        "prometheus",
        f"--config.file={conf}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
        "--log.level=warn",
    ]
    url = f"http://127.0.0.1:{prom_port}"
    log = tmp_path / "prometheus.log"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake_stats, tmp_path)
            exporter = PrometheusExporter(tmp_path)
            listeners = await trio.open_tcp_listeners(exporter_port, host="127.0.0.1")
            await nursery.start(exporter.serve, listeners)
            async with server(argv, log) as proc:
                await wait_until_up(f"{url}/-/ready", proc, log)
                query = urllib.parse.urlencode({"query": "albatross_vm_up"})
                with trio.fail_after(30):
                    while True:
                        status, body = await get(f"{url}/api/v1/query?{query}")
                        assert status == 200, body
                        result = json.loads(body)["data"]["result"]
                        if result:
                            break
                        await trio.sleep(0.5)
                query = urllib.parse.urlencode(
                    {"query": 'albatross_vm_network_receive_bytes_total{interface="service"}'}
                )
                _, body_rx = await get(f"{url}/api/v1/query?{query}")
            nursery.cancel_scope.cancel()
    (sample,) = result
    assert sample["metric"]["name"] == ":fakevm"
    assert sample["metric"]["job"] == "albatross"
    assert sample["value"][1] == "1"
    (rx,) = json.loads(body_rx)["data"]["result"]
    assert rx["value"][1] == "2000"  # receive = host-to-VM = the tap's output
