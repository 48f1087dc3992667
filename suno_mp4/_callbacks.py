"""The callback listener: an aiohttp endpoint that receives the API's result POSTs and hands
them to the client's registry (on its own port, or mounted on the user's app)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import anyio
import cattrs
from aiohttp import web
from anyio.abc import TaskStatus

from ._convert import converter
from ._errors import InvalidRequestError
from ._models import CallbackPayload
from ._serving import DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT, GuardedServer
from ._untrusted import UntrustedDataError, check_id, loads, register_secret, short

__all__ = ["CallbackListener", "CallbackRelay", "CallbackSink"]

logger = logging.getLogger("suno_mp4")


class CallbackSink(Protocol):
    """Where callbacks go: the client's pending jobs (its job registry). What a relay or
    a listener needs of a client, and nothing more."""

    def deliver(self, payload: CallbackPayload, *, buffer: bool = True) -> bool:
        """Hand ``payload`` to its job; returns whether it resolved one. A callback for a
        task not known (yet) is kept a while for it, unless ``buffer=False``."""
        ...

    def holds(self, task_id: str) -> bool:
        """Whether a job of ``task_id`` is pending here."""
        ...

    def pending(self) -> list[str]:
        """The task ids of the pending jobs."""
        ...


@runtime_checkable
class CallbackRelay(Protocol):
    """Carries callbacks between processes (``suno_mp4.redis.RedisCallbackRelay``).

    A listener that receives a callback for a job it does not hold calls ``publish`` (and
    answers the API only once that returned: the result is stored, not just broadcast);
    every client runs ``run`` to receive what others published, and calls ``watch`` for
    each job it registers, to pick up a result stored before it started listening.
    """

    async def publish(self, task_id: str, body: Mapping[str, Any]) -> None: ...

    async def run(self, sink: CallbackSink, *, task_status: TaskStatus[None] = ...) -> None: ...

    def watch(self, task_id: str) -> None: ...


def parse_callback(data: Any) -> CallbackPayload | None:
    """A callback body as a payload, or ``None`` if it has the wrong shape."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        return None
    inner = data["data"]
    try:
        check_id(inner.get("task_id"))
    except UntrustedDataError:
        return None
    if not isinstance(data.get("code"), int) or isinstance(data.get("code"), bool):
        return None
    url = inner.get("video_url")
    if url is not None and not isinstance(url, str):
        return None
    try:
        return converter.structure(data, CallbackPayload)
    except (cattrs.BaseValidationError, TypeError, ValueError):
        return None


