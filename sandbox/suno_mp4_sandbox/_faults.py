"""Fault injection settings: the ways a real API, its proxy and its network misbehave,
each off by default and switchable while the sandbox runs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeGuard

import attrs

__all__ = ["Faults"]


def _probability(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} is a probability in [0, 1], got {value!r}")


def _seconds(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    if not _finite(value) or not value >= 0:
        raise ValueError(f"{attribute.name} is a finite number of seconds >= 0, got {value!r}")


def _optional_time(_: object, attribute: attrs.Attribute[float | None], value: object) -> None:
    if value is not None and not _finite(value):
        raise ValueError(f"{attribute.name} is a sandbox clock time or None, got {value!r}")


def _finite(value: object) -> TypeGuard[int | float]:
    """A real number that is neither infinite nor NaN (bool excluded)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


@attrs.define
class Faults:
    """What goes wrong, and how often.

    Probabilities are drawn per request (or per callback) from the sandbox's seeded
    random generator, so a given ``seed`` replays the same misfortune. Every injected
    fault is counted in ``SandboxStats.faults`` under its field name. Assignments are
    validated, so a typo'd probability fails at once instead of silently doing nothing.
    """

    #: The callback is never sent (the task still succeeds): only polling can find it.
    callback_drop: float = attrs.field(default=0.0, validator=_probability)
    #: The callback is delivered twice: receivers must be idempotent.
    callback_duplicate: float = attrs.field(default=0.0, validator=_probability)
    #: The task finishes at once and its callback is delivered before the submit answer.
    callback_early: float = attrs.field(default=0.0, validator=_probability)
    #: Seconds every callback waits before it is sent (not a probability).
    callback_delay: float = attrs.field(default=0.0, validator=_seconds)
    #: A poll answers a bare HTTP 502 with an HTML body, as a proxy in front would.
    poll_5xx: float = attrs.field(default=0.0, validator=_probability)
    #: A poll answers the code 455 (maintenance) envelope.
    poll_455: float = attrs.field(default=0.0, validator=_probability)
    #: The submit is accepted and billed, then its answer is lost behind a bare 502.
    submit_5xx_after_accept: float = attrs.field(default=0.0, validator=_probability)
    #: An API call waits ``slow_seconds`` before it is handled.
    slow_answer: float = attrs.field(default=0.0, validator=_probability)
    slow_seconds: float = attrs.field(default=1.0, validator=_seconds)
    #: The connection is cut halfway through the answer (after the request took effect).
    reset: float = attrs.field(default=0.0, validator=_probability)
    #: An API call is never answered: the client's own timeout must fire.
    stall: float = attrs.field(default=0.0, validator=_probability)
    #: A video download is cut halfway through its body: downloads must resume.
    download_reset: float = attrs.field(default=0.0, validator=_probability)
    #: Sandbox clock time before which every API call answers 429 with Retry-After.
    rate_limit_storm_until: float | None = attrs.field(default=None, validator=_optional_time)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Set several fields at once (the admin route's JSON); unknown names raise."""
        names = {f.name for f in attrs.fields(Faults)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {sorted(names)}")
        attrs.evolve(self, **changes)  # all or nothing: every value is checked first
        for name, value in changes.items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, float | None]:
        """The current settings, for the admin route."""
        return attrs.asdict(self)
