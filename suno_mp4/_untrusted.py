"""The checks every value read from the network passes before the SDK uses it.

Names and paths are made here, never taken from an answer; JSON is bounded in size and
depth; text shown to a person or stored has its secrets masked and control characters
replaced.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from yarl import URL

__all__ = [
    "MAX_DEPTH",
    "MAX_ID_CHARS",
    "MAX_URL_CHARS",
    "UntrustedDataError",
    "check_url",
    "decompress",
    "file_in",
    "loads",
    "printable",
    "redact",
    "register_secret",
    "safe_name",
    "short",
    "usable_id",
]

#: JSON nesting the SDK accepts from the network. The API's answers are 3 levels deep.
MAX_DEPTH = 32
#: Longest task or audio id accepted (the API's are 32-36 characters).
MAX_ID_CHARS = 256
#: Longest URL accepted from the network or as an argument.
MAX_URL_CHARS = 4096
#: Longest file name the SDK makes (most file systems allow 255 bytes).
MAX_NAME_CHARS = 100


class UntrustedDataError(ValueError):
    """A value read from the network is malformed, too large or too deep."""


def loads(
    data: bytes | bytearray | memoryview | str, *, max_depth: int = MAX_DEPTH, finite: bool = False
) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` (a deeply nested body
    makes the standard parser raise ``RecursionError``, and every later recursive walk of it
    too). Raises :class:`UntrustedDataError` for anything that is not such JSON (with
    ``finite``, for a number out of a float's range too)."""
    try:
        if not isinstance(data, str):
            if type(data) is not bytes and isinstance(data, bytearray | memoryview):
                data = bytes(data)  # a framework's buffer
            # An object's "{" then no NUL is UTF-8 to ``detect_encoding`` (the usual answer).
            usual = data[:1] == b"{" and data[1:2] != b"\x00"
            data = data.decode("utf-8" if usual else json.detect_encoding(data), "surrogatepass")
        value = (_FINITE_DECODER if finite else _DECODER).decode(data)
    except RecursionError as exc:
        raise UntrustedDataError("JSON nested too deeply") from exc
    except UntrustedDataError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise UntrustedDataError(f"not JSON ({type(exc).__name__})") from exc
    if _openings(data) > max_depth:  # fewer brackets than levels: no walk needed
        _check_depth(value, max_depth)
    return value


def _no_constant(name: str) -> Any:
    raise UntrustedDataError(f"{name} is not JSON")


def _finite(text: str) -> float:
    """A JSON number with a fraction or exponent: ``1e999`` would be ``inf``, which no JSON
    encoder writes back as JSON (a relay, a store) and no comparison bounds."""
    value = float(text)
    if not math.isfinite(value):
        raise UntrustedDataError(f"number out of range: {short(text, 40)}")
    return value


#: One decoder for every answer: ``json.loads`` with an argument builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)
#: For bodies kept or passed on as JSON (callbacks: a relay stores them): no number out of
#: a float's range. (An API answer keeps it: ``1e999`` in a field nobody reads must not
#: make a taken submit look like no answer at all.)
_FINITE_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


def _openings(data: bytes | str) -> int:
    """How many arrays and objects the text opens at most (brackets in strings count too)."""
    if isinstance(data, str):
        return data.count("{") + data.count("[")
    return data.count(b"{") + data.count(b"[")


