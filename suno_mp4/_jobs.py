"""Jobs: the awaitable ``VideoJob``, the ``JobRegistry`` that alone resolves them, and
``as_completed``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ._clock import loop_time
from ._convert import utcnow, video_from_details
from ._errors import (
    InvalidRequestError,
    JobTimeoutError,
    ServerError,
    SunoMp4Error,
    VideoGenerationError,
)
from ._models import CallbackPayload, MusicVideo, TaskStatus, VideoDetails, VideoRequest
from ._untrusted import UntrustedDataError, check_url, short

if TYPE_CHECKING:
    from ._store import JobRecord


class Scheduler(Protocol):
    """What the registry needs of the poller: polls for the jobs it tracks."""

    def add(self, job: VideoJob, *, soon: bool = False) -> None:
        """Poll ``job`` (a newly registered one) until it resolves or its deadline; first
        at once when ``soon`` (a job submitted long ago)."""
        ...

    def forget(self, job: VideoJob) -> None:
        """Stop polling ``job`` (released)."""
        ...

    def learn(self, job: VideoJob) -> None:
        """``job`` resolved (by a poll, a callback, an error): what it tells about renders."""
        ...

    async def fetch(self, task_id: str) -> VideoDetails:
        """Ask the API about ``task_id`` now."""
        ...


__all__ = ["JobRegistry", "VideoJob", "as_completed"]

logger = logging.getLogger("suno_mp4.jobs")

Outcome = MusicVideo | SunoMp4Error
DoneCallback = Callable[["VideoJob"], None]


def _ignore(job: VideoJob) -> None:
    """A registry's ``record_result`` until a ledger sets its own."""


