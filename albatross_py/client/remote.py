"""Talking to albatross: conversation shapes, local sockets and the remote TLS path.

**Conversations** (spec 2.4, 3.8).  Every command has a shape, as albatross's
``Vmm_commands.endpoint``: ``single`` (one reply), ``dump`` (a
``block-device-image`` reply, ``Data block`` chunks, ``Data block None``) or
``read`` (``Success`` then data until the client goes away).  :func:`converse`
sends the command (if any), streams raw upload chunks ending with a
zero-length chunk (block set, TLS image upload), then reads until the
shape's final message.  A ``Failure`` ends any conversation (exit 117); a
stream that ends without a final message is a communication failure (121).

**Remote** (spec 4.2, 4.5), ``--destination HOST[:PORT]``: the command
travels in a leaf certificate signed on the fly with ``--ca/--ca-key``
(:func:`albatross_py.client.certs.sign_leaf_on_the_fly`, which checks the
command against that CA's own policy first).  Before connecting the client
checks that ``leaf + --ca file`` chains up to ``--server-ca`` (exit 116 if
not).  The connection is TLS 1.3 only; the client presents ``leaf + every
certificate of the --ca file``; the server must present a certificate
signed by ``--server-ca``.  As albatross, **the server's host name is not
checked**: trust comes from ``--server-ca`` alone, so use a dedicated CA for
your albatross servers.  trio sets ``TCP_NODELAY`` on its TCP streams.

Over TLS the client sends no wire message (the command is the leaf's
extension), only raw chunks: the block data of ``set-block``, and the image
of a ``create`` whose certificate carries an empty image.  We put an image
into the certificate only when it is small (:data:`INLINE_IMAGE_LIMIT`):
OpenSSL-based endpoints refuse client certificate chains above ~100 KiB.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path as FsPath

import trio
from cryptography import x509

from albatross_py.client.certs import PrivateKey, certs_to_pem, key_to_pem
from albatross_py.client.config_args import CliError, Exit
from albatross_py.client.output import Progress
from albatross_py.transport import FramedStream
from albatross_py.wire import frame
from albatross_py.wire.codec import encode_wire
from albatross_py.wire.errors import WireError
from albatross_py.wire.messages import (
    DataBlock,
    Failure,
    Reply,
    ReplyBlockDeviceImage,
    Wire,
)
from albatross_py.wire.routing import Shape

#: albatross-tls-endpoint's default port.
DEFAULT_PORT = 1025
#: Images up to this size (after compression) travel inside the certificate.
INLINE_IMAGE_LIMIT = 32 * 1024
#: Raw upload chunk size.
CHUNK_SIZE = 64 * 1024


class ConversationEnded(Exception):
    """The conversation failed; ``code`` is the exit code, ``str`` says why."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code


class SubscriptionClosed(ConversationEnded):
    """The daemon ended a subscription (``read`` shape) after its first reply (exit 121)."""

    def __init__(self) -> None:
        super().__init__(Exit.COMMUNICATION_FAILED, "the daemon closed the subscription")


@dataclass
class Upload:
    """Raw chunks sent after the command, ended by a zero-length chunk."""

    chunks: Iterable[bytes]
    total: int | None = None
    label: str = "upload"


