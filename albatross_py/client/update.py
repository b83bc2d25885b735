"""``albatross-client update NAME``: a unikernel's newer build from builder-web (spec 7.3).

albatross's flow (``client/albatross_client.ml``, ``update``), against the
builds server given by ``--http-host`` (default https://builds.robur.coop,
which runs builder-web):

1. ``info NAME`` (locally or over TLS): exactly one solo5 unikernel; its
   digest is the SHA-256 of the image it runs;
2. ``GET <host>/hash?sha256=<digest>``: a redirect to
   ``/job/<job>/build/<uuid>``, the build that image came from;
3. ``GET <host>/job/<job>/build/latest``: a redirect to the newest build;
4. the same uuid: "already up to date" (exit 0).  Otherwise print
   ``compare at <host>/compare/<old>/<new>``; ``--dry-run`` stops there (0);
5. ``GET <host>/job/<job>/build/<new>/main-binary``, check its solo5
   manifest against the devices the unikernel has now, and force-create it
   with the same configuration: devices pinned to the host devices, MACs and
   sector sizes that ``info`` reported, ``add_name`` on.

Exit codes as albatross: 118 for anything HTTP (not found, an unexpected
status, no ``Location``, an unreachable host), 121 when ``info`` does not
name exactly one solo5 unikernel, 125 when the new image's manifest does not
fit the devices, 124 for ``--csr``.  The HTTP requests are blocking
(``urllib``) between the client's two conversations; nothing else runs then.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass

from albatross_py.client.config_args import CliError, Exit
from albatross_py.client.output import Printer
from albatross_py.virt.solo5_elf import Solo5ImageError, check_manifest, read_manifest
from albatross_py.wire.messages import ReplyUnikernelInfo, Wire
from albatross_py.wire.names import Name
from albatross_py.wire.types import (
    BlockDevice,
    NetDevice,
    Typ,
    UnikernelConfig,
    UnikernelInfo,
)

#: Seconds one HTTP request may block (connect, or between two reads).
HTTP_TIMEOUT = 60.0
#: Largest main-binary we download: unikernels are a few MiB, and the image
#: must fit into one wire frame (64 MiB by default) anyway.
MAX_BINARY = 256 * 1024 * 1024
#: Read size while downloading.
READ_CHUNK = 1024 * 1024
#: ``--http-host``: scheme and host (and port), nothing after, as albatross's ``uri_c``.
HTTP_HOST = re.compile(r"https?://[^/]+/?")
#: A redirect target naming one build.
BUILD_PATH = re.compile(r"/job/([^/]+)/build/([^/]+)/?")


class UpdateError(Exception):
    """The update stops; ``code`` is the exit code, ``str`` says why."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_http_host(s: str) -> str:
    """``http[s]://host[:port]`` with an optional trailing slash (removed)."""
    if not HTTP_HOST.fullmatch(s):
        raise CliError(f"--http-host {s!r}: expected http[s]://hostname[:port]")
    return s.rstrip("/")


# -- HTTP ---------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the 3xx reaches us as an HTTPError carrying its Location


_OPENER = urllib.request.build_opener(_NoRedirect)


def _http_failure(url: str, exc: Exception) -> UpdateError:
    reason = getattr(exc, "reason", None) or exc
    return UpdateError(Exit.HTTP_FAILURE, f"error in HTTP interaction: GET {url}: {reason}")


def _unexpected(url: str, status: int) -> UpdateError:
    return UpdateError(Exit.HTTP_FAILURE, f"GET {url}: unexpected HTTP reply {status}")


