"""The ``Sandbox``: a real aiohttp server speaking the music-video API on loopback, with
its lifecycle, its request handlers and the pipeline that finishes tasks."""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import random
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Literal

import aiohttp
import anyio
import attrs
from aiohttp import hdrs, web

from ._admin import admin_headers, admin_routes
from ._callback_log import CallbackEvent, CallbackLog, describe_failure
from ._callbacks import CallbackPolicy, CallbackSender, is_loopback_url
from ._dashboard import DASHBOARD_PATH, dashboard_routes
from ._dialects import DIALECTS, Dialect, Meaning
from ._envelope import in_envelope, openapi_document
from ._faults import Faults
from ._jsonbody import BodyError, read_json
from ._probe import ProbeError, probe
from ._ratelimit import SlidingWindow, retry_after_header
from ._renderer import PlaceholderRenderer, Renderer, RenderFailed, RenderJob
from ._scheduler import DueQueue
from ._state import Catalog, SandboxClock, Track, VideoTaskRecord
from ._stats import SandboxStats
from ._wire import (
    MAX_TASK_ID,
    TimeFormat,
    callback_body,
    envelope,
    hide_host_paths,
    record_info,
    validate_generate,
)

__all__ = ["Sandbox"]

logger = logging.getLogger("suno_mp4.sandbox")

GENERATE_PATH = "/api/v1/mp4/generate"
RECORD_INFO_PATH = "/api/v1/mp4/record-info"
#: A synthetic track's length when none is given.
DEFAULT_DURATION = 5.0
#: Longest an in-flight answer may hold up ``stop()`` before aiohttp cancels it.
SHUTDOWN_GRACE = 1.0
#: A proxy's error page: what a client sees when the API behind it is down.
BAD_GATEWAY_HTML = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)

Handler = Callable[[web.Request], Awaitable[web.Response]]


