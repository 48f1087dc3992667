"""Serving an aiohttp application on its own port so that idle or slow connections
(slowloris) cannot use up the process's file descriptors: a connection cap that evicts idle
connections first, a deadline for each request head, and a rate-limited accept error log."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import anyio
from aiohttp import web

__all__ = [
    "ACCEPT_ERROR_INTERVAL",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_READ_TIMEOUT",
    "GuardedServer",
]

DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_READ_TIMEOUT = 10.0
#: asyncio's "socket.accept() out of system resource" error is logged at most this often
#: (seconds) while a ``GuardedServer`` runs; the next one says how many were dropped.
ACCEPT_ERROR_INTERVAL = 60.0

_ACCEPT_ERROR = "socket.accept() out of system resource"
_HEAD_END = b"\r\n\r\n"

# Connection states. WAITING: no complete request head yet (since connecting, or since the
# end of the previous request). HEAD: a head has arrived, its handler has not started yet.
# BUSY: inside the application's handler. DRAINING: the handler is done but left the body
# unread (aiohttp reads and drops the rest; the bytes are not scanned for a head). WAITING
# and DRAINING connections are evictable; all but BUSY ones have a deadline.
_WAITING, _HEAD, _BUSY, _DRAINING = range(4)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GuardedServer:
    """Serves ``app`` on ``host:port`` (port 0 picks a free one; ``port`` is the bound one
    once started) with at most ``max_connections`` open connections.

    A connection must deliver a complete request head within ``read_timeout`` seconds of
    connecting (or of the end of its previous request, for keep-alive); otherwise it is
    aborted. A connection beyond the cap evicts the oldest connection that has not
    delivered a request head yet; when every connection is inside a handler, the new one
    is refused (closed at once). Bounding the body read is the handler's part
    (``CallbackListener.handle`` does). Counters: ``stats``.

    aiohttp itself is untouched: each accepted connection gets the ``RequestHandler`` the
    runner's ``web.Server`` makes, behind a thin protocol that watches its bytes, and a
    middleware (added to ``app`` by ``start()``) marks when a request's handler runs.
    """

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        backlog: int = 128,
        shutdown_timeout: float = 0.5,
    ) -> None:
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise TypeError(f"max_connections must be an int, got {max_connections!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if isinstance(read_timeout, bool) or not isinstance(read_timeout, int | float):
            raise TypeError(f"read_timeout must be a number, got {read_timeout!r}")
        if not (0 < read_timeout < math.inf):
            raise ValueError(f"read_timeout must be > 0 and finite, got {read_timeout}")
        self.app = app
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.read_timeout = float(read_timeout)
        self.backlog = backlog
        self.shutdown_timeout = shutdown_timeout
        #: accepted, evicted (idle, to make room), refused (all busy), timed_out (no head).
        self.stats: dict[str, int] = dict.fromkeys(
            ("accepted", "evicted", "refused", "timed_out"), 0
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._open: set[_Connection] = set()
        #: Evictable connections, oldest first.
        self._idle: OrderedDict[_Connection, None] = OrderedDict()
        self._by_handler: dict[web.RequestHandler, _Connection] = {}

    @property
    def connections(self) -> int:
        """Connections open (counted against the cap)."""
        return len(self._open)

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("already serving")
        self._loop = asyncio.get_running_loop()
        self.app.middlewares.insert(0, self._middleware)  # outermost: sees every request
        # aiohttp's own idle timer no later than ours (aiohttp >= 3.10 also arms it at
        # connect), and its lingering read of an unread body no longer either.
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self.shutdown_timeout,
            keepalive_timeout=self.read_timeout,
            lingering_time=self.read_timeout,
        )
        await runner.setup()
        try:
            self._server = await self._loop.create_server(
                lambda: _Connection(self), self.host, self.port, backlog=self.backlog
            )
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]
        _accept_errors.install()

    async def close(self) -> None:
        """Stop accepting, let running handlers finish (``shutdown_timeout``), close all."""
        server, self._server = self._server, None
        runner, self._runner = self._runner, None
        if server is None or runner is None:
            return
        try:
            server.close()
            await runner.cleanup()
            for conn in list(self._open):
                conn.abort()
            with anyio.move_on_after(self.shutdown_timeout):
                await server.wait_closed()
        finally:
            _accept_errors.uninstall()

    # Bookkeeping, called by the connections and the middleware.

    def _admit(self, conn: _Connection) -> bool:
        if len(self._open) >= self.max_connections:
            if not self._idle:
                self.stats["refused"] += 1
                return False
            oldest, _ = self._idle.popitem(last=False)
            self.stats["evicted"] += 1
            oldest.abort()
        self.stats["accepted"] += 1
        self._open.add(conn)
        return True

    def _forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        self._idle.pop(conn, None)
        if conn.handler is not None:
            self._by_handler.pop(conn.handler, None)

    def _handler_for(self, conn: _Connection) -> web.RequestHandler:
        runner = self._runner
        assert runner is not None and runner.server is not None
        handler = runner.server()  # the protocol object aiohttp would have used
        self._by_handler[handler] = conn
        return handler

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        conn = self._by_handler.get(request.protocol)
        if conn is not None:
            conn.handler_started()
        try:
            return await handler(request)
        finally:
            if conn is not None:
                conn.handler_finished(request.content.is_eof())


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's ``RequestHandler`` behind a head deadline."""

    __slots__ = ("_guard", "_state", "_tail", "_timer", "handler", "transport")

    def __init__(self, guard: GuardedServer) -> None:
        self._guard = guard
        self._state = _WAITING
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None
        self.handler: web.RequestHandler | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        guard = self._guard
        if not guard._admit(self):
            transport.abort()
            return
        guard._idle[self] = None
        self._arm()
        self.handler = guard._handler_for(self)
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._state == _WAITING:
            seen = self._tail + data
            if _HEAD_END in seen:
                self._head_arrived()
            else:
                self._tail = seen[-3:]
        if self.handler is not None:
            self.handler.data_received(data)

    def eof_received(self) -> None:
        if self.handler is not None:
            self.handler.eof_received()  # aiohttp's returns None: the transport closes

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._guard._forget(self)
        if self.handler is not None:
            self.handler.connection_lost(exc)

    # State changes.

    def _head_arrived(self) -> None:
        self._state = _HEAD
        self._tail = b""
        self._guard._idle.pop(self, None)
        # Its handler starts within a loop iteration or two; the deadline stays as a bound
        # on a head aiohttp does not turn into a request.
        self._arm()

    def handler_started(self) -> None:
        self._state = _BUSY
        self._tail = b""
        self._guard._idle.pop(self, None)
        self._disarm()

    def handler_finished(self, body_read: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        # Bytes after an unread body are not a request head: do not scan them.
        self._state = _WAITING if body_read else _DRAINING
        self._tail = b""
        idle = self._guard._idle
        idle[self] = None
        idle.move_to_end(self)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        loop = self._guard._loop
        assert loop is not None
        self._timer = loop.call_later(self._guard.read_timeout, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._state != _BUSY:
            self._guard.stats["timed_out"] += 1
            self.abort()

    def abort(self) -> None:
        """Close at once (RST): the descriptor is freed without waiting for the peer."""
        self._disarm()
        self._guard._forget(self)
        if self.transport is not None:
            self.transport.abort()


class _AcceptErrorFilter(logging.Filter):
    """Lets asyncio's accept-error record through at most once per interval."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval
        self.users = 0
        self.dropped = 0
        self._next = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(_ACCEPT_ERROR):
            return True
        now = time.monotonic()
        if now < self._next:
            self.dropped += 1
            return False
        self._next = now + self.interval
        if self.dropped and not record.args:
            record.msg = f"{record.msg}\n({self.dropped} more dropped in the last interval)"
        self.dropped = 0
        return True

    def install(self) -> None:
        if self.users == 0:
            logging.getLogger("asyncio").addFilter(self)
        self.users += 1

    def uninstall(self) -> None:
        self.users = max(0, self.users - 1)
        if self.users == 0:
            logging.getLogger("asyncio").removeFilter(self)


_accept_errors = _AcceptErrorFilter(ACCEPT_ERROR_INTERVAL)
