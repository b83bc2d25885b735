"""The connection guard: no exception leaves a connection, in any daemon (issue 13 item 1).

First the guard itself on a real unix socket (a handler that raises, one
whose nursery raises an ExceptionGroup, cancellation, the HTTP replies, the
connection cap), then a fault injected into a request handler of every
daemon (albatrossd, albatross-console, albatross-stats, albatross-log,
albatross-tls-endpoint over real TLS, albatross-prometheus over HTTP): the
client is told, the traceback is logged, and the daemon keeps serving.
Last, a check of the source: nothing accepts connections but the guard.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from albatross_py.core.console import ConsoleState
from albatross_py.daemons.events import EventsDaemon
from albatross_py.daemons.metrics import PrometheusExporter, http_request
from albatross_py.daemons.stats import StatsDaemon
from albatross_py.daemons.supervisor import Supervisor
from albatross_py.daemons.tls_endpoint import TlsEndpoint
from albatross_py.transport import Expect, FramedStream, bind_unix, connect_unix, guard, socket_path
from albatross_py.wire import encode_wire, frame
from albatross_py.wire import events as ev
from albatross_py.wire.messages import (
    ConsoleListInactive,
    EventsRecord,
    Failure,
    Header,
    ReplyString,
    ReplyUnikernelInfo,
    StatsRemove,
    UnikernelInfoQuery,
    Wire,
)
from albatross_py.wire.names import Name
from tests.integration.stack import stack
from tests.integration.test_tls_endpoint import tls_stack

TIMEOUT = 20
PACKAGE = Path(__file__).resolve().parents[2] / "albatross_py"


def unexpected_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "unexpected error" in r.getMessage() and r.exc_info]


async def ask(path: Path, name: str, payload: object, *, seq: int = 7) -> Wire | None:
    """One request on a fresh connection to a unix socket; the first reply."""
    with trio.fail_after(TIMEOUT):
        conn = FramedStream(await connect_unix(path))
        async with conn:
            await conn.write_wire(Wire(Header(sequence=seq, name=Name.of_string(name)), payload))  # type: ignore[arg-type]
            return await conn.read_wire()


def is_internal_error(wire: Wire | None, seq: int, name: str, *kinds: str) -> bool:
    return (
        wire is not None
        and isinstance(wire.payload, Failure)
        and any(wire.payload.message.startswith(f"internal error ({k})") for k in kinds)
        and wire.header.sequence == seq
        and str(wire.header.name) == name
    )


# -- the guard on its own ----------------------------------------------------------------


async def toy_handler(conn: guard.Connection) -> None:
    """Fails as the request's name says; answers "ok" otherwise."""
    framed = conn.framed()
    wire = await framed.read_wire()
    assert wire is not None
    match wire.header.name.label:
        case "raise":
            raise KeyError("boom")
        case "group":

            async def fail(exc: Exception) -> None:
                raise exc

            async with trio.open_nursery() as nursery:  # an ExceptionGroup of both
                nursery.start_soon(fail, RuntimeError("one"))
                nursery.start_soon(fail, OSError("two"))
        case "hang":
            await trio.sleep_forever()
        case "quiet":  # then a peer that may be silent between frames
            await framed.write_wire(Wire(wire.header, ReplyString("ok")))
            wire = await framed.read_wire(Expect.QUIET)
            assert wire is not None
    await framed.write_wire(Wire(wire.header, ReplyString("ok")))


@asynccontextmanager
async def toy_server(tmp_path: Path, **kw: object) -> AsyncIterator[Path]:
    path = tmp_path / "toy.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: guard.serve(
                [bind_unix(path)], toy_handler, service="toy.sock", task_status=task_status, **kw
            )
        )
        yield path
        nursery.cancel_scope.cancel()