class Sandbox:
    """A local stand-in for the hosted API: same routes, codes and callbacks.

    Use it as ``async with Sandbox() as sb:`` (or ``await sb.start()`` / ``await
    sb.stop()``); ``sb.base_url`` and ``sb.api_key`` then go to the client. Register
    tracks with ``add_track()`` to get the ``(task_id, audio_id)`` a submit needs. All
    background work (finishing tasks, rendering, callbacks) runs in a task group the
    sandbox owns, and ``stop()`` cancels it: nothing outlives the ``async with``.

    ``credits``, ``maintenance`` and ``faults`` may be changed while it runs.

    ``provider`` picks the dialect (``"apikley"``, the seed's, or ``"alt-reseller"``, or a
    :class:`Dialect`): which code means what and which HTTP status carries errors.
    ``callbacks`` (a :class:`CallbackPolicy`) says how many attempts a callback gets, the
    waits between them, and whether a task whose callback could not be delivered turns
    from SUCCESS into CALLBACK_EXCEPTION (``callback_retries`` is the older name of
    ``callbacks.attempts``). ``time_format`` writes times as epoch milliseconds (``"ms"``)
    or as ``"YYYY-MM-DD HH:MM:SS"`` strings in UTC without a zone (``"string"``).

    The admin routes under ``/sandbox/`` (the same controls over HTTP, for a sandbox in
    another process) answer only requests carrying ``admin_token`` in the
    ``X-Sandbox-Token`` header (:attr:`admin_headers`); a random token is drawn when none
    is given.
    """

    #: Where videos are written: ``video_dir`` if given, else a temporary directory that
    #: ``stop()`` removes. Set by ``start()``.
    video_dir: Path

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        provider: str | Dialect = "apikley",
        admin_token: str | None = None,
        credits: int = 1_000_000,
        video_cost: int = 1,
        render_time: float | tuple[float, float] = 0.2,
        render_time_per_audio_second: float | None = None,
        rate_limit: tuple[int, float] | None = None,
        hmac_key: str | bytes | None = None,
        time_format: Literal["ms", "string"] = "ms",
        conflict_on_duplicate: bool = False,
        faults: Faults | None = None,
        renderer: Renderer | None = None,
        render: bool | None = None,
        render_concurrency: int = 2,
        callbacks: CallbackPolicy | None = None,
        callback_retries: int | None = None,
        seed: int | None = None,
        video_dir: Path | None = None,
    ) -> None:
        if isinstance(render_time, tuple):
            low, high = render_time
            if not 0 <= low <= high:
                raise ValueError(f"render_time range needs 0 <= lo <= hi, got {render_time}")
        elif render_time < 0:
            raise ValueError(f"render_time must be >= 0, got {render_time}")
        if time_format not in ("ms", "string"):
            raise ValueError(f"time_format is 'ms' or 'string', got {time_format!r}")
        if isinstance(provider, str) and provider not in DIALECTS:
            raise ValueError(
                f"provider is one of {sorted(DIALECTS)} or a Dialect, got {provider!r}"
            )
        if renderer is not None and render:
            raise ValueError("pass either renderer= or render=True, not both")
        if render is None and renderer is None:
            render = render_by_default()
        if render_concurrency < 1:
            raise ValueError(f"render_concurrency must be >= 1, got {render_concurrency}")
        self.host = host
        self.port = port
        self.api_key = api_key or "sk-sandbox-" + secrets.token_hex(8)
        #: Which code means what, and which HTTP status carries errors (``provider``).
        self.dialect = DIALECTS[provider] if isinstance(provider, str) else provider
        if admin_token is not None and not admin_token.strip():
            raise ValueError("admin_token must not be empty (None draws a random one)")
        #: What admin requests carry in their ``X-Sandbox-Token`` header.
        self.admin_token = admin_token or secrets.token_urlsafe(24)
        self.credits = credits
        self.video_cost = video_cost
        self.render_time = render_time
        self.render_time_per_audio_second = render_time_per_audio_second
        self.time_format: TimeFormat = time_format
        self.conflict_on_duplicate = conflict_on_duplicate
        self.maintenance = False
        self.faults = faults if faults is not None else Faults()
        self.renderer: Renderer = renderer or (
            _ffmpeg_renderer() if render else PlaceholderRenderer()
        )
        self.stats = SandboxStats()
        self._render_concurrency = render_concurrency
        callbacks = callbacks if callbacks is not None else CallbackPolicy()
        if callback_retries is not None:  # the older name of callbacks.attempts
            callbacks = attrs.evolve(callbacks, attempts=callback_retries)
        #: How callbacks are delivered and what a failed delivery does to a task.
        self.callbacks = callbacks
        self._hmac_key = hmac_key.encode() if isinstance(hmac_key, str) else hmac_key
        self._window = SlidingWindow(*rate_limit) if rate_limit else None
        self._rng = random.Random(seed)
        self._video_dir_option = video_dir
        self._clock = SandboxClock()
        self._catalog = Catalog()
        self._track_count = 0
        self._done: dict[str, anyio.Event] = {}
        self._callback_log = CallbackLog()
        self._stack: contextlib.AsyncExitStack | None = None
        self._base_url: str | None = None

    # Lifecycle

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind the port (0 picks a free one), start serving and the background work."""
        if self._stack is not None:
            raise RuntimeError("the sandbox is already running")
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            await self._start(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        # Torn down in reverse: stop serving, cancel background work, close the session,
        # then remove a temporary video directory.
        if self._video_dir_option is None:
            self.video_dir = Path(tempfile.mkdtemp(prefix="suno-mp4-sandbox-"))
            stack.callback(shutil.rmtree, self.video_dir, ignore_errors=True)
        else:
            self.video_dir = self._video_dir_option
            self.video_dir.mkdir(parents=True, exist_ok=True)
        session = aiohttp.ClientSession()
        stack.push_async_callback(session.close)
        self._sender = CallbackSender(
            session,
            policy=self.callbacks,
            hmac_key=self._hmac_key,
            on_attempt=self._callback_attempted,
        )
        self._closing = anyio.Event()
        self._render_limiter = anyio.CapacityLimiter(self._render_concurrency)
        self._due: DueQueue[VideoTaskRecord] = DueQueue(self._clock.now)
        self._tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(self._tg.cancel_scope.cancel)
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=SHUTDOWN_GRACE)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        stack.callback(self._closing.set)  # first of all: free stalled answers
        await web.TCPSite(runner, self.host, self.port).start()
        port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._base_url = f"http://{host}:{port}"
        self._tg.start_soon(self._due.run, self._finish_soon)

    async def stop(self) -> None:
        """Stop serving and cancel all background work (pending renders and callbacks)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    aclose = stop

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the client's base URL, known once started."""
        if self._base_url is None:
            raise RuntimeError("the sandbox has not been started: use `async with Sandbox()`")
        return self._base_url

    @property
    def admin_headers(self) -> dict[str, str]:
        """The headers an admin request to this sandbox needs (its admin token)."""
        return admin_headers(self.admin_token)

    @property
    def dashboard_url(self) -> str:
        """The dashboard page, with the admin token in the URL's fragment: a browser never
        sends the fragment to a server, so the token stays out of access logs and
        ``Referer`` headers, and the page's script hands it over as a header instead."""
        return f"{self.base_url}{DASHBOARD_PATH}#token={self.admin_token}"

    # Test-facing controls

    def add_track(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        title: str | None = None,
        duration: float | None = None,
        fail: str | None = None,
    ) -> tuple[str, str]:
        """Register a music task holding one track; return ``(task_id, audio_id)`` for a
        submit.

        Without ``path`` the track is synthetic (``duration`` defaults to 5 s). With
        ``fail="reason"`` its video ends in GENERATE_MP4_FAILED with that message.
        """
        audio = None if path is None else Path(path).resolve()
        if audio is not None and not audio.is_file():
            raise FileNotFoundError(f"no audio file at {audio}")
        if duration is not None and not (0 < duration < math.inf):
            raise ValueError(f"duration must be a finite number of seconds > 0, got {duration}")
        if duration is None:
            duration = DEFAULT_DURATION if audio is None else _probe_duration(audio)
        title = title or (audio.stem if audio is not None else self._next_title())
        task_id = self._catalog.add_music_task([(title, duration, audio, fail)])
        return task_id, next(iter(self._catalog.music[task_id]))

    def add_music_task(self, tracks: int = 2) -> tuple[str, list[str]]:
        """Register a music task with several synthetic tracks (the API's variations)."""
        if tracks < 1:
            raise ValueError("a music task has at least one track")
        spec = [(self._next_title(), DEFAULT_DURATION, None, None) for _ in range(tracks)]
        task_id = self._catalog.add_music_task(spec)
        return task_id, list(self._catalog.music[task_id])

    def now(self) -> float:
        """The sandbox clock: epoch seconds, moved on by ``advance()``."""
        return self._clock.now()

    def advance(self, *, days: float = 0, hours: float = 0, seconds: float = 0) -> None:
        """Move the sandbox clock forward: videos past their 14 days are deleted at once,
        and pending tasks now due finish."""
        self._clock.advance(days * 86400 + hours * 3600 + seconds)
        self._catalog.sweep(self._clock.now())
        if self._stack is not None:
            self._due.wake()

    async def wait_done(self, video_task_id: str) -> VideoTaskRecord:
        """Wait until the task has finished and its callback work is over (delivered,
        dropped or given up), so a test can assert on the outcome without sleeping."""
        await self._done[video_task_id].wait()
        return self.task(video_task_id)

    def task(self, video_task_id: str) -> VideoTaskRecord:
        """The server's record of a video task (KeyError if unknown)."""
        return self._catalog.tasks[video_task_id]

    @property
    def tasks(self) -> Mapping[str, VideoTaskRecord]:
        """Every video task by id (read-only view)."""
        return MappingProxyType(self._catalog.tasks)

    def callback_events(self, video_task_id: str) -> tuple[CallbackEvent, ...]:
        """What happened to the task's callbacks, oldest first: each POST with the
        receiver's answer, and the faults that dropped, delayed or doubled it (the last
        20 entries of the last 10,000 tasks are kept)."""
        return self._callback_log.of(video_task_id)

    def _next_title(self) -> str:
        self._track_count += 1
        return f"Sandbox track {self._track_count}"

    # The web application

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[in_envelope(self._answer)])
        app.router.add_post(GENERATE_PATH, self._generate)
        app.router.add_get(RECORD_INFO_PATH, self._record_info)
        app.router.add_get("/videos/{name}", self._video)
        app.router.add_get("/openapi.yaml", openapi_document)
        app.router.add_routes(admin_routes(self, self.admin_token))
        app.router.add_routes(dashboard_routes(self, self.admin_token))
        return app

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        return await self._api_call(request, "generate", self._create_video)

    async def _record_info(self, request: web.Request) -> web.StreamResponse:
        return await self._api_call(request, "record-info", self._video_details)

    async def _api_call(
        self, request: web.Request, endpoint: str, handler: Handler
    ) -> web.StreamResponse:
        """What every API call goes through: network faults on the outside, then the
        checks in the API's order (maintenance, auth, rate limit), then the endpoint."""
        self.stats.requests[endpoint] += 1
        if self._roll("stall", self.faults.stall):
            await self._closing.wait()
            return _abort(request, web.Response(status=503))  # reaches no one
        if self._roll("slow_answer", self.faults.slow_answer):
            with anyio.move_on_after(self.faults.slow_seconds):
                await self._closing.wait()
        if endpoint == "record-info" and self._roll("poll_5xx", self.faults.poll_5xx):
            return self._bad_gateway()
        response = self._refusal(request) or await handler(request)
        if self._roll("reset", self.faults.reset):
            return await _cut_short(request, response)
        return response

    def _refusal(self, request: web.Request) -> web.Response | None:
        if self.maintenance:
            return self._answer(Meaning.MAINTENANCE, "Service Unavailable - under maintenance")
        scheme, _, key = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        # aiohttp keeps bytes that are no UTF-8 as surrogates: encode them back as they came.
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            key.strip().encode("utf-8", "surrogateescape"), self.api_key.encode()
        ):
            return self._answer(Meaning.UNAUTHORIZED, "Unauthorized - missing or invalid API key")
        storm_until = self.faults.rate_limit_storm_until
        if storm_until is not None and self.now() < storm_until:
            self.stats.faults["rate_limit_storm"] += 1
            return self._too_many(Meaning.CALL_LIMIT, storm_until - self.now())
        if self._window is not None and (wait := self._window.admit()) is not None:
            return self._too_many(Meaning.RATE_LIMITED, wait)
        return None

    async def _create_video(self, request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
        except BodyError as exc:
            return self._answer(Meaning.BAD_FORMAT, f"Format Error - {exc.message}")
        if not isinstance(body, dict):
            return self._answer(Meaning.BAD_FORMAT, "Format Error - the body must be a JSON object")
        if problem := validate_generate(body):
            meaning, why = problem
            return self._answer(meaning, f"Validation Error - {why}")
        found = self._catalog.find_track(body["taskId"], body["audioId"])
        if isinstance(found, str):
            return self._answer(Meaning.NOT_FOUND, f"Not Found - {found}")
        if self.credits < self.video_cost:
            return self._answer(Meaning.NO_CREDITS, "Insufficient Credits - top up your account")
        if self.conflict_on_duplicate and self._catalog.has_video(found):
            return self._answer(Meaning.CONFLICT, "Conflict - a video of this track already exists")
        record = self._catalog.open_task(
            found,
            callback_url=body["callBackUrl"],
            author=body.get("author"),
            domain_name=body.get("domainName"),
            created_at=self.now(),
            render_time=self._draw_render_time(found),
        )
        self._done[record.task_id] = anyio.Event()
        self.credits -= self.video_cost
        self.stats.submits[(found.music_task_id, found.audio_id)] += 1
        self.stats.submits_accepted += 1
        if self._roll("callback_early", self.faults.callback_early):
            self.stats.callbacks_early += 1
            await self._finish(record)
        else:
            self._due.push(record.due_at, record)
        if self._roll("submit_5xx_after_accept", self.faults.submit_5xx_after_accept):
            return self._bad_gateway()
        return self._answer(Meaning.SUCCESS, "success", {"taskId": record.task_id})

    async def _video_details(self, request: web.Request) -> web.Response:
        task_id = request.query.get("taskId")
        if not task_id:
            return self._answer(Meaning.INVALID_PARAMS, "Validation Error - taskId is required")
        # Counted once the key was checked, and only for ids of at most 256 characters: an
        # id a caller makes up costs the sandbox no more than its one counter.
        if len(task_id) <= MAX_TASK_ID:
            self.stats.polls[task_id] += 1
        if self._roll("poll_455", self.faults.poll_455):
            return self._answer(Meaning.MAINTENANCE, "Service Unavailable - under maintenance")
        record = self._catalog.tasks.get(task_id)
        if record is None:
            return self._answer(Meaning.NOT_FOUND, f"Not Found - no video task {task_id!r}")
        return self._answer(Meaning.SUCCESS, "success", record_info(record, self.time_format))

    async def _video(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests["video"] += 1
        record = self._catalog.files.get(request.match_info["name"])
        if record is not None and not record.expired and record.is_past_retention(self.now()):
            record.expire()
        if record is None or record.expired or record.video_path is None:
            return web.Response(status=404, text="video not found (or past its 14 days)\n")
        if self._roll("download_reset", self.faults.download_reset):
            return await _cut_download(request, record.video_path)
        return web.FileResponse(record.video_path, headers={hdrs.CONTENT_TYPE: "video/mp4"})

    # Answers

    def _answer(
        self,
        meaning: Meaning,
        msg: str,
        data: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        """The JSON envelope with the dialect's code for ``meaning``, sent with HTTP 200
        (the seed: the body's code is the truth) or the code (``errors_in_http_status``)."""
        code = self.dialect.code(meaning)
        self.stats.answers[code] += 1
        status = self.dialect.http_status(code)
        return web.json_response(envelope(code, msg, data), status=status, headers=headers)

    def _too_many(self, meaning: Meaning, wait: float) -> web.Response:
        headers = {"Retry-After": retry_after_header(wait)}
        msg = {
            Meaning.RATE_LIMITED: "Rate Limited - call frequency too high",
            Meaning.CALL_LIMIT: "Call Limit Exceeded - try again later",
        }[meaning]
        return self._answer(meaning, msg, headers=headers)

    def _bad_gateway(self) -> web.Response:
        self.stats.answers[502] += 1
        return web.Response(status=502, text=BAD_GATEWAY_HTML, content_type="text/html")

    # Finishing tasks

    def _draw_render_time(self, track: Track) -> float:
        if isinstance(self.render_time, tuple):
            seconds = self._rng.uniform(*self.render_time)
        else:
            seconds = float(self.render_time)
        if self.render_time_per_audio_second is not None:
            seconds += self.render_time_per_audio_second * track.duration
        return seconds

    def _finish_soon(self, record: VideoTaskRecord) -> None:
        self._tg.start_soon(self._finish, record, name=f"finish {record.task_id}")

    async def _finish(self, record: VideoTaskRecord) -> None:
        """Render the video (a few at a time), publish it, then send the callback."""
        track = self._catalog.track_of(record)
        # A failure's reason reaches polls and callbacks: no host path may show in it.
        known = {str(self.video_dir): "the video directory"}
        if track.path is not None:
            known[str(track.path)] = track.path.name
        try:
            if track.fail is not None:
                raise RenderFailed(track.fail)
            job = RenderJob(
                video_task_id=record.task_id,
                audio_path=track.path,
                duration=track.duration,
                title=track.title,
                author=record.author,
                domain_name=record.domain_name,
                out_dir=self.video_dir,
            )
            async with _slot(self._render_limiter):
                path = await self.renderer.render(job)
        except RenderFailed as exc:
            # The track's own reason (set by whoever added it) stands as it was given.
            reason = track.fail if track.fail is not None else hide_host_paths(exc.reason, known)
            record.fail(reason, self.now())
        except Exception as exc:  # a renderer bug fails its task, not the whole sandbox
            logger.exception("renderer failed on %s", record.task_id)
            record.fail(hide_host_paths(f"renderer error: {exc}", known), self.now())
        else:
            self._catalog.publish(record, path, self.base_url, self.now())
        await self._notify(record)
        self._done[record.task_id].set()

    async def _notify(self, record: VideoTaskRecord) -> None:
        url = record.callback_url
        if not is_loopback_url(url):
            # Decided before any await, so no poll ever sees SUCCESS turn into the flag.
            self._callback_failed(record)
            self._note(record, "not sent: the host is not this machine")
            return
        if self.faults.callback_delay > 0:
            self.stats.faults["callback_delay"] += 1
            self._note(record, f"delayed {self.faults.callback_delay:g} s (fault)")
            await anyio.sleep(self.faults.callback_delay)
        if self._roll("callback_drop", self.faults.callback_drop):
            self.stats.callbacks_dropped += 1
            self._note(record, "dropped (fault)")
            return
        copies = 2 if self._roll("callback_duplicate", self.faults.callback_duplicate) else 1
        body = callback_body(record)
        for copy in range(copies):
            if copy:
                self._note(record, "sent again (duplicate fault)")
            if not await self._sender.deliver(url, body, record.task_id):
                self._callback_failed(record)
                return
            record.callbacks_sent += 1
            self.stats.callbacks_sent += 1
            if copy:
                self.stats.callbacks_duplicated += 1

    def _callback_failed(self, record: VideoTaskRecord) -> None:
        self.stats.callbacks_failed += 1
        if self.callbacks.failure_status is not None:
            record.callback_failed()

    def _callback_attempted(
        self, task_id: str, attempt: int, status: int | None, error: BaseException | None
    ) -> None:
        self.stats.callback_attempts += 1
        outcome = f"HTTP {status}" if error is None else describe_failure(error)
        event = CallbackEvent(self.now(), outcome, attempt=attempt, status=status)
        self._callback_log.add(task_id, event)

    def _note(self, record: VideoTaskRecord, what: str) -> None:
        self._callback_log.add(record.task_id, CallbackEvent(self.now(), what))

    def _roll(self, kind: str, probability: float) -> bool:
        """Draw whether a fault strikes now, and count it if it does."""
        if probability <= 0 or self._rng.random() >= probability:
            return False
        self.stats.faults[kind] += 1
        return True


async def _cut_short(request: web.Request, response: web.Response) -> web.StreamResponse:
    """Send the headers and half the body, then close the connection, like a reset."""
    body = response.body if isinstance(response.body, bytes) else b""
    stream = web.StreamResponse(status=response.status, headers=response.headers)
    stream.content_length = len(body)
    await stream.prepare(request)
    await stream.write(body[: len(body) // 2])
    return _abort(request, stream)


async def _cut_download(request: web.Request, path: Path) -> web.StreamResponse:
    """Serve the asked range of a video but stop halfway, so a client has to resume."""
    size = (await anyio.Path(path).stat()).st_size
    try:
        wanted = request.http_range
    except ValueError:
        wanted = slice(None, None)
    start, stop, _ = wanted.indices(size)
    stream = web.StreamResponse(status=206 if hdrs.RANGE in request.headers else 200)
    stream.content_type = "video/mp4"
    stream.content_length = max(0, stop - start)
    if stream.status == 206:
        stream.headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{stop - 1}/{size}"
    await stream.prepare(request)
    async with await anyio.open_file(path, "rb") as fh:
        await fh.seek(start)
        left = (stop - start) // 2
        while left > 0:
            chunk = await fh.read(min(left, 1 << 18))
            if not chunk:
                break
            await stream.write(chunk)
            left -= len(chunk)
    return _abort(request, stream)


def _abort(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Close the connection: whatever was not sent yet never arrives."""
    if request.transport is not None:
        request.transport.close()
    return response


@contextlib.asynccontextmanager
async def _slot(limiter: anyio.CapacityLimiter) -> AsyncIterator[None]:
    """Hold one of the limiter's tokens, without a checkpoint when one is free.

    ``async with limiter`` yields to the event loop even when a token is free, so a burst
    of quick renders (placeholders are written inline) would trickle through two per loop
    iteration and finish hundreds of milliseconds late under load.
    """
    try:
        limiter.acquire_nowait()
    except anyio.WouldBlock:
        await limiter.acquire()
    try:
        yield
    finally:
        limiter.release()


def _probe_duration(path: Path) -> float:
    """The audio file's length when ffmpeg (the ``render`` extra) can tell, else 5 s."""
    try:
        return probe(path).duration
    except (ImportError, ProbeError, OSError, subprocess.SubprocessError) as exc:
        logger.warning("could not probe %s (%s); assuming %s s", path, exc, DEFAULT_DURATION)
        return DEFAULT_DURATION


def render_by_default() -> bool:
    """Real rendering is on when ffmpeg is there (the ``render`` extra), unless the
    environment says otherwise: ``SUNO_MP4_SANDBOX_RENDER=0`` (fast test suites) or ``=1``."""
    setting = os.environ.get("SUNO_MP4_SANDBOX_RENDER", "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    try:
        from ._render import ffmpeg_available
    except ImportError:
        return False
    return ffmpeg_available()


def _ffmpeg_renderer() -> Renderer:
    try:
        module = importlib.import_module("._render", __package__)
    except ImportError as exc:
        raise ImportError(
            f"render=True needs the ffmpeg renderer: pip install 'suno-mp4[render]' ({exc})"
        ) from exc
    renderer: Renderer = module.FFmpegRenderer()
    return renderer
