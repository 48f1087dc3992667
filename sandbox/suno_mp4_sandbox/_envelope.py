"""Every answer of the API in the provider's ``{code, msg, data}`` envelope, including the
ones aiohttp would write itself (unknown path, wrong method) and the sandbox's own bugs:
clients parse the envelope, and a plain-text page would break them where the real API
never would. Plus the contract itself, as an OpenAPI document."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from ._dialects import Meaning

__all__ = ["OPENAPI_PATH", "Answer", "in_envelope", "openapi_document"]

logger = logging.getLogger("suno_mp4.sandbox")

#: The contract as an OpenAPI document (shipped with the package; served as it is).
OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
#: Where the admin routes live: they answer ``{"error": ...}``, not the envelope.
ADMIN_PREFIX = "/sandbox/"


class Answer(Protocol):
    """Writes the envelope for ``meaning`` in the sandbox's dialect."""

    def __call__(
        self,
        meaning: Meaning,
        msg: str,
        data: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response: ...


def in_envelope(answer: Answer) -> Middleware:
    """An aiohttp middleware answering aiohttp's HTTP errors and any unexpected exception
    with ``answer`` (the dialect's envelope and status convention); a bug is logged with
    its traceback, and the client learns only that the server failed."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        admin = request.path.startswith(ADMIN_PREFIX)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if admin:
                return web.json_response({"error": exc.reason}, status=exc.status)
            return _http_error(answer, request, exc)
        except Exception:
            logger.exception("unexpected error answering %s %s", request.method, request.path)
            if admin:
                return web.json_response({"error": "the sandbox failed"}, status=500)
            return answer(Meaning.SERVER_ERROR, "Server Error - the sandbox failed")

    return middleware


def _http_error(answer: Answer, request: web.Request, exc: web.HTTPException) -> web.Response:
    if exc.status == 405:
        # A wrong method is "no such endpoint" in both tables: the other reseller's 405
        # means "call limit exceeded", which would make clients wait and retry.
        allowed = exc.headers.get(hdrs.ALLOW, "")
        msg = f"Not Found - {request.method} is not a method of {request.path} ({allowed})"
        return answer(Meaning.NOT_FOUND, msg, headers={hdrs.ALLOW: allowed})
    if exc.status == 404:
        return answer(Meaning.NOT_FOUND, "Not Found - no such endpoint")
    if exc.status < 500:
        return answer(Meaning.BAD_FORMAT, f"Format Error - {exc.reason}")
    return answer(Meaning.SERVER_ERROR, f"Server Error - {exc.reason}")


async def openapi_document(request: web.Request) -> web.StreamResponse:
    """``GET /openapi.yaml``: the two endpoints and the callback, for API tools."""
    return web.FileResponse(OPENAPI_PATH, headers={hdrs.CONTENT_TYPE: "application/yaml"})
