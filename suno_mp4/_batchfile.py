"""Batch input files (CSV or JSONL rows of tracks) and the JSONL manifest of results."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from ._errors import InvalidRequestError
from ._models import VideoRequest

__all__ = ["Manifest", "ManifestRecord", "Row", "RowProblem", "read_rows"]

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
        r = self.request
        return json.dumps([r.task_id, r.audio_id, r.author, r.domain_name])


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
            out[name] = value.strip() if isinstance(value, str) else value
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


def read_rows(path: str | os.PathLike[str]) -> tuple[list[Row], list[RowProblem]]:
    """Read a ``.csv`` (with a header) or ``.jsonl`` file; bad rows are reported, not fatal."""
    file = Path(path)
    text = file.read_text(encoding="utf-8-sig")
    if file.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return _read_jsonl(text)
    return _read_csv(text)


def _read_jsonl(text: str) -> tuple[list[Row], list[RowProblem]]:
    rows, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise InvalidRequestError("a row must be a JSON object")
            rows.append(Row(number, _request(record)))
        except json.JSONDecodeError as exc:
            problems.append(RowProblem(number, f"not valid JSON ({exc.msg})"))
        except InvalidRequestError as exc:
            problems.append(RowProblem(number, str(exc)))
    return rows, problems


def _read_csv(text: str) -> tuple[list[Row], list[RowProblem]]:
    rows, problems = [], []
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        return [], [RowProblem(1, f"bad CSV header ({exc})")]
    known = {_ALIASES.get(h.strip().lower().replace("-", "_")) for h in header}
    if not {"task_id", "audio_id"} <= known:
        return [], [RowProblem(1, "the CSV header needs task_id and audio_id columns")]
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(RowProblem(start, f"bad CSV quoting ({exc})"))
            continue
        try:
            rows.append(Row(start, _request(record)))
        except InvalidRequestError as exc:
            problems.append(RowProblem(start, str(exc)))
    return rows, problems


@attrs.define
class ManifestRecord:
    """The latest state of one row: ``submitted`` (video task known), ``done`` or ``failed``."""

    key: str
    line: int
    task_id: str
    audio_id: str
    author: str | None = None
    domain_name: str | None = None
    state: str = "submitted"
    video_task_id: str | None = None
    video_url: str | None = None
    path: str | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    @classmethod
    def for_row(cls, row: Row, **fields: Any) -> ManifestRecord:
        r = row.request
        return cls(
            key=row.key,
            line=row.line,
            task_id=r.task_id,
            audio_id=r.audio_id,
            author=r.author,
            domain_name=r.domain_name,
            **fields,
        )


class Manifest:
    """An append-only JSONL file: one object per event, the last one per row wins.

    Each line is written whole and flushed to disk before the next step, so an interrupted
    run leaves every line complete (a torn last line from a crash is ignored on reading).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, ManifestRecord]:
        records: dict[str, ManifestRecord] = {}
        if not self.path.exists():
            return records
        names = {a.name for a in attrs.fields(ManifestRecord)}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                data = json.loads(line)
                record = ManifestRecord(**{k: v for k, v in data.items() if k in names})
            except (ValueError, TypeError):
                continue  # a torn line from a crash
            records[record.key] = record
        return records

    def append(self, record: ManifestRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(attrs.asdict(record), ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def __iter__(self) -> Iterator[ManifestRecord]:
        return iter(self.load().values())
