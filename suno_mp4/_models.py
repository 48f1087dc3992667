"""The SDK's data: requests, task status, task details, finished videos, callback payloads."""

from __future__ import annotations

import enum
import hashlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring as _quote
from types import MappingProxyType

import attrs

from ._errors import InvalidRequestError
from ._untrusted import UntrustedDataError, check_id, is_utf8, short, usable_id

__all__ = [
    "RETENTION",
    "CallbackPayload",
    "MusicVideo",
    "TaskStatus",
    "VideoDetails",
    "VideoRequest",
]

logger = logging.getLogger("suno_mp4.jobs")


def utcnow() -> datetime:
    return datetime.now(UTC)


#: How long the API keeps a finished video (documented: 14 days).
RETENTION = timedelta(days=14)

#: The documented limit on ``author`` and ``domainName``.
MAX_BRANDING_CHARS = 50


_LOGGED_UNKNOWN: set[str] = set()


class TaskStatus(enum.StrEnum):
    """The API's ``successFlag``. Unknown flags become pseudo-members instead of crashing."""

    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    CREATE_TASK_FAILED = "CREATE_TASK_FAILED"
    GENERATE_MP4_FAILED = "GENERATE_MP4_FAILED"
    #: The video was made but calling the callBackUrl failed: the result is still valid.
    CALLBACK_EXCEPTION = "CALLBACK_EXCEPTION"

    @classmethod
    def _missing_(cls, value: object) -> TaskStatus | None:
        if not isinstance(value, str) or not value:
            return None
        if value not in _LOGGED_UNKNOWN and len(_LOGGED_UNKNOWN) < 100:
            _LOGGED_UNKNOWN.add(value)
            logger.warning("unknown successFlag %r from the API (this SDK is older?)", short(value))
        member = str.__new__(cls, value)
        member._name_ = value
        member._value_ = value
        return member

    @property
    def is_known(self) -> bool:
        """False for a flag this SDK version does not know."""
        return self._value_ in type(self)._value2member_map_

    @property
    def is_ok(self) -> bool:
        """The video exists (``SUCCESS`` or ``CALLBACK_EXCEPTION``)."""
        return self in (TaskStatus.SUCCESS, TaskStatus.CALLBACK_EXCEPTION)

    @property
    def is_failure(self) -> bool:
        """The task failed for good: a documented failure flag, or an unknown one that says so."""
        if self in (TaskStatus.CREATE_TASK_FAILED, TaskStatus.GENERATE_MP4_FAILED):
            return True
        return not self.is_known and ("FAIL" in self.value.upper() or "ERROR" in self.value.upper())

    @property
    def is_final(self) -> bool:
        """No further change is expected. An unknown flag is final only if it reads as a failure;
        the job logic also treats an unknown flag carrying a video URL as success."""
        return self.is_ok or self.is_failure

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"TaskStatus({self.value!r})"


def _refuse_id(value: object, name: str) -> None:
    """Raises :class:`InvalidRequestError` saying why ``value`` is no usable id (if it is not)."""
    try:
        check_id(value, what=name)
    except UntrustedDataError as exc:
        raise InvalidRequestError(str(exc)) from None


def _branding(value: object, name: str) -> str | None:
    """An ``author`` or ``domain_name`` checked: ``""`` is None (no branding)."""
    if value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"{name} must be a string, got {type(value).__name__}")
    if not is_utf8(value):
        raise InvalidRequestError(f"{name} holds a lone surrogate: not text")
    if len(value) > MAX_BRANDING_CHARS:
        raise InvalidRequestError(
            f"{name} is {len(value)} characters long; the API allows at most {MAX_BRANDING_CHARS}"
        )
    return value


def _check_key(value: object) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidRequestError(
            f"idempotency_key must be a non-empty string of at most 200 characters, got "
            f"{short(value)!r}"
        )


