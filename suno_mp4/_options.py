"""The checks of ``Client(...)``'s options: every wrong type or value is an
:class:`InvalidRequestError` before anything starts."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from urllib.parse import urlsplit

from ._arguments import check_number, check_type, check_url_argument
from ._callbacks import CallbackListener, CallbackRelay
from ._config import PollPolicy, RateLimit, RetryPolicy
from ._errors import APIError, InvalidRequestError
from ._limiter import SharedRateLimit
from ._store import JobStore

__all__ = ["DEFAULT_BASE_URL", "Settings", "check_client_options"]

#: The seed provider's documented server.
DEFAULT_BASE_URL = "https://api.apikley.ru"


class Settings:
    """What the runtime is built from (the client's validated configuration)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        retry: RetryPolicy,
        timeout: float,
        codes: Mapping[int, type[APIError]],
        rng: random.Random,
        max_connections: int,
        max_response_bytes: int,
        fallback_interval: float,
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.retry = retry
        self.timeout = timeout
        self.codes = codes
        self.rng = rng
        self.max_connections = max_connections
        self.max_response_bytes = max_response_bytes
        self.fallback_interval = fallback_interval


def check_client_options(
    *,
    api_key: object,
    base_url: object,
    callbacks: object,
    poll: object,
    retry: object,
    rate_limit: object,
    store: object,
    relay: object,
    callback_url: object,
    on_claim: object,
    timeout: object,
    max_connections: object,
    max_concurrent_submits: object,
    codes: object,
    seed: object,
    max_response_bytes: object,
) -> Settings:
    """Check them all; returns what the runtime is built from (the API key and base URL
    from the environment when not given)."""
    key = api_key if api_key is not None else os.environ.get("APIKLEY_API_KEY")
    check_type(key, "api_key", str)
    if not isinstance(key, str) or not key.strip():
        raise InvalidRequestError(
            "no API key: pass Client(api_key=...) or set the APIKLEY_API_KEY environment variable"
        )
    if any(c.isspace() or not c.isprintable() for c in key.strip()):
        # (Never echoed: it is the key.) aiohttp would refuse it as a header, after the
        # submit's write-ahead record was made.
        raise InvalidRequestError("the API key holds spaces or control characters")
    url = base_url or os.environ.get("SUNO_MP4_BASE_URL") or DEFAULT_BASE_URL
    check_url_argument(url, "base_url")
    assert isinstance(url, str)
    parts = urlsplit(url)
    if parts.username is not None or parts.query or parts.fragment or url.endswith(("?", "#")):
        # Paths are appended to it: a query or a fragment would swallow them, and a user
        # name or password would be a second Authorization beside the key.
        raise InvalidRequestError(
            "base_url must be scheme://host[:port][/path], without a user, query or fragment"
        )
    check_url_argument(callback_url, "callback_url")
    check_number(timeout, "timeout", minimum=0, exclusive=True, finite=True)
    check_number(max_connections, "max_connections", minimum=1, integer=True)
    check_number(max_concurrent_submits, "max_concurrent_submits", minimum=1, integer=True)
    check_number(max_response_bytes, "max_response_bytes", minimum=1024, integer=True)
    for value, name, kind in (
        (callbacks, "callbacks", CallbackListener),
        (poll, "poll", PollPolicy),
        (retry, "retry", RetryPolicy),
        (rate_limit, "rate_limit", (RateLimit, SharedRateLimit)),
        (store, "store", JobStore),
        (relay, "relay", CallbackRelay),
        (codes, "codes", Mapping),
        (seed, "seed", int),
    ):
        check_type(value, name, kind)
    if on_claim is not None and not callable(on_claim):
        raise InvalidRequestError("on_claim must be a function of the claimed job")
    retry_policy = retry if isinstance(retry, RetryPolicy) else RetryPolicy()
    poll_policy = poll if isinstance(poll, PollPolicy) else PollPolicy()
    return Settings(
        base_url=url.rstrip("/"),
        api_key=key.strip(),
        retry=retry_policy,
        timeout=float(timeout),  # type: ignore[arg-type]
        codes=codes,  # type: ignore[arg-type]
        rng=random.Random(seed),  # type: ignore[arg-type]
        max_connections=max_connections,  # type: ignore[arg-type]
        max_response_bytes=max_response_bytes,  # type: ignore[arg-type]
        fallback_interval=poll_policy.fallback_interval,
    )
