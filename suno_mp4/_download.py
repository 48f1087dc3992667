"""Streaming a finished video to disk: temporary file, progress, resume, expiry."""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp
import anyio

from ._backoff import Backoff
from ._clock import loop_time
from ._config import RetryPolicy
from ._errors import (
    APIError,
    InvalidRequestError,
    RateLimitError,
    ServerError,
    TransportError,
    VideoExpiredError,
    VideoTooLargeError,
    error_for_code,
    map_exceptions,
)
from ._models import MusicVideo
from ._transport import Transport, parse_retry_after
from ._untrusted import UntrustedDataError, check_url, file_in, safe_name, short

__all__ = ["Progress", "download"]

logger = logging.getLogger("suno_mp4.download")

#: ``progress(done_bytes, total_bytes_or_None)``, called as bytes arrive.
Progress = Callable[[int, int | None], object]

CHUNK = 1024 * 1024
#: The largest video downloaded (a music video is tens of MB).
MAX_VIDEO_BYTES = 4 * 1024**3
#: The slowest transfer kept going (bytes a second, over a request timeout's window).
MIN_RATE = 1024


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``Content-Range: bytes START-END/TOTAL``: the first byte and the whole file's length
    (``None`` for what the header does not say, or for a header that is not one)."""
    match = re.fullmatch(r"\s*bytes\s+([0-9]{1,18})-[0-9]{1,18}/([0-9]{1,18}|\*)\s*", value or "")
    if match is None:
        return None, None
    whole = match.group(2)
    return int(match.group(1)), None if whole == "*" else int(whole)


def target_path(url: str, path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or a file inside ``path`` when it is a folder (or ends with a
    separator), named after the URL's last segment made safe: a name from the network never
    picks the folder (``..%2F``, ``%2Ftmp%2Fx``, a NUL)."""
    target = Path(path)
    text = os.fspath(path)
    if target.is_dir() or text.endswith(("/", os.sep)):
        segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        name = safe_name(segment) if segment else "video.mp4"
        target = file_in(target, name)
    return target


async def download(
    transport: Transport,
    video: MusicVideo | str,
    path: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    retry: RetryPolicy,
    rng: random.Random,
    chunk_size: int = CHUNK,
) -> Path:
    """Stream ``video`` to ``path``; see :meth:`suno_mp4.Client.download`."""
    if isinstance(video, MusicVideo):
        if video.is_expired():
            raise VideoExpiredError(
                f"video {video.task_id} expired at {video.expires_at:%Y-%m-%d %H:%M} UTC "
                "(videos are kept 14 days): create it again"
            )
        url = video.video_url
    else:
        url = video
    try:
        check_url(url, what="video URL")
        target = await anyio.to_thread.run_sync(target_path, url, path)
    except UntrustedDataError as exc:
        raise InvalidRequestError(f"cannot download {short(url)!r}: {exc}") from None
    await anyio.Path(target.parent).mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.part")
    backoff = Backoff(initial=retry.initial_backoff, maximum=retry.max_backoff, rng=rng)
    while True:
        try:
            await _fetch(transport, url, part, progress, chunk_size)
            break
        except VideoTooLargeError:
            await anyio.Path(part).unlink(missing_ok=True)  # no resume would make it smaller
            raise
        except (TransportError, APIError) as exc:
            # Cut transfers, 5xx, and 429 / 455 (a pause the server asked for) are retried,
            # as for polls; other refusals (403, 401, ...) will not get better.
            if not isinstance(exc, TransportError | ServerError) and not exc.retryable:
                raise
            if backoff.attempt + 1 >= retry.attempts:
                raise
            delay = backoff.next_delay()
            if isinstance(exc, RateLimitError) and exc.retry_after is not None:
                if exc.retry_after > retry.max_retry_after:
                    raise
                delay = max(delay, exc.retry_after)
            logger.warning(
                "download of %s interrupted (%s); resuming in %.2f s", short(url, 200), exc, delay
            )
            await anyio.sleep(delay)
    await anyio.Path(part).rename(target)
    async with await anyio.open_file(target, "rb") as fh:
        head = await fh.read(12)
    if head[4:8] != b"ftyp":
        logger.warning("%s is no MP4 (a sandbox placeholder?)", short(str(target), 200))
    return target