class VideoJob:
    """A submitted (or attached) video task: ``await job`` gives the :class:`MusicVideo`.

    It resolves exactly once, through the client's registry, from a poll or a callback.
    Cancelling or timing out a waiter stops local waiting only: the API has no cancel
    endpoint, the task keeps running, and ``client.job(task_id)`` attaches to it again.
    """

    __slots__ = (
        "__weakref__",
        "_attached",
        "_callbacks",
        "_deadline",
        "_details",
        "_event",
        "_outcome",
        "_record",
        "_registry",
        "_status",
        "_waiters",
        "created_at",
        "detached",
        "poll_attempt",
        "poll_generation",
        "polls",
        "request",
        "resolved_by",
        "task_id",
        "via_listener",
    )

    def __init__(
        self,
        task_id: str,
        request: VideoRequest | None,
        *,
        registry: JobRegistry,
        max_wait: float | None,
        via_listener: bool = False,
    ) -> None:
        self.task_id = task_id
        #: What was asked for; ``None`` for a job attached by id.
        self.request = request
        #: Whether a callback to this client's listener is expected (then polls are rare).
        self.via_listener = via_listener
        #: When it was submitted or attached (the event loop's clock).
        self.created_at = loop_time()
        #: Number of polls made for this job (statistics).
        self.polls = 0
        # Poller bookkeeping: backoff step, and the number of its poll's heap entry (a new
        # one each time it is scheduled: an answer to an older poll reschedules nothing).
        self.poll_attempt = 0
        self.poll_generation = 0
        #: Set by the poller when every waiter left: the job is not polled meanwhile.
        self.detached = False
        #: What resolved the job: "poll", "callback" or "error" (statistics).
        self.resolved_by: str | None = None
        self._registry = registry
        self._deadline = None if max_wait is None else self.created_at + max_wait
        self._status = TaskStatus.PENDING
        self._details: VideoDetails | None = None
        # Made when someone first waits: thousands of jobs nobody awaits yet hold none.
        self._event: asyncio.Event | None = None
        self._outcome: Outcome | None = None
        self._waiters = 0
        # A tuple, not a list: most jobs have one callback or none (the empty tuple is shared).
        self._callbacks: tuple[DoneCallback, ...] = ()
        #: The job store's record of its submission (set by the ledger), if there is one.
        self._record: JobRecord | None = None
        #: Attached to a task submitted elsewhere or earlier (by id, a resume, a re-run):
        #: its age here says nothing of its render time (set by the ledger).
        self._attached = False

    def __repr__(self) -> str:
        done = " done" if self.done() else ""
        return f"<VideoJob {short(self.task_id)} {short(self._status.value, 40)}{done}>"

    @property
    def status(self) -> TaskStatus:
        """The last status the API reported (``PENDING`` until something is known)."""
        return self._status

    @property
    def details(self) -> VideoDetails | None:
        """The last details polled, if any."""
        return self._details

    @property
    def deadline(self) -> float | None:
        """When (on the event loop's clock) waiting gives up with ``JobTimeoutError``."""
        return self._deadline

    @property
    def waiters(self) -> int:
        return self._waiters

    def done(self) -> bool:
        """Whether the job resolved (to a video or an error)."""
        return self._outcome is not None

    def result(self) -> MusicVideo:
        """The video of a finished job; raises its error, or ``RuntimeError`` if not done."""
        if self._outcome is None:
            raise RuntimeError(f"video task {self.task_id} is not finished yet")
        if isinstance(self._outcome, SunoMp4Error):
            raise self._outcome
        return self._outcome

    def exception(self) -> SunoMp4Error | None:
        """The error of a failed job, ``None`` if it succeeded (``RuntimeError`` if not done)."""
        if self._outcome is None:
            raise RuntimeError(f"video task {self.task_id} is not finished yet")
        return self._outcome if isinstance(self._outcome, SunoMp4Error) else None

    async def wait(self, timeout: float | None = None) -> MusicVideo:
        """Wait for the video. ``timeout`` (seconds) raises :class:`JobTimeoutError` for this
        waiter only; the job's overall deadline (``PollPolicy.max_wait``) applies as well."""
        if timeout is not None and (
            not isinstance(timeout, int | float) or isinstance(timeout, bool)
        ):
            raise InvalidRequestError(
                f"timeout must be seconds (a number) or None, got {type(timeout).__name__}"
            )
        if self._outcome is None:
            start = loop_time()
            limit = math.inf if timeout is None else max(0.0, timeout)
            self._add_waiter()
            if self._event is None:
                # asyncio's own (the SDK runs on asyncio): anyio's would work out which
                # async library runs at every creation, on every job's path.
                self._event = asyncio.Event()
            try:
                if timeout is None:
                    await self._event.wait()
                else:
                    with anyio.move_on_after(limit):
                        await self._event.wait()
            finally:
                self._remove_waiter()
            if self._outcome is None:
                raise JobTimeoutError(self.task_id, loop_time() - start)
        return self.result()

    def __await__(self) -> Generator[object, None, MusicVideo]:
        return self.wait().__await__()

    async def refresh(self) -> VideoDetails:
        """Ask the API about this task now; the answer goes through the registry as a poll's."""
        return await self._registry.refresh(self)

    def _add_waiter(self) -> None:
        self._waiters += 1
        if self._waiters == 1:
            self._registry.waiters_changed(self)

    def _remove_waiter(self) -> None:
        self._waiters -= 1
        if self._waiters == 0 and self._outcome is None:
            self._registry.waiters_changed(self)

    def _remove_callback(self, callback: DoneCallback) -> None:
        if callback in self._callbacks:
            callbacks = list(self._callbacks)
            callbacks.remove(callback)
            self._callbacks = tuple(callbacks)

    # Called by the registry only.

    def _set_status(self, details: VideoDetails) -> None:
        if details.status != self._status and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "video task %s: %s -> %s", short(self.task_id), self._status, short(details.status)
            )
        self._details = details
        self._status = details.status

    def _resolve(self, outcome: Outcome) -> None:
        self._outcome = outcome
        if self._event is not None:
            self._event.set()
        if self._record is not None:  # first, its record in the job store (the ledger)
            self._call(self._registry.record_result)
        callbacks, self._callbacks = self._callbacks, ()
        for callback in callbacks:
            self._call(callback)

    def _call(self, callback: DoneCallback) -> None:
        # User code: an error in it is logged and stays there (other jobs, the client and
        # the remaining callbacks go on).
        try:
            callback(self)
        except (Exception, asyncio.CancelledError):  # a CancelledError here is no cancel
            logger.exception(
                "done callback %r of video task %s failed", callback, short(self.task_id)
            )

    def add_done_callback(self, callback: DoneCallback) -> None:
        """Call ``callback(job)`` once the job resolves (at once if it already has).

        An exception raised by ``callback`` is logged and otherwise ignored. It is called
        synchronously: a coroutine function is refused (its coroutine would never run).
        """
        if not callable(callback) or inspect.iscoroutinefunction(callback):
            raise InvalidRequestError(
                "add_done_callback takes a plain function (called at once, not awaited); "
                f"got {short(repr(callback), 60)}"
            )
        if self._outcome is not None:
            self._call(callback)
        else:
            self._callbacks = (*self._callbacks, callback)


