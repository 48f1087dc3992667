"""The one request path: auth, the JSON envelope, error mapping, retries and the rate limiter."""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from json.encoder import encode_basestring_ascii as _quote_ascii
from typing import Any, Literal

import aiohttp
import anyio

from ._clock import loop_time
from ._config import RetryPolicy
from ._errors import (
    AIOHTTP_FAILURES,
    APIKLEY_CODES,
    APIError,
    ClientClosedError,
    RateLimitError,
    ServerError,
    TransportError,
    error_for_code,
    map_exceptions,
    mark_unsent,
    transport_error,
)
from ._limiter import PRIORITY_POLL, PRIORITY_SUBMIT, RequestLimiter
from ._untrusted import UntrustedDataError, decompress, loads, register_secret, short
from ._version import __version__

__all__ = ["Transport"]

logger = logging.getLogger("suno_mp4.transport")

#: Envelope codes that mean success (the seed documents 200; its schema example shows 0).
_SUCCESS_CODES = frozenset({0, 200})


def _lenient_code(value: object) -> int | None:
    """An envelope ``code`` written as text or as a float ("200", 200.0), as an int."""
    if type(value) is float and value.is_integer() and abs(value) < 1e6:
        return int(value)
    if type(value) is str and value.isascii() and value.isdigit() and len(value) <= 6:
        return int(value)
    return None


#: The API's answers are envelopes of a few hundred bytes: 1 MiB is generous, and bounds
#: what a hostile or broken server can make the client hold (after decompression).
MAX_RESPONSE_BYTES = 1024 * 1024

Kind = Literal["submit", "poll"]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: either a number of seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = when.timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, OverflowError):  # a zone offset of 20 digits, ...
            return None
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _request_id(headers: Mapping[str, str]) -> str | None:
    """The provider's id of the request, when its answer carries one (for support)."""
    for name in ("X-Request-Id", "Request-Id", "X-Trace-Id"):
        value = headers.get(name)
        if value:
            return short(value, 100)
    return None


