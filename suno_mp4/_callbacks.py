"""The callback listener: an aiohttp endpoint that receives the API's result POSTs and hands
them to the client's registry (on its own port, or mounted on the user's app)."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import anyio
import attrs
import cattrs
from aiohttp import web
from anyio.abc import TaskStatus
from multidict import CIMultiDict, CIMultiDictProxy

from ._arguments import check_number
from ._convert import converter
from ._errors import InvalidRequestError, SunoMp4Error
from ._models import CallbackPayload
from ._serving import DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT, GuardedServer
from ._untrusted import (
    UntrustedDataError,
    check_id,
    check_url,
    loads,
    redact,
    register_secret,
    short,
)

__all__ = [
    "CallbackAnswer",
    "CallbackError",
    "CallbackListener",
    "CallbackRelay",
    "CallbackSink",
    "parse_callback_body",
    "sign",
    "verify_signature",
]

logger = logging.getLogger("suno_mp4.listener")


class CallbackSink(Protocol):
    """Where callbacks go: the client's pending jobs (its job registry). What a relay or
    a listener needs of a client, and nothing more. (A sink whose ``closed`` attribute is
    not ``None``, a closing client's, takes no more: the listener relays the callback or
    answers 503, so that the sender tries again.)"""

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
    code = data.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        return None
    url = inner.get("video_url")
    if url is not None and not isinstance(url, str):
        return None
    if url and code in (0, 200):
        # Checked before the sender is told "received" (it would not send it again): a
        # success naming no usable URL is refused, and the job is left to its safety poll.
        try:
            check_url(url, what="video URL")
        except UntrustedDataError:
            return None
    elif url is not None:  # a failure's URL: never read, so never kept or passed on
        data = {**data, "data": {**inner, "video_url": None}}
    msg = data.get("msg")
    if msg is None:
        data = {**data, "msg": ""}
    elif not isinstance(msg, str):
        return None
    try:
        return converter.structure(data, CallbackPayload)
    except (cattrs.BaseValidationError, TypeError, ValueError):
        return None


class CallbackError(SunoMp4Error, ValueError):
    """A callback body that cannot be used; ``status`` is the HTTP answer to give (400 not
    JSON or nested too deeply, 422 the wrong shape)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@attrs.frozen
class CallbackAnswer:
    """What to answer the provider's callback request: ``status`` and a small JSON
    ``body``; ``payload`` is the callback when it was accepted (for your own logging)."""

    status: int
    message: str
    payload: CallbackPayload | None = None

    @property
    def body(self) -> bytes:
        return _answer_body(self.status == 200, self.message)


@functools.lru_cache(maxsize=64)
def _answer_body(ok: bool, message: str) -> bytes:
    # A handful of fixed messages: made once each, not for every callback.
    return json.dumps({"ok": ok, "message": message}).encode()


def parse_callback_body(
    body: bytes | bytearray | memoryview | str,
) -> tuple[CallbackPayload, dict[str, Any]]:
    """A callback's raw body as the typed payload (and the JSON object it came from);
    :class:`CallbackError` when it is not JSON within bounds or has the wrong shape."""
    try:
        data = loads(body, finite=True)
    except UntrustedDataError as exc:
        raise CallbackError(400, f"callback body is not usable JSON ({exc})") from None
    payload = parse_callback(data)
    if payload is None:
        raise CallbackError(422, "callback body has the wrong shape")
    return payload, data


def _relayed(payload: CallbackPayload) -> dict[str, Any]:
    """What a relay stores and publishes of a callback (kept for days): its trimmed payload
    (:meth:`CallbackPayload.trimmed`) in the callback's wire shape."""
    kept = payload.trimmed()
    inner: dict[str, Any] = {"task_id": kept.task_id}
    if kept.video_url is not None:
        inner["video_url"] = kept.video_url
    return {"code": kept.code, "msg": kept.msg, "data": inner}


