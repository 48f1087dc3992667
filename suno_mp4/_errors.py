"""The exception hierarchy, the API-code tables, and the one place aiohttp errors are translated."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType

import aiohttp

from ._untrusted import printable, redact, short

__all__ = [
    "APIError",
    "AsyncioRequiredError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConflictError",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "JobTimeoutError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "SubmissionInDoubtError",
    "SunoMp4Error",
    "TransportError",
    "ValidationError",
    "VideoExpiredError",
    "VideoGenerationError",
]


#: Longest error message: a hostile answer must not make a 5 MB log line.
MAX_MESSAGE_CHARS = 2000


class SunoMp4Error(Exception):
    """Base class of every error this SDK raises on purpose.

    Its message never holds a registered secret (the API key, a callback secret: a hostile
    server may echo them) nor control characters (server text reaches terminals and logs).
    """

    def __init__(self, *args: object) -> None:
        super().__init__(
            *(printable(redact(a), MAX_MESSAGE_CHARS) if isinstance(a, str) else a for a in args)
        )


# Usage errors, raised before any request is sent...


class InvalidRequestError(SunoMp4Error, ValueError):
    """An argument is invalid; nothing was sent to the API."""


class AsyncioRequiredError(SunoMp4Error, RuntimeError):
    """The client was used outside asyncio (e.g. under anyio's trio backend): the SDK runs on
    aiohttp, which is asyncio only."""


class ClientClosedError(SunoMp4Error, RuntimeError):
    """The client is not running: used outside ``async with``, or after it closed."""

    def __init__(self, message: str, *, sent: bool | None = None) -> None:
        #: ``False`` when the request it stopped had certainly not been sent.
        self.sent = sent
        super().__init__(message)


# Answers of the API...


class APIError(SunoMp4Error):
    """The API answered with a non-success ``code`` in its JSON envelope (or a bare HTTP error)."""

    #: Whether the request may be re-sent as it is (it certainly did nothing the first time).
    retryable = False
    #: False for an HTTP error page without the API's JSON envelope (a proxy's, say): then
    #: not the API's own word on the task.
    enveloped = True

    def __init__(
        self,
        code: int,
        msg: str,
        *,
        endpoint: str | None = None,
        task_id: str | None = None,
        http_status: int | None = None,
        hint: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.code = code
        #: The provider's id of the request, when its answer carried one.
        self.request_id = request_id
        #: How many times the request was sent (set once the retries are over).
        self.attempts: int | None = None
        self.msg = printable(redact(msg), MAX_MESSAGE_CHARS)
        self.endpoint = endpoint
        self.task_id = task_id
        self.http_status = http_status
        self.hint = hint
        super().__init__(self.describe())

    def describe(self) -> str:
        """The message: code, endpoint, task, the provider's text, then what to do."""
        where = f" from {short(self.endpoint, 200)}" if self.endpoint else ""
        task = f" (task {short(self.task_id)})" if self.task_id else ""
        facts = [f"HTTP {self.http_status}"] if self.http_status else []
        if self.attempts:
            facts.append(f"{self.attempts} attempt{'s' if self.attempts > 1 else ''}")
        if self.request_id:
            facts.append(f"request id {self.request_id}")
        text = f"API error {self.code}{where}{task}: {self.msg or 'no message'}"
        text += f" [{', '.join(facts)}]" if facts else ""
        return printable(redact(f"{text}; {self.hint}" if self.hint else text), MAX_MESSAGE_CHARS)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_api_error, (type(self), self.code, self.msg, self.__dict__))


def _rebuild_api_error(
    cls: type[APIError], code: int, msg: str, state: dict[str, object]
) -> APIError:
    err = cls.__new__(cls)
    SunoMp4Error.__init__(err)
    err.__dict__.update(state)
    err.args = (err.describe(),)
    return err


def _rebuild_transport_error(state: dict[str, object]) -> TransportError:
    err = TransportError.__new__(TransportError)
    err.__dict__.update(state)
    err.args = (err.describe(),)
    return err


class BadRequestError(APIError):
    """400: the request body was not valid JSON."""


