"""Configuration objects: when to poll, how to retry, the account's rate limit. Small frozen
attrs classes; each default says why it is what it is."""

from __future__ import annotations

import math
import random
from typing import Any

import attrs

from ._arguments import check_number
from ._backoff import full_jitter
from ._errors import InvalidRequestError

__all__ = ["PollPolicy", "RateLimit", "RetryPolicy"]


def _positive(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise InvalidRequestError(f"{attr.name} must be > 0, got {value!r}")


def _non_negative(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:
        raise InvalidRequestError(f"{attr.name} must be >= 0, got {value!r}")


def _positive_finite(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    check_number(value, attr.name, minimum=0, exclusive=True, finite=True)


def _non_negative_finite(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    check_number(value, attr.name, minimum=0, finite=True)


#: Permits a ``RateLimit`` may hold (one float each): no account allows a million a window.
MAX_RATE_REQUESTS = 1_000_000


def _fraction(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value <= 1:
        raise InvalidRequestError(f"{attr.name} must be between 0 and 1, got {value!r}")


def _power(factor: float, attempt: int) -> float:
    """``factor ** attempt``, ``inf`` past a float's range (a job pending for a thousand
    polls must not raise ``OverflowError`` in the poller)."""
    try:
        return float(factor) ** attempt  # a float power: an int one grows without bound
    except OverflowError:
        return math.inf


@attrs.frozen
class PollPolicy:
    """When the client's one poller asks the API about a pending job.

    By default (``schedule="learned"``) the poller learns this account's render times from
    the jobs it sees (a Kaplan-Meier estimate that counts pending jobs as censored and
    forgets old ones) and polls each job on the schedule that minimises the mean detection
    lag, with the lags longer than a fixed loop's priced up, for ``polls_per_job`` polls
    per job under that estimate. Until ten jobs have finished (and half the estimate lies
    within the longest render seen), and with ``schedule="geometric"`` always, the first
    poll comes after ``initial_delay`` and each later gap is ``factor`` times the previous
    one, with ``jitter`` (a fraction) so jobs submitted together do not poll in lockstep;
    a job submitted meanwhile keeps that schedule. In both, ``initial_delay`` is the
    earliest first poll (less its jitter, on the geometric schedule) and ``max_interval``
    the longest gap.
    """

    #: Videos take seconds at best: an earlier first poll only spends rate limit.
    initial_delay: float = attrs.field(default=2.0, validator=_non_negative)
    #: Long renders are still noticed within half a minute.
    max_interval: float = attrs.field(default=30.0, validator=_positive)
    #: Gentle growth: detection lag stays within about a third of the render time.
    factor: float = attrs.field(default=1.5, validator=_positive)
    #: +/- 10 % spreads bursts without making the schedule unpredictable.
    jitter: float = attrs.field(default=0.1, validator=_fraction)
    #: With a callback listener, a safety poll this often: a lost callback delays, never hangs.
    fallback_interval: float = attrs.field(default=60.0, validator=_positive)
    #: Nobody waits unbounded by default: after this a waiter gets ``JobTimeoutError``
    #: (the remote task keeps running). ``None`` disables the deadline.
    max_wait: float | None = attrs.field(default=3600.0)
    #: ``"learned"``: the schedule learned from this account's jobs (above);
    #: ``"geometric"``: the fixed gaps above, whatever the renders take.
    schedule: str = attrs.field(default="learned")
    #: The learned schedule's budget: this many polls per job on average (the lag falls
    #: as it rises; the schedule spends it where renders end).
    polls_per_job: float = attrs.field(default=3.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.schedule not in ("geometric", "learned"):
            raise InvalidRequestError(
                f"schedule must be 'geometric' or 'learned', got {self.schedule!r}"
            )
        if self.polls_per_job < 1:
            raise InvalidRequestError(f"polls_per_job must be >= 1, got {self.polls_per_job!r}")
        if self.factor < 1:
            raise InvalidRequestError(f"factor must be >= 1, got {self.factor!r}")
        if self.max_wait is not None and not self.max_wait > 0:
            raise InvalidRequestError(f"max_wait must be > 0 or None, got {self.max_wait!r}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Gap before poll number ``attempt`` (0 = the first poll)."""
        base = (
            self.initial_delay
            if attempt == 0
            else min(
                self.max_interval, max(self.initial_delay, 0.05) * _power(self.factor, attempt)
            )
        )
        return max(0.0, base * (1 + self.jitter * (2 * rng.random() - 1)))


@attrs.frozen
class RetryPolicy:
    """How a failed request is retried: exponential backoff with full jitter, capped.

    Only safe retries happen: polls and downloads on 429, 455, 5xx and connection faults;
    a submit only when the server certainly did not take it (429, 455, connection refused),
    because a blind re-POST could bill twice.
    """

    #: Total tries per request, the first included.
    attempts: int = attrs.field(default=6)
    #: First backoff (before jitter); doubles each retry.
    initial_backoff: float = attrs.field(default=0.5, validator=_positive)
    #: A single backoff never exceeds this.
    max_backoff: float = attrs.field(default=30.0, validator=_positive)
    #: A ``Retry-After`` longer than this surfaces as ``RateLimitError`` instead of a
    #: silent stall of minutes.
    max_retry_after: float = attrs.field(default=120.0, validator=_non_negative)
    #: 429s do not use up ``attempts`` (the server certainly did nothing): a request waits
    #: out rate limiting for at most this many seconds in all, then ``RateLimitError``.
    max_throttle_wait: float = attrs.field(default=600.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.attempts < 1:
            raise InvalidRequestError(f"attempts must be >= 1, got {self.attempts!r}")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max_backoff, initial * 2**retry)]."""
        return full_jitter(retry, initial=self.initial_backoff, maximum=self.max_backoff, rng=rng)


@attrs.frozen
class RateLimit:
    """At most ``requests`` API calls in any ``per_seconds`` window, for the whole client.

    The limiter hands a permit back only ``per_seconds`` after the answer to the request that
    used it arrived, so even a server that counts a sliding window by arrival time, behind
    any network jitter, never sees more than ``requests`` in a window.
    """

    requests: int = attrs.field()
    per_seconds: float = attrs.field(default=1.0, validator=_positive_finite)
    #: Extra seconds added to each permit's cool-down: covers the server's clock granularity.
    margin: float = attrs.field(default=0.01, validator=_non_negative_finite)

    @requests.validator
    def _check_requests(self, _attr: attrs.Attribute[Any], value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequestError(f"requests must be a positive integer, got {value!r}")
        if value > MAX_RATE_REQUESTS:
            raise InvalidRequestError(
                f"requests must be at most {MAX_RATE_REQUESTS:,}, got {value}"
            )