@attrs.frozen
class VideoRequest:
    """What to render: a track (music ``task_id`` + ``audio_id``) and optional branding.

    Validated on construction, so a bad argument raises :class:`InvalidRequestError`
    before anything is sent (and before any credit is spent).
    """

    task_id: str
    audio_id: str
    #: Signature on the video cover, at most 50 characters ("" is None).
    author: str | None = None
    #: Watermark at the bottom of the video, at most 50 characters ("" is None).
    domain_name: str | None = None
    #: Overrides the key derived from the content (see :attr:`key`): give another one to
    #: ask deliberately for a second rendering of the same track and branding.
    idempotency_key: str | None = attrs.field(default=None, kw_only=True)

    _key: str = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        # Checked here in one call (made on every submit), not by a validator or converter
        # per field: the same checks in the same order, for a third of the calls.
        task_id, audio_id, author, domain = (
            self.task_id,
            self.audio_id,
            self.author,
            self.domain_name,
        )
        if type(task_id) is not str or usable_id(task_id) is None:
            _refuse_id(task_id, "task_id")
        if type(audio_id) is not str or usable_id(audio_id) is None:
            _refuse_id(audio_id, "audio_id")
        if author is not None and (author := _branding(author, "author")) is None:
            object.__setattr__(self, "author", None)
        if domain is not None and (domain := _branding(domain, "domain_name")) is None:
            object.__setattr__(self, "domain_name", None)
        if self.idempotency_key is not None:
            _check_key(self.idempotency_key)
            key = self.idempotency_key
        else:
            # json.dumps([task_id, audio_id, author, domain_name], ensure_ascii=False),
            # written out: the same text (keys in stores made earlier must still match),
            # for a fraction of the cost of the encoder on every submit.
            content = (
                f"[{_quote(task_id)}, {_quote(audio_id)}, "
                f"{'null' if author is None else _quote(author)}, "
                f"{'null' if domain is None else _quote(domain)}]"
            )
            key = f"v1-{hashlib.sha256(content.encode('utf-8')).hexdigest()[:40]}"
        object.__setattr__(self, "_key", key)

    @property
    def key(self) -> str:
        """The idempotency key of this request: ``idempotency_key`` if given, else derived
        from the content (track, branding), so the same request is never submitted twice
        to one job store — and, with a durable one, never across runs or machines."""
        return self._key


def _expiry(video: MusicVideo) -> datetime:
    try:
        return video.completed_at + RETENTION
    except OverflowError:  # a completion time near year 9999 from a hostile answer
        return datetime.max.replace(tzinfo=video.completed_at.tzinfo)


@attrs.frozen
class MusicVideo:
    """A finished music video. ``video_url`` works until ``expires_at`` (completion + 14 days)."""

    task_id: str
    video_url: str
    completed_at: datetime
    audio_id: str | None = None
    #: The music-generation task the track came from: known from the request that made
    #: the video (record-info does not name it), so None for a job attached by task id.
    source_task_id: str | None = None
    expires_at: datetime = attrs.field(default=attrs.Factory(_expiry, takes_self=True), eq=False)

    def is_expired(self, now: datetime | None = None) -> bool:
        """Whether the 14-day retention is over (by the local clock unless ``now`` is given)."""
        return (now or utcnow()) >= self.expires_at


_EMPTY: Mapping[str, object] = MappingProxyType({})
#: The longest message kept of a callback waiting for its job (``CallbackPayload.trimmed``).
_KEPT_MSG_CHARS = 500


@attrs.frozen
class VideoDetails:
    """Everything "Get Music Video Details" returns, snake_cased. Unknown fields land in
    ``extra`` so a server that adds fields never breaks the parse."""

    task_id: str
    status: TaskStatus = TaskStatus.PENDING
    video_url: str | None = None
    #: The wire's ``musicId``: the source track, an audio id (upstream's wording) — not
    #: the music-generation task, which record-info does not name.
    music_id: str | None = None
    audio_id: str | None = None
    callback_url: str | None = None
    music_index: int | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    extra: Mapping[str, object] = attrs.field(default=_EMPTY, eq=False, repr=False)


def settles_job(code: object, video_url: object) -> bool:
    """Whether a callback of this ``code`` and ``video_url`` settles its job: a failure, or
    a success naming its video (a success without a URL leaves the job to its poll)."""
    return code not in (0, 200) or bool(video_url)


@attrs.frozen
class CallbackPayload:
    """The body the API POSTs to ``callBackUrl`` (snake_case keys, unlike the rest of the API)."""

    code: int
    msg: str
    task_id: str
    video_url: str | None = None
    extra: Mapping[str, object] = attrs.field(default=_EMPTY, eq=False, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the envelope says success (200, or 0 as the contract's schema shows)."""
        return self.code in (0, 200)

    @property
    def final(self) -> bool:
        """Whether it settles a job (:func:`settles_job`)."""
        return settles_job(self.code, self.video_url)

    def trimmed(self) -> CallbackPayload:
        """What resolving a job reads of it, with a message of at most 500 characters: what
        is kept of a callback for a task id nobody holds yet (anyone with the URL can make
        such ids up), in memory or in a relay's store."""
        if not self.extra and len(self.msg) <= _KEPT_MSG_CHARS:
            return self
        return CallbackPayload(self.code, self.msg[:_KEPT_MSG_CHARS], self.task_id, self.video_url)