def _redirect(url: str) -> str:
    """The ``Location`` of the redirect that ``url`` answers with."""
    try:
        with _OPENER.open(url, timeout=HTTP_TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            location = exc.headers.get("Location")
            if not location:
                raise UpdateError(
                    Exit.HTTP_FAILURE, f"GET {url}: no Location header in the redirect"
                ) from None
            return str(location)
        if exc.code == 404:
            raise UpdateError(
                Exit.HTTP_FAILURE,
                f"GET {url}: 404: couldn't find the unikernel in the repository",
            ) from None
        raise _unexpected(url, exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        raise _http_failure(url, exc) from None
    raise UpdateError(Exit.HTTP_FAILURE, f"GET {url}: expected a redirect, got {status}")


def _job_and_build(location: str) -> tuple[str, str]:
    path = urllib.parse.urlsplit(location).path
    match = BUILD_PATH.fullmatch(path)
    if match is None:
        raise UpdateError(
            Exit.HTTP_FAILURE, f"expected '/job/<jobname>/build/<uuid>', got: {location}"
        )
    return match[1], match[2]


def _download(url: str) -> bytes:
    try:
        with _OPENER.open(url, timeout=HTTP_TIMEOUT) as response:
            chunks, size = [], 0
            while chunk := response.read(READ_CHUNK):
                size += len(chunk)
                if size > MAX_BINARY:
                    raise UpdateError(
                        Exit.HTTP_FAILURE, f"GET {url}: larger than {MAX_BINARY >> 20} MiB"
                    )
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        raise _unexpected(url, exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        raise _http_failure(url, exc) from None
    body = b"".join(chunks)
    if not body:
        raise UpdateError(Exit.HTTP_FAILURE, f"GET {url}: empty body")
    return body


# -- the flow -----------------------------------------------------------------------


@dataclass
class InfoSink:
    """Collects the ``info`` reply instead of printing it."""

    entries: list[tuple[Name, UnikernelInfo]] | None = None

    def __call__(self, wire: Wire) -> bool:
        if isinstance(wire.payload, ReplyUnikernelInfo):
            self.entries = list(wire.payload.entries)
            return True
        return False


def _only_solo5(name: Name, entries: list[tuple[Name, UnikernelInfo]] | None) -> UnikernelInfo:
    if not entries:
        raise UpdateError(Exit.COMMUNICATION_FAILED, f"update: no unikernel {name}")
    if len(entries) > 1:
        names = ", ".join(str(n) for n, _ in entries)
        raise UpdateError(
            Exit.COMMUNICATION_FAILED, f"update: {name} names several unikernels: {names}"
        )
    info = entries[0][1]
    if info.typ is not Typ.SOLO5:
        raise UpdateError(
            Exit.COMMUNICATION_FAILED,
            f"update: {name} is a {info.typ.name.lower()} VM; builds come for solo5 only",
        )
    return info


def new_config(info: UnikernelInfo, image: bytes, level: int) -> UnikernelConfig:
    """The running unikernel's configuration with ``image``, devices pinned as ``info`` says."""
    blocks = tuple(BlockDevice(b.unikernel_device, b.host_device, b.sector_size)
                   for b in info.blocks)  # fmt: skip
    bridges = tuple(NetDevice(n.unikernel_device, n.host_device, n.mac) for n in info.bridges)
    try:
        check_manifest(read_manifest(image), [b.name for b in blocks],
                       [n.netif for n in bridges])  # fmt: skip
    except Solo5ImageError as exc:
        raise UpdateError(Exit.INTERNAL_ERROR, f"manifest failed: {exc}") from None
    compressed = level > 0
    return UnikernelConfig(
        typ=Typ.SOLO5, compressed=compressed,
        image=zlib.compress(image, level) if compressed else image,
        startup=info.startup, add_name=True, fail_behaviour=info.fail_behaviour,
        cpuids=info.cpuids, memory=info.memory, blocks=blocks, bridges=bridges,
        argv=info.argv, cpus=info.cpus, linux_boot_partition=info.linux_boot_partition,
    )  # fmt: skip


def prepare(
    host: str,
    name: Name,
    sink: InfoSink,
    dry_run: bool,
    level: int,
    printer: Printer,
) -> UnikernelConfig | None:
    """Steps 2 to 5: the configuration to force-create, or None (nothing to do)."""
    info = _only_solo5(name, sink.entries)
    job, old = _job_and_build(_redirect(f"{host}/hash?sha256={info.digest.hex()}"))
    _, new = _job_and_build(_redirect(f"{host}/job/{job}/build/latest"))
    if old == new:
        printer.result("already up to date", {"up-to-date": True, "build": old})
        return None
    compare = f"{host}/compare/{old}/{new}"
    printer.result(f"compare at {compare}", {"compare": compare, "old": old, "new": new})
    if dry_run:
        return None
    image = _download(f"{host}/job/{job}/build/{new}/main-binary")
    return new_config(info, image, level)
