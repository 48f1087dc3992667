"""What the sandbox asks of a renderer (``Renderer``, ``RenderJob``, ``RenderFailed``) and
the default one, which writes a placeholder file instead of a real video."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Protocol, runtime_checkable

import anyio.to_thread
import attrs

__all__ = ["PlaceholderRenderer", "RenderFailed", "RenderJob", "Renderer"]


@attrs.frozen
class RenderJob:
    """One video to make: the track, the branding, and the directory to write into."""

    video_task_id: str
    #: The track's audio file, or None for a synthetic track (the renderer invents sound).
    audio_path: Path | None
    #: Seconds of audio.
    duration: float
    title: str
    author: str | None
    domain_name: str | None
    #: Write the video here; the file's name becomes the last part of its URL.
    out_dir: Path


class RenderFailed(Exception):
    """The video could not be made; ``reason`` becomes the task's ``errorMessage``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class Renderer(Protocol):
    """Makes the video file of a finished task. Called concurrently, a few at a time."""

    async def render(self, job: RenderJob) -> Path:
        """Write the video into ``job.out_dir`` and return its path, or raise RenderFailed."""
        ...


@attrs.frozen
class PlaceholderRenderer:
    """Writes ``<video_task_id>.placeholder.mp4``: a text header saying it is no video,
    then filler up to ``size_bytes``.

    The filler is a random block (seeded by the task id) whose every 1 MiB copy starts
    with its own offset: cheap to write even at hundreds of megabytes, yet a download
    test notices a chunk stored at the wrong place, which zero padding would hide.
    """

    #: 4 KiB by default: enough for Range tests, small enough for thousands of tasks.
    size_bytes: int = attrs.field(default=4096, validator=attrs.validators.ge(0))

    async def render(self, job: RenderJob) -> Path:
        path = job.out_dir / f"{job.video_task_id}.placeholder.mp4"
        # Even a small file costs the disk a fraction of a millisecond to create: off the
        # event loop, or a burst of completions would stall every answer.
        await anyio.to_thread.run_sync(self._write, path, job)
        return path

    def _write(self, path: Path, job: RenderJob) -> None:
        header = (
            f"suno_mp4 sandbox placeholder, not a playable MP4: task {job.video_task_id}, "
            f"title {job.title!r}, author {job.author!r}, domain {job.domain_name!r}\n"
        ).encode()[: self.size_bytes]
        block = random.Random(job.video_task_id).randbytes(min(_BLOCK, self.size_bytes))
        with path.open("wb") as fh:
            fh.write(header)
            offset = len(header)
            while offset < self.size_bytes:
                n = min(_BLOCK, self.size_bytes - offset)
                fh.write((b"%016x" % offset + block[16:])[:n])
                offset += n


_BLOCK = 1 << 20
