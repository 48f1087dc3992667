"""The callback sender: POSTs a task's result to its callBackUrl, signed when asked, with
the retries its :class:`CallbackPolicy` allows, and only ever to this machine."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import time
from collections.abc import Callable, Iterable
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
import anyio
import attrs

__all__ = ["CallbackPolicy", "CallbackSender", "is_loopback_url", "sign"]

#: The API waits at most 15 seconds for the receiver's answer (CONTRACT.md).
TIMEOUT = 15.0
#: More attempts than this would only keep a test waiting.
MAX_ATTEMPTS = 100


def _attempts(_: object, __: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTEMPTS:
        raise ValueError(f"attempts is a whole number from 1 to {MAX_ATTEMPTS}, got {value!r}")


def _delays(_: object, __: object, value: tuple[float, ...]) -> None:
    if not value or not all(
        not isinstance(d, bool) and isinstance(d, int | float) and 0 <= d < math.inf for d in value
    ):
        raise ValueError(f"retry_delays are finite seconds >= 0, at least one; got {value!r}")


def _seconds(values: Iterable[float]) -> tuple[float, ...]:
    return tuple(values)


def _status(_: object, __: object, value: object) -> None:
    if value not in ("CALLBACK_EXCEPTION", None):
        raise ValueError(f"failure_status is 'CALLBACK_EXCEPTION' or None, got {value!r}")


@attrs.frozen
class CallbackPolicy:
    """How the sandbox delivers a task's callback, and what a delivery that failed does to
    the task. Upstream says only "3 consecutive retries", leaving open how many attempts
    there are and when the status changes: these are the sandbox's choices, made explicit.

    An attempt fails on a connection error, a timeout (15 s) or a non-2xx answer. When the
    last one has failed, a task that made its video turns from SUCCESS into
    ``failure_status`` (``CALLBACK_EXCEPTION``, whose video URL stays valid), or stays
    SUCCESS with ``failure_status=None``. So with the defaults a poll may see SUCCESS for
    the time the attempts take (about 0.7 s plus the receiver's answers) before the flag.
    A callBackUrl that is not on loopback is never attempted: its task gets the flag at
    once, before any poll can see SUCCESS. A failed render stays GENERATE_MP4_FAILED.
    """

    #: POSTs in all, the first included (upstream: "3 consecutive retries").
    attempts: int = attrs.field(default=3, validator=_attempts)
    #: Seconds before the 2nd, 3rd, ... attempt; the last one repeats. Short by default,
    #: so tests that exercise retries stay fast.
    retry_delays: tuple[float, ...] = attrs.field(
        default=(0.2, 0.5, 1.0), converter=_seconds, validator=_delays
    )
    #: The flag a made video gets once every attempt failed; None keeps it SUCCESS.
    failure_status: Literal["CALLBACK_EXCEPTION"] | None = attrs.field(
        default="CALLBACK_EXCEPTION", validator=_status
    )

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the second attempt)."""
        return self.retry_delays[min(retry, len(self.retry_delays) - 1)]


def is_loopback_url(url: str) -> bool:
    """Whether the URL's host is this machine (localhost, 127.0.0.0/8, ::1).

    The sandbox never sends a callback anywhere else: a fake server must not POST task
    results to a real third party, and the SDK's reserved ``.invalid`` address must stay
    unreached.
    """
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if host is None:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sign(key: bytes, task_id: str, timestamp: str) -> str:
    """base64(HMAC-SHA256(key, task_id + "." + timestamp)), as the upstream signs."""
    digest = hmac.new(key, f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class CallbackSender:
    """Delivers one callback body, retrying on connection errors and non-2xx answers.

    ``on_attempt(task_id, attempt, status, error)`` hears of every POST once it is over
    (attempts count from 1; ``status`` is the receiver's answer, or None with the
    ``error`` that stopped it), so the sandbox can count and log each one as it happens.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        policy: CallbackPolicy,
        on_attempt: Callable[[str, int, int | None, BaseException | None], None],
        hmac_key: bytes | None = None,
    ) -> None:
        self._session = session
        self._policy = policy
        self._hmac_key = hmac_key
        self._on_attempt = on_attempt

    async def deliver(self, url: str, body: dict[str, object], task_id: str) -> bool:
        """True once the receiver answered 2xx; False when every attempt failed or the
        host is not loopback (then no attempt is made at all)."""
        if not is_loopback_url(url):
            return False
        for attempt in range(self._policy.attempts):
            if attempt:
                await anyio.sleep(self._policy.delay(attempt - 1))
            try:
                async with self._session.post(
                    url,
                    json=body,
                    headers=self._headers(task_id),
                    timeout=aiohttp.ClientTimeout(total=TIMEOUT),
                    allow_redirects=False,
                ) as resp:
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                # Retried below, like a refused or failing receiver.
                self._on_attempt(task_id, attempt + 1, None, exc)
                continue
            self._on_attempt(task_id, attempt + 1, status, None)
            if 200 <= status < 300:
                return True
        return False

    def _headers(self, task_id: str) -> dict[str, str]:
        if self._hmac_key is None:
            return {}
        # Real time, not the sandbox clock: receivers compare it with their own clock.
        timestamp = str(int(time.time()))
        return {
            "X-Webhook-Timestamp": timestamp,
            "X-Webhook-Signature": sign(self._hmac_key, task_id, timestamp),
        }
