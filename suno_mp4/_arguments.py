"""Checks of the arguments a user passes: a wrong type or value is an
:class:`InvalidRequestError` raised before anything is sent, never a ``TypeError`` from
deep inside."""

from __future__ import annotations

import math

from ._errors import InvalidRequestError
from ._untrusted import UntrustedDataError, check_id, check_url, short

__all__ = ["check_number", "check_task_id", "check_type", "check_url_argument"]


def check_url_argument(url: object, name: str) -> None:
    """``url`` is ``None`` or an absolute http(s) URL with a host."""
    if url is not None:
        try:
            check_url(url, what=name)
        except UntrustedDataError as exc:
            raise InvalidRequestError(str(exc)) from None


def check_task_id(task_id: object, name: str = "task_id") -> None:
    try:
        check_id(task_id, what=name)
    except UntrustedDataError as exc:
        raise InvalidRequestError(str(exc)) from None


def check_type(value: object, name: str, kind: type | tuple[type, ...]) -> None:
    """``value`` is ``None`` or an instance of ``kind`` (never a bool standing in for it)."""
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise InvalidRequestError(f"{name} must be a {names}, got {type(value).__name__}")


def check_number(
    value: object,
    name: str,
    *,
    minimum: float,
    integer: bool = False,
    exclusive: bool = False,
    finite: bool = False,
) -> None:
    """``value`` is a number (an int if ``integer``) at least (or above) ``minimum`` (and
    not infinite, if ``finite``)."""
    kind = int if integer else (int, float)
    if not isinstance(value, kind) or isinstance(value, bool):
        what = "an integer" if integer else "a number"
        raise InvalidRequestError(f"{name} must be {what}, got {type(value).__name__}")
    if (value <= minimum if exclusive else value < minimum) or value != value:
        relation = ">" if exclusive else ">="
        raise InvalidRequestError(f"{name} must be {relation} {minimum}, got {value!r}")
    if finite and not _finite(value):
        raise InvalidRequestError(f"{name} must be finite, got {short(repr(value), 40)}")


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)  # an int too large for a float raises
    except OverflowError:
        return False