def verify_signature(
    key: str | bytes,
    task_id: str,
    timestamp: str | None,
    signature: str | None,
    *,
    max_skew: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether ``X-Webhook-Signature`` is the upstream's signature of ``task_id`` and
    ``X-Webhook-Timestamp``, and the timestamp is within ``max_skew`` seconds of now (a
    missing header, ``None``, is ``False``)."""
    check_number(max_skew, "max_skew", minimum=0, finite=True)  # NaN: any age would pass
    # Whole seconds of the Unix epoch: ASCII digits only, and few of them (int() would take
    # "١٢", "+1" or a thousand digits, and a huge one cannot be compared with a float).
    if not isinstance(timestamp, str) or not _DIGITS.fullmatch(timestamp):
        return False
    if not isinstance(signature, str):  # a header that is missing, or raw bytes
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > max_skew:
        return False
    expected = sign(key, task_id, timestamp)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


#: A timestamp or a declared body length: ASCII digits only (``str.isdigit`` and ``int``
#: take "²" or "١٢"), at most 18 of them.
_DIGITS = re.compile(r"[0-9]{1,18}")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever the case of the mapping's keys (frameworks differ)."""
    value = headers.get(name)
    if value is None and not isinstance(headers, CIMultiDictProxy | CIMultiDict):
        # A plain mapping (another framework's headers): look at every key's case.
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of a header that may be repeated (a plain mapping holds one at most)."""
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        return headers.getall(name, [])
    getlist = getattr(headers, "getlist", None)  # Starlette's and Werkzeug's headers
    if callable(getlist):
        values = getlist(name)
        if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
            return values
    value = _header(headers, name)
    return [] if value is None else [value]


class _MaskSecrets(logging.Filter):
    """Masks every registered secret in a log record (an access log's request line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        for name in ("first_request_line", "request_line", "path"):
            value = record.__dict__.get(name)
            if isinstance(value, str):
                record.__dict__[name] = redact(value)
        return True


def _mask_secrets_in(log: logging.Logger) -> None:
    if not any(isinstance(f, _MaskSecrets) for f in log.filters):
        log.addFilter(_MaskSecrets())


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
        check_number(max_connections, "max_connections", minimum=1, integer=True)
        check_number(read_timeout, "read_timeout", minimum=0, exclusive=True, finite=True)
        # (A NaN or infinite skew would let a signed callback of any age through.)
        check_number(max_skew, "max_skew", minimum=0, finite=True)
        check_number(max_body, "max_body", minimum=1, integer=True)
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
        # Your server's access log would show the path, secret included: mask it there.
        _mask_secrets_in(logging.getLogger("aiohttp.access"))

    def use_own_route(self, public_url: str) -> None:
        """Your web framework (FastAPI, Starlette, Quart, Django...) serves the callback
        route: POST ``public_url`` + :attr:`route` (``{secret}`` is its one path parameter),
        and hand each request to :meth:`receive`, answering with what it returns. The
        client then starts no server of its own, and its ``callBackUrl`` carries the
        secret. Keep the secret out of your access log (``redact`` masks it in a string).
        """
        self.public_url = _public_url(public_url)
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

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp route: :meth:`receive` with the request's path, headers and body.

        What can be refused before reading the body (wrong secret, too large, compressed)
        is refused first; a body that does not arrive within ``read_timeout`` gets 408.
        """
        early = self.precheck(request.path, request.headers)
        if early is None:
            try:
                body = await self._read_body(request)
            except TimeoutError:
                slow = self._respond(self._answer(408, "callback body not received in time"))
                slow.force_close()  # the rest of the body is not worth waiting for
                return slow
            if body is None:
                early = self._answer(413, "callback body too large")
            else:
                early = await self._receive_body(request.headers, body)  # prechecked
        return self._respond(early)

    def _respond(self, answer: CallbackAnswer) -> web.Response:
        return web.Response(status=answer.status, body=answer.body, content_type="application/json")

    def precheck(self, path: str, headers: Mapping[str, str]) -> CallbackAnswer | None:
        """The refusals that need no body: the secret in ``path`` (the request's path, or
        the secret itself), a declared size over ``max_body``, a compressed body. ``None``
        when the body is worth reading."""
        token = path.rstrip("/").rsplit("/", 1)[-1]
        if not hmac.compare_digest(token.encode("utf-8", "replace"), self._secret.encode()):
            return self._answer(403, "unknown callback URL")
        length = _header(headers, "Content-Length")
        if length is not None:
            length = length.strip()
            if not _DIGITS.fullmatch(length):
                return self._answer(400, "callback Content-Length is not a number")
            if int(length) > self.max_body:
                return self._answer(413, "callback body too large")
        if any(
            coding.strip().lower() not in ("", "identity")
            for value in _header_values(headers, "Content-Encoding")
            for coding in value.split(",")
        ):
            # The provider sends plain JSON; a compressed body could expand a thousandfold.
            # (Every Content-Encoding header counts: aiohttp decodes by the last one.)
            return self._answer(415, "compressed callback bodies are not accepted")
        return None

    async def receive(
        self, path: str, headers: Mapping[str, str], body: bytes | bytearray | memoryview
    ) -> CallbackAnswer:
        """Verify one callback request and hand it to the client's pending jobs; return the
        HTTP answer to give (``.status``, ``.body`` as JSON bytes).

        For any web framework: pass the request's path (or just the secret from it), its
        headers and its raw body. The checks are the listener's own, in order: the secret
        (403), the size (413), no compression (415), JSON within bounds (400), the shape
        (422), the ``X-Webhook-*`` signature and its age when ``hmac_key`` is set (401).
        A callback for a job held by another process goes to the relay (503 if it cannot
        take it: the provider then retries). Nothing resolves on a refusal.
        """
        early = self.precheck(path, headers)
        if early is not None:
            return early
        return await self._receive_body(headers, body)

    async def _receive_body(
        self, headers: Mapping[str, str], body: bytes | bytearray | memoryview
    ) -> CallbackAnswer:
        """:meth:`receive` after :meth:`precheck` passed."""
        if len(body) > self.max_body:
            return self._answer(413, "callback body too large")
        try:
            payload, _ = parse_callback_body(body)
        except CallbackError as exc:
            return self._answer(exc.status, str(exc))
        if self._hmac_key is not None and not verify_signature(
            self._hmac_key,
            payload.task_id,
            _header(headers, "X-Webhook-Timestamp") or "",
            _header(headers, "X-Webhook-Signature") or "",
            max_skew=self.max_skew,
        ):
            return self._answer(401, "callback signature missing, invalid or stale")
        sink = self._sink
        relay = self._relay
        if sink is not None and getattr(sink, "closed", None) is not None:
            sink = None  # closing: its jobs end unresolved (and resumable); not "received"
        if sink is None and relay is None:
            return self._answer(503, "no client is running")
        if relay is not None and (sink is None or not sink.holds(payload.task_id)):
            # Another process may await it (or this one, a moment from now): the relay
            # stores it before we say "received", so the sender retries if it cannot.
            try:
                await relay.publish(payload.task_id, _relayed(payload))
            except Exception as exc:
                logger.warning(
                    "could not relay the callback for %s: %s", short(payload.task_id), exc
                )
                return self._answer(503, "could not record the callback; try again")
            return self._answer(200, "received", payload)
        assert sink is not None
        resolved = sink.deliver(payload)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "callback for %s (code %s): %s",
                short(payload.task_id),
                payload.code,
                "resolved its job" if resolved else "no pending job resolved",
            )
        return self._answer(200, "received", payload)

    def _answer(
        self, status: int, message: str, payload: CallbackPayload | None = None
    ) -> CallbackAnswer:
        self.answers[status] = self.answers.get(status, 0) + 1
        if status != 200:
            logger.info("callback refused with %d: %s", status, message)
        return CallbackAnswer(status, message, payload)

    async def _read_body(self, request: web.Request) -> bytes | None:
        """The whole body (it may arrive in several segments), or None past ``max_body``;
        ``TimeoutError`` if it has not all arrived within ``read_timeout``."""
        content = request.content
        body = bytearray()
        # All of it arrived with the head (the usual small callback): reading never waits,
        # so no deadline is set.
        arrived = content.is_eof()
        with contextlib.nullcontext() if arrived else anyio.fail_after(self.read_timeout):
            while len(body) <= self.max_body:
                chunk = await content.read(self.max_body + 1 - len(body))
                if not chunk:
                    return bytes(body)
                body += chunk
        return None