class AuthenticationError(APIError):
    """401: the API key is missing or was rejected."""


class InsufficientCreditsError(APIError):
    """402: the account has not enough credits for this operation."""


class NotFoundError(APIError):
    """404: the task, track or endpoint does not exist."""


class ConflictError(APIError):
    """409: the record already exists."""


class ValidationError(APIError):
    """422: the API rejected the parameters."""


class RateLimitError(APIError):
    """429 (or the provider's equivalent): too many requests; see ``retry_after``."""

    retryable = True

    def __init__(
        self, code: int, msg: str, *, retry_after: float | None = None, **kw: object
    ) -> None:
        self.retry_after = retry_after
        super().__init__(code, msg, **kw)  # type: ignore[arg-type]


class ServiceUnavailableError(APIError):
    """455: the service is under maintenance."""

    retryable = True


class ServerError(APIError):
    """500 and other 5xx: the server failed (a proxy's bare HTTP 5xx lands here too)."""


# The outcome of a video task...


class VideoGenerationError(SunoMp4Error):
    """The video task ended in a failure status."""

    def __init__(
        self,
        task_id: str,
        status: str,  # a TaskStatus (a str enum)
        error_code: int | None = None,
        error_message: str | None = None,
    ) -> None:
        self.task_id = task_id
        self.status = status
        self.error_code = error_code
        self.error_message = error_message
        detail = f": {error_message}" if error_message else ""
        code = f" (code {error_code})" if error_code is not None else ""
        super().__init__(f"video task {short(task_id)} failed with {short(status)}{code}{detail}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.task_id, self.status, self.error_code, self.error_message))


class JobTimeoutError(SunoMp4Error, TimeoutError):
    """Waiting for a job took longer than allowed. The remote task keeps running:
    re-attach later with ``client.job(task_id)``."""

    def __init__(self, task_id: str, waited: float) -> None:
        self.task_id = task_id
        self.waited = waited
        super().__init__(
            f"video task {short(task_id)} not finished after {waited:.1f} s; it keeps running "
            f"on the server: re-attach with client.job({short(task_id)!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.task_id, self.waited))


class SubmissionInDoubtError(SunoMp4Error):
    """A submit under this key was on the wire when its process died (or its answer was
    lost): the API may or may not have taken — and billed — it. It is never re-sent by
    itself: check, then delete the record (``store.delete(key)``) or give the request another
    ``idempotency_key`` to submit it again deliberately."""

    def __init__(self, key: str, message: str | None = None) -> None:
        self.key = key
        super().__init__(
            message
            or f"the submission under key {short(key)!r} is in doubt: it may have been "
            "submitted (and billed), and its answer never came (a crash, a cut connection, "
            "an answer that cannot be read); it is not re-sent automatically"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.key, str(self)))


class VideoExpiredError(SunoMp4Error):
    """The video is past its 14-day retention (or its URL answers 404/410)."""


class VideoTooLargeError(SunoMp4Error):
    """The video is larger than a download takes (``MAX_VIDEO_BYTES``, 4 GiB: a music
    video is tens of MB): a broken or hostile server. Not retried; the partial file is
    deleted."""


class JobStoreError(SunoMp4Error):
    """The job store could not be read or written (a corrupt, locked or read-only file, a
    missing folder...). Raised before a submit goes out, nothing is sent."""


# Network errors...


class TransportError(SunoMp4Error):
    """The connection to the server failed (after the retries the policy allows)."""

    def __init__(self, message: str, *, endpoint: str | None = None, sent: bool = True) -> None:
        self.endpoint = endpoint
        #: False when the request certainly never reached the server (safe to re-send).
        self.sent = sent
        #: How many times the request was sent (set once the retries are over).
        self.attempts: int | None = None
        self.message = message
        super().__init__(message)

    def describe(self) -> str:
        tries = f" [{self.attempts} attempts]" if self.attempts and self.attempts > 1 else ""
        return printable(redact(self.message + tries), MAX_MESSAGE_CHARS)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_transport_error, (self.__dict__,))


# Code tables: one per provider profile. The seed's (Apikley) table is the default.