def outcome_of_details(job: VideoJob, details: VideoDetails) -> Outcome | None:
    """What a poll answer means for the job: a video, an error, or ``None`` (still pending).

    A flag this SDK does not know must not hang a job: with a video URL it is a success,
    if it reads as a failure it is final, anything else keeps polling (within the deadline).
    """
    status = details.status
    if details.video_url and (status.is_ok or not status.is_known):
        _check_video_url(details.video_url, details.task_id)
        video = video_from_details(details, received_at=utcnow())
        # record-info names the track, never the music task: that comes from the request.
        return _with_request(video, job.request) if job.request is not None else video
    if status.is_failure:
        return VideoGenerationError(
            details.task_id, status, details.error_code, details.error_message
        )
    return None


def _check_video_url(url: str, task_id: str) -> None:
    try:
        check_url(url, what="video URL")
    except UntrustedDataError as exc:
        raise ServerError(500, f"the API's answer is unusable: {exc}", task_id=task_id) from None


def _with_request(video: MusicVideo, request: VideoRequest) -> MusicVideo:
    return MusicVideo(
        task_id=video.task_id,
        video_url=video.video_url,
        completed_at=video.completed_at,
        audio_id=video.audio_id or request.audio_id,
        source_task_id=video.source_task_id or request.task_id,
    )


def outcome_of_callback(job: VideoJob, payload: CallbackPayload) -> Outcome | None:
    """What a callback means: success with a URL, failure for a non-200 code, else nothing."""
    if payload.ok:
        if not payload.video_url:
            return None  # nothing usable: the safety poll will tell
        _check_video_url(payload.video_url, payload.task_id)
        request = job.request
        return MusicVideo(
            task_id=payload.task_id,
            video_url=payload.video_url,
            completed_at=utcnow(),
            audio_id=None if request is None else request.audio_id,
            source_task_id=None if request is None else request.task_id,
        )
    return VideoGenerationError(
        payload.task_id, TaskStatus.GENERATE_MP4_FAILED, payload.code, payload.msg or None
    )


def _outcome(
    read: Callable[[VideoJob, Any], Outcome | None], job: VideoJob, answer: object
) -> Outcome | None:
    """``read(job, answer)``; whatever goes wrong reading one job's answer fails that job
    alone, with a typed error (never the poller, the listener or the client)."""
    try:
        return read(job, answer)
    except ServerError as exc:
        return exc
    except Exception as exc:
        logger.warning("unusable answer for video task %s: %r", short(job.task_id), exc)
        return ServerError(
            500, f"the API's answer is unusable: {type(exc).__name__}", task_id=job.task_id
        )


