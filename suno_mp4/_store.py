"""Durable job records: the ``JobStore`` protocol, an in-memory store and a SQLite store."""

from __future__ import annotations

import enum
import json
import os
import socket
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio
import attrs

from ._arguments import check_number
from ._convert import converter
from ._errors import JobStoreError
from ._models import MusicVideo, VideoRequest
from ._untrusted import check_id, loads, short

__all__ = [
    "JobRecord",
    "JobState",
    "JobStore",
    "LeasedJobStore",
    "MemoryJobStore",
    "SQLiteJobStore",
]


T = TypeVar("T")

#: This process, as a record's ``owner``.
PROCESS = f"{socket.gethostname()}/{os.getpid()}"


class JobState(enum.StrEnum):
    """Where a submission stands in a job store."""

    #: Written just before the POST goes out (write-ahead): it may or may not have reached
    #: the API. A record still in this state after its process died is in doubt.
    SUBMITTING = "submitting"
    #: The API answered with a video task id: the job is rendering (or done, unseen).
    SUBMITTED = "submitted"
    #: Finished with a video.
    DONE = "done"
    #: The API took the job and rendering failed (``VideoGenerationError``).
    FAILED = "failed"
    #: The API certainly did not take the job (401, 402, 4xx, maintenance, connection
    #: refused): a later submit under the same key goes ahead.
    REJECTED = "rejected"
    #: In doubt: the process died (or the answer was lost) while the submit was on the wire.
    #: Never re-sent by itself; see ``Client.unknown_submissions()``.
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        """No more work will happen on it: ``DONE`` or ``FAILED``."""
        return self in (JobState.DONE, JobState.FAILED)

    @property
    def in_doubt(self) -> bool:
        """It may or may not have been billed: ``SUBMITTING`` or ``UNKNOWN``."""
        return self in (JobState.SUBMITTING, JobState.UNKNOWN)


# The states by their old names (before the enum).
SUBMITTING = JobState.SUBMITTING
SUBMITTED = JobState.SUBMITTED
DONE = JobState.DONE
FAILED = JobState.FAILED
REJECTED = JobState.REJECTED
UNKNOWN = JobState.UNKNOWN


def _state(value: JobState | str) -> JobState:
    return value if type(value) is JobState else JobState(value)


@attrs.frozen
class JobRecord:
    """What a store knows about one submission, under its key (the request's key)."""

    key: str
    request: VideoRequest
    state: JobState = attrs.field(converter=_state)
    task_id: str | None = None
    via_listener: bool = False
    video: MusicVideo | None = None
    error: str | None = None
    updated_at: float = attrs.field(factory=time.time)
    #: ``host/pid`` of the process that wrote it (for a ``submitting`` record: whether its
    #: submit can still be on the wire).
    owner: str | None = attrs.field(factory=lambda: PROCESS)

    @property
    def finished(self) -> bool:
        return self.state.finished

    def writer_is_gone(self) -> bool:
        """Whether the process that wrote this record is known to have ended (it ran on this
        machine and its pid is gone). ``False`` when that cannot be known."""
        host, _, pid = (self.owner or "").rpartition("/")
        if host != socket.gethostname() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:  # exists, but not ours to signal
            return False
        return False


#: A record's fields, in the order the SQLite table has them.
_FIELDS = (
    "key",
    "task_id",
    "state",
    "request",
    "via_listener",
    "video",
    "error",
    "updated_at",
    "owner",
)


def _plain(record: JobRecord) -> dict[str, Any]:
    """A record as JSON-ready values (no API key is ever part of a record)."""
    return {
        "key": record.key,
        "task_id": record.task_id,
        "state": record.state.value,
        "request": _request_plain(record.request),
        "via_listener": record.via_listener,
        "video": converter.unstructure(record.video) if record.video else None,
        "error": record.error,
        "updated_at": record.updated_at,
        "owner": record.owner,
    }


def _request_plain(request: VideoRequest) -> dict[str, Any]:
    plain: dict[str, Any] = converter.unstructure(request)
    if request.idempotency_key is not None:
        plain["idempotencyKey"] = request.idempotency_key
    return plain


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
        owner=data.get("owner"),
    )


def record_to_json(record: JobRecord) -> str:
    return json.dumps(_plain(record))


