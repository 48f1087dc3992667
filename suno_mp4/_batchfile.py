"""Batch input files (CSV or JSONL rows of tracks) and the JSONL manifest of results."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from ._errors import InvalidRequestError
from ._models import VideoRequest
from ._untrusted import is_utf8

__all__ = [
    "ManifestRecord",
    "Row",
    "RowProblem",
    "iter_rows",
    "read_manifest",
]

_ALIASES = {
    "task_id": "task_id",
    "taskid": "task_id",
    "audio_id": "audio_id",
    "audioid": "audio_id",
    "author": "author",
    "domain_name": "domain_name",
    "domainname": "domain_name",
    "domain": "domain_name",
}


@attrs.frozen
class Row:
    """One valid input row: its line number in the file and the request it asks for."""

    line: int
    request: VideoRequest

    @property
    def key(self) -> str:
        """Identifies the row across runs (same track and branding = same video)."""
        return self.request.key


@attrs.frozen
class RowProblem:
    """A malformed row: where, and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _normalise(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key is None:
            raise InvalidRequestError("more fields than the header has (check the quoting)")
        name = _ALIASES.get(str(key).strip().lower().replace("-", "_"))
        if name is not None:
            if isinstance(value, str):
                if not is_utf8(value):
                    raise InvalidRequestError(f"{name} is not UTF-8 text")
                value = value.strip()
            out[name] = value
    return out


def _request(record: dict[str, Any]) -> VideoRequest:
    fields = _normalise(record)
    for required in ("task_id", "audio_id"):
        if not fields.get(required):
            raise InvalidRequestError(f"missing {required}")
    return VideoRequest(
        fields["task_id"],
        fields["audio_id"],
        author=fields.get("author") or None,
        domain_name=fields.get("domain_name") or None,
    )


def iter_rows(path: str | os.PathLike[str]) -> Iterator[Row | RowProblem]:
    """The rows of a ``.csv`` (with a header) or ``.jsonl`` file, one at a time (memory
    stays flat however long the file is); bad rows come as :class:`RowProblem`, in place.

    Lines end at ``\n`` / ``\r\n`` only: a U+2028 or U+0085 inside a value is part of
    the value, never a second row. Bytes that are not UTF-8 make their row alone a problem
    (read as lone surrogates, which no row may hold), not the rest of the file."""
    file = Path(path)
    with open(file, encoding="utf-8-sig", newline="", errors="surrogateescape") as fh:
        if file.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            yield from _jsonl_rows(fh)
        else:
            yield from _csv_rows(fh)


def _jsonl_rows(fh: Iterable[str]) -> Iterator[Row | RowProblem]:
    for number, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise InvalidRequestError("a row must be a JSON object")
            yield Row(number, _request(record))
        except json.JSONDecodeError as exc:
            yield RowProblem(number, f"not valid JSON ({exc.msg})")
        except (InvalidRequestError, RecursionError) as exc:
            yield RowProblem(number, str(exc) or "nested too deeply")
        except ValueError:  # a number of more digits than int() takes
            yield RowProblem(number, "not valid JSON (a number too long)")


def _csv_rows(fh: Iterable[str]) -> Iterator[Row | RowProblem]:
    reader = csv.DictReader(fh, strict=True)
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        yield RowProblem(1, f"bad CSV header ({exc})")
        return
    known = {_ALIASES.get(h.strip().lower().replace("-", "_")) for h in header}
    if not {"task_id", "audio_id"} <= known:
        yield RowProblem(1, "the CSV header needs task_id and audio_id columns")
        return
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield RowProblem(start, f"bad CSV quoting ({exc})")
            continue
        try:
            yield Row(start, _request(record))
        except InvalidRequestError as exc:
            yield RowProblem(start, str(exc))


@attrs.define
class ManifestRecord:
    """One line of the manifest: an input row and what the job store knows of it."""

    key: str
    line: int
    task_id: str
    audio_id: str
    author: str | None = None
    domain_name: str | None = None
    #: The store's state (submitted, done, failed, rejected, unknown, submitting), or
    #: ``pending`` when the row was not submitted yet.
    state: str = "pending"
    video_task_id: str | None = None
    video_url: str | None = None
    path: str | None = None
    error: str | None = None

    def as_json(self) -> str:
        """One manifest line."""
        # ASCII: a U+2028 in a value must not look like a line break to any reader.
        return json.dumps(attrs.asdict(self)) + "\n"

    @classmethod
    def for_row(cls, row: Row, **fields: Any) -> ManifestRecord:
        r = row.request
        return cls(
            key=r.key,
            line=row.line,
            task_id=r.task_id,
            audio_id=r.audio_id,
            author=r.author,
            domain_name=r.domain_name,
            **fields,
        )


def read_manifest(path: Path) -> Iterator[dict[str, Any]]:
    """The lines of a manifest written by an earlier version (an append-only log): each
    object as read; torn or foreign lines are skipped."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        for line in fh:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                yield data
