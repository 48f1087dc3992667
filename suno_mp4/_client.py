"""The ``Client``: the SDK's public face. It validates, then hands the work to the ledger
(keyed, write-ahead submits), the registry (jobs) and the runtime (session, poller,
listener), which it builds once."""

from __future__ import annotations

import os
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

from ._arguments import check_number, check_task_id, check_type, check_url_argument
from ._batch import Batch
from ._callbacks import CallbackListener, CallbackRelay
from ._config import PollPolicy, RateLimit, RetryPolicy
from ._convert import request_body
from ._download import Progress, download
from ._endpoints import fetch_details, submit_job
from ._errors import APIKLEY_CODES, APIError, ClientClosedError, InvalidRequestError
from ._jobs import JobRegistry, VideoJob
from ._ledger import Ledger
from ._limiter import RequestLimiter, SharedRateLimit
from ._models import MusicVideo, VideoDetails, VideoRequest
from ._options import DEFAULT_BASE_URL, check_client_options
from ._poller import Poller
from ._runtime import Runtime
from ._store import JobRecord, JobStore, MemoryJobStore
from ._transport import MAX_RESPONSE_BYTES, Transport
from ._untrusted import short

__all__ = ["DEFAULT_BASE_URL", "NO_CALLBACK_URL", "Client"]

