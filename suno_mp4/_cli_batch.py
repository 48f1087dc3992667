"""``suno-mp4 batch``: a CSV/JSONL file of tracks to videos on the SDK's batch API and a
durable job store in the output folder, so no re-run, crash or Ctrl-C bills a row twice."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import click

from ._batchfile import ManifestRecord, Row, RowProblem, iter_rows, read_manifest
from ._errors import (
    AuthenticationError,
    InsufficientCreditsError,
    JobStoreError,
    SubmissionInDoubtError,
    SunoMp4Error,
    VideoGenerationError,
)
from ._models import MusicVideo, VideoRequest
from ._store import JobRecord, JobState, SQLiteJobStore
from ._untrusted import file_in, printable, safe_name

#: The job store of a batch, in its output folder: the one ledger of what was submitted.
STORE_NAME = "jobs.db"
LOCK_NAME = ".suno-mp4.lock"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: How many in-doubt or failed rows the summary names (the manifest has them all).
SHOWN = 20


class Display:
    """One progress display: a rich bar with counts on a terminal, plain lines (one per
    finished row) otherwise, so logs and pipes stay readable."""

    def __init__(self, total: int, *, live: bool, quiet_stdout: bool = False) -> None:
        self.total = total
        #: Lines go to stderr (stdout holds the --json summary alone).
        self.quiet_stdout = quiet_stdout
        self.counts: Counter[str] = Counter()
        self.live = live
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Display:
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]videos"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[states]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("batch", total=self.total, states="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._refresh()
            self._progress.__exit__(None, None, None)

    def count(self, outcome: str, text: str | None = None) -> None:
        self.counts[outcome] += 1
        self._refresh()
        if text is not None and (not self.live or outcome != "done"):
            self.line(text)

    def _refresh(self) -> None:
        if self._progress is not None:
            states = " ".join(f"{k} {v}" for k, v in sorted(self.counts.items()) if v)
            self._progress.update(self._task, completed=sum(self.counts.values()), states=states)

    def line(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(printable(text), markup=False, highlight=False)
        else:
            click.echo(printable(text), err=self.quiet_stdout)


@attrs.define
class Outcome:
    """What one run did, for the summary and the exit code."""

    counts: Counter[str] = attrs.Factory(Counter)
    #: The first few in-doubt rows, to name them (all of them are counted).
    in_doubt: list[VideoRequest] = attrs.Factory(list)
    #: Why the run stopped early (later rows were not submitted), and its exit code.
    stopped: str | None = None
    stopped_code: int = EXIT_AUTH
    exit_code: int = EXIT_OK


def _rate(value: str | None) -> Any:
    if value is None:
        return None
    from . import RateLimit

    try:
        count, _, per = value.partition("/")
        return RateLimit(int(count), float(per or 1))
    except (ValueError, TypeError, SunoMp4Error) as exc:
        raise click.BadParameter(f"expected N/SECONDS such as 20/1, got {value!r}") from exc


def video_name(video_task_id: str) -> str:
    """A row's video file name: made by the CLI from the id, never taken from an answer."""
    return safe_name(video_task_id, suffix=".mp4")


def video_path(out_dir: Path, video_task_id: str) -> Path:
    """Where a row's video goes, checked to stay inside ``out_dir``."""
    return file_in(out_dir, video_name(video_task_id))