def _check_depth(value: Any, max_depth: int) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise UntrustedDataError(f"JSON nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent before ``Content-Encoding``, at most ``limit`` bytes of it: a small
    compressed body can expand a thousandfold (a "gzip bomb"), so the output is capped while
    it is produced, never after. Raises :class:`UntrustedDataError` past the limit."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        out = body
    elif enc in ("gzip", "x-gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if enc != "deflate" else zlib.MAX_WBITS
        if enc == "deflate" and body[:1] != b"\x78":
            wbits = -zlib.MAX_WBITS  # raw deflate, as some servers send it
        try:
            out = zlib.decompressobj(wbits).decompress(body, limit + 1)
        except zlib.error as exc:
            raise UntrustedDataError(f"corrupt {enc} body") from exc
    else:
        raise UntrustedDataError(f"unsupported Content-Encoding {printable(enc, 40)!r}")
    if len(out) > limit:
        raise UntrustedDataError(f"body larger than {limit} bytes")
    return out


# Text for people, logs and stores.

_SECRETS: set[str] = set()
#: C0 and C1 controls, DEL, line/paragraph separators and bidirectional overrides: they can
#: rewrite a terminal line, forge a log line or reorder what a reader sees. And lone
#: surrogates: no UTF-8 file, log or database can hold them.
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


_CONTROL_OR_SPACE = re.compile(f"{_CONTROL.pattern[:-1]}\\s]")


def register_secret(secret: str) -> None:
    """Mask ``secret`` (an API key, a callback secret) in every SDK error message."""
    if len(secret) >= 4:
        _SECRETS.add(secret)


def mask(secret: str) -> str:
    return f"{secret[:2]}…{secret[-2:]}" if len(secret) > 8 else "…"


def redact(text: str) -> str:
    """``text`` with every registered secret masked (a hostile server may echo the key)."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, mask(secret))
    return text


def printable(text: str, limit: int | None = None) -> str:
    """``text`` with control characters replaced by ``?``, cut to ``limit`` characters."""
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return _CONTROL.sub("?", text)


def short(text: object, limit: int = 80) -> str:
    """An id or value for a log line or message: printable and at most ``limit`` long."""
    return printable(text if isinstance(text, str) else repr(text), limit)


# Names and paths.

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{p}{i}" for p in ("COM", "LPT") for i in range(10)]
)


def safe_name(identifier: str, *, suffix: str = "") -> str:
    """A file name made from ``identifier`` (a task id, a URL's last segment): letters,
    digits, ``._-`` only, no leading dot, at most 100 characters, a short extension kept.
    When anything had to be replaced or cut, a short stable hash of the original is added
    to the stem, so two different ids never share a name."""
    name = _UNSAFE_NAME.sub("_", identifier).lstrip(".")
    changed = name != identifier
    stem, dot, ext = name.rpartition(".")
    if dot and stem and re.fullmatch(r"[A-Za-z0-9]{1,8}", ext):
        ext = f".{ext}"
    else:
        stem, ext = name, ""
    if stem.split(".")[0].upper() in _RESERVED:
        changed = True
    budget = MAX_NAME_CHARS - len(suffix) - len(ext)
    if changed or not stem or len(stem) > budget:
        digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        stem = f"{stem[: budget - 13]}-{digest}" if stem else digest
    return stem + ext + suffix


def file_in(folder: Path, name: str) -> Path:
    """``folder / name``, checked to stay inside ``folder`` once links are resolved."""
    target = folder / name
    if target.name != name or not target.resolve().is_relative_to(folder.resolve()):
        raise UntrustedDataError(f"file name {short(name)!r} leaves the folder {folder}")
    return target


def check_url(value: object, *, what: str = "URL") -> str:
    """``value`` if it is an absolute http(s) URL with a host, bounded, with no whitespace
    or control characters; raises :class:`UntrustedDataError` otherwise."""
    if not isinstance(value, str):
        raise UntrustedDataError(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > MAX_URL_CHARS or _CONTROL_OR_SPACE.search(value):
        raise UntrustedDataError(f"{what} is too long or has spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise UntrustedDataError(f"{what} is not a valid URL: {short(value)!r}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UntrustedDataError(f"{what} must be an http(s) URL with a host, got {short(value)!r}")
    try:
        parts.hostname.encode("idna")  # as the resolver will: "a..b" or a 64-letter label fail
        if not parts.hostname.isascii():
            URL(value)  # as aiohttp will (IDNA 2008): a zero-width joiner, a soft hyphen fail
    except ValueError:  # (UnicodeError is one)
        raise UntrustedDataError(f"{what} has no valid host name: {short(value)!r}") from None
    return value


def is_utf8(text: str) -> bool:
    """False for a string no UTF-8 file or database can hold (a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: A usable id, in one match (it is on every request's path): at most 256 characters, none
#: of them a control character (``_CONTROL``), whitespace or a lone surrogate.
_ID = re.compile(
    "[^\\s\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
    f"\u2066-\u2069\ud800-\udfff]{{1,{MAX_ID_CHARS}}}"
)

#: ``usable_id(text)`` is not ``None`` when the str ``text`` is a usable id (``check_id``
#: says why not; this is its test alone, for a hot path).
usable_id = _ID.fullmatch


def check_id(value: object, *, what: str = "task id") -> str:
    """``value`` if it is a usable id: a non-empty string of at most 256 printable
    characters without spaces; raises :class:`UntrustedDataError` otherwise."""
    if not isinstance(value, str) or not value:
        raise UntrustedDataError(f"{what} must be a non-empty string, got {short(value)!r}")
    if _ID.fullmatch(value) is None:
        raise UntrustedDataError(
            f"{what} must be at most {MAX_ID_CHARS} printable characters without spaces, "
            f"got {short(value)!r}"
        )
    return value
