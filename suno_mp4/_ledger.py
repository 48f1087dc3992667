"""The ledger: every submit keyed and written ahead in the job store, so none is paid for
twice. It turns stored records into jobs (finished, attached, in doubt), resumes a
restarted process, takes over dead workers' jobs and records every result."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import attrs
from anyio.abc import TaskStatus as StartStatus
from anyio.streams.memory import MemoryObjectSendStream

from ._callbacks import CallbackRelay
from ._clock import loop_time
from ._errors import (
    APIError,
    ClientClosedError,
    InvalidRequestError,
    JobStoreError,
    NotFoundError,
    ServerError,
    SubmissionInDoubtError,
    TransportError,
    ValidationError,
    VideoGenerationError,
    is_unsent,
)
from ._jobs import JobRegistry, VideoJob
from ._models import TaskStatus, VideoRequest
from ._store import (
    DONE,
    FAILED,
    REJECTED,
    SUBMITTED,
    SUBMITTING,
    UNKNOWN,
    JobRecord,
    JobStore,
    LeasedJobStore,
    MemoryJobStore,
)
from ._untrusted import short

__all__ = ["Ledger", "check_same_request"]

logger = logging.getLogger("suno_mp4.store")

#: Sends a submit body (calling ``before_send`` just before it goes out, and awaiting what
#: it returns unless ``None``); returns the task id.
Send = Callable[[dict[str, Any], Callable[[], Awaitable[None] | None]], Awaitable[str]]
#: Makes a job: (task id, request, expects a callback).
NewJob = Callable[[str, VideoRequest | None, bool], VideoJob]


class Ledger:
    """Owns the client's job store: the only code that writes to it."""

    def __init__(
        self,
        store: JobStore,
        registry: JobRegistry,
        *,
        send: Send,
        new_job: NewJob,
        relay: CallbackRelay | None,
        submit_window: float,
        max_concurrent_submits: int,
        write_timeout: float = 35.0,
        on_claim: Callable[[VideoJob], object] | None = None,
    ) -> None:
        self.store = store
        # The in-memory store (the default) is used through its synchronous methods: none
        # of its work waits, and a coroutine per call is a cost on every submit.
        self._memory = store if type(store) is MemoryJobStore else None
        self._registry = registry
        self._send = send
        self._new_job = new_job
        self._relay = relay
        #: How long a submit can be on the wire (every attempt timing out), plus a margin.
        self._submit_window = submit_window
        #: How long the write-ahead record may take (then the submit fails, unsent).
        self._write_timeout = write_timeout
        # Submits on the wire at once. A crash can leave only these in doubt; the API takes
        # a submit in milliseconds, so 16 in flight is far above any account's rate limit.
        # A count and a queue, not a semaphore: taking a free slot is no call at all.
        self._free_slots = max_concurrent_submits
        self._slot_queue: deque[asyncio.Future[None]] = deque()
        #: Keys with a submit under way here, each with the futures of submits waiting for it.
        self._busy: dict[str, list[asyncio.Future[None]] | None] = {}
        self._on_claim = on_claim
        self._saves: MemoryObjectSendStream[JobRecord] | None = None  # while run() runs
        registry.record_result = self._job_finished
        if relay is not None:
            registry.watch = relay.watch  # each job registered: its result may be stored
        #: Jobs taken over from dead workers of a shared store (statistics).
        self.claimed = 0
        #: Whether the store refused a submit's record (locked, read-only, corrupt).
        self.store_failed = False

    # Submitting.

    async def submit(
        self, request: VideoRequest, key: str, body: dict[str, Any], *, via_listener: bool
    ) -> VideoJob:
        """The job of ``request`` under ``key``: the one the store knows, or a new submit.

        Write-ahead: the record is inserted as ``submitting`` just before the request goes
        out — atomically: of many processes submitting one key, one goes ahead — so a crash
        after that point is reported on restart as in doubt instead of being paid twice.
        """
        # Same key in this process: one submit at a time, so one job. The key is busy while
        # a submit of it runs; another waits until it is free, then looks at the store again
        # (which then knows the first one's job). Nothing is made for a key nobody contends.
        busy = self._busy
        while key in busy:
            waiters = busy[key]
            if waiters is None:
                waiters = busy[key] = []
            free = asyncio.get_running_loop().create_future()
            waiters.append(free)
            await free
        busy[key] = None
        try:
            memory = self._memory
            existing = memory.peek(key) if memory else await self.store.get(key)
            if existing is not None and existing.state is not REJECTED:
                check_same_request(existing, request)
                return await self.job_of_record(existing)
            ahead = _WriteAhead(self, key, request, via_listener)
            holder: JobRecord | None = None
            if self._free_slots > 0 and not self._slot_queue:
                self._free_slots -= 1
            else:
                await self._wait_for_slot()
            try:
                task_id = await self._send(body, ahead)
            except _KeyTaken as taken:  # another process holds the key: nothing was sent
                holder = taken.holder
            except BaseException as exc:
                if isinstance(exc, JobStoreError):
                    self.store_failed = True
                if ahead.record is not None:  # else nothing was sent: nothing to keep
                    state = REJECTED if _certainly_not_taken(exc) else UNKNOWN
                    await self._save_now(attrs.evolve(ahead.record, state=state, error=str(exc)))
                raise
            finally:
                self._release_slot()
            if holder is not None:
                check_same_request(holder, request)
                return await self.job_of_record(holder)
            record = ahead.submitted(task_id)
            # The API took the job: the caller gets it even if the store fails now (an
            # error would invite a second, paid submit); a restart then lists it as unknown.
            if memory is not None:
                memory.put(record)
            else:
                await self._save_now(record)
            return self._track(self._new_job(task_id, request, via_listener), record)
        finally:
            for waiter in busy.pop(key) or ():
                if not waiter.done():
                    waiter.set_result(None)

    async def _wait_for_slot(self) -> None:
        """Wait for a submit slot, first come first served."""
        turn = asyncio.get_running_loop().create_future()
        self._slot_queue.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._release_slot()  # handed a slot just as cancelled: pass it on
            elif turn in self._slot_queue:
                self._slot_queue.remove(turn)
            raise

    def _release_slot(self) -> None:
        """A submit left the wire: its slot goes to the first waiter, else back to the pool."""
        queue = self._slot_queue
        while queue:
            turn = queue.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._free_slots += 1

    async def _insert(self, record: JobRecord, ahead: _WriteAhead) -> None:
        """``store.insert`` within ``write_timeout``, then :meth:`_WriteAhead.keep`: it runs
        shielded, before the submit goes out, and a store that hangs must not hang the
        submit (nothing is sent then)."""
        with anyio.move_on_after(self._write_timeout) as scope:
            holder = await self.store.insert(record)
        if scope.cancelled_caught:
            # (The insert may yet land: a store's worker thread is not abandoned. Its record
            # then reads "submitting", in doubt though nothing was sent: a false alarm, but
            # overwriting it later could overwrite a newer submit's record of the key.)
            raise TransportError(
                f"the job store did not take the submission's record within "
                f"{self._write_timeout:.0f} s; nothing was sent",
                endpoint="job store",
                sent=False,
            )
        ahead.keep(record, holder)

    # Records to jobs.

    async def job_of_record(self, record: JobRecord) -> VideoJob:
        """The job for a record the store holds under its key (never a new submit):
        finished → resolved from the store; submitted → attached; in doubt → raises
        :class:`SubmissionInDoubtError`. A ``submitting`` record young enough to be another
        process's submit on the wire is waited for."""
        delay = 0.05
        give_up = loop_time() + self._submit_window
        while record.state is SUBMITTING:
            if self._stale(record) or loop_time() > give_up:
                raise SubmissionInDoubtError(record.key)
            # Another process's submit: no event crosses processes, so look again.
            await anyio.sleep(delay)
            delay = min(1.0, delay * 2)
            latest = await self.store.get(record.key)
            if latest is None:
                raise SubmissionInDoubtError(record.key, "the submission's record vanished")
            record = latest
        if record.finished and record.task_id:
            return self.from_store(record)
        if record.state is SUBMITTED and record.task_id:
            return self.attach(record)
        raise SubmissionInDoubtError(record.key)

    def attach(self, record: JobRecord) -> VideoJob:
        """The job of a ``submitted`` record: the one tracked already, or a new one. A new
        one expects a callback only through a relay: the callback URL it was submitted with
        may carry the secret of a listener that is gone (another process, or a restart)."""
        assert record.task_id is not None
        existing = self._registry.get(record.task_id)
        if existing is not None:
            return existing
        expect = record.via_listener and self._relay is not None
        job = self._new_job(record.task_id, record.request, expect)
        job._attached = True
        # Submitted a while ago (a re-run, a resume, another worker's job): its render may
        # well be over, so its first poll goes out now, not a first delay from now.
        return self._track(job, record, poll_soon=time.time() - record.updated_at > 1.0)

    def track(self, job: VideoJob) -> VideoJob:
        """Register a job that has no record (attached by id)."""
        job._attached = True
        return self._track(job, None)

    def _track(
        self, job: VideoJob, record: JobRecord | None, *, poll_soon: bool = False
    ) -> VideoJob:
        # Before it registers (which can resolve it: an early callback): when the job
        # resolves, the registry has the ledger record its result under this record.
        job._record = record
        return self._registry.register(job, poll_soon=poll_soon)

    def from_store(self, record: JobRecord) -> VideoJob:
        """A job already resolved from a finished record (no request is made)."""
        assert record.task_id is not None
        job = VideoJob(record.task_id, record.request, registry=self._registry, max_wait=None)
        if record.state == DONE and record.video is not None:
            self._registry.settle(job, record.video, "store")
        else:
            error = VideoGenerationError(
                record.task_id, TaskStatus.GENERATE_MP4_FAILED, None, record.error
            )
            self._registry.settle(job, error, "store")
        return job

    async def finished_records_of(self, requests: list[VideoRequest]) -> dict[str, JobRecord]:
        """The finished records under the requests' keys, when the store can look many up
        at once (``get_many``); others are looked up by ``submit`` one by one."""
        get_many = getattr(self.store, "get_many", None)
        if get_many is None or len(requests) < 2:
            return {}
        found: dict[str, JobRecord] = await get_many([r.key for r in requests])
        return {key: r for key, r in found.items() if r.finished and r.task_id}

    # Results.

    def _job_finished(self, job: VideoJob) -> None:
        record = job._record
        assert record is not None
        error = job.exception()
        if error is not None and not _final(error):
            # Not the API saying the task failed or does not exist (a closed client, a wait
            # that ran out, a refused key, an unusable answer, a long pause): the remote
            # task may yet finish, so the record stays resumable (a later run attaches to it
            # and asks again, sending nothing), instead of reading "failed" and inviting a
            # paid re-submit.
            return
        if error is None:
            final = attrs.evolve(record, state=DONE, video=job.result(), updated_at=time.time())
        else:
            final = attrs.evolve(record, state=FAILED, error=str(error), updated_at=time.time())
        if self._memory is not None:
            self._memory.put(final)  # at once: nothing to wait for
        elif self._saves is not None:
            self._saves.send_nowait(final)  # saved by run(), off this synchronous callback

    async def run(self, *, task_status: StartStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Save the results of finished jobs, until cancelled with the client; what is
        queued then is still saved (for a few seconds at most)."""
        send, receive = anyio.create_memory_object_stream[JobRecord](math.inf)
        self._saves = send
        task_status.started()
        with send, receive:
            try:
                async for record in receive:
                    await self._save_now(record)
            finally:
                self._saves = None
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    while True:
                        try:
                            record = receive.receive_nowait()
                        except anyio.WouldBlock:
                            break
                        await self._save_now(record)

    async def _save_now(self, record: JobRecord) -> None:
        """Save a record after the fact: a store failure is logged, never raised (the job
        itself is fine, and a background save must not bring the client down). Shielded
        from cancellation, except in the in-memory store: its save never suspends, so no
        cancellation can reach it half-way (and a shield costs a few µs a submit)."""
        if self._memory is not None:
            self._memory.put(record)
        else:
            with anyio.CancelScope(shield=True):
                await self._save(record)

    async def _save(self, record: JobRecord) -> None:
        try:
            await self.store.save(record)
        except Exception as exc:
            logger.error(
                "could not record %s (%s) in the job store: %s",
                short(record.task_id or record.key),
                record.state,
                exc,
            )

    # After a restart, and dead workers' jobs.

    async def resume(self, *, include_finished: bool = False) -> AsyncIterator[VideoJob]:
        """See :meth:`Client.resume`."""
        if include_finished:
            for record in await self.store.by_state(DONE, FAILED):
                if record.task_id:
                    yield self.from_store(record)
        for record in await self.store.unfinished():
            if record.state == SUBMITTED and record.task_id:
                yield self.attach(record)
            elif record.state == SUBMITTING and self._abandoned(record):
                # Read again just before: its submit may have been answered meanwhile.
                latest = await self.store.get(record.key)
                if latest == record:
                    await self._mark_unknown(record, "was interrupted")

    def _abandoned(self, record: JobRecord) -> bool:
        """Whether a ``submitting`` record is no live submit's (here, or another process's
        sharing the store): its writer is gone, or it is older than any submit can be on
        the wire. (A live one is answered soon: marked unknown now, its answer would be
        overwritten, and a job the API took lost.)"""
        return record.key not in self._busy and self._stale(record)

    def _stale(self, record: JobRecord) -> bool:
        """Whether a ``submitting`` record can be no submit on the wire: its writer is gone,
        or it is older than any submit can be on the wire."""
        age = time.time() - record.updated_at
        return record.writer_is_gone() or age > self._submit_window

    async def unknown_submissions(self) -> list[JobRecord]:
        return list(await self.store.by_state(UNKNOWN, SUBMITTING))

    async def keep_lease(
        self, store: LeasedJobStore, *, task_status: StartStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Renew this worker's lease on its jobs; take over the jobs of workers whose lease
        ended (they died): poll them to the end, never submit them again."""
        await store.renew()
        task_status.started()
        while True:
            await anyio.sleep(store.lease_seconds / 3)
            try:
                await store.renew()
                records = await store.claim()
            except Exception as exc:
                logger.warning("job store lease renewal failed: %s", exc)
                continue
            for record in records:
                await self._adopt(record)

    async def _adopt(self, record: JobRecord) -> None:
        if record.state == SUBMITTED and record.task_id:
            if self._registry.get(record.task_id) is None:
                self.claimed += 1
                logger.info("took over video task %s from a dead worker", short(record.task_id))
                job = self.attach(record)
                if self._on_claim is not None:
                    try:
                        self._on_claim(job)
                    except Exception:
                        logger.exception("on_claim failed for video task %s", short(record.task_id))
        elif record.state == SUBMITTING:
            await self._mark_unknown(record, "was cut short by a dead worker")

    async def _mark_unknown(self, record: JobRecord, why: str) -> None:
        """A submission under way when its process died is never re-sent: it is unknown."""
        logger.warning(
            "submission of %s/%s %s: it may have been submitted; not re-sent (see "
            "client.unknown_submissions())",
            short(record.request.task_id),
            short(record.request.audio_id),
            why,
        )
        await self.store.save(attrs.evolve(record, state=UNKNOWN))


