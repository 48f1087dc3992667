"""The providers' dialects of the contract: which envelope ``code`` says what, and which
HTTP status carries an error.

Resellers of this API serve the same routes and bodies but publish different code tables
(api/CONTRACT.md): the seed (Apikley) says 402 for "no credits" and 429 for "too many
requests", another reseller says 429 for "no credits", 405 and 430 for "too many". The
sandbox decides *what* an answer means (a :class:`Meaning`) and the dialect decides how
that is written, so a client written for either table can be tested against it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

import attrs

__all__ = ["ALT_RESELLER", "APIKLEY", "DIALECTS", "Dialect", "Meaning"]


class Meaning(enum.StrEnum):
    """What an answer of the API says, whatever code a provider writes for it."""

    SUCCESS = "success"
    #: The body is not JSON, nests too deep, or is larger than the sandbox reads.
    BAD_FORMAT = "bad format"
    UNAUTHORIZED = "unauthorized"
    NO_CREDITS = "insufficient credits"
    #: An unknown task, track, endpoint, or a method the endpoint does not take.
    NOT_FOUND = "not found"
    CONFLICT = "conflict"
    INVALID_PARAMS = "invalid parameters"
    #: A text field (``author``, ``domainName``) is longer than allowed.
    TOO_LONG = "too long"
    #: Call frequency too high (the sliding-window rate limit).
    RATE_LIMITED = "rate limited"
    #: The account's call limit is exhausted for a while (the ``rate_limit_storm`` fault).
    CALL_LIMIT = "call limit exceeded"
    MAINTENANCE = "maintenance"
    SERVER_ERROR = "server error"


def _frozen(codes: Mapping[Meaning, int]) -> Mapping[Meaning, int]:
    return MappingProxyType(dict(codes))


def _complete(_: object, __: object, codes: Mapping[Meaning, int]) -> None:
    missing = sorted(set(Meaning) - set(codes))
    if missing:
        raise ValueError(f"a dialect needs a code for every meaning; missing {missing}")
    if codes[Meaning.SUCCESS] in {codes[m] for m in Meaning if m is not Meaning.SUCCESS}:
        raise ValueError("the success code must not also mean an error")


@attrs.frozen
class Dialect:
    """One provider's way of writing answers.

    ``errors_in_http_status``: the seed answers every error with HTTP 200 and the code in
    the body ("the body's code is the truth"); with True, an error's HTTP status is its
    code too (HTTP 430, HTTP 455: not all are registered statuses), as a provider behind a
    stricter gateway does. Success is HTTP 200 either way.
    """

    name: str
    codes: Mapping[Meaning, int] = attrs.field(converter=_frozen, validator=_complete)
    errors_in_http_status: bool = False

    def code(self, meaning: Meaning) -> int:
        """The envelope ``code`` for ``meaning``."""
        return self.codes[meaning]

    def http_status(self, code: int) -> int:
        """The HTTP status an answer with envelope ``code`` travels with."""
        if code == self.codes[Meaning.SUCCESS] or not self.errors_in_http_status:
            return 200
        return code if 400 <= code <= 599 else 500

    def meanings(self, code: int) -> frozenset[Meaning]:
        """Everything ``code`` may mean in this dialect (a table can reuse a code)."""
        return frozenset(m for m, c in self.codes.items() if c == code)


#: The seed's table (https://api.apikley.ru): errors travel with HTTP 200.
APIKLEY = Dialect(
    "apikley",
    {
        Meaning.SUCCESS: 200,
        Meaning.BAD_FORMAT: 400,
        Meaning.UNAUTHORIZED: 401,
        Meaning.NO_CREDITS: 402,
        Meaning.NOT_FOUND: 404,
        Meaning.CONFLICT: 409,
        Meaning.INVALID_PARAMS: 422,
        Meaning.TOO_LONG: 422,
        Meaning.RATE_LIMITED: 429,
        Meaning.CALL_LIMIT: 429,
        Meaning.MAINTENANCE: 455,
        Meaning.SERVER_ERROR: 500,
    },
)

#: The other published reseller table of the contract (405 call limit exceeded, 413 too
#: long, 429 insufficient credits, 430 call frequency too high). Its documentation does
#: not say which HTTP status carries errors; the sandbox sends them as the HTTP status
#: too, so this dialect also tests a client's handling of non-200 envelopes (set
#: ``errors_in_http_status=False`` with ``attrs.evolve`` for the seed's convention).
ALT_RESELLER = Dialect(
    "alt-reseller",
    {
        Meaning.SUCCESS: 200,
        Meaning.BAD_FORMAT: 400,
        Meaning.UNAUTHORIZED: 401,
        Meaning.NO_CREDITS: 429,
        Meaning.NOT_FOUND: 404,
        Meaning.CONFLICT: 409,
        Meaning.INVALID_PARAMS: 422,
        Meaning.TOO_LONG: 413,
        Meaning.RATE_LIMITED: 430,
        Meaning.CALL_LIMIT: 405,
        Meaning.MAINTENANCE: 455,
        Meaning.SERVER_ERROR: 500,
    },
    errors_in_http_status=True,
)

#: The published dialects by name: ``Sandbox(provider=...)``, ``--provider``.
DIALECTS: Mapping[str, Dialect] = MappingProxyType(
    {dialect.name: dialect for dialect in (APIKLEY, ALT_RESELLER)}
)
