"""Start and stop a real etcd cluster: Debian's ``etcd`` (etcd-server 3.4), mutual TLS.

For tests, CI and the demo: N members on loopback (or on addresses the caller
chose), each with its own data directory under ``base``, free ports, one
cluster CA (:mod:`albatross_py.cluster.pki`) for client and peer certificates,
``--client-cert-auth --peer-client-cert-auth``.  Synchronous (subprocess and
``http.client``) so that a module-scoped pytest fixture can hold one cluster
for many trio tests.

A member can be killed (SIGKILL) and started again on the same data directory
and ports: :meth:`EtcdCluster.kill` and :meth:`EtcdCluster.restart`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from albatross_py.cluster.etcd import client_ssl_context
from albatross_py.cluster.pki import TlsFiles, write_cluster_pki

ETCD = "etcd"
#: the client name the cluster makes a certificate for
CLIENT = "client"


class EtcdStartError(RuntimeError):
    """The cluster did not come up healthy; the message quotes the members' logs."""


def etcd_binary() -> str | None:
    """Debian's ``etcd`` (package etcd-server), or None when it is not installed."""
    return shutil.which(ETCD) or shutil.which(ETCD, path="/usr/bin:/usr/sbin")


def _free_ports(n: int, host: str) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Member:
    name: str
    host: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    tls: TlsFiles
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"https://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.host}:{self.peer_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class EtcdCluster:
    """A running etcd cluster of ``len(members)`` members; see :func:`start_cluster`."""

    base: Path
    members: list[Member]
    client_tls: TlsFiles
    pki: dict[str, TlsFiles] = field(default_factory=dict)
    binary: str = ETCD
    #: seconds from launch until every member answered healthy
    startup_seconds: float = 0.0

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def ssl_context(self) -> ssl.SSLContext:
        """A client context with the cluster's client certificate."""
        t = self.client_tls
        return client_ssl_context(t.ca, t.cert, t.key)

    def member(self, name_or_url: str) -> Member:
        for m in self.members:
            if name_or_url in (m.name, m.client_url):
                return m
        raise KeyError(name_or_url)

    def _argv(self, m: Member) -> list[str]:
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        t = m.tls
        return [
            self.binary,
            "--name", m.name,
            "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"albatross-{os.getpid()}-{id(self):x}",
            "--cert-file", str(t.cert), "--key-file", str(t.key),
            "--trusted-ca-file", str(t.ca), "--client-cert-auth",
            "--peer-cert-file", str(t.cert), "--peer-key-file", str(t.key),
            "--peer-trusted-ca-file", str(t.ca), "--peer-client-cert-auth",
            "--logger", "zap", "--log-outputs", "stderr",
        ]  # fmt: skip

    def _launch(self, m: Member) -> None:
        log = open(m.log_path, "ab")  # noqa: SIM115 -- the child holds it
        try:
            m.proc = subprocess.Popen(
                self._argv(m),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()

    def healthy(self, m: Member, timeout: float = 1.0) -> bool:
        """Whether ``m`` answers ``/health`` with ``true`` (it has a leader)."""
        conn = http.client.HTTPSConnection(
            m.host, m.client_port, context=self.ssl_context(), timeout=timeout
        )
        try:
            conn.request("GET", "/health")
            r = conn.getresponse()
            body = json.loads(r.read() or b"{}")
            return r.status == 200 and body.get("health") == "true"
        except (OSError, ValueError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def wait_healthy(self, members: Sequence[Member] | None = None, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        todo = list(self.members if members is None else members)
        while todo:
            for m in list(todo):
                if not m.alive:
                    raise EtcdStartError(f"etcd member {m.name} exited:\n{self.log_tail(m, 40)}")
                if self.healthy(m):
                    todo.remove(m)
            if not todo:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {m.name}\n{self.log_tail(m)}" for m in todo)
                raise EtcdStartError(f"etcd not healthy after {timeout} s:\n{tails}")
            time.sleep(0.05)

    def log_tail(self, m: Member, lines: int = 15) -> str:
        try:
            text = m.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def kill(self, name_or_url: str) -> Member:
        """SIGKILL one member (as a crash would)."""
        m = self.member(name_or_url)
        if m.proc is not None and m.proc.poll() is None:
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait()
        return m

    def restart(self, name_or_url: str, *, wait: bool = True) -> Member:
        """Start a killed member again on its data directory and ports."""
        m = self.member(name_or_url)
        if m.alive:
            return m
        self._launch(m)
        if wait:
            self.wait_healthy([m])
        return m

    def stop(self, grace: float = 1.0) -> None:
        """Stop every member (SIGTERM, SIGKILL after ``grace`` s) and wait for them.

        A leader stopped together with its followers spends seconds trying to
        hand its leadership over; the cluster's data is thrown away anyway.
        """
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.terminate()
        deadline = time.monotonic() + grace
        for m in self.members:
            if m.proc is None:
                continue
            try:
                m.proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait()


def start_cluster(
    base: Path,
    size: int = 3,
    *,
    host: str = "127.0.0.1",
    clients: Sequence[str] = (CLIENT,),
    binary: str | None = None,
    timeout: float = 20.0,
) -> EtcdCluster:
    """Make the PKI under ``base/pki`` and start ``size`` members; wait until healthy.

    On failure every member started is stopped before the error propagates.
    """
    exe = binary or etcd_binary()
    if exe is None:
        raise EtcdStartError("etcd is not installed (Debian: apt-get install etcd-server)")
    names = [f"m{i + 1}" for i in range(size)]
    pki = write_cluster_pki(base / "pki", names, clients, member_ips=(host,))
    for attempt in range(3):
        try:
            return _start(base, names, pki, clients, host, exe, timeout)
        except EtcdStartError as e:
            # a free port taken by someone else between our probe and etcd's bind
            if attempt == 2 or "address already in use" not in str(e):
                raise
            for n in names:
                shutil.rmtree(base / n, ignore_errors=True)
    raise AssertionError("unreachable")  # pragma: no cover


def _start(
    base: Path,
    names: list[str],
    pki: dict[str, TlsFiles],
    clients: Sequence[str],
    host: str,
    exe: str,
    timeout: float,
) -> EtcdCluster:
    size = len(names)
    ports = _free_ports(2 * size, host)
    members = [
        Member(
            name=n,
            host=host,
            client_port=ports[2 * i],
            peer_port=ports[2 * i + 1],
            data_dir=base / n,
            log_path=base / f"{n}.log",
            tls=pki[n],
        )
        for i, n in enumerate(names)
    ]
    cluster = EtcdCluster(base, members, pki[clients[0]], pki, exe)
    t0 = time.monotonic()
    try:
        for m in members:
            cluster._launch(m)
        cluster.wait_healthy(timeout=timeout)
    except BaseException:
        cluster.stop()
        raise
    cluster.startup_seconds = time.monotonic() - t0
    return cluster


@contextlib.contextmanager
def running_cluster(base: Path, size: int = 3, **kw: object) -> Iterator[EtcdCluster]:
    """:func:`start_cluster` ... :meth:`EtcdCluster.stop`, also on error."""
    cluster = start_cluster(base, size, **kw)  # type: ignore[arg-type]
    try:
        yield cluster
    finally:
        cluster.stop()