async def test_exceptions_are_answered_logged_and_the_listener_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with toy_server(tmp_path) as path:
        for _ in range(3):  # the listener survives every one of them
            reply = await ask(path, ":raise", UnikernelInfoQuery(), seq=11)
            assert is_internal_error(reply, 11, ":raise", "KeyError"), reply
            reply = await ask(path, ":group", UnikernelInfoQuery(), seq=12)
            assert is_internal_error(reply, 12, ":group", "RuntimeError", "OSError"), reply
            reply = await ask(path, ":fine", UnikernelInfoQuery())
            assert reply is not None and reply.payload == ReplyString("ok"), reply
    assert len(unexpected_errors(caplog)) == 6  # each with its traceback


async def test_cancellation_passes_through_and_is_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with toy_server(tmp_path) as path:
        conn = FramedStream(await connect_unix(path))
        await conn.write_wire(Wire(Header(name=Name.of_string(":hang")), UnikernelInfoQuery()))
        await trio.sleep(0.1)
    # the server was cancelled with the handler hanging: no failure reply, no error
    with trio.fail_after(TIMEOUT):
        assert await conn.read_wire() is None
    assert not unexpected_errors(caplog)


async def test_request_timeout_and_cap_of_the_guard(tmp_path: Path) -> None:
    limits = guard.Limits(request_timeout=0.5, max_connections=2)
    async with toy_server(tmp_path, limits=limits) as path:
        idle = [FramedStream(await connect_unix(path)) for _ in range(2)]
        with trio.fail_after(TIMEOUT):
            refused = await ask(path, ":fine", UnikernelInfoQuery())
        assert refused is not None and isinstance(refused.payload, Failure)
        assert "too many connections to toy.sock (limit 2)" in refused.payload.message
        for conn in idle:  # both idle clients are dropped, with a reason
            with trio.fail_after(TIMEOUT):
                wire = await conn.read_wire()
                assert wire is not None and isinstance(wire.payload, Failure)
                assert wire.payload.message.startswith("request timeout"), wire
                assert await conn.read_wire() is None
        with trio.fail_after(TIMEOUT):  # the slots are free again
            while not (
                (reply := await ask(path, ":fine", UnikernelInfoQuery())) is not None
                and reply.payload == ReplyString("ok")
            ):
                await trio.sleep(0.05)