class _WriteAhead:
    """A submit's ``before_send``: writes its ``submitting`` record just before the request
    goes out, and keeps it. (One object a submit: a closure made five cells and a list,
    each an object the garbage collector walks while the submit is on the wire.)"""

    __slots__ = ("key", "ledger", "record", "request", "via_listener")

    def __init__(self, ledger: Ledger, key: str, request: VideoRequest, via_listener: bool) -> None:
        self.ledger = ledger
        self.key = key
        self.request = request
        self.via_listener = via_listener
        #: The record once written (the request may then be on the wire).
        self.record: JobRecord | None = None

    def __call__(self) -> Awaitable[None] | None:
        # Made now, not when the submit queued: its time says when it went out.
        record = JobRecord(self.key, self.request, SUBMITTING, via_listener=self.via_listener)
        memory = self.ledger._memory
        if memory is None:
            return self.ledger._insert(record, self)
        self.keep(record, memory.put_new(record))  # at once: nothing in memory waits
        return None

    def keep(self, record: JobRecord, holder: JobRecord | None) -> None:
        """``record`` inserted, unless ``holder`` (another process's) had the key first:
        then :class:`_KeyTaken`, and nothing is sent."""
        if holder is not None:
            raise _KeyTaken(holder)
        self.record = record

    def submitted(self, task_id: str) -> JobRecord:
        """The ``submitted`` record, once the API took the job as ``task_id``."""
        written = self.record
        assert written is not None
        return JobRecord(
            self.key,
            self.request,
            SUBMITTED,
            task_id=task_id,
            via_listener=self.via_listener,
            updated_at=written.updated_at,
            owner=written.owner,
        )