@contextlib.contextmanager
def _folder_lock(out_dir: Path) -> Iterator[None]:
    """One batch at a time per output folder: two would share one ledger unawares."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCK_NAME, "a") as fh:
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX: no lock
            pass
        except OSError:
            click.echo(f"error: another batch is running in {out_dir}", err=True)
            sys.exit(EXIT_USAGE)
        yield


def _valid_rows(file: Path) -> Iterator[Row]:
    for item in iter_rows(file):
        if isinstance(item, Row):
            yield item


#: The store's mark of the manifest import: "pending" from before its first record is
#: written until the last is, then "done".
_IMPORT_MARK = "cli.manifest_import"


async def _prepare(store: SQLiteJobStore, manifest: Path) -> None:
    """Before submitting: a submit that was on the wire when the last run died is in doubt
    (never re-sent by itself); a manifest of a version without the store is imported.

    The import is resumable: marked pending in the store before its first record and done
    after its last, so a run killed (or interrupted) half-way imports the rest next time
    instead of taking the half it has for all (its other rows would be billed again).
    """
    for record in await store.by_state(JobState.SUBMITTING):
        await store.save(attrs.evolve(record, state=JobState.UNKNOWN))
    mark = await store.load_meta(_IMPORT_MARK)
    if mark is None:
        # A new store, or one a run left empty before its import began: import. One with
        # records and no mark was made by a version that imported before keeping the mark.
        mark = "pending" if await store.is_empty() else "done"
        await store.save_meta(_IMPORT_MARK, mark)
    if mark == "pending":
        if await anyio.Path(manifest).exists():
            await _import_manifest(store, manifest)
        await store.save_meta(_IMPORT_MARK, "done")


async def _import_manifest(store: SQLiteJobStore, manifest: Path) -> None:
    """The append-only manifest of earlier versions knew which rows were submitted: carry
    their video task ids over, so upgrading mid-batch bills nothing twice."""
    from ._models import utcnow

    latest: dict[str, dict[str, Any]] = {}
    for data in read_manifest(manifest):
        if isinstance(data.get("video_task_id"), str):
            latest[str(data.get("key"))] = data
    for data in latest.values():
        try:
            request = VideoRequest(
                data["task_id"],
                data["audio_id"],
                author=data.get("author"),
                domain_name=data.get("domain_name"),
            )
        except (SunoMp4Error, KeyError, TypeError):
            continue
        url = data.get("video_url")
        if data.get("state") == "done" and isinstance(url, str):
            video = MusicVideo(data["video_task_id"], url, utcnow())
            record = JobRecord(request.key, request, JobState.DONE, data["video_task_id"])
            record = attrs.evolve(record, video=video)
        else:
            record = JobRecord(request.key, request, JobState.SUBMITTED, data["video_task_id"])
        await store.insert(record)


async def _free(store: SQLiteJobStore, *, retry_failed: bool, resubmit_in_doubt: bool) -> int:
    """The explicit flags: forget the folder's failed (or in-doubt) records, so their rows
    are submitted again. Returns how many."""
    states = [JobState.FAILED] if retry_failed else []
    if resubmit_in_doubt:
        states += [JobState.SUBMITTING, JobState.UNKNOWN]
    freed = await store.by_state(*states) if states else []
    for record in freed:
        await store.delete(record.key)
    return len(freed)


async def _export(file: Path, store: SQLiteJobStore, out_dir: Path, manifest: Path) -> None:
    """``manifest.jsonl``: every input row with what the store knows of it. An export, not
    a second ledger: streamed (flat memory) and moved into place whole."""
    part = manifest.with_name(f".{manifest.name}.part")
    async with await anyio.open_file(part, "w", encoding="utf-8") as fh:
        chunk: list[Row] = []
        for row in _with_end(_valid_rows(file)):
            if row is not None:
                chunk.append(row)
            if chunk and (row is None or len(chunk) == 500):
                found = await store.get_many([r.request.key for r in chunk])
                lines = [_manifest_line(r, found.get(r.request.key), out_dir) for r in chunk]
                await fh.write("".join(line.as_json() for line in lines))
                chunk = []
        await fh.flush()
        await anyio.to_thread.run_sync(os.fsync, fh.wrapped.fileno())
    await anyio.Path(part).replace(manifest)


def _with_end(rows: Iterator[Row]) -> Iterator[Row | None]:
    yield from rows
    yield None


def _manifest_line(row: Row, record: JobRecord | None, out_dir: Path) -> ManifestRecord:
    if record is None:
        return ManifestRecord.for_row(row)
    path = None
    if record.task_id:
        target = out_dir / video_name(record.task_id)  # exists? (no resolve per row)
        path = str(target) if target.exists() else None
    return ManifestRecord.for_row(
        row,
        state=record.state.value,
        video_task_id=record.task_id,
        video_url=record.video.video_url if record.video else None,
        path=path,
        error=record.error,
    )


async def run_batch(
    client: Any,
    file: Path,
    store: SQLiteJobStore,
    *,
    out_dir: Path,
    max_in_flight: int,
    download: bool,
    display: Display,
    outcome: Outcome,
    retry_failed: bool,
    resubmit_in_doubt: bool,
) -> None:
    """Submit every row through ``client.create_videos`` (keyed, write-ahead, so a row the
    store knows is never billed again), download each video, count what happened."""
    await _free(store, retry_failed=retry_failed, resubmit_in_doubt=resubmit_in_doubt)
    requests = (row.request for row in _valid_rows(file))  # streamed, never held
    downloads = anyio.Semaphore(min(max_in_flight, 8))

    async def fetch(video: MusicVideo, request: VideoRequest, skipped: bool) -> None:
        target = video_path(out_dir, video.task_id)
        label = f"{request.task_id}/{request.audio_id}"
        if await anyio.Path(target).exists():
            display.count("skipped" if skipped else "done", f"done   {label}: {target}")
            return
        async with downloads:
            try:
                await client.download(video, target)
            except SunoMp4Error as exc:
                display.count("download failed", f"download failed {label}: {exc}")
                outcome.exit_code = EXIT_FAILED
                return
        display.count("done", f"done   {label}: {target}")

    async with (
        anyio.create_task_group() as tg,
        client.create_videos(requests, max_in_flight=max_in_flight) as batch,
    ):
        async for result in batch:
            request: VideoRequest = result.request
            label = f"{request.task_id}/{request.audio_id}"
            skipped = result.job is not None and result.job.resolved_by == "store"
            if result.video is not None:
                if download:
                    tg.start_soon(fetch, result.video, request, skipped)
                else:
                    display.count("skipped" if skipped else "done", f"done   {label}")
                continue
            error = result.error
            if isinstance(error, AuthenticationError | InsufficientCreditsError | JobStoreError):
                # Every later row would fail alike (a store that cannot be written, after
                # its busy timeout each): no more submits. Nothing was sent for this row.
                auth = not isinstance(error, JobStoreError)
                outcome.stopped = str(error)
                outcome.exit_code = outcome.stopped_code = EXIT_AUTH if auth else EXIT_FAILED
                display.count("rejected" if auth else "failed", f"stopped at {label}: {error}")
                await batch.aclose()
                break
            if isinstance(error, SubmissionInDoubtError):
                if len(outcome.in_doubt) < SHOWN:
                    outcome.in_doubt.append(request)
                display.count("in doubt", f"in doubt {label}: may have been billed; not re-sent")
            elif isinstance(error, VideoGenerationError):
                display.count("render failed", f"failed {label}: {error}")
            else:
                display.count("failed", f"failed {label}: {error}")
            if outcome.exit_code == EXIT_OK:
                outcome.exit_code = EXIT_FAILED


def _count_rows(file: Path) -> tuple[int, list[RowProblem]]:
    """The valid rows (counted, not kept) and the malformed ones (up to 1,000 kept)."""
    valid = 0
    problems: list[RowProblem] = []
    for item in iter_rows(file):
        if isinstance(item, Row):
            valid += 1
        elif len(problems) < 1000:
            problems.append(item)
    return valid, problems


def _rerun_command(file: Path, out_dir: Path, flag: str | None = None) -> str:
    parts = ["suno-mp4", "batch", str(file), "--out-dir", str(out_dir)]
    return shlex.join([*parts, flag] if flag else parts)


def _json_summary(
    outcome: Outcome, file: Path, out_dir: Path, manifest: Path, problems: list[RowProblem]
) -> None:
    """``--json``: one object on stdout, then the same exit code as without it."""
    import json

    exit_code = outcome.exit_code
    if outcome.stopped is not None:
        exit_code = outcome.stopped_code
    elif problems and exit_code == EXIT_OK:
        exit_code = EXIT_FAILED
    summary = {
        "counts": dict(outcome.counts),
        "malformed_rows": [{"line": p.line, "message": p.message} for p in problems],
        "manifest": str(manifest),
        "stopped": outcome.stopped,
        "interrupted": outcome.exit_code == EXIT_INTERRUPTED,
        "rerun": _rerun_command(file, out_dir),
        "resubmit_in_doubt": _rerun_command(file, out_dir, "--resubmit-in-doubt")
        if outcome.counts["in doubt"]
        else None,
        "exit_code": exit_code,
    }
    click.echo(json.dumps(summary))
    sys.exit(exit_code)


def _summary(outcome: Outcome, file: Path, out_dir: Path, manifest: Path) -> None:
    order = "done", "skipped", "render failed", "failed", "download failed", "rejected", "in doubt"
    counts = outcome.counts
    text = ", ".join(f"{k} {counts[k]}" for k in order if counts[k]) or "nothing to do"
    click.echo(f"{text}; manifest {manifest}")
    if counts["in doubt"]:
        click.echo(
            f"{counts['in doubt']} row(s) in doubt: their submit was on the wire when an "
            "earlier run stopped, so the API may have billed them. Check them (e.g. in your "
            "account); to submit them again deliberately (each may then be billed twice):",
            err=True,
        )
        click.echo(f"  {_rerun_command(file, out_dir, '--resubmit-in-doubt')}", err=True)
        for request in outcome.in_doubt:
            click.echo(printable(f"  {request.task_id}/{request.audio_id}"), err=True)
    if counts["render failed"]:
        click.echo(
            f"{counts['render failed']} row(s) failed rendering; to render them again "
            f"(billed again): {_rerun_command(file, out_dir, '--retry-failed')}",
            err=True,
        )


@click.command("batch")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default="videos")
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the manifest is exported (default: OUT_DIR/manifest.jsonl).",
)
@click.option("--max-in-flight", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--listen", metavar="HOST:PORT", help="Receive callbacks on this address.")
@click.option("--public-url", help="The address the API reaches the listener at.")
@click.option("--rate-limit", metavar="N/S", help="At most N requests per S seconds.")
@click.option("--no-download", is_flag=True, help="Only record the video URLs.")
@click.option("--strict", is_flag=True, help="Refuse the whole file if any row is malformed.")
@click.option("--retry-failed", is_flag=True, help="Render rows whose rendering failed again.")
@click.option("--json", "as_json", is_flag=True, help="A JSON summary (and JSON errors).")
@click.option(
    "--resubmit-in-doubt",
    is_flag=True,
    help="Submit rows whose earlier submit is in doubt again (they may be billed twice).",
)
@click.pass_obj
def batch_command(
    obj: Any,
    file: Path,
    out_dir: Path,
    manifest_path: Path | None,
    max_in_flight: int,
    listen: str | None,
    public_url: str | None,
    rate_limit: str | None,
    no_download: bool,
    strict: bool,
    retry_failed: bool,
    as_json: bool,
    resubmit_in_doubt: bool,
) -> None:
    """Make a video for every row of FILE (.csv with a header, or .jsonl).

    Rows need task_id and audio_id (taskId/audioId accepted), optionally author and
    domain_name. Every submit is recorded in OUT_DIR/jobs.db before it is sent, so running
    the same command again (after a crash, Ctrl-C, a fixed key or a top-up) never bills a
    row twice: finished rows are skipped (their video downloaded if missing), rejected ones
    submitted, submitted ones waited for. OUT_DIR/manifest.jsonl lists every row's state.
    One Ctrl-C stops new submits and exits within seconds; a second exits at once.
    """
    from . import CallbackListener

    total, problems = _count_rows(file)
    for problem in problems:
        click.echo(printable(f"{file}: {problem}"), err=True)
    if problems and strict:
        click.echo(f"{len(problems)} malformed row(s): nothing submitted (--strict)", err=True)
        sys.exit(EXIT_USAGE)
    manifest = manifest_path or out_dir / "manifest.jsonl"
    callbacks = None
    if listen:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise click.BadParameter("expected HOST:PORT", param_hint="--listen")
        callbacks = CallbackListener(host, int(port), public_url=public_url)
    limit = _rate(rate_limit)
    outcome = Outcome()

    async def go() -> None:
        with _folder_lock(out_dir):
            await run(SQLiteJobStore(out_dir / STORE_NAME))

    async def run(store: SQLiteJobStore) -> None:
        prepared = False
        try:
            await _prepare(store, manifest)
            prepared = True
            live = sys.stdout.isatty() and not as_json
            with Display(total, live=live, quiet_stdout=as_json) as display:
                outcome.counts = display.counts
                async with (
                    obj.client(callbacks=callbacks, rate_limit=limit, store=store) as client,
                    anyio.create_task_group() as tg,
                ):
                    tg.start_soon(_stop_on_signal, tg.cancel_scope, display, outcome)
                    await run_batch(
                        client,
                        file,
                        store,
                        out_dir=out_dir,
                        max_in_flight=max_in_flight,
                        download=not no_download,
                        display=display,
                        outcome=outcome,
                        retry_failed=retry_failed,
                        resubmit_in_doubt=resubmit_in_doubt,
                    )
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                if prepared:  # else the manifest may still be an import's source: kept
                    await _export(file, store, out_dir, manifest)
                await store.aclose()

    obj.run(go, as_json=as_json)
    if as_json:
        _json_summary(outcome, file, out_dir, manifest, problems)
    if outcome.stopped is not None:
        click.echo(
            f"stopped: {printable(outcome.stopped)}\nnothing after it was submitted; fix it, "
            f"then run the same command again: {_rerun_command(file, out_dir)}",
            err=True,
        )
        sys.exit(outcome.stopped_code)
    _summary(outcome, file, out_dir, manifest)
    if outcome.exit_code == EXIT_INTERRUPTED:
        click.echo(
            f"interrupted: state saved; run the same command again to go on: "
            f"{_rerun_command(file, out_dir)}",
            err=True,
        )
    sys.exit(EXIT_FAILED if problems and outcome.exit_code == EXIT_OK else outcome.exit_code)


async def _stop_on_signal(scope: anyio.CancelScope, display: Display, outcome: Outcome) -> None:
    """First Ctrl-C (or SIGTERM): stop new submits at once, let those on the wire finish
    and record their answers (the SDK shields them), exit. Second: exit now — still safe,
    every submit was recorded before it was sent."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            display.line("interrupted: stopping; submits already sent are being recorded")
            outcome.exit_code = EXIT_INTERRUPTED
            scope.cancel()
            break
        async for _ in signals:
            display.line("interrupted again: exiting now (every sent submit is recorded)")
            os._exit(EXIT_INTERRUPTED)
