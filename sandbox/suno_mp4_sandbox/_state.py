"""The sandbox's world: its clock, the music tracks it knows, and the video tasks with
their state machine (PENDING, then SUCCESS / GENERATE_MP4_FAILED / CALLBACK_EXCEPTION)."""

from __future__ import annotations

import enum
import math
import secrets
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import attrs

__all__ = [
    "RETENTION_SECONDS",
    "Catalog",
    "Flag",
    "SandboxClock",
    "Track",
    "VideoTaskRecord",
]

#: The API keeps videos 14 days after generation (seed: "Developer Notes").
RETENTION_SECONDS = 14 * 86400.0
#: The sandbox clock stops short of the year 10000, which no date format can show.
LATEST_TIME = 253_402_300_799.0  # 9999-12-31 23:59:59 UTC


class Flag(enum.StrEnum):
    """The API's ``successFlag`` values."""

    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    CREATE_TASK_FAILED = "CREATE_TASK_FAILED"
    GENERATE_MP4_FAILED = "GENERATE_MP4_FAILED"
    CALLBACK_EXCEPTION = "CALLBACK_EXCEPTION"


class SandboxClock:
    """Wall-clock time plus an offset that ``advance()`` grows, so a test can live through
    the 14 days of retention in a millisecond."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        if not seconds >= 0:  # NaN too
            raise ValueError("the sandbox clock only moves forward")
        if not math.isfinite(seconds) or self.now() + seconds > LATEST_TIME:
            raise ValueError("the sandbox clock cannot go past the year 9999")
        self.offset += seconds


@attrs.frozen
class Track:
    """One audio track of a music-generation task: what a video can be made of."""

    music_task_id: str
    audio_id: str
    #: Position in its music task (the API's ``musicIndex``).
    index: int
    title: str
    duration: float
    #: The audio file, or None for a synthetic track.
    path: Path | None = None
    #: When set, rendering this track fails with this reason.
    fail: str | None = None


@attrs.define(eq=False)
class VideoTaskRecord:
    """One video task as the server sees it. Times are on the sandbox clock (epoch
    seconds); ``completed_at`` is when the task left PENDING, for lag measurements."""

    task_id: str
    music_task_id: str
    audio_id: str
    music_index: int
    callback_url: str
    author: str | None
    domain_name: str | None
    created_at: float
    #: When the scheduler finishes the task (created_at + the drawn render time).
    due_at: float
    status: Flag = Flag.PENDING
    video_url: str | None = None
    video_path: Path | None = None
    completed_at: float | None = None
    error_code: int | None = None
    error_message: str | None = None
    #: Callback POSTs the receiver answered with 2xx (a duplicate counts twice).
    callbacks_sent: int = 0
    #: The file was deleted after the retention period.
    expired: bool = False

    @property
    def expires_at(self) -> float | None:
        return None if self.completed_at is None else self.completed_at + RETENTION_SECONDS

    def succeed(self, path: Path, url: str, at: float) -> None:
        self._finish(at)
        self.status = Flag.SUCCESS
        self.video_path, self.video_url = path, url

    def fail(self, reason: str, at: float) -> None:
        self._finish(at)
        self.status = Flag.GENERATE_MP4_FAILED
        self.error_code, self.error_message = 500, reason

    def callback_failed(self) -> None:
        """Every delivery attempt failed: a made video is then CALLBACK_EXCEPTION (its URL
        stays valid); a failed render stays a failure."""
        if self.status is Flag.SUCCESS:
            self.status = Flag.CALLBACK_EXCEPTION

    def expire(self) -> None:
        """Delete the file; the URL answers 404 from now on."""
        if self.video_path is not None:
            self.video_path.unlink(missing_ok=True)
        self.expired = True

    def is_past_retention(self, now: float) -> bool:
        expires_at = self.expires_at
        return self.video_path is not None and expires_at is not None and now >= expires_at

    def as_json(self) -> dict[str, object]:
        """For the admin route ``/sandbox/tasks/{id}``: without ``video_path``, as no
        answer tells where files live on the host (``video_url`` names the file)."""
        data = attrs.asdict(self, value_serializer=_plain)
        del data["video_path"]
        data["expires_at"] = self.expires_at
        return data

    def _finish(self, at: float) -> None:
        if self.status is not Flag.PENDING:
            raise RuntimeError(f"task {self.task_id} already finished ({self.status})")
        self.completed_at = at


def _plain(_: object, __: object, value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Flag):
        return value.value
    return value


class Catalog:
    """The music tracks and video tasks, by id, plus which file belongs to which task."""

    def __init__(self) -> None:
        self.music: dict[str, dict[str, Track]] = {}
        self.tasks: dict[str, VideoTaskRecord] = {}
        self.files: dict[str, VideoTaskRecord] = {}
        self._by_track: dict[tuple[str, str], list[VideoTaskRecord]] = {}

    def add_music_task(self, tracks: Sequence[tuple[str, float, Path | None, str | None]]) -> str:
        """Register a music task of (title, duration, path, fail) tracks; return its id."""
        task_id = "music_" + secrets.token_hex(8)
        self.music[task_id] = {}
        for index, (title, duration, path, fail) in enumerate(tracks):
            audio_id = str(uuid.uuid4())
            self.music[task_id][audio_id] = Track(
                task_id, audio_id, index, title, duration, path, fail
            )
        return task_id

    def find_track(self, music_task_id: str, audio_id: str) -> Track | str:
        """The track, or a message saying which id is unknown."""
        tracks = self.music.get(music_task_id)
        if tracks is None:
            return f"music task {music_task_id!r} not found"
        track = tracks.get(audio_id)
        if track is None:
            return f"audioId {audio_id!r} not found in music task {music_task_id!r}"
        return track

    def has_video(self, track: Track) -> bool:
        """Whether a video of this track exists or is on its way (a failed one does not
        count: asking again after a failure is no conflict)."""
        videos = self._by_track.get((track.music_task_id, track.audio_id), [])
        return any(t.status is not Flag.GENERATE_MP4_FAILED for t in videos)

    def open_task(
        self,
        track: Track,
        *,
        callback_url: str,
        author: str | None,
        domain_name: str | None,
        created_at: float,
        render_time: float,
    ) -> VideoTaskRecord:
        record = VideoTaskRecord(
            task_id="mp4_" + secrets.token_hex(12),
            music_task_id=track.music_task_id,
            audio_id=track.audio_id,
            music_index=track.index,
            callback_url=callback_url,
            author=author,
            domain_name=domain_name,
            created_at=created_at,
            due_at=created_at + render_time,
        )
        self.tasks[record.task_id] = record
        self._by_track.setdefault((track.music_task_id, track.audio_id), []).append(record)
        return record

    def track_of(self, record: VideoTaskRecord) -> Track:
        return self.music[record.music_task_id][record.audio_id]

    def publish(self, record: VideoTaskRecord, path: Path, base_url: str, at: float) -> None:
        """Mark the task done and make its file downloadable under ``/videos/<name>``."""
        record.succeed(path, f"{base_url}/videos/{path.name}", at)
        self.files[path.name] = record

    def sweep(self, now: float) -> int:
        """Delete every file past its retention; return how many went."""
        gone = [r for r in self.files.values() if not r.expired and r.is_past_retention(now)]
        for record in gone:
            record.expire()
        return len(gone)
