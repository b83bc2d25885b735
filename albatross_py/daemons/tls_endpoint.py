"""``albatross-tls-endpoint``: remote access over mutual TLS 1.3 (spec 4.5, 2.7).

The story of one connection:

1. TLS 1.3 handshake; OpenSSL verifies the client's chain against the one CA
   (signatures, validity, key usage, basic constraints).  A failed handshake
   is logged and the connection closed.
2. The chain *OpenSSL verified* (never the one the client sent) is checked
   against the CRLs in ``<dbdir>/crl`` (our addition) and turned into a
   request by :func:`~albatross_py.tls.chain.handle_chain`: name, certificate
   version, command, delegated policies.
3. A create with an empty image reads the image as raw chunks from the client
   first (until the zero-length chunk, at most :data:`MAX_IMAGE_SIZE`).
4. Connect to the daemon the command is for (:func:`endpoint`); for albatrossd
   check that the chain's policies nest (each sub-CA's within its parent's:
   nothing is uploaded otherwise), upload them root-most first on the same
   connection, each answered before the next, then send the command.
   (albatross uploads deepest first, which can store a greedy sub-policy.)  Block set forwards raw
   chunks to albatrossd until the client's zero-length chunk.
5. Answer: one reply (``Single``), or proxy a stream (``Read``/``Dump``:
   console, stats and event-log subscriptions, block dumps), rewriting only
   the version.  The final message carries {certificate version, sequence 0,
   name}.

Every accepted chain is reported to albatross-log (``<tmpdir>/util/log.sock``,
through an :class:`~albatross_py.daemons.eventlink.EventLink` that never
blocks a connection): ``login`` with the chain's name and the client's
``ip:port`` once the chain is accepted, ``logout`` when that connection ends,
however it ends.  An ``events subscribe`` leaf watches the events at and below
its own name (the chain's path, plus the leaf's label if it has one).

Deliberate differences from albatross 2.7.2, each a fix of a weakness the
spec lists:

* A refused chain (revoked, unexpected command, bad name ...) gets a final
  ``Failure`` saying why before the close; albatross closes without a word.
  A failed *handshake* gets only the TLS alert (which trio would drop: we
  send it, see :func:`_send_pending_alert`).
* A proxied stream ends with a proper final message instead of albatross's
  ``Failure "exception while reading from fd"``: ``Success "end of stream"``
  when the daemon closes between messages, ``Success "unsubscribed"`` when
  the client sends anything (as on the console socket), the daemon's own
  ``Failure`` if it sends one, or ``Failure`` naming what broke.  A client
  that goes away ends the subscription: the daemon connection is closed.
* Revocation via CRLs in ``<dbdir>/crl`` (spec 4.6: albatross has none).
* Every connection runs under the connection guard
  (:mod:`albatross_py.transport.guard`): an unexpected error is logged with
  its traceback and answered with a ``Failure`` (once the handshake is
  done), at most ``--max-connections`` are served at once (more are closed
  at once), and the handshake, which carries the request, must be done
  within ``--request-timeout`` (default :data:`HANDSHAKE_TIMEOUT`).
* TLS session tickets are off (``OP_NO_TICKET`` and ``num_tickets = 0``: in
  TLS 1.3 OpenSSL would otherwise still issue stateful tickets), and
  ``TCP_NODELAY`` is set (HOST-FACTS: without it a command stalls ~45 ms).

The ``SSLObject``: trio's :class:`trio.SSLStream` has no public accessor for
it, but forwards a fixed set of ``SSLObject`` attributes publicly, among
them ``getpeercert``, which is the object's bound method; its ``__self__`` is
the ``SSLObject`` (:func:`ssl_object_of`; the private ``_ssl_object`` is only
a fallback).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import itertools
import logging
import logging.handlers
import os
import socket
import ssl
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from albatross_py.core.policy import PolicyError, is_smaller
from albatross_py.daemons.common import (
    drop_root,
    serve_until_signalled,
    setup_logging,
)
from albatross_py.daemons.eventlink import EventLink
from albatross_py.defaults import DEFAULT_DBDIR, DEFAULT_TMPDIR
from albatross_py.tls.chain import (
    ChainError,
    ChainRequest,
    check_revocation,
    handle_chain,
    load_crls,
    peer_verified_chain,
)
from albatross_py.transport import (
    END,
    Expect,
    FramedStream,
    connect_unix,
    guard,
    socket_path,
    systemd_listener,
)
from albatross_py.wire import WireError
from albatross_py.wire import events as ev
from albatross_py.wire.framing import MAX_IMAGE_SIZE
from albatross_py.wire.messages import (
    BlockAddOld,
    BlockSet,
    BlockSetOld,
    Command,
    DataBlock,
    Failure,
    Header,
    Payload,
    PolicyAdd,
    Reply,
    ReplyString,
    UnikernelCreate,
    Wire,
)
from albatross_py.wire.names import Name, path_to_string
from albatross_py.wire.names import Path as Path_
from albatross_py.wire.routing import Service, Shape, endpoint
from albatross_py.wire.types import Policy

log = logging.getLogger("albatross-tls-endpoint")

DEFAULT_IP = "::"
DEFAULT_PORT = 1025
#: The account to become when started as root (albatross runs the endpoint as
#: user albatross through its service units).
DEFAULT_USER = "albatross"

#: A client must finish the handshake within this time (slowloris bound): the
#: default of the endpoint's ``--request-timeout``, since the certificate is
#: the request.
HANDSHAKE_TIMEOUT = 30.0
#: What the guard calls this listener in log lines.
SERVICE = "albatross-tls-endpoint"
#: Longest silence while a client streams an image or block data.
CLIENT_IDLE_TIMEOUT = 120.0
#: How long closing a connection may take (close_notify to a stuck client).
CLOSE_TIMEOUT = 5.0
#: Exit status when --inetd is given without --syslog or -q (as albatross).
EXIT_INETD_LOGGING = 3
#: --inetd: how long the login/logout events may take to reach albatross-log
#: before the process exits.
EVENT_FLUSH_TIMEOUT = 2.0


class StartupError(Exception):
    """The endpoint cannot start; the message says why."""


_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)


class _ClientGone(Exception):
    """The TLS client closed, broke or stalled: nothing more can be sent to it."""


class _Refused(Exception):
    """End the request early with this failure message."""


# -- TLS setup ------------------------------------------------------------------------


def make_server_context(
    ca_file: str | Path, cert_file: str | Path, key_file: str | Path
) -> ssl.SSLContext:
    """The server context: TLS 1.3 only, client certificates required, one CA."""
    try:
        cas = x509.load_pem_x509_certificates(Path(ca_file).read_bytes())
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot read CA certificate {ca_file}: {exc}") from None
    if len(cas) != 1:
        raise StartupError(
            f"the CA file {ca_file} must contain exactly one certificate, found {len(cas)}"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.options |= ssl.OP_NO_TICKET
    ctx.num_tickets = 0  # TLS 1.3: OP_NO_TICKET alone still sends stateful tickets
    try:
        ctx.load_verify_locations(cadata=cas[0].public_bytes(serialization.Encoding.PEM).decode())
        ctx.load_cert_chain(str(cert_file), str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot load server certificate or key: {exc}") from None
    return ctx


def ssl_object_of(stream: trio.SSLStream) -> ssl.SSLObject:
    """The ``SSLObject`` behind a :class:`trio.SSLStream` (see the module docstring)."""
    obj = getattr(getattr(stream, "getpeercert", None), "__self__", None)
    if not isinstance(obj, ssl.SSLObject):
        obj = getattr(stream, "_ssl_object", None)
    if not isinstance(obj, ssl.SSLObject):
        raise ChainError("cannot reach the TLS session of this connection")
    return obj


def _nodelay(stream: trio.SocketStream) -> None:
    if stream.socket.family in (socket.AF_INET, socket.AF_INET6):
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)


def tcp_listen_socket(ip: str = DEFAULT_IP, port: int = DEFAULT_PORT) -> socket.socket:
    """A listening TCP socket; ``::`` is dual stack (IPV6_V6ONLY off, as albatross).

    trio's ``open_tcp_listeners`` forces IPV6_V6ONLY on, hence our own socket.
    """
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
    except ValueError:
        raise StartupError(f"--ip {ip!r} is not an IP address") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((ip, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {ip} port {port}: {exc}") from None
    return sock


# -- the endpoint ---------------------------------------------------------------------


def chain_policy_refusal(policies: Sequence[tuple[Path_, Policy]]) -> str | None:
    """Why the chain's own policies do not nest, or None.

    Checked before anything is uploaded, so a chain with an escalating
    sub-CA leaves no trace in albatrossd (albatross uploads deepest first and
    commits each, which can store the greedy sub-policy and then lock the
    tenant out).  ``policies`` come deepest first, as from ``handle_chain``.
    """
    ordered = list(reversed(policies))  # root-most first
    for (parent_path, parent), (child_path, child) in itertools.pairwise(ordered):
        try:
            is_smaller(parent, child)
        except PolicyError as exc:
            return (
                f"policy at path '{path_to_string(parent_path)}': {exc} "
                f"(the sub-CA policy at '{path_to_string(child_path)}')"
            )
    return None


class TlsEndpoint:
    """Serves TLS connections, each proxied to one local daemon."""

    def __init__(
        self,
        context: ssl.SSLContext,
        tmpdir: str | Path,
        dbdir: str | Path,
        *,
        events: EventLink | None = None,
        limits: guard.Limits | None = None,
    ) -> None:
        self.context = context
        self.limits = limits or guard.Limits(request_timeout=HANDSHAKE_TIMEOUT)
        self.tmpdir = Path(tmpdir)
        self.dbdir = Path(dbdir)
        #: Login and logout events go to albatross-log through this link; its
        #: :meth:`~EventLink.run` task runs alongside :meth:`serve`/:meth:`serve_inetd`.
        self.events = events if events is not None else EventLink(socket_path(self.tmpdir, "log"))
        #: Events handed to :attr:`events` so far (``--inetd`` waits for their delivery).
        self.emitted = 0
        #: Connections being served right now (tests wait for it to drop to 0).
        self.active = 0
        # albatross's global command counter, used for headers towards the daemons.
        self._sequence = itertools.count(1)

    # -- hooks ------------------------------------------------------------------------
    def on_login(self, name: Name, addr: str) -> None:
        """A client with a verified, accepted chain for ``name`` connected."""
        log.info("login %s from %s", name, addr)
        self._emit(ev.Login(name, addr))

    def on_logout(self, name: Name, addr: str) -> None:
        """The connection of that client is finished (also after an error)."""
        log.info("logout %s from %s", name, addr)
        self._emit(ev.Logout(name, addr))

    def _emit(self, event: ev.Event) -> None:
        self.emitted += 1
        self.events.emit(event)  # never blocks, never raises

    async def flush_events(self, timeout: float = EVENT_FLUSH_TIMEOUT) -> bool:
        """Wait (at most ``timeout``) until every emitted event was sent or dropped.

        Returns at once when albatross-log is not there (no socket, no
        connection): the events could not be delivered anyway.
        """
        with trio.move_on_after(timeout):
            while self.events.sent + self.events.dropped < self.emitted:
                if not self.events.connected and not self.events.path.exists():
                    return False
                await trio.sleep(0.01)
            return True
        log.warning("gave up waiting for albatross-log to take our events")
        return False

    # -- serving ----------------------------------------------------------------------
    async def serve(
        self,
        listener: trio.SocketListener,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections on ``listener`` until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.events.run)
            await nursery.start(
                partial(
                    guard.serve,
                    [listener],
                    self.handle_tcp,
                    service=SERVICE,
                    limits=self.limits,
                    replies=guard.WIRE_OVER_TLS,
                )
            )
            task_status.started()

    async def serve_inetd(self, fd: int = 0) -> int:
        """Serve the one connection inetd handed us on ``fd``; the exit status."""
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError as exc:
            log.error("--inetd: file descriptor %d is not a socket: %s", fd, exc)
            return 1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.events.run)
            await guard.guard_connection(
                trio.SocketStream(trio.socket.from_stdlib_socket(sock)),
                self.handle_tcp,
                service=SERVICE,
                limits=self.limits,
                replies=guard.WIRE_OVER_TLS,
            )
            await self.flush_events()  # the logout must not die with us
            nursery.cancel_scope.cancel()
        return 0

    async def handle_tcp(self, conn: guard.Connection) -> None:
        """One client connection, from handshake to close (the guard closes TCP)."""
        tcp = conn.stream
        assert isinstance(tcp, trio.SocketStream)
        _nodelay(tcp)
        tls = trio.SSLStream(tcp, self.context, server_side=True)
        self.active += 1
        try:
            await self._connection(conn, tls, conn.peer)
        finally:
            self.active -= 1
        # Only after a normal end: after an error the guard still writes its
        # Failure to the TLS stream, then closes the connection.
        with trio.move_on_after(CLOSE_TIMEOUT) as scope:
            scope.shield = True
            with contextlib.suppress(*_BROKEN, OSError):
                await tls.aclose()

    async def _connection(self, conn: guard.Connection, tls: trio.SSLStream, addr: str) -> None:
        try:
            with trio.fail_after(conn.limits.request_timeout):
                await tls.do_handshake()
        except trio.TooSlowError:
            log.warning("TLS handshake with %s timed out", addr)
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.warning("TLS handshake with %s failed: %s", addr, exc.__cause__ or exc)
            await _send_pending_alert(tls)
            return
        framed = conn.framed(tls)
        try:
            request = self.authorize(tls)
        except (ChainError, ValueError) as exc:  # ValueError: a certificate cryptography refuses
            log.warning("refused %s: %s", addr, exc)
            await self._send_final(framed, Header(name=Name()), Failure(f"refused: {exc}"))
            return
        log.info(
            "%s: %s %s (%d policies)",
            addr, request.name, type(request.command).__name__, len(request.policies),
        )  # fmt: skip
        conn.header = Header(request.version, 0, request.name)  # failures carry the final header
        self.on_login(request.name, addr)
        try:
            await self._serve_request(framed, request, addr)
        finally:
            self.on_logout(request.name, addr)

    def authorize(self, tls: trio.SSLStream) -> ChainRequest:
        """Revocation check and request derivation on OpenSSL's verified chain."""
        chain = peer_verified_chain(ssl_object_of(tls))
        check_revocation(chain, load_crls(self.dbdir / "crl"))
        return handle_chain(chain)

    async def _serve_request(self, framed: FramedStream, request: ChainRequest, addr: str) -> None:
        final_header = Header(request.version, 0, request.name)
        try:
            final = await self._run(framed, request, final_header)
        except _ClientGone as exc:
            log.info("%s (%s) went away: %s", addr, request.name, exc)
            return
        if final is not None:
            if isinstance(final, Failure):
                log.warning("%s (%s): %s", addr, request.name, final.message)
            await self._send_final(framed, final_header, final)

    @staticmethod
    async def _send_final(framed: FramedStream, header: Header, payload: Payload) -> None:
        with contextlib.suppress(_ClientGone):
            await _client_write(framed, Wire(header, payload))

    async def _run(
        self, framed: FramedStream, request: ChainRequest, final_header: Header
    ) -> Payload | None:
        """Carry out the request; the final payload (None: already sent)."""
        try:
            cmd = await self._complete_command(framed, request.command)
        except _Refused as exc:
            return Failure(str(exc))
        service, shape = endpoint(cmd)
        path = socket_path(self.tmpdir, service)
        try:
            raw = await connect_unix(path)
        except OSError as exc:
            log.error("cannot connect to %s: %s", path, exc)
            return Failure("couldn't reach service")
        async with FramedStream(raw) as daemon:
            try:
                return await self._converse(framed, daemon, service, shape, request, cmd,
                                            final_header)  # fmt: skip
            except _Refused as exc:  # bad block data from the client
                return Failure(str(exc))
            except WireError as exc:
                return Failure(f"bad message from {service}: {exc}")
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                return Failure(f"lost the connection to {service}: {exc}")

    async def _complete_command(self, framed: FramedStream, cmd: Command) -> Command:
        """Read data that the certificate left out from the client (spec 4.5 step 2)."""
        match cmd:
            case UnikernelCreate(config, force) if not config.image:
                image = await self._read_upload(framed, "image")
                return UnikernelCreate(dataclasses.replace(config, image=image), force)
            case BlockAddOld(size, compressed, b""):
                return BlockAddOld(size, compressed, await self._read_upload(framed, "block data"))
            case BlockSetOld(compressed, b""):
                return BlockSet(compressed)  # the same stream, forwarded as block set
        return cmd

    @staticmethod
    async def _read_upload(framed: FramedStream, what: str) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            chunk = await _client_read(framed)
            if chunk is None:
                raise _ClientGone(f"closed before the end of the {what}")
            if chunk == END:
                return b"".join(parts)
            size += len(chunk)
            if size > MAX_IMAGE_SIZE:
                raise _Refused(f"{what} larger than {MAX_IMAGE_SIZE} bytes")
            parts.append(chunk)

    async def _converse(
        self,
        framed: FramedStream,
        daemon: FramedStream,
        service: Service,
        shape: Shape,
        request: ChainRequest,
        cmd: Command,
        final_header: Header,
    ) -> Payload | None:
        if service == "vmmd":
            refusal = chain_policy_refusal(request.policies)
            if refusal is not None:
                return Failure(refusal)
            # root-most first: a sub-CA's policy is only ever stored under its parent's
            for path, policy in reversed(request.policies):
                name = Name.of_path(path)
                header = Header(sequence=next(self._sequence), name=name)
                await daemon.write_wire(Wire(header, PolicyAdd(policy)))
                reply = await daemon.read_wire()
                if reply is None:
                    return Failure(f"albatrossd closed the connection on policy add for {name}")
                if isinstance(reply.payload, Failure):
                    return reply.payload
                if not isinstance(reply.payload, Reply):
                    return Failure(f"unexpected answer from albatrossd to policy add for {name}")
        await daemon.write_wire(Wire(Header(sequence=next(self._sequence), name=request.name), cmd))
        if isinstance(cmd, BlockSet):
            await self._forward_raw(framed, daemon)
        if shape is Shape.SINGLE:
            reply = await daemon.read_wire()
            if reply is None:
                return Failure(f"{service} closed the connection without a reply")
            return reply.payload
        await self._stream(framed, daemon, service, request.version, final_header)
        return None

    @staticmethod
    async def _forward_raw(framed: FramedStream, daemon: FramedStream) -> None:
        """Block data: client chunks to albatrossd until the zero-length chunk.

        albatrossd may refuse before reading the data (no such block, in use)
        and close; then we stop forwarding and let the caller read its reply.
        """
        while True:
            chunk = await _client_read(framed)
            if chunk is None:
                raise _ClientGone("closed before the end of the block data")
            try:
                await daemon.write_chunk(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if chunk == END:
                return

    async def _stream(
        self,
        framed: FramedStream,
        daemon: FramedStream,
        service: Service,
        version: int,
        final_header: Header,
    ) -> None:
        """Proxy a subscription or dump, then send its final message.

        A watcher reads the client meanwhile: a client that closes ends
        everything (the daemon connection closes with us); one that sends
        anything is unsubscribed and told so.  The final message is written
        while the watcher's receive is still pending, so the TLS stream is
        never used after a cancelled receive.
        """
        client_state: str | None = None
        async with trio.open_nursery() as nursery:
            pump_scope = trio.CancelScope()

            async def watch_client() -> None:
                nonlocal client_state
                try:
                    chunk = await framed.read_chunk(Expect.QUIET)  # silent while subscribed
                except (trio.BrokenResourceError, trio.ClosedResourceError, WireError):
                    chunk = None
                client_state = "gone" if chunk is None else "stopped"
                pump_scope.cancel()

            nursery.start_soon(watch_client)
            final: Payload | None = None
            with pump_scope:
                final = await self._pump(framed, daemon, service, version)
            if client_state == "gone":
                nursery.cancel_scope.cancel()
                raise _ClientGone("closed during the stream")
            if final is None:
                final = ReplyString("unsubscribed")
            await _client_write(framed, Wire(final_header, final))
            nursery.cancel_scope.cancel()

    @staticmethod
    async def _pump(
        framed: FramedStream, daemon: FramedStream, service: Service, version: int
    ) -> Payload:
        while True:
            try:
                wire = await daemon.read_wire()
            except WireError as exc:
                return Failure(f"bad message from {service}: {exc}")
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                return Failure(f"lost the connection to {service}: {exc}")
            if wire is None:
                return ReplyString("end of stream")
            payload = wire.payload
            if isinstance(payload, Failure) or (
                isinstance(payload, DataBlock) and payload.chunk is None
            ):
                return payload
            header = dataclasses.replace(wire.header, version=version)
            # Shielded: a cancelled TLS send can leave the stream unusable, and
            # the final message still has to go out; the timeout bounds it.
            with trio.CancelScope(shield=True):
                await _client_write(framed, Wire(header, payload), CLIENT_IDLE_TIMEOUT)


async def _send_pending_alert(tls: trio.SSLStream) -> None:
    """Send the alert OpenSSL wrote when it refused the handshake.

    trio marks the stream broken on an ``SSLError`` without sending what the
    ``SSLObject`` has queued, so the client would see a bare EOF instead of
    "unknown ca" or "certificate expired".  The queue is trio's private
    outgoing ``MemoryBIO``; without it we just close, as before.
    """
    outgoing = getattr(tls, "_outgoing", None)
    if not isinstance(outgoing, ssl.MemoryBIO):
        return
    data = outgoing.read()
    if data:
        with trio.move_on_after(CLOSE_TIMEOUT), contextlib.suppress(*_BROKEN, OSError):
            await tls.transport_stream.send_all(data)


async def _client_read(framed: FramedStream) -> bytes | None:
    try:
        with trio.fail_after(CLIENT_IDLE_TIMEOUT):
            return await framed.read_chunk(Expect.DATA)
    except trio.TooSlowError:
        raise _ClientGone(f"silent for {CLIENT_IDLE_TIMEOUT:g} s") from None
    except WireError as exc:
        raise _Refused(f"bad data from client: {exc}") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise _ClientGone(str(exc.__cause__ or exc) or "connection broken") from None


async def _client_write(
    framed: FramedStream, wire: Wire, timeout: float = CLIENT_IDLE_TIMEOUT
) -> None:
    try:
        with trio.fail_after(timeout):
            await framed.write_wire(wire)
    except trio.TooSlowError:
        raise _ClientGone(f"not reading for {timeout:g} s") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise _ClientGone(str(exc.__cause__ or exc) or "connection broken") from None


# -- the executable ---------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="albatross-tls-endpoint",
        description="Remote access to albatross over mutually authenticated TLS 1.3: the "
        "command comes from the client's certificate, the policies from its CA chain.",
        epilog="example: albatross-tls-endpoint cacert.pem server.pem server.key --port 1025",
    )
    p.add_argument("ca", help="the CA certificate (exactly one) clients must chain to")
    p.add_argument("cert", help="the server certificate (PEM, may include its chain)")
    p.add_argument("key", help="the server's private key (PEM)")
    p.add_argument("--ip", default=DEFAULT_IP, help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=None, help=f"TCP port (default {DEFAULT_PORT})")
    p.add_argument("--tmpdir", default=DEFAULT_TMPDIR, help="runtime directory (sockets)")
    p.add_argument("--dbdir", default=DEFAULT_DBDIR, help="CRLs are read from DBDIR/crl")
    p.add_argument("--inetd", action="store_true", help="serve the connection on stdin")
    p.add_argument("--systemd-socket-activation", action="store_true", dest="systemd")
    p.add_argument("--syslog", action="store_true", help="log to syslog instead of stdout")
    p.add_argument(
        "--user",
        default=DEFAULT_USER,
        help="user to become when started as root ('' to stay root; default %(default)s)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    guard.add_limit_options(p, request_timeout=HANDSHAKE_TIMEOUT, what="its TLS handshake")
    ns = p.parse_args(argv)
    if ns.systemd and ns.port is not None:
        p.error("--port conflicts with --systemd-socket-activation")
    if ns.systemd and ns.inetd:
        p.error("--inetd conflicts with --systemd-socket-activation")
    return ns


async def run(ns: argparse.Namespace) -> int:
    context = make_server_context(ns.ca, ns.cert, ns.key)
    endpoint_ = TlsEndpoint(context, ns.tmpdir, ns.dbdir, limits=guard.limits_from_args(ns))
    if ns.inetd:
        drop_root(ns.user)
        return await endpoint_.serve_inetd()
    if ns.systemd:
        listener = systemd_listener()
        if listener is None:
            raise StartupError("--systemd-socket-activation given, but systemd passed no socket")
    else:
        port = DEFAULT_PORT if ns.port is None else ns.port
        sock = tcp_listen_socket(ns.ip, port)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        log.info("listening on %s port %d", ns.ip, port)
    drop_root(ns.user)
    await serve_until_signalled(endpoint_.serve, listener)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse_args(argv)
    if ns.inetd and not ns.syslog and not ns.quiet:
        # stdout is the client's connection: logging there would corrupt it.
        print("albatross-tls-endpoint: --inetd needs --syslog or -q", file=sys.stderr)
        return EXIT_INETD_LOGGING
    setup_logging("albatross-tls-endpoint", ns.verbose, ns.quiet, ns.syslog, default=logging.INFO)
    try:
        return trio.run(run, ns)
    except StartupError as exc:
        log.error("%s", exc)
        if ns.quiet and not ns.inetd:  # under inetd stderr is the client's socket too
            print(f"albatross-tls-endpoint: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
