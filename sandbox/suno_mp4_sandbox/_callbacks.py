"""The callback sender: POSTs a task's result to its callBackUrl, signed when asked, with
a few quick retries, and only ever to this machine."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import aiohttp
import anyio

__all__ = ["CallbackSender", "is_loopback_url", "sign"]

#: Waits between attempts: short, so tests that exercise retries stay fast.
BACKOFF = (0.2, 0.5, 1.0)
#: The API waits at most 15 seconds for the receiver's answer (CONTRACT.md).
TIMEOUT = 15.0


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
        attempts: int,
        on_attempt: Callable[[str, int, int | None, BaseException | None], None],
        hmac_key: bytes | None = None,
        backoff: Sequence[float] = BACKOFF,
    ) -> None:
        self._session = session
        self._attempts = max(1, attempts)
        self._hmac_key = hmac_key
        self._backoff = backoff
        self._on_attempt = on_attempt

    async def deliver(self, url: str, body: dict[str, object], task_id: str) -> bool:
        """True once the receiver answered 2xx; False when every attempt failed or the
        host is not loopback (then no attempt is made at all)."""
        if not is_loopback_url(url):
            return False
        for attempt in range(self._attempts):
            if attempt:
                await anyio.sleep(self._backoff[min(attempt, len(self._backoff)) - 1])
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
