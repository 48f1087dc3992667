"""The ``Client``: one session, one transport, one registry, one poller, optional listener."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import random
import time
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
import anyio
import attrs
import cattrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._callbacks import CallbackListener, CallbackRelay
from ._convert import converter
from ._download import Progress, download
from ._errors import (
    APIKLEY_CODES,
    APIError,
    ClientClosedError,
    InvalidRequestError,
    JobTimeoutError,
    ServerError,
    SubmissionInDoubtError,
    SunoMp4Error,
    TransportError,
    VideoGenerationError,
)
from ._jobs import JobRegistry, VideoJob
from ._models import MusicVideo, TaskStatus, VideoDetails, VideoRequest
from ._policies import PollPolicy, RateLimit, RequestLimiter, RetryPolicy, SharedRateLimit
from ._poller import Poller
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
from ._transport import MAX_RESPONSE_BYTES, Transport
from ._untrusted import UntrustedDataError, check_id, check_url, short

__all__ = ["DEFAULT_BASE_URL", "NO_CALLBACK_URL", "BatchResult", "Client"]

logger = logging.getLogger("suno_mp4")

#: The seed provider's documented server.
DEFAULT_BASE_URL = "https://api.apikley.ru"

#: ``callBackUrl`` is required by the API. Without a listener or an explicit URL we send an
#: address under the reserved ``.invalid`` top-level domain (RFC 2606): it can never
#: resolve, so no third party ever receives the result.
NO_CALLBACK_URL = "https://callback.invalid/suno-mp4"

GENERATE = "/api/v1/mp4/generate"
RECORD_INFO = "/api/v1/mp4/record-info"


@attrs.frozen
class BatchResult:
    """One item of ``create_videos``: the request, and either its video or its error."""

    request: VideoRequest
    video: MusicVideo | None = None
    error: SunoMp4Error | None = None
    job: VideoJob | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


class Client:
    """The asyncio client of the music-video API.

    Use it as ``async with Client() as client:``; it owns one ``aiohttp.ClientSession``,
    a poller that serves every pending job, and (with ``callbacks=``) a callback listener.
    ``api_key`` falls back to ``$APIKLEY_API_KEY``, ``base_url`` to ``$SUNO_MP4_BASE_URL``
    and then to the provider's documented server.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        callbacks: CallbackListener | None = None,
        poll: PollPolicy | None = None,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | SharedRateLimit | None = None,
        store: JobStore | None = None,
        relay: CallbackRelay | None = None,
        callback_url: str | None = None,
        on_claim: Callable[[VideoJob], object] | None = None,
        timeout: float = 30.0,
        max_connections: int = 100,
        max_concurrent_submits: int = 16,
        codes: Mapping[int, type[APIError]] = APIKLEY_CODES,
        seed: int | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("APIKLEY_API_KEY")
        if key is not None and not isinstance(key, str):
            raise InvalidRequestError(f"api_key must be a string, got {type(key).__name__}")
        if not key or not key.strip():
            raise InvalidRequestError(
                "no API key: pass Client(api_key=...) or set the APIKLEY_API_KEY environment "
                "variable"
            )
        url = base_url or os.environ.get("SUNO_MP4_BASE_URL") or DEFAULT_BASE_URL
        _check_url(url, "base_url")
        _check_url(callback_url, "callback_url")
        _check_number(timeout, "timeout", minimum=0, exclusive=True)
        _check_number(max_connections, "max_connections", minimum=1, integer=True)
        _check_number(max_concurrent_submits, "max_concurrent_submits", minimum=1, integer=True)
        _check_number(max_response_bytes, "max_response_bytes", minimum=1024, integer=True)
        _check_type(callbacks, "callbacks", CallbackListener)
        _check_type(poll, "poll", PollPolicy)
        _check_type(retry, "retry", RetryPolicy)
        _check_type(rate_limit, "rate_limit", (RateLimit, SharedRateLimit))
        _check_type(store, "store", JobStore)
        _check_type(relay, "relay", CallbackRelay)
        _check_type(codes, "codes", Mapping)
        _check_type(seed, "seed", int)
        if on_claim is not None and not callable(on_claim):
            raise InvalidRequestError("on_claim must be a function of the claimed job")
        self._api_key = key.strip()
        self.base_url = url.rstrip("/")
        self.callbacks = callbacks
        self.poll_policy = poll or PollPolicy()
        self.retry_policy = retry or RetryPolicy()
        self.rate_limit = rate_limit
        self.timeout = timeout
        self.max_connections = max_connections
        #: Largest API answer read (after decompression); a larger one is a ``ServerError``.
        self.max_response_bytes = max_response_bytes
        # Submits on the wire at once. A crash can leave only these in the "unknown: may
        # have been submitted" state; the API takes a submit in milliseconds, so 16 in
        # flight is still far above any account's rate limit.
        self._submit_slots = anyio.Semaphore(max_concurrent_submits)
        self._codes = codes
        self._rng = random.Random(seed)
        self.store: JobStore = store if store is not None else MemoryJobStore()
        #: Hands callbacks received by any process to the one awaiting the job (Redis).
        self.relay = relay
        #: ``callBackUrl`` for jobs when there is no listener here: another process's
        #: listener (with ``relay``, the callbacks come back through it).
        self.callback_url = callback_url
        #: Jobs this client took over from dead workers of a shared store (statistics).
        self.claimed = 0
        #: Called with each job taken over from a dead worker (``LeasedJobStore``), e.g. to
        #: download its video when it finishes; its record is saved when it finishes anyway.
        self.on_claim = on_claim
        self._batches: weakref.WeakSet[Batch] = weakref.WeakSet()
        self._key_locks: dict[str, tuple[anyio.Lock, int]] = {}
        self.registry = JobRegistry()
        self.limiter = RequestLimiter(rate_limit)
        self._transport: Transport | None = None
        self._poller: Poller | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop = anyio.Event()
        self._failed: BaseException | None = None
        self._tg: TaskGroup | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._transport else "new"
        return f"<suno_mp4.Client {self.base_url} {state}>"  # never the key

    # Lifecycle.

    async def __aenter__(self) -> Self:
        if self._closed:
            raise ClientClosedError("this Client was closed; create a new one")
        if self._runner is not None:
            raise ClientClosedError("this Client is already running")
        # The background work (poller, listener, relay, lease) lives in a task of its own,
        # owned by the client: aclose() may then come from any task, and a failure in it
        # fails the pending jobs instead of cancelling the code inside `async with`.
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._runner = loop.create_task(self._run(ready), name=f"suno_mp4.Client {self.base_url}")
        try:
            await ready
        except BaseException:
            self._closed = True
            self._stop.set()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([self._runner])
            raise
        return self

    async def _run(self, ready: asyncio.Future[None]) -> None:
        """The client's runtime: starts every component, serves until :meth:`aclose`."""
        try:
            async with AsyncExitStack() as stack:
                await self._start(stack, ready)
        except BaseException as exc:
            if not ready.done():
                if isinstance(exc, asyncio.CancelledError):
                    ready.cancel()
                else:
                    ready.set_exception(_single(exc))
                return
            if isinstance(exc, asyncio.CancelledError):
                raise
            logger.error("the client's background work failed", exc_info=exc)
            self._failed = exc
            self.registry.close(
                ClientClosedError(
                    f"the Client stopped after an internal error ({type(exc).__name__}); the "
                    "task keeps running on the server: re-attach with client.job(task_id)"
                )
            )
        finally:
            self.registry.poller = None
            self.registry.fetch = None
            self._transport = None

    async def _start(self, stack: AsyncExitStack, ready: asyncio.Future[None]) -> None:
        connector = aiohttp.TCPConnector(limit=self.max_connections)
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=connector, raise_for_status=False)
        )
        transport = Transport(
            session,
            base_url=self.base_url,
            api_key=self._api_key,
            retry=self.retry_policy,
            limiter=self.limiter,
            timeout=self.timeout,
            codes=self._codes,
            rng=self._rng,
            max_response_bytes=self.max_response_bytes,
        )
        self.registry.fetch = self.get_video_details
        if self.callbacks is not None:
            listener = self.callbacks
            listener.bind(self.registry, self.relay)
            stack.callback(listener.unbind)
            if not listener.attached:
                await listener.start()
                stack.push_async_callback(listener.stop)
            if listener.public_url is None and not _is_loopback(self.base_url):
                logger.warning(
                    "the callback listener has no public_url: a remote API cannot reach "
                    "%s, so jobs will resolve only by the safety poll every %.0f s; pass "
                    "CallbackListener(public_url=...)",
                    listener.callback_url.rsplit("/", 1)[0],
                    self.poll_policy.fallback_interval,
                )
        if self.limiter.shared is not None:
            # Permits handed back at close, after every request ended.
            stack.push_async_callback(self._flush_limiter)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                if self.limiter.shared is not None:
                    await tg.start(self.limiter.run)
                if self.relay is not None:
                    # Subscribed before any job registers (the listener relays meanwhile).
                    await tg.start(self.relay.run, self.registry)
                self._poller = Poller(
                    self.registry, self.get_video_details, self.poll_policy, rng=self._rng
                )
                self.registry.poller = self._poller
                await tg.start(self._poller.run)
                if isinstance(self.store, LeasedJobStore):
                    await tg.start(self._keep_lease, self.store)
                self._transport = transport
                if not ready.done():
                    ready.set_result(None)
                await self._stop.wait()
            finally:
                self._transport = None
                tg.cancel_scope.cancel()  # the poller, batches, pending store writes
        self._tg = None

    async def _flush_limiter(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await self.limiter.flush()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None

    async def aclose(self) -> None:
        """Stop the poller, the listener and every request; pending jobs' waiters get
        :class:`ClientClosedError` (their remote tasks keep running). Safe to call from any
        task, and more than once."""
        if not self._closed:
            self._closed = True
            self.registry.close(
                ClientClosedError(
                    "the Client closed before this job finished; the task keeps running on "
                    "the server: re-attach with client.job(task_id) from a new client"
                )
            )
            for batch in list(self._batches):
                batch.close()
            self._stop.set()
        if self._runner is not None:
            with anyio.CancelScope(shield=True):
                await asyncio.wait([self._runner])

    @property
    def transport(self) -> Transport:
        if self._transport is None or self._closed:
            if self._failed is not None:
                raise ClientClosedError(
                    f"this Client stopped after an internal error ({type(self._failed).__name__})"
                )
            if self._closed:
                raise ClientClosedError("this Client is closed; create a new one")
            raise ClientClosedError("use the Client inside `async with Client(...) as client:`")
        return self._transport

    @property
    def poller(self) -> Poller:
        self.transport  # noqa: B018 - the property raises ClientClosedError if not running
        assert self._poller is not None
        return self._poller

    @property
    def task_group(self) -> TaskGroup:
        self.poller  # noqa: B018 - the same check
        assert self._tg is not None
        return self._tg

    # The API.

    async def create_video(
        self,
        task_id: str,
        audio_id: str,
        *,
        author: str | None = None,
        domain_name: str | None = None,
        callback_url: str | None = None,
        key: str | None = None,
    ) -> VideoJob:
        """Submit a music-video job for a track; returns the awaitable :class:`VideoJob`.

        Arguments are validated first (``InvalidRequestError``, nothing sent). With a
        listener, the job resolves on its callback (plus a slow safety poll); with
        ``callback_url`` the result is also POSTed to your own endpoint.

        Every submit is keyed: by ``key`` if given, else by the request's content (track
        and branding, :attr:`VideoRequest.key`). If the store already holds a record under
        the key, nothing is submitted again — the existing job is returned (finished, or
        re-attached); concurrent submits under one key send one request and share its job.
        A key whose submit is in doubt raises :class:`SubmissionInDoubtError`.
        """
        request = VideoRequest(task_id, audio_id, author=author, domain_name=domain_name)
        return await self.submit(request, callback_url=callback_url, key=key)

    async def submit(
        self,
        request: VideoRequest,
        *,
        callback_url: str | None = None,
        key: str | None = None,
    ) -> VideoJob:
        """Like :meth:`create_video`, for a ready :class:`VideoRequest`."""
        if not isinstance(request, VideoRequest):
            raise InvalidRequestError(f"expected a VideoRequest, got {type(request).__name__}")
        _check_url(callback_url, "callback_url")
        if key is not None and (not isinstance(key, str) or not key.strip()):
            raise InvalidRequestError(f"key must be a non-empty string, got {short(key)!r}")
        key = request.key if key is None else key
        self.poller  # noqa: B018 - raises ClientClosedError when not running
        async with self._key_lock(key):  # same key in this process: one submit, one job
            existing = await self.store.get(key)
            if existing is not None and existing.state is not REJECTED:
                return await self._job_of_record(existing)
            via_listener = callback_url is None and self._callbacks_reach_us(relayed=False)
            if callback_url is None:
                if self.callbacks is not None:
                    callback_url = self.callbacks.callback_url
                else:
                    callback_url = self.callback_url or NO_CALLBACK_URL
            body: dict[str, Any] = converter.unstructure(request)
            body["callBackUrl"] = callback_url
            record = JobRecord(key, request, SUBMITTING, via_listener=via_listener)
            async with self._submit_slots:
                record = await self._post_submit(record, body)
            if record.state is not SUBMITTED:  # another process holds the key
                return await self._job_of_record(record)
            assert record.task_id is not None
            return self._track(self._new_job(record.task_id, request, via_listener), record)

    @asynccontextmanager
    async def _key_lock(self, key: str) -> AsyncIterator[None]:
        lock, users = self._key_locks.get(key, (None, 0))
        if lock is None:
            lock = anyio.Lock()
        self._key_locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._key_locks[key]
            if users == 1:
                del self._key_locks[key]
            else:
                self._key_locks[key] = (lock, users - 1)

    def _callbacks_reach_us(self, *, relayed: bool) -> bool:
        """Whether a callback for a job submitted here reaches this client: through its own
        listener, or through a relay from a listener elsewhere (``callback_url`` given, or,
        with ``relayed=True``, any listener sharing the relay)."""
        if self.callbacks is not None:
            return True
        return self.relay is not None and (relayed or self.callback_url is not None)

    async def _post_submit(self, record: JobRecord, body: dict[str, Any]) -> JobRecord:
        """POST one submit between two store writes; returns the ``submitted`` record (or,
        when another process claimed the key first, that process's record).

        Write-ahead: the record is inserted as ``submitting`` just before the request goes
        out — atomically: of many processes submitting one key, one goes ahead — so a crash
        after that point is reported on restart as in doubt instead of being paid twice.
        """
        written = False

        async def write_ahead() -> None:
            nonlocal written, record
            record = attrs.evolve(record, updated_at=time.time())  # not when it queued
            holder = await self.store.insert(record)
            if holder is not None:
                raise _KeyTaken(holder)
            written = True

        try:
            data = await self.transport.call(
                "POST", GENERATE, kind="submit", json_body=body, before_send=write_ahead
            )
            video_task_id = data.get("taskId") if isinstance(data, dict) else None
            try:
                check_id(video_task_id, what="taskId")
            except UntrustedDataError as exc:
                raise ServerError(
                    500,
                    f"the API accepted the job but its answer is unusable: {exc}",
                    endpoint=GENERATE,
                ) from None
        except _KeyTaken as taken:
            return taken.holder
        except BaseException as exc:
            if written:  # otherwise nothing was sent and there is nothing to remember
                state = REJECTED if _certainly_not_taken(exc) else UNKNOWN
                await self._save_shielded(attrs.evolve(record, state=state, error=str(exc)))
            raise
        record = attrs.evolve(record, state=SUBMITTED, task_id=video_task_id)
        # The API took the job: the caller gets it even if the store fails now (an error
        # would invite a second, paid submit); a restart then lists it as unknown.
        await self._save_shielded(record)
        return record

    async def _job_of_record(self, record: JobRecord) -> VideoJob:
        """The job for a record a store already holds under the key (never a new submit):
        finished → resolved from the store; submitted → attached; in doubt → raises
        :class:`SubmissionInDoubtError`. A ``submitting`` record young enough to be another
        process's submit on the wire is waited for."""
        delay = 0.05
        give_up = anyio.current_time() + self._submit_window()
        while record.state is SUBMITTING:
            age = time.time() - record.updated_at
            if (
                record.writer_is_gone()
                or age > self._submit_window()
                or anyio.current_time() > give_up
            ):
                raise SubmissionInDoubtError(record.key)
            # Another process's submit: no event crosses processes, so look again.
            await anyio.sleep(delay)
            delay = min(1.0, delay * 2)
            latest = await self.store.get(record.key)
            if latest is None:
                raise SubmissionInDoubtError(record.key, "the submission's record vanished")
            record = latest
        if record.finished and record.task_id:
            return self._from_store(record)
        if record.state is SUBMITTED and record.task_id:
            return self._attach(record)
        raise SubmissionInDoubtError(record.key)

    def _submit_window(self) -> float:
        """How long a submit can be on the wire (every attempt timing out), plus a margin."""
        return self.timeout * self.retry_policy.attempts + 10.0

    def _attach(self, record: JobRecord) -> VideoJob:
        """The job of a ``submitted`` record: the one tracked already, or a new one. A new
        one expects a callback only through a relay: the callback URL it was submitted with
        may carry the secret of a listener that is gone (another process, or a restart)."""
        assert record.task_id is not None
        existing = self.registry.get(record.task_id)
        if existing is not None:
            return existing
        expect = record.via_listener and self.relay is not None
        return self._track(self._new_job(record.task_id, record.request, expect), record)

    def _track(self, job: VideoJob, record: JobRecord | None) -> VideoJob:
        registered = self.registry.register(job)
        if registered is job and record is not None:
            job.add_done_callback(functools.partial(self._job_finished, record))
        if registered is job and self.relay is not None and not job.done():
            self.relay.watch(job.task_id)  # a callback stored before we registered
        return registered

    def _job_finished(self, record: JobRecord, job: VideoJob) -> None:
        error = job.exception()
        if isinstance(error, ClientClosedError | JobTimeoutError):
            return  # the remote task goes on: the record stays resumable
        if error is None:
            final = attrs.evolve(record, state=DONE, video=job.result(), updated_at=time.time())
        else:
            final = attrs.evolve(record, state=FAILED, error=str(error), updated_at=time.time())
        if self._tg is not None and not self._closed:
            self._tg.start_soon(self._save_shielded, final)

    async def _save_shielded(self, record: JobRecord) -> None:
        """Save a record after the fact: a store failure is logged, never raised (the job
        itself is fine, and a background save must not bring the client down)."""
        with anyio.CancelScope(shield=True):
            try:
                await self.store.save(record)
            except Exception as exc:
                logger.error(
                    "could not record %s (%s) in the job store: %s",
                    short(record.task_id or record.key),
                    record.state,
                    exc,
                )

    async def resume(self, *, include_finished: bool = False) -> AsyncIterator[VideoJob]:
        """Re-attach every unfinished job of the store (after a restart) and yield it.

        With ``include_finished=True`` the jobs the store knows as finished are yielded
        too, already resolved from the store (no request is made for them).
        A submission that was under way when the process died (no answer recorded) is not
        re-sent: it is marked ``unknown`` (it may have been submitted) and listed by
        :meth:`unknown_submissions`, for you to check before paying for it again.
        """
        if include_finished:
            for record in await self._finished_records():
                yield self._from_store(record)
        for record in await self.store.unfinished():
            if record.state == SUBMITTED and record.task_id:
                # The old listener's secret died with the old process: poll these (unless
                # a relay hands over callbacks to a shared URL).
                yield self._attach(record)
            elif record.state == SUBMITTING:
                await self._mark_unknown(record, "was interrupted")

    async def _finished_records_of(self, requests: list[VideoRequest]) -> dict[str, JobRecord]:
        """The finished records under the requests' keys, when the store can look many up
        at once (``get_many``); others are looked up by ``submit`` one by one."""
        get_many = getattr(self.store, "get_many", None)
        if get_many is None or len(requests) < 2:
            return {}
        found: dict[str, JobRecord] = await get_many([r.key for r in requests])
        return {key: r for key, r in found.items() if r.finished and r.task_id}

    async def _finished_records(self) -> list[JobRecord]:
        return [r for r in await self.store.by_state(DONE, FAILED) if r.task_id]

    def _from_store(self, record: JobRecord) -> VideoJob:
        assert record.task_id is not None
        job = VideoJob(record.task_id, record.request, registry=self.registry, deadline=None)
        if record.state == DONE and record.video is not None:
            self.registry.settle(job, record.video, "store")
        else:
            error = VideoGenerationError(
                record.task_id, TaskStatus.GENERATE_MP4_FAILED, None, record.error
            )
            self.registry.settle(job, error, "store")
        return job

    async def _keep_lease(
        self, store: LeasedJobStore, *, task_status: anyio.abc.TaskStatus[None]
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
            if self.registry.get(record.task_id) is None:
                self.claimed += 1
                logger.info("took over video task %s from a dead worker", short(record.task_id))
                job = self._attach(record)
                if self.on_claim is not None:
                    try:
                        self.on_claim(job)
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

    async def unknown_submissions(self) -> list[JobRecord]:
        """Submissions whose outcome is unknown: they may or may not have been made."""
        return list(await self.store.by_state(UNKNOWN, SUBMITTING))

    def _new_job(
        self, task_id: str, request: VideoRequest | None, via_listener: bool = False
    ) -> VideoJob:
        max_wait = self.poll_policy.max_wait
        deadline = None if max_wait is None else anyio.current_time() + max_wait
        return VideoJob(
            task_id, request, registry=self.registry, deadline=deadline, via_listener=via_listener
        )

    def job(self, task_id: str, *, expect_callback: bool = False) -> VideoJob:
        """Attach to a video task made earlier (by id); returns its awaitable job.

        ``expect_callback=True`` if that task's ``callBackUrl`` points at this client's
        listener (then it is polled only as a safety net).
        """
        _check_task_id(task_id)
        self.poller  # noqa: B018 - raises ClientClosedError when not running
        existing = self.registry.get(task_id)
        if existing is not None:
            return existing
        listening = expect_callback and self._callbacks_reach_us(relayed=True)
        return self._track(self._new_job(task_id, None, listening), None)

    async def get_video_details(self, task_id: str) -> VideoDetails:
        """ "Get Music Video Details" for a video task id (one request, no job involved)."""
        _check_task_id(task_id)
        data = await self.transport.call(
            "GET", RECORD_INFO, kind="poll", params={"taskId": task_id}, task_id=task_id
        )
        if not isinstance(data, dict):
            raise ServerError(
                500,
                f"details answer has no data object: {data!r}",
                endpoint=RECORD_INFO,
                task_id=task_id,
            )
        if data.get("taskId", task_id) != task_id:
            # An answer about another task must not resolve that task's job.
            data["extra.taskId"] = data["taskId"]
        data["taskId"] = task_id
        try:
            return converter.structure(data, VideoDetails)
        except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
            raise ServerError(
                500, f"malformed details answer: {exc}", endpoint=RECORD_INFO, task_id=task_id
            ) from exc

    async def download(
        self,
        video: MusicVideo | str,
        path: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Stream a finished video (or a video URL) to ``path`` (a file, or a folder to put
        it in), and return the file's path.

        Bytes go to a temporary ``.NAME.part`` file beside the target, renamed only when
        complete: never a half file under the final name. An interrupted download resumes
        with an HTTP Range request. ``progress(done, total)`` is called as bytes arrive
        (``total`` is ``None`` if the server does not say). Raises
        :class:`VideoExpiredError` past the 14-day retention or when the URL answers 404/410.
        """
        if not isinstance(path, str | os.PathLike):
            raise InvalidRequestError(f"path must be a str or a path, got {type(path).__name__}")
        if not isinstance(video, MusicVideo | str):
            raise InvalidRequestError(f"video must be a MusicVideo or a URL, got {video!r:.80}")
        if not isinstance(path, str | os.PathLike):
            raise InvalidRequestError(f"path must be a str or a path, got {type(path).__name__}")
        if not isinstance(video, MusicVideo | str):
            raise InvalidRequestError(f"video must be a MusicVideo or a URL, got {video!r:.80}")
        return await download(
            self.transport, video, path, progress=progress, retry=self.retry_policy, rng=self._rng
        )

    def create_videos(
        self,
        requests: Iterable[VideoRequest] | AsyncIterable[VideoRequest],
        *,
        max_in_flight: int = 50,
    ) -> Batch:
        """Submit many jobs, at most ``max_in_flight`` unfinished at once, and yield a
        :class:`BatchResult` for each as it finishes. One failure never stops the batch.

        Use ``async for result in client.create_videos(...)``; leaving the loop early stops
        new submits (use ``async with`` on the batch, or ``await batch.aclose()``, to stop
        them at once).
        """
        _check_number(max_in_flight, "max_in_flight", minimum=1, integer=True)
        if not isinstance(requests, Iterable | AsyncIterable):
            raise InvalidRequestError(
                f"requests must be an iterable of VideoRequest, got {type(requests).__name__}"
            )
        return Batch(self, requests, max_in_flight)


class Batch:
    """The async iterator returned by :meth:`Client.create_videos`."""

    def __init__(
        self,
        client: Client,
        requests: Iterable[VideoRequest] | AsyncIterable[VideoRequest],
        max_in_flight: int,
    ) -> None:
        self._client = client
        self._requests = requests
        self._max = max_in_flight
        self._streams: (
            tuple[MemoryObjectSendStream[BatchResult], MemoryObjectReceiveStream[BatchResult]]
            | None
        ) = None
        self._scope: anyio.CancelScope | None = None
        self._closed = False
        client._batches.add(self)

    def __aiter__(self) -> AsyncIterator[BatchResult]:
        return self

    async def __anext__(self) -> BatchResult:
        if self._closed:
            raise StopAsyncIteration
        if self._streams is None:
            self._streams = anyio.create_memory_object_stream[BatchResult](0)
            await self._client.task_group.start(self._run, self._streams[0])
        try:
            return await self._streams[1].receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            await self.aclose()
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop submitting; results not yet taken are dropped (their jobs keep running)."""
        self.close()

    def close(self) -> None:
        """:meth:`aclose` without awaiting (the client calls it when it closes)."""
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()
        if self._streams is not None:
            self._streams[1].close()

    async def _run(
        self,
        send: MemoryObjectSendStream[BatchResult],
        *,
        task_status: anyio.abc.TaskStatus[None],
    ) -> None:
        with anyio.CancelScope() as scope, send:
            self._scope = scope
            task_status.started()
            slots = anyio.Semaphore(self._max)
            async with anyio.create_task_group() as tg:
                async for chunk in _chunks(self._requests):
                    # One store look-up for a chunk: a re-run of a long batch finds most
                    # rows finished without a trip per row.
                    known = await self._client._finished_records_of(chunk)
                    for request in chunk:
                        await slots.acquire()
                        tg.start_soon(self._one, request, slots, send, known.get(request.key))

    async def _one(
        self,
        request: VideoRequest,
        slots: anyio.Semaphore,
        send: MemoryObjectSendStream[BatchResult],
        finished: JobRecord | None,
    ) -> None:
        job: VideoJob | None = None
        try:
            try:
                if finished is not None:
                    job = self._client._from_store(finished)
                else:
                    job = await self._client.submit(request)
                result = BatchResult(request, video=await job, job=job)
            except SunoMp4Error as exc:
                result = BatchResult(request, error=exc, job=job)
            except Exception as exc:  # a bug: it fails this item, never the whole batch
                logger.exception("unexpected error in a batch item (%s)", short(request.key))
                error = SunoMp4Error(f"unexpected {type(exc).__name__}: {exc}")
                result = BatchResult(request, error=error, job=job)
            try:
                await send.send(result)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                if self._scope is not None:  # nobody reads any more: stop submitting
                    self._scope.cancel()
        finally:
            slots.release()


def _check_url(url: object, name: str) -> None:
    if url is not None:
        try:
            check_url(url, what=name)
        except UntrustedDataError as exc:
            raise InvalidRequestError(str(exc)) from None


def _check_task_id(task_id: object) -> None:
    try:
        check_id(task_id, what="task_id")
    except UntrustedDataError as exc:
        raise InvalidRequestError(str(exc)) from None


def _check_type(value: object, name: str, kind: type | tuple[type, ...]) -> None:
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise InvalidRequestError(f"{name} must be a {names}, got {type(value).__name__}")


def _check_number(
    value: object, name: str, *, minimum: float, integer: bool = False, exclusive: bool = False
) -> None:
    kind = int if integer else (int, float)
    if not isinstance(value, kind) or isinstance(value, bool):
        what = "an integer" if integer else "a number"
        raise InvalidRequestError(f"{name} must be {what}, got {type(value).__name__}")
    if (value <= minimum if exclusive else value < minimum) or value != value:
        raise InvalidRequestError(
            f"{name} must be {'>' if exclusive else '>='} {minimum}, got {value!r}"
        )


class _KeyTaken(Exception):
    """Raised from the write-ahead when another process holds the key: nothing is sent."""

    def __init__(self, holder: JobRecord) -> None:
        self.holder = holder


def _certainly_not_taken(exc: BaseException) -> bool:
    """Whether a failed submit certainly did not create a job: an answer refusing it (401,
    402, 422, 429, 455, ...) or a connection never made. A 5xx, a cut connection, a lost
    answer or a cancellation while on the wire may have created one."""
    if isinstance(exc, TransportError):
        return not exc.sent
    return isinstance(exc, APIError) and not isinstance(exc, ServerError)


def _single(exc: BaseException) -> BaseException:
    """The one error inside task-group wrappers (a start-up failure reads as itself)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


async def _chunks(
    items: Iterable[VideoRequest] | AsyncIterable[VideoRequest], size: int = 256
) -> AsyncIterator[list[VideoRequest]]:
    """``items`` in lists: up to ``size`` of an iterable (they are at hand), one at a time
    of an async iterable (waiting for more would hold back the ones already there)."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield [item]
    else:
        iterator = iter(items)
        while chunk := list(itertools.islice(iterator, size)):
            yield chunk