async def test_quiet_reads_wait_for_ever_but_not_for_half_a_frame(tmp_path: Path) -> None:
    timeout = 0.3
    request = frame(encode_wire(Wire(Header(name=Name.of_string(":fine")), UnikernelInfoQuery())))
    async with toy_server(tmp_path, limits=guard.Limits(request_timeout=timeout)) as path:
        for half in (False, True):
            conn = FramedStream(await connect_unix(path))
            await conn.write_wire(Wire(Header(name=Name.of_string(":quiet")), UnikernelInfoQuery()))
            with trio.fail_after(TIMEOUT):
                assert (await conn.read_wire()).payload == ReplyString("ok")  # type: ignore[union-attr]
            await trio.sleep(3 * timeout)  # quiet: allowed
            await conn.stream.send_all(request[: len(request) // 2] if half else request)
            with trio.fail_after(TIMEOUT):
                reply = await conn.read_wire()
            assert reply is not None
            if half:  # a frame that has begun must be complete within the timeout
                assert isinstance(reply.payload, Failure), reply
                assert reply.payload.message.startswith("request timeout"), reply
            else:
                assert reply.payload == ReplyString("ok"), reply
            await conn.aclose()


async def test_http_replies(tmp_path: Path) -> None:
    async def failing(conn: guard.Connection) -> None:
        await conn.stream.receive_some(1024)
        raise ValueError("broken")

    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    limits = guard.Limits(max_connections=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: guard.serve(
                [listener], failing, service="http", limits=limits, replies=guard.HTTP,
                task_status=task_status,
            )
        )  # fmt: skip
        with trio.fail_after(TIMEOUT):
            holder = await trio.open_tcp_stream("127.0.0.1", port)  # takes the one slot
            while (got := await http_request("127.0.0.1", port, "GET", "/"))[0] != 503:
                await trio.sleep(0.05)  # until the holder is being served
            assert b"too many connections to http (limit 1)" in got[1]
            await holder.aclose()
            while (got := await http_request("127.0.0.1", port, "GET", "/"))[0] == 503:
                await trio.sleep(0.05)  # until the holder's slot is free
            assert got[0] == 500 and b"internal error (ValueError)" in got[1]
        nursery.cancel_scope.cancel()


# -- a fault in every daemon ----------------------------------------------------------------


def _raise(*args: object, **kw: object) -> None:
    raise RuntimeError("injected fault")


async def test_albatrossd_console_stats_log_answer_a_fault_and_keep_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with stack(tmp_path, log=True) as s:
        stats = StatsDaemon(s.tmpdir)
        await s.nursery.start(stats.run, bind_unix(socket_path(s.tmpdir, "stats")))
        cases = [
            ("vmmd", Supervisor, "info", UnikernelInfoQuery()),
            ("console", ConsoleState, "list_inactive", ConsoleListInactive()),
            ("stats", StatsDaemon, "handle_remove", StatsRemove()),
            ("log", EventsDaemon, "record", EventsRecord(ev.Startup("test"))),
        ]
        for service, cls, method, request in cases:
            path = socket_path(s.tmpdir, service)
            with monkeypatch.context() as patch:
                patch.setattr(cls, method, _raise)
                reply = await ask(path, ":x", request, seq=5)
            assert is_internal_error(reply, 5, ":x", "RuntimeError"), (service, reply)
        # every daemon still answers
        assert isinstance(await s.call(":", UnikernelInfoQuery()), ReplyUnikernelInfo)
        reply = await ask(socket_path(s.tmpdir, "console"), ":", ConsoleListInactive())
        assert reply is not None and not isinstance(reply.payload, Failure), reply
        reply = await ask(socket_path(s.tmpdir, "stats"), ":x", StatsRemove())
        assert reply is not None and reply.payload == ReplyString("removed"), reply
    assert len(unexpected_errors(caplog)) == len(cases)


async def test_tls_endpoint_answers_a_fault_with_the_final_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with tls_stack(tmp_path) as env:
        with monkeypatch.context() as patch:
            patch.setattr(TlsEndpoint, "_run", _raise)
            (wire,) = await env.talk(env.leaf("web", UnikernelInfoQuery()))
        assert is_internal_error(wire, 0, "tenant:web", "RuntimeError"), wire
        assert wire.header.version == 5
        assert len(unexpected_errors(caplog)) == 1
        still = await env.final(env.leaf(None, UnikernelInfoQuery()))
        assert isinstance(still, ReplyUnikernelInfo), still
        await env.idle()
        assert env.endpoint.active == 0


async def test_prometheus_answers_a_fault_with_500(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = PrometheusExporter(tmp_path)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(exporter.serve, listeners)
        with trio.fail_after(TIMEOUT):
            with monkeypatch.context() as patch:
                patch.setattr(PrometheusExporter, "render", _raise)
                status, body = await http_request("127.0.0.1", port, "GET", "/metrics")
            assert status == 500 and b"internal error (RuntimeError)" in body
            status, _ = await http_request("127.0.0.1", port, "GET", "/metrics")
            assert status == 200
        nursery.cancel_scope.cancel()


# -- by construction --------------------------------------------------------------------------

#: What would accept connections behind the guard's back.
ACCEPTING = re.compile(r"\.accept\(|serve_listeners|serve_tcp|serve_ssl_over_tcp|accept_forever")
#: The daemons with listeners; each must serve them through the guard.
LISTENING = ["vmmd.py", "console.py", "stats.py", "events.py", "metrics.py", "tls_endpoint.py"]


def test_only_the_guard_accepts_connections() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "transport" / "guard.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if ACCEPTING.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []
    for name in LISTENING:
        text = (PACKAGE / "daemons" / name).read_text()
        assert re.search(r"guard\.serve\b", text), f"{name} does not serve through the guard"
