"""A producer's link to albatross-log: events out, never waiting on the log.

albatrossd (and the TLS endpoint) report lifecycle events through
:class:`EventLink`, an :class:`~albatross_py.daemons.supervisor.EventSink`.
``emit`` only puts the event in a bounded in-memory queue: when the queue is
full (albatross-log down or not keeping up) the event is dropped, counted
and logged, and the caller carries on.  A background task, :meth:`run`,
connects to ``<tmpdir>/util/log.sock`` (retrying every second, reconnecting
when the connection breaks) and sends each event as an ``EventsRecord``.
Records are fire-and-forget (albatross-log does not reply), so the only
thing the task ever waits for is the socket taking the bytes.

albatross-log stamps events when they arrive.  An event that waited longer
than :data:`MAX_AGE` seconds (the log was away) is dropped rather than
recorded with a misleading time; events queued while albatross-log starts up
(albatrossd's own startup, the VMs it restores) are delivered.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import trio

from albatross_py.daemons.supervisor import EventSink
from albatross_py.transport import connect_unix
from albatross_py.wire import WireError, encode_wire, frame
from albatross_py.wire import events as ev
from albatross_py.wire.codec import decode_wire
from albatross_py.wire.messages import EventsRecord, Failure, Header, Wire
from albatross_py.wire.names import Name

log = logging.getLogger("albatross.eventlink")

#: Events held while albatross-log is unreachable or slow.
QUEUE_SIZE = 1024
#: Seconds between connection attempts.
RETRY_INTERVAL = 1.0
#: Seconds an event may wait before it is too old to be stamped on arrival.
MAX_AGE = 10.0
#: Longest a single write may take before the connection counts as broken.
WRITE_TIMEOUT = 5.0


class EventLink(EventSink):
    """Queue events without blocking; :meth:`run` delivers them to albatross-log."""

    def __init__(
        self,
        path: str | Path,
        *,
        queue_size: int = QUEUE_SIZE,
        retry_interval: float = RETRY_INTERVAL,
        max_age: float = MAX_AGE,
    ) -> None:
        self.path = Path(path)
        self.retry_interval = retry_interval
        self.max_age = max_age
        self._send, self._receive = trio.open_memory_channel[tuple[float, ev.Event]](queue_size)
        #: events lost so far (queue full, too old, or unencodable)
        self.dropped = 0
        #: events handed to albatross-log so far
        self.sent = 0
        self.connected = False
        self._unreported = 0
        self._sequence = 0

    # -- the producer side ---------------------------------------------------------
    def emit(self, event: ev.Event) -> None:
        """Queue ``event``; never blocks, never raises."""
        try:
            self._send.send_nowait((time.monotonic(), event))
        except trio.WouldBlock:
            self._drop("the event queue is full (albatross-log down or slow)")
        except Exception as exc:  # the supervisor must never fail on its event log
            self._drop(f"queueing failed: {exc}")
        else:
            log.debug("event %s", event)

    def _drop(self, why: str, n: int = 1) -> None:
        if self._unreported == 0:
            log.warning("dropping events: %s", why)
        self.dropped += n
        self._unreported += n

    def _report_drops(self) -> None:
        if self._unreported:
            log.warning("%d events were dropped", self._unreported)
            self._unreported = 0

    # -- the delivery task -------------------------------------------------------------
    async def run(self) -> None:
        """Connect, deliver, reconnect; runs until cancelled.

        The connection is made when there is an event to send: albatross-log
        drops a connection whose first record does not come within its
        request timeout (a producer is then allowed to be quiet for as long as
        it likes), and the TLS endpoint may see no login for hours.
        """
        pending: tuple[float, ev.Event] | None = None
        reported_down = False
        while True:
            if pending is None:
                pending = await self._receive.receive()
            try:
                stream = await connect_unix(self.path)
            except OSError as exc:
                if not reported_down:
                    log.info(
                        "albatross-log is not reachable at %s (%s); retrying every %gs",
                        self.path, exc, self.retry_interval,
                    )  # fmt: skip
                    reported_down = True
                await trio.sleep(self.retry_interval)
                continue
            reported_down = False
            self.connected = True
            log.info("connected to albatross-log at %s", self.path)
            try:
                pending = await self._deliver(stream, pending)
            finally:
                self.connected = False
                await trio.aclose_forcefully(stream)
            log.info("lost the connection to albatross-log; reconnecting")
            await trio.sleep(self.retry_interval)

    async def _deliver(
        self, stream: trio.SocketStream, pending: tuple[float, ev.Event] | None
    ) -> tuple[float, ev.Event] | None:
        """Send queued events until the connection breaks; the event in flight, if any."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch, stream, nursery.cancel_scope)
            while True:
                if pending is None:
                    pending = await self._receive.receive()
                queued_at, event = pending
                if time.monotonic() - queued_at > self.max_age:
                    self._drop("events waited too long for albatross-log")
                    pending = None
                    continue
                data = self._encode(event)
                if data is not None:
                    ok = False
                    with trio.move_on_after(WRITE_TIMEOUT):
                        try:
                            await stream.send_all(data)
                            ok = True
                        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                            log.info("sending to albatross-log: %s", exc)
                    if not ok:
                        nursery.cancel_scope.cancel()
                        return pending
                    self.sent += 1
                    self._report_drops()
                pending = None
        # the watcher saw the connection close: the event in flight is resent
        return pending

    def _encode(self, event: ev.Event) -> bytes | None:
        self._sequence += 1
        wire = Wire(Header(sequence=self._sequence, name=Name()), EventsRecord(event))
        try:
            return frame(encode_wire(wire))
        except WireError as exc:
            log.error("cannot encode event %s: %s", event, exc)
            self._drop(f"unencodable event ({exc})")
            return None

    async def _watch(self, stream: trio.SocketStream, scope: trio.CancelScope) -> None:
        """albatross-log never writes to a producer except a Failure before closing."""
        buffered = b""
        try:
            while data := await stream.receive_some(4096):
                buffered += data
                if len(buffered) >= 4:
                    size = int.from_bytes(buffered[:4], "big")
                    if len(buffered) >= 4 + size:
                        self._log_reply(buffered[4 : 4 + size])
                        buffered = buffered[4 + size :]
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    @staticmethod
    def _log_reply(chunk: bytes) -> None:
        try:
            wire = decode_wire(chunk)
        except WireError as exc:
            log.warning("albatross-log sent something undecodable: %s", exc)
            return
        if isinstance(wire.payload, Failure):
            log.warning("albatross-log refused an event: %s", wire.payload.message)
        else:
            log.warning("albatross-log sent %s", type(wire.payload).__name__)