#: ``callBackUrl`` is required by the API. Without a listener or an explicit URL we send an
#: address under the reserved ``.invalid`` top-level domain (RFC 2606): it can never
#: resolve, so no third party ever receives the result.
NO_CALLBACK_URL = "https://callback.invalid/suno-mp4"


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
        options = {name: value for name, value in locals().items() if name != "self"}
        self._settings = check_client_options(**options)
        self.base_url = self._settings.base_url
        self.callbacks = callbacks
        self.poll_policy = poll or PollPolicy()
        self.retry_policy = self._settings.retry
        self.rate_limit = rate_limit
        self.timeout = timeout
        self.store: JobStore = store if store is not None else MemoryJobStore()
        #: Hands callbacks received by any process to the one awaiting the job (Redis).
        self.relay = relay
        #: ``callBackUrl`` for jobs when there is no listener here: another process's
        #: listener (with ``relay``, the callbacks come back through it).
        self.callback_url = callback_url
        rng = self._settings.rng
        self._limiter = RequestLimiter(rate_limit)
        self._poller = Poller(self.get_video_details, self.poll_policy, rng=rng)
        self._registry = JobRegistry(self._poller)
        self._ledger = Ledger(
            self.store,
            self._registry,
            send=self._send,
            new_job=self._new_job,
            relay=relay,
            submit_window=timeout * self.retry_policy.attempts + 10.0,
            write_timeout=timeout + 5.0,
            max_concurrent_submits=max_concurrent_submits,
            on_claim=on_claim,
        )
        self._runtime = Runtime(
            self._settings,
            registry=self._registry,
            poller=self._poller,
            ledger=self._ledger,
            limiter=self._limiter,
            store=self.store,
            listener=callbacks,
            relay=relay,
        )
        self._started = False
        self._batches: weakref.WeakSet[Batch] = weakref.WeakSet()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._started else "new"
        return f"<suno_mp4.Client {self.base_url} {state}>"  # never the key

    @property
    def callbacks_reach_us(self) -> bool:
        """Whether a job submitted here resolves by callback (to this client's listener, or
        through the relay from the one at ``callback_url``), not by polling."""
        return self.callbacks is not None or (self.relay is not None and bool(self.callback_url))

    @property
    def claimed(self) -> int:
        """Jobs taken over from dead workers of a shared store (statistics)."""
        return self._ledger.claimed

    # Lifecycle.

    async def __aenter__(self) -> Self:
        if self._closed:
            raise ClientClosedError("this Client was closed; create a new one")
        if self._started:
            raise ClientClosedError("this Client is already running")
        self._started = True
        try:
            await self._runtime.start()
        except BaseException:
            self._closed = True
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the poller, the listener and every request; pending jobs' waiters get
        :class:`ClientClosedError` (their remote tasks keep running). Safe to call from any
        task, and more than once."""
        try:
            if not self._closed:
                self._closed = True
                for batch in list(self._batches):
                    batch.close(client_closed=True)
                self._registry.close(
                    ClientClosedError(
                        "the Client closed before this job finished; the task keeps running "
                        "on the server: re-attach with client.job(task_id) from a new client"
                    )
                )
        finally:  # (a done callback raising BaseException must not leave it running)
            if self._started:
                await self._runtime.stop()

    def _running(self) -> Runtime:
        if self._closed:
            raise ClientClosedError("this Client is closed; create a new one")
        if not self._started:
            raise ClientClosedError("use the Client inside `async with Client(...) as client:`")
        return self._runtime

    def _transport(self) -> Transport:
        return self._running().transport

    def _send(self, body: dict[str, Any], before_send: Callable[[], Any]) -> Awaitable[str]:
        return submit_job(self._transport(), body, before_send=before_send)

    def _new_job(self, task_id: str, request: VideoRequest | None, expect: bool) -> VideoJob:
        registry, max_wait = self._registry, self.poll_policy.max_wait
        return VideoJob(task_id, request, registry=registry, max_wait=max_wait, via_listener=expect)

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
        listener, the job resolves on its callback (plus a slow safety poll). Every submit
        is keyed: by ``key`` if given, else by the request's content (track and branding,
        :attr:`VideoRequest.key`). If the store already holds a record under the key,
        nothing is submitted again — the existing job is returned (finished, or
        re-attached); concurrent submits under one key send one request and share its job. A
        key whose submit is in doubt raises :class:`SubmissionInDoubtError`.
        """
        request = VideoRequest(task_id, audio_id, author=author, domain_name=domain_name)
        body, key, via_listener = self._submission(request, callback_url, key)
        return await self._ledger.submit(request, key, body, via_listener=via_listener)

    async def submit(
        self, request: VideoRequest, *, callback_url: str | None = None, key: str | None = None
    ) -> VideoJob:
        """Like :meth:`create_video`, for a ready :class:`VideoRequest`."""
        check_type(request, "request", VideoRequest)
        body, key, via_listener = self._submission(request, callback_url, key)
        return await self._ledger.submit(request, key, body, via_listener=via_listener)

    def _submission(
        self, request: VideoRequest, callback_url: str | None, key: str | None
    ) -> tuple[dict[str, Any], str, bool]:
        """A checked submit's body, its key, and whether its callback comes to us."""
        check_url_argument(callback_url, "callback_url")
        if key is not None and (not isinstance(key, str) or not key.strip()):
            raise InvalidRequestError(f"key must be a non-empty string, got {short(key)!r}")
        self._transport()  # raises ClientClosedError when not running
        via_listener = callback_url is None and self.callbacks_reach_us
        if callback_url is None:
            listener, fallback = self.callbacks, self.callback_url or NO_CALLBACK_URL
            callback_url = listener.callback_url if listener is not None else fallback
        body = request_body(request)
        body["callBackUrl"] = callback_url
        return body, request.key if key is None else key, via_listener

    def job(self, task_id: str, *, expect_callback: bool = False) -> VideoJob:
        """Attach to a video task made earlier (by id); returns its awaitable job.

        ``expect_callback=True`` if that task's ``callBackUrl`` points at this client's
        listener (or another's, with a relay): then it is polled only as a safety net.
        """
        check_task_id(task_id)
        self._transport()  # raises ClientClosedError when not running
        existing = self._registry.get(task_id)
        if existing is not None:
            return existing
        expect = expect_callback and (self.callbacks is not None or self.relay is not None)
        return self._ledger.track(self._new_job(task_id, None, expect))

    async def get_video_details(self, task_id: str) -> VideoDetails:
        """ "Get Music Video Details" for a video task id (one request, no job involved)."""
        check_task_id(task_id)
        return await fetch_details(self._transport(), task_id)

    async def download(
        self,
        video: MusicVideo | str,
        path: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Stream a video (or a video URL) to ``path`` (a file, or a folder to put it in) via
        a ``.NAME.part`` file renamed when complete, resuming a cut transfer with a Range
        request; ``progress(done, total)`` as bytes arrive. Returns the file's path; raises
        :class:`VideoExpiredError` past the 14-day retention (or on 404/410)."""
        check_type(path, "path", (str, os.PathLike))
        check_type(video, "video", (MusicVideo, str))
        transport = self._transport()
        rng = self._settings.rng
        return await download(
            transport, video, path, progress=progress, retry=self.retry_policy, rng=rng
        )

    def create_videos(
        self,
        requests: Iterable[VideoRequest] | AsyncIterable[VideoRequest],
        *,
        max_in_flight: int = 50,
    ) -> Batch:
        """Submit many jobs, at most ``max_in_flight`` unfinished at once; ``async for`` over
        it yields a :class:`BatchResult` for each as it finishes. One failure never stops the
        batch; submits are keyed (see :meth:`create_video`): a re-run bills nothing twice.
        Leaving the loop stops new submits (``async with`` the batch: at once)."""
        check_number(max_in_flight, "max_in_flight", minimum=1, integer=True)
        check_type(requests, "requests", (Iterable, AsyncIterable))
        task_group = self._running().task_group
        batch = Batch(
            requests, max_in_flight, submit=self.submit, ledger=self._ledger, task_group=task_group
        )
        self._batches.add(batch)
        return batch

    async def resume(self, *, include_finished: bool = False) -> AsyncIterator[VideoJob]:
        """Re-attach every unfinished job of the store (after a restart) and yield it (with
        ``include_finished=True`` the finished ones too, resolved from the store). A submit
        on the wire when its process died is never re-sent: it is marked ``unknown`` (one a
        live process still has on the wire is left to it); :meth:`unknown_submissions`."""
        self._transport()  # raises ClientClosedError when not running
        async for job in self._ledger.resume(include_finished=include_finished):
            yield job

    async def unknown_submissions(self) -> list[JobRecord]:
        """Submissions whose outcome is unknown: they may or may not have been made."""
        return await self._ledger.unknown_submissions()
