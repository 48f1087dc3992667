"""The client's one poller: a heap of due polls served by a fixed set of workers."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import random
import zlib
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskStatus as AnyioTaskStatus

from ._clock import loop_time
from ._config import PollPolicy
from ._errors import (
    APIError,
    AuthenticationError,
    JobTimeoutError,
    NotFoundError,
    RateLimitError,
    SunoMp4Error,
    ValidationError,
)
from ._jobs import JobRegistry, VideoJob
from ._models import VideoDetails
from ._survival import RenderTimeEstimate
from ._untrusted import short

__all__ = ["Poller"]

logger = logging.getLogger("suno_mp4.poller")

#: The longest pause a job without a deadline (``max_wait=None``) waits out for a server.
_LONGEST_PAUSE = 86_400.0

#: Poll answers that will not get better by asking again: the job fails with them.
_PERMANENT = (AuthenticationError, NotFoundError, ValidationError)


#: A heap entry: its due time in whole microseconds (rounded down) of the loop's clock, above
#: ``_NUMBER_BITS`` bits holding its number; the job is looked up by the number. One int
#: (about 36 bytes): the garbage collector never tracks it, where a ``(due, number)`` tuple
#: and its float (about 80 bytes) were tracked until a collection walked them. Ints order as
#: the tuples did: by due time, then number.
Entry = int
_NUMBER_BITS = 48  # 2.8e14 entries: nine years at a million schedules a second
_NUMBER_MASK = (1 << _NUMBER_BITS) - 1
#: Due times are capped here (about 31,700 years): a server's ``Retry-After`` can be ``inf``.
_FAR = 1e12


def _entry(due: float, number: int) -> Entry:
    return (math.floor(min(due, _FAR) * 1_000_000) << _NUMBER_BITS) | number


def _due(entry: Entry) -> float:
    return (entry >> _NUMBER_BITS) / 1_000_000


def _due_by(now: float) -> Entry:
    """The entries due by ``now`` are those below this one (the next microsecond's first)."""
    return _entry(now, 0) + (1 << _NUMBER_BITS)


class Poller:
    """Asks the API about pending jobs when they are due, never with a task per job.

    One scheduler task keeps a heap of (due time, job); ``workers`` tasks send the polls,
    all through the client's limiter. Jobs expecting a callback get only a safety poll
    every ``fallback_interval``. A job that had waiters and lost them all is not polled
    until someone waits again. A job has one entry in the heap: its next poll, or its
    ``max_wait`` deadline when that comes first.
    """

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[VideoDetails]],
        policy: PollPolicy,
        *,
        workers: int = 32,
        rng: random.Random | None = None,
    ) -> None:
        self._registry: JobRegistry | None = None
        self._fetch = fetch
        self.policy = policy
        self._workers = workers
        self._rng = rng or random.Random()
        self._heap: list[Entry] = []
        #: The job of each live heap entry, by the entry's number (``job.poll_generation``).
        self._entries: dict[int, VideoJob] = {}
        self._seq = itertools.count(1)
        self._wake = asyncio.Event()  # asyncio's own: made at every scheduler turn
        self._stale = 0
        #: The learned render-time distribution (``PollPolicy(schedule="learned")``).
        self.estimate = RenderTimeEstimate() if policy.schedule == "learned" else None
        self._learned = None if self.estimate is None else LearnedSchedule(self.estimate, policy)
        #: Polls sent (statistics).
        self.polls = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, job: VideoJob, *, soon: bool = False) -> None:
        """Start tracking a newly registered job (polled at once if ``soon``: one attached
        to a submit made long ago, whose render may well be over)."""
        self._schedule(job, delay=0.0 if soon else None)

    def _schedule(self, job: VideoJob, *, delay: float | None = None) -> None:
        now = loop_time()
        if delay is None:
            if job.via_listener:
                base = self.policy.fallback_interval
                delay = base * (1 + self.policy.jitter * (2 * self._rng.random() - 1))
            else:
                delay = self._learned_delay(job, now)
                if delay is None:
                    delay = self.policy.delay(job.poll_attempt, self._rng)
        due = now + delay
        deadline = job.deadline
        self._push(due if deadline is None or due < deadline else deadline, job)

    def _learned_delay(self, job: VideoJob, now: float) -> float | None:
        """The learned schedule's next gap (within the policy's bounds), or ``None``."""
        if self._learned is None:
            return None
        return self._learned.delay(job.created_at, now, job.poll_attempt, lane(job.task_id))

    def learn(self, job: VideoJob) -> None:
        """A job resolved: its render time feeds the estimate (the server's timestamps when
        the details carry both, else the time since it was submitted here)."""
        if self.estimate is None:
            return
        details = job.details
        took: float | None = None
        if details is not None and details.created_at and details.completed_at:
            took = (details.completed_at - details.created_at).total_seconds()
        if job._attached:
            # Submitted elsewhere or earlier: only the server's figure says anything (the
            # estimate refuses an implausible one: a far-off timestamp).
            if took is not None and not took > 0:
                took = None
        else:
            # The render ended between the submit and now: a server's figure outside that
            # (or of 0 s: its times are whole seconds) is not taken; the local one is.
            local = loop_time() - job.created_at
            if took is None or not 0 < took <= local + 1.0:
                took = local
        if took is not None and job.exception() is None:
            self.estimate.finished(job.task_id, took)
        else:
            self.estimate.forget(job.task_id)

    def _push(self, due: float, job: VideoJob) -> None:
        entries = self._entries
        entries.pop(job.poll_generation, None)  # its older entry, if any, is dead
        job.poll_generation = number = next(self._seq)
        entries[number] = job
        entry = _entry(due, number)
        earliest = not self._heap or entry < self._heap[0]
        heapq.heappush(self._heap, entry)
        if earliest:
            self._wake.set()  # new earliest entry: the scheduler must re-time its sleep

    def forget(self, job: VideoJob) -> None:
        """``job`` was released: its entry is dead, and the poller holds it no more. The
        heap is rebuilt without dead entries once about half of it is dead (amortised
        O(log n) a job)."""
        if self._entries.pop(job.poll_generation, None) is None:
            return
        self._stale += 1
        if self._stale > len(self._heap) // 2:
            live = self._entries
            self._heap = [entry for entry in self._heap if entry & _NUMBER_MASK in live]
            heapq.heapify(self._heap)
            self._stale = 0

    async def fetch(self, task_id: str) -> VideoDetails:
        """Ask the API about ``task_id`` now (``job.refresh()``)."""
        return await self._fetch(task_id)

    async def run(
        self,
        registry: JobRegistry,
        *,
        task_status: AnyioTaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``registry``'s jobs: the scheduler and its workers, until cancelled."""
        self._registry = registry
        # asyncio's queue, not anyio's memory stream: one hand-over per poll, on the hot
        # path; a slot of one keeps the backpressure (the scheduler waits for a worker).
        handover: asyncio.Queue[VideoJob] = asyncio.Queue(maxsize=1)
        async with anyio.create_task_group() as tg:
            for _ in range(self._workers):
                tg.start_soon(self._worker, handover)
            task_status.started()
            while True:
                # In a function of its own: no job stays referenced while the scheduler sleeps.
                now = await self._dispatch_due(handover)
                self._wake = asyncio.Event()
                delay = _due(self._heap[0]) - now if self._heap else math.inf
                with anyio.move_on_after(delay):
                    await self._wake.wait()

    async def _dispatch_due(self, handover: asyncio.Queue[VideoJob]) -> float:
        """Hand every due poll to a worker and expire every due deadline; returns now."""
        now = loop_time()
        entries = self._entries  # (the heap is re-read: forget() may rebuild it meanwhile)
        while self._heap and self._heap[0] < _due_by(now):
            job = entries.pop(heapq.heappop(self._heap) & _NUMBER_MASK, None)
            if job is None or job.done() or job.detached:
                continue
            deadline = job.deadline
            if deadline is not None and deadline <= now:
                self._expire(job)
            else:
                await handover.put(job)  # waits for a free worker: natural backpressure
            now = loop_time()
        return now

    def _expire(self, job: VideoJob) -> None:
        assert self._registry is not None
        waited = loop_time() - job.created_at
        self._registry.fail(job, JobTimeoutError(job.task_id, waited))

    async def _worker(self, handover: asyncio.Queue[VideoJob]) -> None:
        while True:
            job = await handover.get()
            await self.poll(job)
            del job  # not kept alive while this worker waits for the next one

    async def poll(self, job: VideoJob) -> None:
        """One poll of ``job``; its answer goes to the registry, then the next is scheduled."""
        if job.done() or self._registry is None:
            return
        generation = job.poll_generation
        try:
            details = await self._fetch(job.task_id)
        except _PERMANENT as exc:
            self._registry.fail(job, exc)
            return
        except (APIError, SunoMp4Error) as exc:
            # Retries are spent (or the server asked for a long pause): try again later.
            delay = self.policy.max_interval
            if isinstance(exc, RateLimitError) and exc.retry_after is not None:
                deadline = job.deadline
                left = _LONGEST_PAUSE if deadline is None else deadline - loop_time()
                if exc.retry_after >= left:
                    # The pause outlasts the job's max_wait (or a day, with none): its
                    # waiters hear it now, not at the deadline (the job stays attachable).
                    self._registry.fail(job, exc)
                    return
                delay = max(delay, exc.retry_after)
            logger.warning(
                "poll of %s failed (%s); next try in %.0f s", short(job.task_id), exc, delay
            )
            self._reschedule(job, generation, delay)
            return
        except Exception:
            logger.exception("unexpected error polling %s; will poll again", short(job.task_id))
            self._reschedule(job, generation, self.policy.max_interval)
            return
        self.polls += 1
        job.polls += 1
        job.poll_attempt += 1
        try:
            self._registry.apply_details(details)
            if self.estimate is not None and not job.done() and not job._attached:
                self.estimate.pending(job.task_id, loop_time() - job.created_at)
            self._reschedule(job, generation, None)
        except Exception:  # one job's answer or schedule never stops the poller's worker
            logger.exception("unexpected error after polling %s", short(job.task_id))
            self._reschedule(job, generation, self.policy.max_interval)

    def _reschedule(self, job: VideoJob, generation: int, delay: float | None) -> None:
        # Not if it resolved, lost its waiters, or was rescheduled meanwhile (re-attached).
        if job.done() or job.detached or generation != job.poll_generation:
            return
        self._schedule(job, delay=delay)


class LearnedSchedule:
    """The learned schedule's gaps, for the poller and the simulation alike.

    A job keeps the schedule it started on: one submitted while the estimate warmed up is
    polled on the geometric schedule to the end. (Planned for a whole life, the plan would
    spend its budget again on polls the job already had: 2,000 jobs submitted at once were
    polled 4-5 times each instead of 3.2-3.8.) An estimate restored from a store is ready
    from the first job.
    """

    def __init__(self, estimate: RenderTimeEstimate, policy: PollPolicy) -> None:
        self.estimate = estimate
        self.policy = policy
        self._since: float | None = None  # jobs made from then on follow the plan
        self._warming = False
        #: The shortest gap between two polls of a job: 0.05 s at the default first poll
        #: (2 s), in proportion below it (a policy scaled to faster renders scales it too),
        #: never under 1 ms.
        self.min_gap = max(0.001, min(0.05, policy.initial_delay / 40))

    def delay(self, created_at: float, now: float, attempt: int, lane: float) -> float | None:
        """The gap to the next poll of a job made at ``created_at`` (``None``: the geometric
        schedule's)."""
        if self._since is None:
            if not self.estimate.ready:
                self._warming = True
                return None
            self._since = now if self._warming else -math.inf
        if created_at < self._since:
            return None
        # On the schedule planned for ``polls_per_job`` (``lane`` picks one of the plan's
        # two), within the policy's bounds; past the longest render seen, a gap growing
        # with the job's age.
        estimate, policy, age = self.estimate, self.policy, now - created_at
        if not estimate.ready:
            return None
        when = estimate.planned_after(age, budget=policy.polls_per_job, lane=lane)
        floor = self.min_gap
        low = policy.initial_delay if attempt == 0 else floor
        if when is None:
            return min(policy.max_interval, max(low - age, floor, age * 0.3))
        return min(policy.max_interval, max(low - age, when - age, floor))


def lane(task_id: str) -> float:
    """A number in [0, 1) fixed by the task id (the same in every process): which of the
    learned plan's two schedules the job follows."""
    return zlib.crc32(task_id.encode("utf-8", "surrogatepass")) / 2**32
