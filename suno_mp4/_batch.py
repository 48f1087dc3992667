"""Batches: ``client.create_videos`` submits many requests, at most ``max_in_flight``
unfinished at once, and yields each result as it finishes."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import NoReturn, Self

import anyio
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import ClientClosedError, InvalidRequestError, SunoMp4Error
from ._jobs import VideoJob
from ._ledger import Ledger, check_same_request
from ._models import MusicVideo, VideoRequest
from ._store import JobRecord
from ._untrusted import short

__all__ = ["Batch", "BatchResult"]

logger = logging.getLogger("suno_mp4.batch")


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


class Batch:
    """The async iterator returned by :meth:`Client.create_videos`."""

    def __init__(
        self,
        requests: Iterable[VideoRequest] | AsyncIterable[VideoRequest],
        max_in_flight: int,
        *,
        submit: Callable[[VideoRequest], Awaitable[VideoJob]],
        ledger: Ledger,
        task_group: TaskGroup,
    ) -> None:
        self._submit = submit
        self._ledger = ledger
        self._task_group = task_group
        self._requests = requests
        self._max = max_in_flight
        self._streams: (
            tuple[MemoryObjectSendStream[BatchResult], MemoryObjectReceiveStream[BatchResult]]
            | None
        ) = None
        self._scope: anyio.CancelScope | None = None
        self._closed = False
        #: What reading ``requests`` raised: the consumer gets it after the items before it.
        self._input_error: Exception | None = None

    def __aiter__(self) -> AsyncIterator[BatchResult]:
        return self

    async def __anext__(self) -> BatchResult:
        if self._closed:
            self._end()
        if self._streams is None:
            self._streams = anyio.create_memory_object_stream[BatchResult](0)
            await self._task_group.start(self._run, self._streams[0])
        try:
            return await self._streams[1].receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            await self.aclose()
        self._end()

    def _end(self) -> NoReturn:
        """The loop is over: with the error that ended it (its input's, a closed client's),
        once, else a plain end."""
        error, self._input_error = self._input_error, None
        if error is not None:
            raise error
        raise StopAsyncIteration

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop submitting; results not yet taken are dropped (their jobs keep running)."""
        self.close()

    def close(self, *, client_closed: bool = False) -> None:
        """:meth:`aclose` without awaiting (the client calls it when it closes: the loop
        then raises :class:`ClientClosedError`, not a quiet end that reads as done)."""
        if client_closed and not self._closed and self._input_error is None:
            self._input_error = ClientClosedError(
                "the Client closed while this batch ran; jobs already submitted keep "
                "running on the server: run the batch again (keyed: nothing is billed twice)"
            )
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
                try:
                    async for chunk in _chunks(self._requests):
                        # Up to a wrong item: those before it are begun, then the loop ends.
                        good = list(itertools.takewhile(_is_request, chunk))
                        # One store look-up for a chunk: a re-run of a long batch finds most
                        # rows finished without a trip per row.
                        known = await self._ledger.finished_records_of(good)
                        for request in good:
                            await slots.acquire()
                            tg.start_soon(self._one, request, slots, send, known.get(request.key))
                        if len(good) < len(chunk):
                            raise InvalidRequestError(
                                "each item of requests must be a VideoRequest, got "
                                f"{type(chunk[len(good)]).__name__}"
                            )
                except Exception as exc:
                    # The caller's iterable failed (or held something else): no more items;
                    # those under way finish and are yielded, then the loop raises this.
                    # (Raised here, it would stop the client that runs the batch.)
                    self._input_error = exc

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
                    check_same_request(finished, request)
                    job = self._ledger.from_store(finished)
                else:
                    job = await self._submit(request)
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


def _is_request(item: object) -> bool:
    return isinstance(item, VideoRequest)


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
        while True:
            chunk: list[VideoRequest] = []
            try:
                chunk.extend(itertools.islice(iterator, size))
            except Exception:
                if chunk:  # what was read before it failed is still done
                    yield chunk
                raise
            if not chunk:
                return
            yield chunk