def file_chunks(path: str | FsPath, size: int = CHUNK_SIZE) -> Iterable[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def bytes_chunks(data: bytes, size: int = CHUNK_SIZE) -> Iterable[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def _send_wire(conn: FramedStream, wire: Wire) -> None:
    """Send one message; a large one (a create with its image) with a progress bar."""
    data = frame(encode_wire(wire))
    if len(data) <= CHUNK_SIZE:
        await conn.stream.send_all(data)
        return
    progress = Progress("uploading", len(data))
    for i in range(0, len(data), CHUNK_SIZE):
        await conn.stream.send_all(data[i : i + CHUNK_SIZE])
        progress.advance(min(CHUNK_SIZE, len(data) - i))
    progress.finish()


async def converse(
    conn: FramedStream,
    wire: Wire | None,
    shape: Shape,
    on_wire: Callable[[Wire], None],
    upload: Upload | None = None,
    remote: bool = False,
) -> Exit:
    """One conversation; returns the exit code (0 or 117), raises :class:`ConversationEnded`.

    ``remote``: the TLS endpoint writes its final message with header sequence
    0 (spec 4.5), and proxied daemon replies keep their own (non-zero)
    sequence; so a reply or failure with sequence 0 ends a remote stream.
    """
    try:
        if wire is not None:
            await _send_wire(conn, wire)
        upload_error: BaseException | None = None
        if upload is not None:
            progress = Progress(upload.label, upload.total)
            try:
                for chunk in upload.chunks:
                    if chunk:
                        await conn.write_chunk(chunk)
                        progress.advance(len(chunk))
                await conn.write_end()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                # the daemon stopped reading: its reason is usually waiting
                upload_error = exc
            progress.finish()
        answered = False
        while True:
            try:
                reply = await conn.read_wire()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                if upload_error is None:
                    raise
                reply = None
            if reply is None and upload_error is not None:
                raise ConversationEnded(*classify_failure(upload_error))
            if reply is None:
                if shape is Shape.READ and answered:
                    raise SubscriptionClosed
                raise ConversationEnded(
                    Exit.COMMUNICATION_FAILED, "connection closed before the final reply"
                )
            answered = True
            on_wire(reply)
            payload = reply.payload
            if isinstance(payload, Failure):
                return Exit.REMOTE_COMMAND_FAILED
            if isinstance(payload, Reply) and (
                shape is Shape.SINGLE or (remote and reply.header.sequence == 0)
            ):
                return Exit.SUCCESS
            if shape is Shape.DUMP and isinstance(payload, DataBlock) and payload.chunk is None:
                return Exit.SUCCESS
            if (
                shape is Shape.DUMP
                and isinstance(payload, Reply)
                and not isinstance(payload, ReplyBlockDeviceImage)
            ):
                return Exit.SUCCESS
    except WireError as exc:
        raise ConversationEnded(Exit.COMMUNICATION_FAILED, f"bad message: {exc}") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        raise ConversationEnded(*classify_failure(exc)) from None


# -- TLS failures ------------------------------------------------------------------

#: OpenSSL alert reasons meaning "the server refused our certificate".
_REJECTED_US = (
    "BAD_CERTIFICATE",
    "CERTIFICATE_EXPIRED",
    "UNKNOWN_CA",
    "CERTIFICATE_REQUIRED",
    "CERTIFICATE_UNKNOWN",
    "CERTIFICATE_REVOKED",
    "UNSUPPORTED_CERTIFICATE",
    "ACCESS_DENIED",
    "DECRYPT_ERROR",
)


def classify_failure(exc: BaseException) -> tuple[Exit, str]:
    """Exit code and message for a broken connection (TLS alerts map to 119/120)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return Exit.REMOTE_AUTHENTICATION_FAILED, (
            f"the server's certificate is not trusted: {cause.verify_message}"
        )
    if isinstance(cause, ssl.SSLError):
        reason = cause.reason or str(cause)
        if any(r in reason for r in _REJECTED_US):
            message = f"the server rejected our certificate: {reason}"
            return Exit.LOCAL_AUTHENTICATION_FAILED, message
        return Exit.COMMUNICATION_FAILED, f"TLS failure: {reason}"
    return Exit.COMMUNICATION_FAILED, f"communication failure: {exc}"


# -- destinations and chains ----------------------------------------------------------


def parse_destination(s: str) -> tuple[str, int]:
    """``HOST[:PORT]``; IPv6 literals as ``[::1]`` or ``[::1]:1025`` (bare ``::1`` too)."""
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep or not host:
            raise CliError(f"invalid destination {s!r}")
        if not rest:
            return host, DEFAULT_PORT
        if not rest.startswith(":"):
            raise CliError(f"invalid destination {s!r}")
        port_s = rest[1:]
    elif s.count(":") == 1:
        host, port_s = s.split(":")
    else:
        return s, DEFAULT_PORT  # a host name, IPv4 or a bare IPv6 literal
    try:
        port = int(port_s)
    except ValueError:
        raise CliError(f"invalid port in destination {s!r}") from None
    if not host or not 0 < port < 65536:
        raise CliError(f"invalid destination {s!r}")
    return host, port


class ChainCheckError(ValueError):
    """Our own chain does not lead to the server CA (exit 116)."""


def validate_chain(
    chain: list[x509.Certificate], anchors: list[x509.Certificate], now: dt.datetime | None = None
) -> None:
    """Check that ``chain[0]`` chains through ``chain[1:]`` to one of ``anchors``.

    Signatures, issuer names and validity periods; the endpoint's OpenSSL does
    the complete check, this catches the usual mistakes (wrong ``--ca`` file,
    expired sub-CA) before connecting.
    """
    now = now or dt.datetime.now(dt.UTC)
    if not chain:
        raise ChainCheckError("no certificate to send")
    if not anchors:
        raise ChainCheckError("the server CA file holds no certificate")

    def subject(c: x509.Certificate) -> str:
        return c.subject.rfc4514_string()

    for cert in chain:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
            raise ChainCheckError(
                f"certificate {subject(cert)} is not valid now "
                f"(valid {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M})"
            )

    def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        if cert.issuer != issuer.subject:
            return False
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, Exception):  # InvalidSignature and friends
            return False
        return True

    anchor_ders = {a.tbs_certificate_bytes for a in anchors}
    current, pool = chain[0], list(chain[1:])
    for _ in range(len(chain) + 1):
        if current.tbs_certificate_bytes in anchor_ders:
            return
        if any(issued_by(current, a) for a in anchors):
            return
        issuer = next((c for c in pool if issued_by(current, c)), None)
        if issuer is None:
            raise ChainCheckError(
                f"certificate {subject(current)} (issuer {current.issuer.rfc4514_string()}) "
                "does not chain to the server CA"
            )
        pool.remove(issuer)
        current = issuer
    raise ChainCheckError("certificate chain loops")


def client_context(
    chain: list[x509.Certificate], key: PrivateKey, server_ca: str | FsPath
) -> ssl.SSLContext:
    """TLS 1.3 only, our chain as client certificate, the server verified by ``server_ca``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # as albatross: trust comes from --server-ca alone
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(server_ca))
    with tempfile.TemporaryDirectory(prefix="albatross-client-") as d:
        certfile, keyfile = os.path.join(d, "chain.pem"), os.path.join(d, "key.pem")
        for path, data in ((certfile, certs_to_pem(chain)), (keyfile, key_to_pem(key))):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


async def open_tls(host: str, port: int, ctx: ssl.SSLContext) -> FramedStream:
    """Connect and handshake; raises :class:`ConversationEnded` (122, 119-121)."""
    try:
        tcp = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise ConversationEnded(
            Exit.CONNECT_FAILED, f"cannot connect to {host}:{port}: {exc}"
        ) from None
    tls = trio.SSLStream(tcp, ctx, server_hostname=None)
    try:
        await tls.do_handshake()
    except (trio.BrokenResourceError, OSError) as exc:
        await trio.aclose_forcefully(tls)
        raise ConversationEnded(*classify_failure(exc)) from None
    return FramedStream(tls)


async def run_remote(
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    shape: Shape,
    on_wire: Callable[[Wire], None],
    upload: Upload | None = None,
) -> Exit:
    conn = await open_tls(host, port, ctx)
    try:
        return await converse(conn, None, shape, on_wire, upload, remote=True)
    finally:
        await trio.aclose_forcefully(conn.stream)
