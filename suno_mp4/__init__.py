"""suno_mp4: the asyncio SDK for the Suno-compatible music-video API.

Everything public is importable from here; the ``_private`` modules may change.
"""

from ._batch import Batch, BatchResult
from ._callbacks import (
    CallbackAnswer,
    CallbackError,
    CallbackListener,
    CallbackRelay,
    CallbackSink,
    parse_callback_body,
    sign,
    verify_signature,
)
from ._client import DEFAULT_BASE_URL, NO_CALLBACK_URL, Client
from ._config import PollPolicy, RateLimit, RetryPolicy
from ._errors import (
    ALT_RESELLER_CODES,
    APIKLEY_CODES,
    APIError,
    AsyncioRequiredError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConflictError,
    InsufficientCreditsError,
    InvalidRequestError,
    JobStoreError,
    JobTimeoutError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    SubmissionInDoubtError,
    SunoMp4Error,
    TransportError,
    ValidationError,
    VideoExpiredError,
    VideoGenerationError,
    VideoTooLargeError,
)
from ._jobs import JobRegistry, VideoJob, as_completed
from ._limiter import SharedRateLimit
from ._logs import enable_from_environment, enable_logging
from ._models import CallbackPayload, MusicVideo, TaskStatus, VideoDetails, VideoRequest
from ._store import (
    JobRecord,
    JobState,
    JobStore,
    LeasedJobStore,
    MemoryJobStore,
    SQLiteJobStore,
)
from ._untrusted import redact
from ._version import __version__

__all__ = [
    "ALT_RESELLER_CODES",
    "APIKLEY_CODES",
    "DEFAULT_BASE_URL",
    "NO_CALLBACK_URL",
    "APIError",
    "AsyncioRequiredError",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "BatchResult",
    "CallbackAnswer",
    "CallbackError",
    "CallbackListener",
    "CallbackPayload",
    "CallbackRelay",
    "CallbackSink",
    "Client",
    "ClientClosedError",
    "ConflictError",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "JobRecord",
    "JobRegistry",
    "JobState",
    "JobStore",
    "JobStoreError",
    "JobTimeoutError",
    "LeasedJobStore",
    "MemoryJobStore",
    "MusicVideo",
    "NotFoundError",
    "PollPolicy",
    "RateLimit",
    "RateLimitError",
    "RetryPolicy",
    "SQLiteJobStore",
    "ServerError",
    "ServiceUnavailableError",
    "SharedRateLimit",
    "SubmissionInDoubtError",
    "SunoMp4Error",
    "TaskStatus",
    "TransportError",
    "ValidationError",
    "VideoDetails",
    "VideoExpiredError",
    "VideoGenerationError",
    "VideoTooLargeError",
    "VideoJob",
    "VideoRequest",
    "__version__",
    "as_completed",
    "enable_logging",
    "parse_callback_body",
    "redact",
    "sign",
    "verify_signature",
]

enable_from_environment()
