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
    then seeded random bytes up to ``size_bytes``.

    Random rather than zero padding so that a download test notices a chunk written at the
    wrong offset; seeded by the task id so the same task always gets the same bytes.
    """

    #: 4 KiB by default: enough for Range tests, small enough for thousands of tasks.
    size_bytes: int = attrs.field(default=4096, validator=attrs.validators.ge(0))

    async def render(self, job: RenderJob) -> Path:
        path = job.out_dir / f"{job.video_task_id}.placeholder.mp4"
        await anyio.to_thread.run_sync(self._write, path, job)
        return path

    def _write(self, path: Path, job: RenderJob) -> None:
        header = (
            f"suno_mp4 sandbox placeholder, not a playable MP4: task {job.video_task_id}, "
            f"title {job.title!r}, author {job.author!r}, domain {job.domain_name!r}\n"
        ).encode()
        rng = random.Random(job.video_task_id)
        chunk = 1 << 20
        with path.open("wb") as fh:
            fh.write(header[: self.size_bytes])
            left = self.size_bytes - min(len(header), self.size_bytes)
            while left > 0:
                n = min(chunk, left)
                fh.write(rng.randbytes(n))
                left -= n