APIKLEY_CODES: Mapping[int, type[APIError]] = MappingProxyType(
    {
        400: BadRequestError,
        401: AuthenticationError,
        402: InsufficientCreditsError,
        404: NotFoundError,
        409: ConflictError,
        422: ValidationError,
        429: RateLimitError,
        455: ServiceUnavailableError,
        500: ServerError,
    }
)

#: Another reseller of the same contract: 405 call limit, 413 prompt too long,
#: 429 insufficient credits, 430 call frequency too high.
ALT_RESELLER_CODES: Mapping[int, type[APIError]] = MappingProxyType(
    {
        400: BadRequestError,
        401: AuthenticationError,
        404: NotFoundError,
        405: RateLimitError,
        409: ConflictError,
        413: ValidationError,
        422: ValidationError,
        429: InsufficientCreditsError,
        430: RateLimitError,
        455: ServiceUnavailableError,
        500: ServerError,
    }
)

_HINTS: Mapping[type[APIError], str] = MappingProxyType(
    {
        AuthenticationError: "check the API key (APIKLEY_API_KEY)",
        InsufficientCreditsError: "top up the account's credits",
        RateLimitError: "slow down or configure Client(rate_limit=RateLimit(...))",
        ServiceUnavailableError: "the service is under maintenance; try again later",
    }
)


def error_for_code(
    code: int,
    msg: str,
    *,
    table: Mapping[int, type[APIError]] = APIKLEY_CODES,
    endpoint: str | None = None,
    task_id: str | None = None,
    http_status: int | None = None,
    retry_after: float | None = None,
    request_id: str | None = None,
) -> APIError:
    """Build the exception for an API answer ``code`` using a provider's code table."""
    cls = table.get(code)
    if cls is None:
        cls = ServerError if code >= 500 else APIError
    hint = _HINTS.get(cls)
    if cls is RateLimitError:
        return RateLimitError(
            code,
            msg,
            retry_after=retry_after,
            endpoint=endpoint,
            task_id=task_id,
            http_status=http_status,
            hint=hint,
            request_id=request_id,
        )
    return cls(
        code,
        msg,
        endpoint=endpoint,
        task_id=task_id,
        http_status=http_status,
        hint=hint,
        request_id=request_id,
    )


#: What :func:`transport_error` translates.
AIOHTTP_FAILURES = (TimeoutError, aiohttp.ClientError, UnicodeError)


#: Set on an exception (a cancellation, mostly) that stopped a submit while none of its
#: sends was on the wire and every one of them had been refused for certain (a submit is
#: retried only then): nothing was taken, so its key is recorded rejected, not in doubt.
_UNSENT = "_suno_mp4_unsent"


def mark_unsent(exc: BaseException) -> None:
    setattr(exc, _UNSENT, True)


def is_unsent(exc: BaseException) -> bool:
    return getattr(exc, _UNSENT, False) is True


def transport_error(exc: BaseException, endpoint: str) -> TransportError:
    """aiohttp's exception (one of :data:`AIOHTTP_FAILURES`) as a :class:`TransportError`."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        # The TCP connection was never made: the server certainly did not see it.
        return TransportError(
            f"cannot connect to {endpoint}: {exc.os_error}", endpoint=endpoint, sent=False
        )
    if isinstance(exc, UnicodeError):
        # The resolver could not encode the host name (an empty or 64-letter label, say):
        # nothing was sent.
        return TransportError(
            f"cannot connect to {endpoint}: its host name is not valid",
            endpoint=endpoint,
            sent=False,
        )
    what = "timed out" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
    return TransportError(f"request to {endpoint} failed: {what}", endpoint=endpoint)


class map_exceptions:
    """``with map_exceptions(endpoint):`` translates aiohttp's exceptions into
    :class:`TransportError` (:func:`transport_error`). A class, not ``@contextmanager``: a
    generator costs a few microseconds more each time. (The API's requests catch them
    without it: that is one object less a request.)"""

    __slots__ = ("endpoint",)

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        if isinstance(exc, AIOHTTP_FAILURES):
            raise transport_error(exc, self.endpoint) from exc
