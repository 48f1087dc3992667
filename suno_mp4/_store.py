"""Durable job records: the ``JobStore`` protocol, an in-memory store and a SQLite store."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import anyio
import attrs

from ._convert import converter
from ._models import MusicVideo, VideoRequest

__all__ = ["JobRecord", "JobStore", "LeasedJobStore", "MemoryJobStore", "SQLiteJobStore"]

#: Write-ahead state: the POST may or may not have reached the server.
SUBMITTING = "submitting"
#: The server answered with a video task id.
SUBMITTED = "submitted"
DONE = "done"
FAILED = "failed"
#: The submit's outcome is unknown (crash or lost answer): it may have been submitted.
UNKNOWN = "unknown"


@attrs.frozen
class JobRecord:
    """What a store knows about one submission."""

    key: str
    request: VideoRequest
    state: str
    task_id: str | None = None
    via_listener: bool = False
    video: MusicVideo | None = None
    error: str | None = None
    updated_at: float = attrs.field(factory=time.time)

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED)


def new_key() -> str:
    return uuid.uuid4().hex


#: A record's fields, in the order the SQLite table has them.
_FIELDS = ("key", "task_id", "state", "request", "via_listener", "video", "error", "updated_at")


def _plain(record: JobRecord) -> dict[str, Any]:
    """A record as JSON-ready values (no API key is ever part of a record)."""
    return {
        "key": record.key,
        "task_id": record.task_id,
        "state": record.state,
        "request": converter.unstructure(record.request),
        "via_listener": record.via_listener,
        "video": converter.unstructure(record.video) if record.video else None,
        "error": record.error,
        "updated_at": record.updated_at,
    }


def _from_plain(data: dict[str, Any]) -> JobRecord:
    return JobRecord(
        key=data["key"],
        request=converter.structure(data["request"], VideoRequest),
        state=data["state"],
        task_id=data.get("task_id"),
        via_listener=bool(data.get("via_listener")),
        video=converter.structure(data["video"], MusicVideo) if data.get("video") else None,
        error=data.get("error"),
        updated_at=float(data.get("updated_at") or 0.0),
    )


def record_to_json(record: JobRecord) -> str:
    return json.dumps(_plain(record))


def record_from_json(text: str | bytes) -> JobRecord:
    return _from_plain(json.loads(text))


@runtime_checkable
class JobStore(Protocol):
    """Where a client records its jobs so a restarted process can resume them.

    The client calls ``save`` with ``state="submitting"`` *before* each POST, again with the
    video task id the moment the answer arrives (before ``create_video`` returns), and with
    the result when the job finishes. Implementations must make each ``save`` durable before
    returning.
    """

    async def save(self, record: JobRecord) -> None: ...

    async def get(self, key: str) -> JobRecord | None: ...

    async def find_task(self, task_id: str) -> JobRecord | None: ...

    async def unfinished(self) -> Sequence[JobRecord]: ...

    async def all(self) -> Sequence[JobRecord]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class LeasedJobStore(JobStore, Protocol):
    """A store shared by several worker processes (``suno_mp4.redis.RedisJobStore``).

    Each worker owns the records it saves and keeps a lease on them; ``unfinished`` and
    ``all`` list its own records. A client renews the lease every ``lease_seconds / 3`` and
    calls ``claim``, which moves the unfinished records of workers whose lease ended to this
    worker; the client then finishes those jobs by polling (a submit is never repeated).
    """

    @property
    def worker_id(self) -> str: ...

    @property
    def lease_seconds(self) -> float: ...

    async def renew(self) -> None: ...

    async def claim(self) -> Sequence[JobRecord]: ...


class MemoryJobStore:
    """The default store: a dict, gone with the process. Finished records are dropped at
    once (nothing can resume them), so a long-running process does not grow with it."""

    def __init__(self) -> None:
        self._records: dict[str, JobRecord] = {}
        self._by_task: dict[str, str] = {}

    async def save(self, record: JobRecord) -> None:
        if record.finished:
            self._records.pop(record.key, None)
            if record.task_id:
                self._by_task.pop(record.task_id, None)
            return
        self._records[record.key] = record
        if record.task_id:
            self._by_task[record.task_id] = record.key

    def forget(self, key: str) -> None:
        """Drop a record that nobody in this process can resume (its job timed out)."""
        record = self._records.pop(key, None)
        if record is not None and record.task_id:
            self._by_task.pop(record.task_id, None)

    async def get(self, key: str) -> JobRecord | None:
        return self._records.get(key)

    async def find_task(self, task_id: str) -> JobRecord | None:
        key = self._by_task.get(task_id)
        return self._records.get(key) if key else None

    async def unfinished(self) -> Sequence[JobRecord]:
        return [r for r in self._records.values() if not r.finished]

    async def all(self) -> Sequence[JobRecord]:
        return list(self._records.values())

    async def aclose(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,
    task_id TEXT,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    via_listener INTEGER NOT NULL DEFAULT 0,
    video TEXT,
    error TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_task ON jobs(task_id);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
"""


class SQLiteJobStore:
    """Jobs in a SQLite file (standard library only): WAL mode, every write committed
    before ``save`` returns, all database work on a worker thread off the event loop.

    The API key is never stored: records hold requests, ids and results only.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Any, *args: Any) -> Any:
        def call() -> Any:
            with self._lock:
                return fn(self._connect(), *args)

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def save(self, record: JobRecord) -> None:
        await self._run(_save, record)

    async def get(self, key: str) -> JobRecord | None:
        rows = await self._run(_select, "key = ?", (key,))
        return rows[0] if rows else None

    async def find_task(self, task_id: str) -> JobRecord | None:
        rows = await self._run(_select, "task_id = ?", (task_id,))
        return rows[-1] if rows else None

    async def unfinished(self) -> Sequence[JobRecord]:
        rows: list[JobRecord] = await self._run(_select, "state NOT IN ('done', 'failed')", ())
        return rows

    async def all(self) -> Sequence[JobRecord]:
        rows: list[JobRecord] = await self._run(_select, "1", ())
        return rows

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await anyio.to_thread.run_sync(close)


def _save(conn: sqlite3.Connection, record: JobRecord) -> None:
    conn.execute(
        "INSERT INTO jobs (key, task_id, state, request, via_listener, video, error, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(key) DO UPDATE SET task_id=excluded.task_id, state=excluded.state,"
        " via_listener=excluded.via_listener, video=excluded.video, error=excluded.error,"
        " updated_at=excluded.updated_at",
        _row(record),
    )


def _row(record: JobRecord) -> tuple[Any, ...]:
    """A record as a table row: request and video as JSON text."""
    plain = _plain(record)
    plain["request"] = json.dumps(plain["request"])
    plain["video"] = json.dumps(plain["video"]) if plain["video"] is not None else None
    plain["via_listener"] = int(record.via_listener)
    return tuple(plain[name] for name in _FIELDS)


def _select(conn: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> list[JobRecord]:
    cursor = conn.execute(
        f"SELECT {', '.join(_FIELDS)} FROM jobs WHERE {where} ORDER BY updated_at", args
    )
    out = []
    for row in cursor:
        plain = dict(zip(_FIELDS, row, strict=True))
        plain["request"] = json.loads(plain["request"])
        plain["video"] = json.loads(plain["video"]) if plain["video"] else None
        out.append(_from_plain(plain))
    return out