def sign(key: str | bytes, task_id: str, timestamp: str) -> str:
    """The upstream's webhook signature: base64(HMAC-SHA256(key, task_id + "." + timestamp))."""
    raw = key.encode() if isinstance(key, str) else key
    digest = hmac.new(raw, f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _public_url(url: str | None) -> str | None:
    if url is None:
        return None
    if not url.startswith(("http://", "https://")):
        raise InvalidRequestError(f"public_url must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


class CallbackListener:
    """Receives the API's callbacks and resolves the matching jobs.

    Pass it as ``Client(callbacks=listener)``: it then serves on ``host:port`` for the
    client's lifetime (port 0 picks a free port), or, after ``listener.attach(app,
    public_url=...)``, as a route of your own ``aiohttp.web.Application`` with no second
    port. Every URL it hands out carries an unguessable secret; a POST without it resolves
    nothing. With ``hmac_key`` the upstream's ``X-Webhook-Signature`` must verify as well.

    Several processes behind one load balancer share one ``public_url`` and one ``secret``
    (at least 32 characters; by default each listener makes its own) and a relay
    (``Client(relay=...)``) that hands each callback to the process awaiting the job.
    A listener given ``relay=`` works without a client too (a web tier that only receives
    callbacks, started with ``start()`` or mounted with ``attach()``): it relays them all.

    On its own port it holds at most ``max_connections`` connections (default 256): a new
    one beyond that closes the oldest connection that has not sent a complete request head
    yet, or is refused if every connection is inside a request. A connection must send its
    request head within ``read_timeout`` seconds (default 10) of connecting or of its
    previous request, and a request its body within ``read_timeout`` of the head (else
    408); so idle or trickling connections (slowloris) cannot use up the process's file
    descriptors, which the client's own requests need. With ``attach()`` the cap and the
    head deadline are your server's to enforce (aiohttp has no cap, and no idle deadline
    shorter than its ``keepalive_timeout``: a proxy in front can do both); only the body
    deadline still applies.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        public_url: str | None = None,
        path: str = "/suno-mp4/callbacks",
        hmac_key: str | bytes | None = None,
        max_skew: float = 300.0,
        max_body: int = 64 * 1024,
        secret: str | None = None,
        relay: CallbackRelay | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise InvalidRequestError(f"max_connections must be an int, got {max_connections!r}")
        if max_connections < 1:
            raise InvalidRequestError(f"max_connections must be >= 1, got {max_connections}")
        if isinstance(read_timeout, bool) or not isinstance(read_timeout, int | float):
            raise InvalidRequestError(f"read_timeout must be a number, got {read_timeout!r}")
        if not 0 < read_timeout < math.inf:
            raise InvalidRequestError(f"read_timeout must be > 0 and finite, got {read_timeout}")
        if not path.startswith("/"):
            raise InvalidRequestError(f"path must start with '/', got {path!r}")
        if secret is not None and (
            not isinstance(secret, str) or not re.fullmatch(r"[A-Za-z0-9_-]{32,}", secret)
        ):
            raise InvalidRequestError(
                "secret must be at least 32 characters of A-Z a-z 0-9 _ - "
                "(secrets.token_urlsafe(32) makes one)"
            )
        self.host = host
        self.port = port
        self.public_url = _public_url(public_url)
        self.path = path.rstrip("/")
        self.max_skew = max_skew
        self.max_body = max_body
        self.max_connections = max_connections
        self.read_timeout = float(read_timeout)
        self._hmac_key = hmac_key
        self._secret = secret if secret is not None else secrets.token_urlsafe(32)
        register_secret(self._secret)  # never in an error message
        self._sink: CallbackSink | None = None
        self._own_relay = relay
        self._relay: CallbackRelay | None = relay
        self._runner: GuardedServer | None = None
        self._attached = False
        #: Answers given, by HTTP status (statistics, and tests).
        self.answers: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"<CallbackListener {self.path} on {self.public_url or f'{self.host}:{self.port}'}>"

    @property
    def route(self) -> str:
        return f"{self.path}/{{secret}}"

    @property
    def callback_url(self) -> str:
        """The URL handed to the API as ``callBackUrl`` (it contains the secret)."""
        base = self.public_url
        if base is None:
            if self._runner is None:
                raise RuntimeError("the listener is not serving yet: use it inside the client")
            host = f"[{self.host}]" if ":" in self.host else self.host
            base = f"http://{host}:{self.port}"
        return f"{base}{self.path}/{self._secret}"

    def attach(self, app: web.Application, *, public_url: str | None = None) -> None:
        """Mount the callback route on an existing (not yet started) aiohttp application.

        ``public_url`` is that application's externally reachable base URL; the route's path
        (``path`` + the secret) is appended to it.
        """
        if public_url is not None:
            self.public_url = _public_url(public_url)
        if self.public_url is None:
            raise InvalidRequestError("attach() needs public_url: the address the API can reach")
        app.router.add_post(self.route, self.handle)
        self._attached = True

    # Lifecycle, driven by the client.

    def bind(self, sink: CallbackSink, relay: CallbackRelay | None = None) -> None:
        if self._sink is not None and self._sink is not sink:
            raise RuntimeError("this CallbackListener already serves another client")
        self._sink = sink
        self._relay = relay or self._own_relay

    def unbind(self) -> None:
        self._sink = None
        self._relay = self._own_relay

    @property
    def attached(self) -> bool:
        return self._attached

    async def start(self) -> None:
        """Serve on our own port (not used in attach mode), with the connection cap and the
        request-head deadline."""
        app = web.Application(client_max_size=self.max_body)
        app.router.add_post(self.route, self.handle)
        server = GuardedServer(
            app,
            self.host,
            self.port,
            max_connections=self.max_connections,
            read_timeout=self.read_timeout,
        )
        await server.start()
        self.port = server.port
        self._runner = server

    async def stop(self) -> None:
        server, self._runner = self._runner, None
        if server is not None:
            await server.close()

    # The endpoint.

    def _answer(self, status: int, message: str) -> web.Response:
        self.answers[status] = self.answers.get(status, 0) + 1
        return web.json_response({"ok": status == 200, "message": message}, status=status)

    async def handle(self, request: web.Request) -> web.Response:
        """Check the secret, the size, the shape and (optionally) the signature, then resolve.

        Always answers quickly: the sender waits at most 15 s and may retry.
        """
        given = request.match_info.get("secret", "")
        if not hmac.compare_digest(given.encode(), self._secret.encode()):
            return self._answer(403, "unknown callback URL")
        if request.content_length is not None and request.content_length > self.max_body:
            return self._answer(413, "callback body too large")
        if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            # The provider sends plain JSON; a compressed body could expand a thousandfold.
            return self._answer(415, "compressed callback bodies are not accepted")
        try:
            body = await self._read_body(request)
        except TimeoutError:
            slow = self._answer(408, "callback body not received in time")
            slow.force_close()  # the rest of the body is not worth waiting for
            return slow
        if body is None:
            return self._answer(413, "callback body too large")
        try:
            data: Any = loads(body)
        except UntrustedDataError:
            return self._answer(400, "callback body is not JSON (or nested too deeply)")
        payload = parse_callback(data)
        if payload is None:
            return self._answer(422, "callback body has the wrong shape")
        if self._hmac_key is not None and not self._verify(request, payload.task_id):
            return self._answer(401, "callback signature missing, invalid or stale")
        sink = self._sink
        relay = self._relay
        if sink is None and relay is None:
            return self._answer(503, "no client is running")
        if relay is not None and (sink is None or not sink.holds(payload.task_id)):
            # Another process may await it (or this one, a moment from now): the relay
            # stores it before we say "received", so the sender retries if it cannot.
            try:
                await relay.publish(payload.task_id, data)
            except Exception as exc:
                logger.warning(
                    "could not relay the callback for %s: %s", short(payload.task_id), exc
                )
                return self._answer(503, "could not record the callback; try again")
            return self._answer(200, "received")
        assert sink is not None
        sink.deliver(payload)
        return self._answer(200, "received")

    async def _read_body(self, request: web.Request) -> bytes | None:
        """The whole body (it may arrive in several segments), or None past ``max_body``;
        ``TimeoutError`` if it has not all arrived within ``read_timeout``."""
        body = bytearray()
        with anyio.fail_after(self.read_timeout):
            while len(body) <= self.max_body:
                chunk = await request.content.read(self.max_body + 1 - len(body))
                if not chunk:
                    return bytes(body)
                body += chunk
        return None

    def _verify(self, request: web.Request, task_id: str) -> bool:
        assert self._hmac_key is not None
        timestamp = request.headers.get("X-Webhook-Timestamp", "")
        signature = request.headers.get("X-Webhook-Signature", "")
        try:
            when = int(timestamp)
        except ValueError:
            return False
        if abs(time.time() - when) > self.max_skew:
            return False
        expected = sign(self._hmac_key, task_id, timestamp)
        return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))
