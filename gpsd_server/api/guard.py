"""Bounded HTTP: a cap on open connections and a deadline for every request's
headers, in front of uvicorn.

uvicorn closes an idle keep-alive connection, but any byte restarts that
clock and a connection that never sends a byte has none at all, so 100 slow
senders (slowloris) hold 100 descriptors for as long as they like. The
:class:`ConnectionGuard` gives every connection a deadline (``[http]
header_timeout_s``) for its request line and headers, counted from the
connection opening and again from the end of each response; a connection
past it is answered 408 and closed. It also refuses connections beyond
``[http] limit_concurrency`` at once (503 and close) instead of letting them
queue. Both are counted by reason (``gpsd_http_refused_total``) and logged at
most once per ``refused_log_interval_s``.

How, with uvicorn's public interfaces only: ``uvicorn.Config`` takes the
protocol classes to use (``http=``, ``ws=``); :func:`protocol_classes` makes
subclasses of its h11 and websocket protocols that only extend the asyncio
``Protocol`` methods ``connection_made``/``connection_lost`` (admit or
refuse, start the deadline, forget the connection). The deadline ends when
the request reaches the application, which :class:`GuardMiddleware` (plain
ASGI) sees from the scope's ``client`` address; the end of a response starts
the next one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import time
from collections import Counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from gpsd_server.errors import ConfigError

log = logging.getLogger(__name__)

Peer = tuple[str, int]
_REFUSED_BODY = b'{"error":"too many connections","parameter":null}'
REFUSED_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_REFUSED_BODY), _REFUSED_BODY)
)
TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
# Descriptors the process needs besides HTTP connections: the listening sockets,
# the broker, the writer and probe connections, the spool, logs, geofence files.
RESERVED_DESCRIPTORS = 64


def _peer(transport: asyncio.BaseTransport) -> Peer | None:
    info = transport.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


class ConnectionGuard:
    """Open HTTP/websocket connections, their header deadlines and the refusals."""

    def __init__(self, *, limit: int, header_timeout_s: float, log_interval_s: float = 10.0) -> None:
        self.limit = limit
        self.header_timeout_s = header_timeout_s
        self.log_interval_s = log_interval_s
        self.refused: Counter[str] = Counter()  # by reason: limit_concurrency, header_timeout
        self.peak = 0
        self._open: dict[asyncio.BaseTransport, asyncio.TimerHandle | None] = {}
        self._by_peer: dict[Peer, asyncio.BaseTransport] = {}
        self._unlogged: Counter[str] = Counter()
        self._logged_at = -math.inf

    @property
    def open_connections(self) -> int:
        return len(self._open)

    # -- the protocols' side --------------------------------------------------

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """A new connection: True to serve it; False when it was refused (503 and closed)."""
        if len(self._open) >= self.limit:
            self._count("limit_concurrency")
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(REFUSED_503)
            transport.close()
            return False
        self._open[transport] = None
        self.peak = max(self.peak, len(self._open))
        peer = _peer(transport)
        if peer is not None:
            self._by_peer[peer] = transport
        self._arm(transport)
        return True

    def closed(self, transport: asyncio.BaseTransport) -> None:
        timer = self._open.pop(transport, None)
        if timer is not None:
            timer.cancel()
        peer = _peer(transport)
        if peer is not None and self._by_peer.get(peer) is transport:
            del self._by_peer[peer]

    # -- the application's side -----------------------------------------------

    def request_started(self, peer: Peer) -> None:
        """The request's headers are in: its deadline is met."""
        transport = self._by_peer.get(peer)
        if transport is not None:
            timer = self._open.get(transport)
            if timer is not None:
                timer.cancel()
                self._open[transport] = None

    def response_finished(self, peer: Peer) -> None:
        """The next request on this connection has its own deadline."""
        transport = self._by_peer.get(peer)
        if transport is not None and transport in self._open and not transport.is_closing():
            self._arm(transport)

    # -- inside -----------------------------------------------------------------

    def _arm(self, transport: asyncio.BaseTransport) -> None:
        timer = self._open.get(transport)
        if timer is not None:
            timer.cancel()
        loop = asyncio.get_running_loop()
        self._open[transport] = loop.call_later(self.header_timeout_s, self._expired, transport)

    def _expired(self, transport: asyncio.BaseTransport) -> None:
        if transport not in self._open or transport.is_closing():
            return
        self._open[transport] = None
        self._count("header_timeout")
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(TIMEOUT_408)
        transport.close()

    def _count(self, reason: str) -> None:
        self.refused[reason] += 1
        self._unlogged[reason] += 1
        now = time.monotonic()
        if now - self._logged_at >= self.log_interval_s:
            what = ", ".join(f"{n} {r}" for r, n in sorted(self._unlogged.items()))
            log.warning(
                "HTTP: closed connections (%s) in the last %.0f s; %d open, limit %d, header timeout %g s",
                what, min(now - self._logged_at, 1e9), len(self._open), self.limit, self.header_timeout_s,
            )  # fmt: skip
            self._unlogged.clear()
            self._logged_at = now


def protocol_classes(guard: ConnectionGuard) -> tuple[type[H11Protocol], type[WebSocketsSansIOProtocol]]:
    """uvicorn's h11 and websocket protocols, admitted and timed by ``guard``."""

    class GuardedHttp(H11Protocol):
        gpsd_transport: asyncio.BaseTransport | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if not guard.admit(transport):
                return  # refused: uvicorn never sees it
            self.gpsd_transport = transport
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.gpsd_transport is None:
                return
            guard.closed(self.gpsd_transport)
            super().connection_lost(exc)

    class GuardedWebSocket(WebSocketsSansIOProtocol):
        # Made by the h11 protocol on an upgrade, on a connection already admitted.
        gpsd_transport: asyncio.BaseTransport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.gpsd_transport = transport
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.gpsd_transport is not None:
                guard.closed(self.gpsd_transport)
            super().connection_lost(exc)

    return GuardedHttp, GuardedWebSocket


class GuardMiddleware:
    """Tells the guard when a request reached the application and when its response ended."""

    def __init__(self, app: ASGIApp, guard: ConnectionGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client: Any = scope.get("client")
        if scope["type"] not in ("http", "websocket") or not client:
            await self.app(scope, receive, send)
            return
        peer: Peer = (str(client[0]), int(client[1]))
        self.guard.request_started(peer)
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        async def tracked(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.guard.response_finished(peer)

        await self.app(scope, receive, tracked)


def ensure_descriptors(connections: int, *, extra: int = 0, key: str = "http.limit_concurrency") -> int:
    """Make sure the process may open ``connections + extra`` descriptors and a
    reserve: raise the soft RLIMIT_NOFILE up to the hard one if needed, else
    refuse to start naming ``key``. Returns the soft limit in force."""
    needed = connections + extra + RESERVED_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.info("raised the descriptor limit (RLIMIT_NOFILE) from %d to %d", soft, target)
        soft = target
    if soft < needed:
        raise ConfigError(
            "(process limits)",
            key,
            f"{connections} connections need {needed} file descriptors, but RLIMIT_NOFILE is {soft} (hard {hard}): "
            "lower the limit or raise the process's (ulimit -n, systemd LimitNOFILE=)",
        )
    return soft