async def _fetch(
    transport: Transport, url: str, part: Path, progress: Progress | None, chunk_size: int
) -> None:
    apart = anyio.Path(part)
    offset = (await apart.stat()).st_size if await apart.exists() else 0
    async with transport.stream(url, offset=offset) as resp:
        if resp.status in (404, 410):
            raise VideoExpiredError(
                f"video URL answers {resp.status}: the video expired (kept 14 days) or never "
                "existed"
            )
        if resp.status == 416 and offset:
            await apart.unlink()  # our partial file is no prefix of this one: start over
            raise TransportError("range not satisfiable; restarting the download", endpoint=url)
        if resp.status >= 400:
            err: APIError = error_for_code(
                resp.status,
                f"HTTP {resp.status} downloading the video",
                endpoint=url,
                http_status=resp.status,
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
            )
            raise err
        resumed = resp.status == 206 and offset > 0
        total = resp.content_length
        if resp.status == 206:
            start, whole = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                # Not the part asked for: appended, it would make a file of the right
                # length with the wrong bytes. Start over.
                await apart.unlink(missing_ok=True)
                raise TransportError(
                    "the answer's Content-Range is not the part asked for; restarting the download",
                    endpoint=url,
                )
            if whole is not None:
                total = whole  # the file's length, not this part's: a short part resumes
            elif total is not None:
                total += offset
        done = offset if resumed else 0
        if total is not None and total > MAX_VIDEO_BYTES:
            raise VideoTooLargeError(
                f"the video is said to be {total} bytes, more than {MAX_VIDEO_BYTES}: not taken"
            )
        done = await _write_pipelined(
            resp,
            part,
            append=resumed,
            done=done,
            total=total,
            progress=progress,
            chunk_size=chunk_size,
            url=url,
            window=transport.timeout,
        )
        if total is not None and done != total:
            raise TransportError(f"download ended at {done} of {total} bytes", endpoint=url)


async def _write_pipelined(
    resp: aiohttp.ClientResponse,
    part: Path,
    *,
    append: bool,
    done: int,
    total: int | None,
    progress: Progress | None,
    chunk_size: int,
    url: str,
    window: float,
) -> int:
    """Stream the body into ``part``; returns the byte count reached (also when cut: what
    arrived is on disk, for the resume). A transfer slower than ``MIN_RATE`` bytes a second
    over a ``window`` (the request timeout), or past ``MAX_VIDEO_BYTES``, is cut: a server
    dripping bytes must not hold it forever (each byte resets the read timeout)."""
    out = await anyio.to_thread.run_sync(open, part, "ab" if append else "wb")
    try:
        if progress is not None:
            progress(done, total)
        window_start, window_done = loop_time(), done
        with map_exceptions(url):
            async for chunk in resp.content.iter_chunked(chunk_size):
                # A write of at most 1 MiB into the page cache takes well under a
                # millisecond; a worker-thread hop per chunk cost more than the write
                # itself (0.63x of raw aiohttp throughput, benchmarks/download.py).
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
                if done > MAX_VIDEO_BYTES:
                    raise VideoTooLargeError(f"the video is over {MAX_VIDEO_BYTES} bytes")
                now = loop_time()
                if now - window_start >= window:
                    if done - window_done < MIN_RATE * (now - window_start):
                        raise TransportError(
                            f"download slower than {MIN_RATE} bytes/s for {window:g} s",
                            endpoint=url,
                        )
                    window_start, window_done = now, done
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(out.close)
    return done