class _KeyTaken(Exception):
    """Raised from the write-ahead when another process holds the key: nothing is sent."""

    def __init__(self, holder: JobRecord) -> None:
        self.holder = holder


def _final(error: BaseException) -> bool:
    """Whether ``error`` ends a job for good (recorded ``failed``): the API said the
    rendering failed, or (in its own envelope, not a proxy's page) knows no such task."""
    if isinstance(error, NotFoundError | ValidationError):
        return error.enveloped
    return isinstance(error, VideoGenerationError)


def check_same_request(record: JobRecord, request: VideoRequest) -> None:
    """Raises :class:`InvalidRequestError` when ``record``, found under the key given for
    ``request``, is another request's: its job would be another track's video."""
    theirs = record.request
    if (theirs.task_id, theirs.audio_id, theirs.author, theirs.domain_name) != (
        request.task_id,
        request.audio_id,
        request.author,
        request.domain_name,
    ):
        raise InvalidRequestError(
            f"the key {short(record.key)!r} already names another request (track "
            f"{short(theirs.task_id)}/{short(theirs.audio_id)}); give each request its own key"
        )


def _certainly_not_taken(exc: BaseException) -> bool:
    """Whether a failed submit certainly did not create a job: an answer refusing it (401,
    402, 422, 429, 455, ...) or a connection never made. A 5xx, a code no table knows, a
    cut connection, a lost answer or a cancellation while on the wire may have created one."""
    if is_unsent(exc):  # stopped while waiting to retry refused sends (a cancellation)
        return True
    if isinstance(exc, TransportError | ClientClosedError):
        return exc.sent is False
    return (
        isinstance(exc, APIError) and type(exc) is not APIError and not isinstance(exc, ServerError)
    )
