"""What the Redis components share: key names under one hash tag, the server's clock in
a script, and how Redis errors surface."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Iterator
from typing import Any

try:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("suno_mp4.redis needs redis-py: pip install 'suno-mp4[redis]'") from exc

from .._errors import InvalidRequestError, TransportError

__all__ = [
    "DEFAULT_NAMESPACE",
    "NOW",
    "Redis",
    "RedisError",
    "default_worker_id",
    "key_prefix",
    "store_errors",
    "text",
]

DEFAULT_NAMESPACE = "suno-mp4"


def key_prefix(namespace: str) -> str:
    if not namespace or any(c in namespace for c in "{}"):
        raise InvalidRequestError(f"namespace must be non-empty, without braces: {namespace!r}")
    return "{" + namespace + "}"


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# The server's clock in milliseconds, inside a script.
NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""


@contextlib.contextmanager
def store_errors(what: str) -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        # sent=False: a store write comes before the request it records.
        raise TransportError(f"job store in Redis: {what} failed: {exc}", sent=False) from exc


def default_worker_id() -> str:
    """``host-pid-random``: unique per process."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