class JobRegistry:
    """The one place that resolves jobs. Every answer about a task — a poll result or a
    callback — lands here; a job resolves exactly once and later answers are ignored.

    A callback for a task id not registered yet (it can beat the submit response) is kept
    for ``early_ttl`` seconds, at most ``early_max`` of them (oldest dropped first), and
    handed over when the job registers.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        early_ttl: float = 600.0,
        early_max: int = 10_000,
    ) -> None:
        self._scheduler = scheduler
        self._jobs: dict[str, VideoJob] = {}
        self._early: OrderedDict[str, tuple[float, CallbackPayload]] = OrderedDict()
        self._early_ttl = early_ttl
        self._early_max = early_max
        # Recently resolved ids: a late duplicate for one of these is ignored, not buffered.
        self._recent: OrderedDict[str, None] = OrderedDict()
        self.closed: SunoMp4Error | None = None
        #: Counters (statistics): answers applied, ignored duplicates, early buffered.
        self.stats = {"resolved": 0, "ignored": 0, "early": 0, "early_dropped": 0}
        #: Called with each job that has a job-store record when it resolves, before its
        #: done callbacks (the ledger records the result; one hook, not a callback a job).
        self.record_result: DoneCallback = _ignore
        #: Called with the task id of each job registered unresolved (a relay's ``watch``:
        #: its callback may be stored already, by another process or while it was detached).
        self.watch: Callable[[str], None] | None = None

    def __len__(self) -> int:
        return len(self._jobs)

    def get(self, task_id: str) -> VideoJob | None:
        return self._jobs.get(task_id)

    def register(self, job: VideoJob, *, poll_soon: bool = False) -> VideoJob:
        """Track ``job`` (or return the job already tracked for its task id); ``poll_soon``
        for a job submitted long ago (its first poll goes out at once)."""
        existing = self._jobs.get(job.task_id)
        if existing is not None:
            return existing
        if self.closed is not None:
            job.resolved_by = "error"
            job._resolve(self.closed)
            return job
        self._jobs[job.task_id] = job
        early = self._early.pop(job.task_id, None)
        if early is not None:
            self.apply_callback(early[1])
        if not job.done():
            self._scheduler.add(job, soon=poll_soon)
            if self.watch is not None:
                self.watch(job.task_id)
        return job

    def apply_details(self, details: VideoDetails) -> bool:
        """A poll answer. Returns whether it resolved a job."""
        job = self._jobs.get(details.task_id)
        if job is None:
            self.stats["ignored"] += 1
            return False
        job._set_status(details)
        outcome = _outcome(outcome_of_details, job, details)
        if outcome is None:
            return False
        return self._resolve(job, outcome, "poll")

    def apply_callback(self, payload: CallbackPayload, *, buffer: bool = True) -> bool:
        """A callback. Returns whether it resolved a job; unknown ids are buffered (unless
        ``buffer=False``: a relay hands over other processes' callbacks too)."""
        job = self._jobs.get(payload.task_id)
        if job is None:
            if payload.task_id in self._recent or not buffer:
                self.stats["ignored"] += 1
            else:
                self._buffer(payload)
            return False
        outcome = _outcome(outcome_of_callback, job, payload)
        if outcome is None:
            return False
        return self._resolve(job, outcome, "callback")

    # The CallbackSink protocol (listener, relay).

    def deliver(self, payload: CallbackPayload, *, buffer: bool = True) -> bool:
        return self.apply_callback(payload, buffer=buffer)

    def holds(self, task_id: str) -> bool:
        return task_id in self._jobs

    def pending(self) -> list[str]:
        return list(self._jobs)

    def fail(self, job: VideoJob, error: SunoMp4Error) -> bool:
        """Resolve ``job`` with ``error`` (a permanent poll error, or its deadline)."""
        return self._resolve(job, error, "error")

    def settle(self, job: VideoJob, outcome: Outcome, source: str) -> bool:
        """Resolve ``job`` with an outcome known from elsewhere (a job store)."""
        return self._resolve(job, outcome, source)

    def _resolve(self, job: VideoJob, outcome: Outcome, source: str) -> bool:
        if job.done():
            self.stats["ignored"] += 1
            return False
        job.resolved_by = source
        if self._jobs.get(job.task_id) is job:
            del self._jobs[job.task_id]
        self._recent[job.task_id] = None
        if len(self._recent) > self._early_max:
            self._recent.popitem(last=False)
        self.stats["resolved"] += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "video task %s resolved by %s: %s",
                short(job.task_id),
                source,
                "video" if isinstance(outcome, MusicVideo) else type(outcome).__name__,
            )
        job._resolve(outcome)
        if source in ("poll", "callback"):
            self._scheduler.learn(job)
        return True

    def _buffer(self, payload: CallbackPayload) -> None:
        held = self._early.get(payload.task_id)
        if held is not None and held[1].final and held[0] > loop_time():
            # The first final callback wins, as for a registered job: a late failure, an
            # empty duplicate or a replay must not replace the result it will resolve to.
            self.stats["ignored"] += 1
            return
        payload = payload.trimmed()  # kept small: the task id may be made up
        now = loop_time()
        while self._early:  # drop what is too old, then what does not fit
            oldest_id, (expires, _) = next(iter(self._early.items()))
            if expires > now and len(self._early) < self._early_max:
                break
            del self._early[oldest_id]
            self.stats["early_dropped"] += 1
        self._early[payload.task_id] = (now + self._early_ttl, payload)
        self._early.move_to_end(payload.task_id)
        self.stats["early"] += 1

    @property
    def early_count(self) -> int:
        return len(self._early)

    def waiters_changed(self, job: VideoJob) -> None:
        """A job lost its last waiter, or got a first one."""
        if job.done():
            return
        if job.waiters == 0:
            self._release(job)
        elif job.detached:
            self._reattach(job)

    def _release(self, job: VideoJob) -> None:
        """Every waiter left (cancelled, timed out): nobody here wants the job now, so it is
        neither polled nor kept. Its record stays in a durable store for ``resume()``; a
        callback for it is buffered like any early one; waiting on it again re-attaches it."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("video task %s: every waiter left; released", short(job.task_id))
        job.detached = True
        if self._jobs.get(job.task_id) is job:
            del self._jobs[job.task_id]
        self._scheduler.forget(job)

    def _reattach(self, job: VideoJob) -> None:
        job.detached = False
        registered = self.register(job)
        if registered is not job:  # attached again meanwhile (client.job): share its outcome
            registered.add_done_callback(functools.partial(self._share, job))

    def _share(self, job: VideoJob, other: VideoJob) -> None:
        assert other._outcome is not None
        self._resolve(job, other._outcome, other.resolved_by or "poll")

    async def refresh(self, job: VideoJob) -> VideoDetails:
        details = await self._scheduler.fetch(job.task_id)
        job.polls += 1
        if self._jobs.get(job.task_id) is job:
            self.apply_details(details)
        else:
            job._set_status(details)
        return details

    def close(self, error: SunoMp4Error) -> None:
        """The client is closing: every pending job fails with ``error``; later ones too."""
        self.closed = error
        for job in list(self._jobs.values()):
            self._resolve(job, error, "error")
        self._early.clear()


async def as_completed(jobs: Iterable[VideoJob]) -> AsyncIterator[VideoJob]:
    """Yield ``jobs`` as they finish (finished ones first). Each yielded job is ``done()``:
    ``job.result()`` gives its video or raises its error. Leaving the loop early is safe."""
    pending = list(dict.fromkeys(jobs))
    send, receive = anyio.create_memory_object_stream[VideoJob](max_buffer_size=len(pending))

    def notify(job: VideoJob) -> None:
        # If the consumer left the loop, there is nobody to tell.
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            send.send_nowait(job)

    with send, receive:
        for job in pending:
            job._add_waiter()
            job.add_done_callback(notify)
        try:
            for _ in pending:
                yield await receive.receive()
        finally:
            for job in pending:
                job._remove_callback(notify)
                job._remove_waiter()