def record_from_json(text: str | bytes) -> JobRecord:
    """A record read back from a shared store: untrusted (another version, a bug or a person
    may have written the key), so anything but a well-formed record of a usable key and
    task id is :class:`JobStoreError`."""
    try:
        data = loads(text, max_depth=8)
        if not isinstance(data, dict):
            raise TypeError(f"a record is a JSON object, not {type(data).__name__}")
        record = _from_plain(data)
        if not isinstance(record.key, str) or not record.key:
            raise TypeError("a record's key is a non-empty string")
        if record.task_id is not None:
            check_id(record.task_id)
        return record
    except Exception as exc:  # whatever junk it is: one record's problem, typed
        raise JobStoreError(f"a job record that cannot be read ({short(str(exc))})") from None


@runtime_checkable
class JobStore(Protocol):
    """Where a client records its submissions, so that none is paid for twice and a
    restarted process can resume them.

    The client calls ``insert`` with a ``submitting`` record just *before* each POST (the
    write-ahead, and the atomic claim on the request's key), ``save`` with the video task id
    the moment the answer arrives (before ``create_video`` returns), and ``save`` with the
    result when the job finishes. Implementations make each write durable before returning.
    """

    async def insert(self, record: JobRecord) -> JobRecord | None:
        """Save ``record`` unless another record holds its key; atomically, also against
        other processes sharing the store. A ``rejected`` record does not hold its key.
        Returns ``None`` when saved, else the record that holds the key."""
        ...

    async def save(self, record: JobRecord) -> None:
        """Save ``record`` under its key, replacing what was there."""
        ...

    async def get(self, key: str) -> JobRecord | None: ...

    async def delete(self, key: str) -> None:
        """Forget the record under ``key`` (a later submit under that key goes ahead)."""
        ...

    async def by_state(self, *states: JobState) -> Sequence[JobRecord]:
        """The records in any of ``states`` (all of them without arguments), oldest first."""
        ...

    async def unfinished(self) -> Sequence[JobRecord]: ...

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
    """The default store: a dict, gone with the process. Within the process an identical
    request is not submitted twice as long as its record is kept: the last ``max_records``
    records are (the oldest are dropped first, so a long-running process does not grow
    without bound; a dropped record's job keeps running and resolving)."""

    def __init__(self, *, max_records: int = 100_000) -> None:
        self._records: OrderedDict[str, JobRecord] = OrderedDict()
        self._max_records = max_records

    async def insert(self, record: JobRecord) -> JobRecord | None:
        return self.put_new(record)

    def put_new(self, record: JobRecord) -> JobRecord | None:
        """``insert``, synchronously (atomic: nothing here waits)."""
        existing = self._records.get(record.key)
        if existing is not None and existing.state is not JobState.REJECTED:
            return existing
        self.put(record)
        return None

    async def save(self, record: JobRecord) -> None:
        self.put(record)

    def put(self, record: JobRecord) -> None:
        """``save``, synchronously (the client's own shortcut: nothing here waits)."""
        self._records[record.key] = record
        self._records.move_to_end(record.key)
        while len(self._records) > self._max_records:
            self._records.popitem(last=False)

    async def get(self, key: str) -> JobRecord | None:
        return self._records.get(key)

    def peek(self, key: str) -> JobRecord | None:
        """``get``, synchronously."""
        return self._records.get(key)

    async def delete(self, key: str) -> None:
        self._records.pop(key, None)

    async def find_task(self, task_id: str) -> JobRecord | None:
        return next((r for r in self._records.values() if r.task_id == task_id), None)

    async def by_state(self, *states: JobState) -> Sequence[JobRecord]:
        records = [r for r in self._records.values() if not states or r.state in states]
        return sorted(records, key=lambda r: r.updated_at)

    async def unfinished(self) -> Sequence[JobRecord]:
        return [r for r in self._records.values() if not r.finished and r.state is not REJECTED]

    async def all(self) -> Sequence[JobRecord]:
        return await self.by_state()

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
    updated_at REAL NOT NULL,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS jobs_task ON jobs(task_id);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SQLiteJobStore:
    """Jobs in a SQLite file (standard library only): WAL mode, every write committed
    before ``save`` returns, all database work on a worker thread off the event loop.

    The API key is never stored: records hold requests, ids and results only.
    ``busy_timeout``: seconds a read or write waits for another connection's lock (another
    process, a backup, an ``sqlite3`` shell) before it raises :class:`JobStoreError`.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        check_number(busy_timeout, "busy_timeout", minimum=0, exclusive=True, finite=True)
        self.path = Path(path)
        self.busy_timeout = float(busy_timeout)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Several processes may share the file: wait for a lock (never fail at once).
            conn = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=self.busy_timeout
            )
            try:
                _retry_busy(lambda: _set_up(conn), seconds=self.busy_timeout)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    async def _run(self, fn: Any, *args: Any) -> Any:
        def call() -> Any:
            with self._lock:
                try:
                    return _retry_busy(
                        lambda: fn(self._connect(), *args), seconds=self.busy_timeout
                    )
                except (sqlite3.Error, OSError) as exc:
                    raise JobStoreError(f"job store {self.path}: {exc}") from exc

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def insert(self, record: JobRecord) -> JobRecord | None:
        existing: JobRecord | None = await self._run(_insert, record)
        return existing

    async def save(self, record: JobRecord) -> None:
        await self._run(_save, record)

    async def get(self, key: str) -> JobRecord | None:
        rows = await self._run(_select, "key = ?", (key,))
        return rows[0] if rows else None

    async def get_many(self, keys: Sequence[str]) -> dict[str, JobRecord]:
        """The records under ``keys`` (those that exist), in one trip to the database."""
        found: dict[str, JobRecord] = {}
        for i in range(0, len(keys), 500):  # SQLite's limit on bound parameters
            chunk = list(keys[i : i + 500])
            where = f"key IN ({', '.join('?' * len(chunk))})"
            for record in await self._run(_select, where, tuple(chunk)):
                found[record.key] = record
        return found

    async def delete(self, key: str) -> None:
        await self._run(_delete, key)

    async def is_empty(self) -> bool:
        """Whether the store holds no record."""
        found: bool = await self._run(_no_record)
        return found

    async def load_meta(self, name: str) -> str | None:
        """A value the client keeps beside the jobs (the learned render times)."""
        value: str | None = await self._run(_meta_get, name)
        return value

    async def save_meta(self, name: str, value: str) -> None:
        await self._run(_meta_put, name, value)

    async def by_state(self, *states: JobState) -> Sequence[JobRecord]:
        if not states:
            return await self.all()
        where = f"state IN ({', '.join('?' * len(states))})"
        rows: list[JobRecord] = await self._run(_select, where, tuple(s.value for s in states))
        return rows

    async def find_task(self, task_id: str) -> JobRecord | None:
        rows = await self._run(_select, "task_id = ?", (task_id,))
        return rows[-1] if rows else None

    async def unfinished(self) -> Sequence[JobRecord]:
        rows: list[JobRecord] = await self._run(
            _select, "state NOT IN ('done', 'failed', 'rejected')", ()
        )
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


def _set_up(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(_SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    if "owner" not in columns:  # a store written by an earlier version
        conn.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")


def _retry_busy(fn: Callable[[], T], *, seconds: float = 30.0) -> T:
    """``fn()``, again while another connection is setting the file up: SQLite answers
    "database is locked" at once there (WAL recovery, schema creation), without waiting
    for the busy timeout."""
    deadline = time.monotonic() + seconds
    delay = 0.01
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)  # on the store's worker thread, never the event loop
        delay = min(0.5, delay * 2)


_UPDATE = ", ".join(f"{name}=excluded.{name}" for name in _FIELDS if name != "key")


def _insert(conn: sqlite3.Connection, record: JobRecord) -> JobRecord | None:
    # One statement: another process sharing the file cannot slip in between.
    cursor = conn.execute(
        f"INSERT INTO jobs ({', '.join(_FIELDS)}) VALUES ({', '.join('?' * len(_FIELDS))})"
        f" ON CONFLICT(key) DO UPDATE SET {_UPDATE} WHERE jobs.state = 'rejected'",
        _row(record),
    )
    if cursor.rowcount == 1:
        return None
    rows = _select(conn, "key = ?", (record.key,))
    return rows[0] if rows else None


def _no_record(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchone() is None


def _meta_get(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def _meta_put(conn: sqlite3.Connection, name: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (name, value) VALUES (?, ?)"
        " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        (name, value),
    )


def _delete(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("DELETE FROM jobs WHERE key = ?", (key,))


def _save(conn: sqlite3.Connection, record: JobRecord) -> None:
    conn.execute(
        f"INSERT INTO jobs ({', '.join(_FIELDS)}) VALUES ({', '.join('?' * len(_FIELDS))})"
        f" ON CONFLICT(key) DO UPDATE SET {_UPDATE}",
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