class _HookFailed(Exception):
    """``before_send`` failed (the write-ahead record was not written): the request was not
    sent and must not be, so its error is raised as it is, never retried."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _with_attempts(exc: APIError | TransportError, attempts: int) -> Exception:
    """``exc`` saying how many times the request was sent."""
    exc.attempts = attempts
    exc.args = (exc.describe(),)
    return exc


def dumps(value: Any) -> str:
    """``json.dumps(value)``: the same text, written out for an object of strings (every
    submit's body), for less than half the encoder's cost; anything else goes to it."""
    if type(value) is dict:
        try:
            return (
                "{"
                + ", ".join([f"{_quote_ascii(k)}: {_quote_ascii(v)}" for k, v in value.items()])
                + "}"
            )
        except TypeError:  # a value (or key) that is not a string
            pass
    return json.dumps(value)


def api_headers(api_key: str) -> dict[str, str]:
    """The headers of every API request."""
    return {
        "Authorization": f"Bearer {api_key}",
        "Accept": "application/json",
        # Decompressed here, within the size cap (see _read_capped), not by aiohttp.
        "Accept-Encoding": "gzip, deflate",
        "User-Agent": f"suno-mp4/{__version__}",
    }


async def _read_chunks(resp: aiohttp.ClientResponse, encoding: str | None, limit: int) -> bytes:
    """A body of unknown length, or compressed: read in chunks, refused past ``limit``."""
    raw = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        raw += chunk
        if len(raw) > limit:
            raise UntrustedDataError(f"body larger than {limit} bytes")
    return decompress(bytes(raw), encoding, limit)


class Transport:
    """Sends every API request of one client. Nothing else in the SDK does HTTP to the API."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        files: aiohttp.ClientSession | None = None,
        base_url: str,
        api_key: str,
        retry: RetryPolicy,
        limiter: RequestLimiter,
        timeout: float,
        codes: Mapping[int, type[APIError]] = APIKLEY_CODES,
        rng: random.Random | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        register_secret(api_key)
        self._session = session
        #: Video downloads: a session without the API key (video URLs may be on another
        #: host); the API's session then carries ``api_headers`` as its defaults.
        self._files = files or session
        self._max_body = max_response_bytes
        self._base_url = base_url.rstrip("/")
        self._headers = api_headers(api_key)
        # Only when the API's session has no defaults of its own: aiohttp merges headers
        # given with each request into a new dict, a cost on every request.
        self._request_headers = None if files is not None else self._headers
        self.retry = retry
        self.limiter = limiter
        #: Seconds a request may take (a download: between two reads).
        self.timeout = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._codes = codes
        self._rng = rng or random.Random()
        #: The downloads under way, and whether ``abort_streams`` cut them (the client closed).
        self._streams: set[aiohttp.ClientResponse] = set()
        self._aborted = False
        #: Counters for benchmarks and tests: requests sent by kind.
        self.sent: dict[str, int] = {"submit": 0, "poll": 0}
        #: The running async library's own cancel scope class (the transport is made in
        #: the running loop): what ``anyio.CancelScope`` makes, after working out which
        #: library runs, a cost on every submit. Made directly, it behaves the same.
        self._scope_type = type(anyio.CancelScope())

    def __repr__(self) -> str:
        return f"<Transport {self._base_url}>"  # never the key

    async def call(
        self,
        method: str,
        path: str,
        *,
        kind: Kind,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        task_id: str | None = None,
        before_send: Callable[[], Awaitable[None] | None] | None = None,
        check: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Send one API request (with the retries its kind allows) and return the ``data``
        (passed through ``check`` first, if given: an error it raises is not retried).

        ``before_send`` is called once, just before the request first goes out (after the
        rate limiter let it through), and what it returns awaited unless it is ``None``:
        the write-ahead record of a submit (a store that never waits writes it at once).
        If it fails, nothing is sent, and its error is raised as it is (never retried).
        """
        retry = 0
        sends = 0
        throttled_since: float | None = None
        while True:
            try:
                permit = self.limiter.try_acquire() or await self.limiter.acquire(
                    PRIORITY_SUBMIT if kind == "submit" else PRIORITY_POLL
                )
            except BaseException as exc:
                if sends:  # stopped waiting to retry: every send so far was refused
                    mark_unsent(exc)
                raise
            try:
                if kind == "submit":
                    # Once a submit is recorded and on the wire it finishes, so its answer
                    # is recorded too: cancelling it half-way would turn a known job into
                    # one in doubt. Queued submits (waiting for a permit above) stop at
                    # once. The shield needs no deadline of its own: the request's timeout
                    # bounds the exchange, and the ledger bounds its write-ahead. (anyio's
                    # shield holds off anyio cancel scopes only: a native asyncio
                    # ``task.cancel()`` still cuts the exchange; the record then says
                    # unknown, in doubt and never re-sent.)
                    with self._scope_type(shield=True):
                        if before_send is not None:
                            hook, before_send = before_send, None
                            try:
                                writing = hook()
                                if writing is not None:
                                    await writing
                            except Exception as exc:
                                # Never retried: a retry would go out with no record.
                                raise _HookFailed(exc) from None
                        sends += 1
                        data = await self._send_once(
                            method, path, json_body, params, task_id, kind, sends
                        )
                else:
                    sends += 1
                    data = await self._send_once(
                        method, path, json_body, params, task_id, kind, sends
                    )
            except _HookFailed as failed:
                permit.release(ok=False)
                error = failed.error
                raise error from error.__cause__
            except RateLimitError as exc:
                permit.release(ok=False)
                now = loop_time()
                throttled_since = now if throttled_since is None else throttled_since
                waited = now - throttled_since
                too_long = (
                    exc.retry_after is not None and exc.retry_after > self.retry.max_retry_after
                )
                if too_long or waited > self.retry.max_throttle_wait:
                    if too_long:
                        # Still a pause for the whole client (as long as we would wait), so
                        # that the other requests do not all go out into the same refusal.
                        self.limiter.throttle(permit, self.retry.max_retry_after, 0.0)
                    raise _with_attempts(exc, sends) from None
                # The pause applies client-wide; this request then queues in the limiter.
                backoff = max(self.retry.initial_backoff, self.retry.backoff(retry, self._rng))
                logger.warning(
                    "%s %s (task %s) rate limited (%s, attempt %d): waiting %.2f s",
                    method,
                    path,
                    short(task_id),
                    exc.code,
                    sends,
                    exc.retry_after if exc.retry_after is not None else backoff,
                )
                self.limiter.throttle(permit, exc.retry_after, backoff)
                continue
            except (APIError, TransportError) as exc:
                permit.release(ok=False)
                delay = self._retry_delay(exc, kind, retry)
                if delay is None:
                    raise _with_attempts(exc, sends) from None
                retry += 1
                logger.warning(
                    "retrying %s %s (task %s) in %.2f s, attempt %d failed: %s",
                    method,
                    path,
                    short(task_id),
                    delay,
                    sends,
                    exc,
                )
                try:
                    await anyio.sleep(delay)
                except BaseException as stopped:
                    mark_unsent(stopped)  # waiting to retry: every send so far was refused
                    raise
                continue
            except BaseException:
                permit.release(ok=False)
                raise
            permit.release()
            return data if check is None else check(data)

    def _retry_delay(self, exc: APIError | TransportError, kind: Kind, retry: int) -> float | None:
        """Seconds to wait before re-sending, or ``None`` if this failure must surface."""
        if retry + 1 >= self.retry.attempts:
            return None
        backoff = self.retry.backoff(retry, self._rng)
        if isinstance(exc, APIError) and exc.retryable:  # 455 maintenance
            return backoff
        if kind == "submit":
            # Only where the server certainly did not take the job: never bill twice.
            if isinstance(exc, TransportError) and not exc.sent:
                return backoff
            return None
        if isinstance(exc, TransportError | ServerError):
            return backoff
        return None

    def _send_once(
        self,
        method: str,
        path: str,
        json_body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        task_id: str | None,
        kind: Kind,
        attempt: int,
    ) -> Awaitable[Any]:
        """The request once (an awaitable: no coroutine of its own on the hot path)."""
        url = self._base_url + path
        self.sent[kind] += 1
        exchange = self._exchange(method, path, url, json_body, params, task_id)
        if not logger.isEnabledFor(logging.DEBUG):  # the hot path: not a wasted call
            return exchange
        return self._logged(exchange, method, path, task_id, attempt)

    async def _logged(
        self, exchange: Awaitable[Any], method: str, path: str, task_id: str | None, attempt: int
    ) -> Any:
        """``exchange`` awaited, with a debug line saying how it went."""
        started = loop_time()
        status: object = "no answer"
        try:
            data = await exchange
            status = 200
            return data
        except APIError as exc:
            status = exc.http_status or exc.code
            raise
        finally:
            logger.debug(
                "%s %s (task %s) -> %s in %.0f ms, attempt %d",
                method,
                path,
                short(task_id),
                status,
                (loop_time() - started) * 1000,
                attempt,
            )

    async def _exchange(
        self,
        method: str,
        path: str,
        url: str,
        json_body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        task_id: str | None,
    ) -> Any:
        if self._session.closed:  # closed while this waited (the limiter, a backoff, a store)
            raise ClientClosedError("the Client closed before this request was sent", sent=False)
        try:
            # Awaited, not ``async with``: three coroutines fewer a request. A body read to
            # its end has given its connection back (aiohttp closes the response at EOF);
            # one that was not is released here, its connection closed if it was unread.
            resp = await self._session.request(
                method,
                url,
                json=json_body,
                params=params,
                headers=self._request_headers,
                timeout=self._timeout,
                allow_redirects=False,
                auto_decompress=False,
            )
            status = resp.status
            headers = resp.headers
            try:
                body = await self._read_capped(resp)
            except UntrustedDataError as exc:
                raise ServerError(
                    500 if status < 500 else status,
                    f"unusable answer (HTTP {status}): {exc}",
                    endpoint=path,
                    task_id=task_id,
                    http_status=status,
                    request_id=_request_id(headers),
                ) from None
            finally:
                if not resp.closed:  # not read to its end: aiohttp did not release it
                    resp.release()
        except AIOHTTP_FAILURES as exc:  # what map_exceptions does, without its object
            raise transport_error(exc, path) from exc
        except RuntimeError as exc:  # aiohttp's "Connection closed.": the answer was cut
            raise TransportError(f"request to {path} failed: {exc}", endpoint=path) from exc
        return self._decode(path, status, body, headers, task_id)

    def _read_capped(self, resp: aiohttp.ClientResponse) -> Awaitable[bytes]:
        """The body, decompressed, refused past ``max_response_bytes`` (before and after
        decompression): an answer is never held whole before its size is known."""
        limit = self._max_body
        length = resp.content_length
        if length is not None and length > limit:
            raise UntrustedDataError(f"body of {length} bytes, more than {limit}")
        encoding = resp.headers.get("Content-Encoding")
        if length is not None and not encoding:
            # Its length is known and within the cap: one read of exactly that much (and no
            # coroutine of our own around it).
            return resp.read()
        return _read_chunks(resp, encoding, limit)

    def _decode(
        self,
        path: str,
        status: int,
        body: bytes,
        headers: Mapping[str, str],
        task_id: str | None,
    ) -> Any:
        """The envelope: the body's ``code`` is the truth, whatever the HTTP status says
        (a success in a 4xx is a success: read as a refusal, a taken submit would be sent
        again). The headers are read only for an error: a success needs none of them."""
        try:
            envelope = loads(body)
        except UntrustedDataError:
            envelope = None
        if isinstance(envelope, dict):
            code = envelope.get("code")
            if code in _SUCCESS_CODES and type(code) is int:
                return envelope.get("data")
            if type(code) is not int and (code := _lenient_code(code)) is not None:
                if code in _SUCCESS_CODES:  # "200" or 200.0: a success all the same
                    return envelope.get("data")
                envelope = {**envelope, "code": code}
        retry_after = parse_retry_after(headers.get("Retry-After"))
        request_id = _request_id(headers)
        if not isinstance(envelope, dict) or type(envelope.get("code")) is not int:
            if 300 <= status < 400:
                # Requests do not follow redirects (a redirected POST could be sent twice).
                # Whether the POST was handled first (a 303 says so) is unknown: a submit
                # stays in doubt (an APIError of no known code). Say where base_url points.
                where = short(headers.get("Location") or "nowhere", 200)
                raise APIError(
                    status,
                    f"the API answered HTTP {status}, a redirect to {where}: set base_url to "
                    "the address it points to",
                    endpoint=path,
                    task_id=task_id,
                    http_status=status,
                    request_id=request_id,
                )
            # A proxy's bare error page, or something that is no envelope at all: its
            # status means what HTTP says, not what the provider's code table says.
            snippet = body[:120].decode("utf-8", "replace").strip()
            code = status if status >= 400 else 500
            msg = f"HTTP {status} without a JSON envelope" + (f": {snippet!r}" if snippet else "")
            bare = error_for_code(
                code,
                msg,
                table=APIKLEY_CODES,
                endpoint=path,
                task_id=task_id,
                http_status=status,
                retry_after=retry_after,
                request_id=request_id,
            )
            bare.enveloped = False  # a proxy's page: not the API's word on the task
            raise bare
        code = envelope["code"]
        raw_msg = envelope.get("msg")
        raise error_for_code(
            code if code not in _SUCCESS_CODES else status,
            raw_msg if isinstance(raw_msg, str) else "",
            table=self._codes,
            endpoint=path,
            task_id=task_id,
            http_status=status,
            retry_after=retry_after,
            request_id=request_id,
        )

    @asynccontextmanager
    async def stream(self, url: str, *, offset: int = 0) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET a file (a video URL), from byte ``offset`` on with a Range request.

        No API key is sent: video URLs may live on another host than the API.
        """
        headers = {"User-Agent": self._headers["User-Agent"]}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout, sock_read=self.timeout
        )
        if self._aborted or self._files.closed:
            raise ClientClosedError("the Client closed before this download began", sent=False)
        with map_exceptions(url.split("?", 1)[0]):
            async with self._files.get(url, headers=headers, timeout=timeout) as resp:
                self._streams.add(resp)
                try:
                    yield resp
                finally:
                    self._streams.discard(resp)
        if self._aborted:  # a body cut short may look whole (one of unknown length)
            raise ClientClosedError("the Client closed during this download")

    def abort_streams(self) -> None:
        """Cut every download under way (the client is closing: closing its sessions does
        not end a response being read, which would then wait forever)."""
        self._aborted = True
        for resp in list(self._streams):
            resp.close()
