"""The one way the sandbox reads a JSON request body: every body is treated as hostile.

The body is read up to a size cap, must be UTF-8 JSON with finite numbers only (no
``NaN``, ``Infinity`` or ``1e400``), and may nest at most ``MAX_DEPTH`` containers deep.
The depth is checked after parsing, without recursion; a parser that gives up on deep
nesting first (``RecursionError``) is caught too. Every failure is a ``BodyError``
carrying the HTTP status a route may answer and a message that echoes nothing of the body.
"""

from __future__ import annotations

import json
import math

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

__all__ = ["MAX_BODY_BYTES", "MAX_DEPTH", "BodyError", "parse_json", "read_json"]

#: Far more than any real request of the API or the admin routes needs.
MAX_BODY_BYTES = 64 * 1024
#: Containers (objects, arrays) nested in one another, the outermost included.
MAX_DEPTH = 32


class BodyError(Exception):
    """The body cannot be used: ``status`` is 400 (not JSON, too deep) or 413 (too large)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_json(
    request: web.Request, *, max_bytes: int = MAX_BODY_BYTES, max_depth: int = MAX_DEPTH
) -> object:
    """Read and parse the request's body; ``BodyError`` if it is too large, is not JSON,
    or nests too deep."""
    return parse_json(await _read_capped(request, max_bytes), max_depth=max_depth)


def parse_json(raw: bytes, *, max_depth: int = MAX_DEPTH) -> object:
    """Parse ``raw`` as UTF-8 JSON, rejecting non-finite numbers and deep nesting."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, "the body is not UTF-8 text") from None
    try:
        value: object = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise BodyError(400, f"the body nests deeper than {max_depth} levels") from None
    except ValueError:  # JSONDecodeError, a non-finite number, an int of too many digits
        raise BodyError(400, "the body is not valid JSON") from None
    if _deeper_than(value, max_depth):
        raise BodyError(400, f"the body nests deeper than {max_depth} levels")
    return value


async def _read_capped(request: web.Request, max_bytes: int) -> bytes:
    too_large = BodyError(413, f"the body is larger than {max_bytes} bytes")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    body = bytearray()
    try:
        while chunk := await request.content.read(max_bytes + 1 - len(body)):
            body += chunk
            if len(body) > max_bytes:
                raise too_large
    except (RequestPayloadError, ConnectionError) as exc:
        # A body that says it is compressed and is not, one cut short: the caller's fault.
        raise BodyError(400, f"the body could not be read ({type(exc).__name__})") from None
    return bytes(body)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("numbers must be finite")
    return number


def _deeper_than(value: object, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` containers deep (walked with a stack)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
