"""``suno-mp4 batch``: a CSV/JSONL file of tracks to videos, with progress and a manifest
that makes re-runs skip finished rows and re-attach to submitted ones."""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import click

from ._batchfile import Manifest, ManifestRecord, Row, read_rows
from ._untrusted import file_in, printable, safe_name

STATES = ("queued", "submitting", "rendering", "downloading", "done", "failed")


class Display:
    """One progress display: a rich bar with per-state counts and ETA on a terminal, plain
    lines (one per finished row) otherwise, so logs and pipes stay readable."""

    def __init__(self, total: int, *, live: bool) -> None:
        self.total = total
        self.counts: Counter[str] = Counter()
        self.live = live
        self._progress: Any = None
        self._task: Any = None
        self._start = time.monotonic()

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
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("batch", total=self.total, states="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._refresh()
            self._progress.__exit__(None, None, None)

    def move(self, old: str | None, new: str) -> None:
        if old is not None:
            self.counts[old] -= 1
        self.counts[new] += 1
        self._refresh()

    def _refresh(self) -> None:
        if self._progress is not None:
            states = " ".join(f"{s} {self.counts[s]}" for s in STATES if self.counts[s])
            finished = self.counts["done"] + self.counts["failed"]
            self._progress.update(self._task, completed=finished, states=states)

    def line(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text)


async def run_batch(
    client: Any,
    rows: list[Row],
    manifest: Manifest,
    *,
    out_dir: Path,
    max_in_flight: int,
    download: bool,
    display: Display,
    outcome: Counter[str],
) -> None:
    """Process ``rows``; every transition is appended to the manifest before moving on.
    ``outcome`` counts done, failed and skipped rows (also when interrupted)."""
    from . import SunoMp4Error

    previous = manifest.load()
    slots = anyio.Semaphore(max_in_flight)

    async def process(row: Row, record: ManifestRecord | None) -> None:
        state = "queued"
        try:
            if record is not None and record.video_task_id:
                job = client.job(record.video_task_id)  # submitted before: never again
            else:
                display.move(state, state := "submitting")
                # A submit in flight finishes even on Ctrl-C, so its id is never lost.
                with anyio.CancelScope(shield=True):
                    job = await client.submit(row.request)
                    record = ManifestRecord.for_row(row, video_task_id=job.task_id)
                    manifest.append(record)
            assert record is not None
            display.move(state, state := "rendering")
            video = await job
            record.video_url = video.video_url
            if download:
                display.move(state, state := "downloading")
                # The file name is made here from the id, never taken from the answer.
                name = safe_name(job.task_id, suffix=".mp4")
                path = await client.download(video, file_in(out_dir, name))
                record.path = str(path)
            record.state = "done"
            manifest.append(record)
            display.move(state, state := "done")
            outcome["done"] += 1
            if not display.live:
                display.line(f"done   line {row.line}: {printable(record.video_url, 300)}")
        except SunoMp4Error as exc:
            if record is None:
                record = ManifestRecord.for_row(row)
            record.state, record.error = "failed", f"{type(exc).__name__}: {exc}"
            manifest.append(record)
            display.move(state, "failed")
            outcome["failed"] += 1
            display.line(f"failed line {row.line}: {printable(record.error)}")
        finally:
            slots.release()

    todo = []
    for row in rows:
        record = previous.get(row.key)
        if record is not None and record.finished:
            outcome["skipped"] += 1
            display.move(None, record.state)
            continue
        todo.append((row, record))
        display.move(None, "queued")
    async with anyio.create_task_group() as tg:
        for row, record in todo:
            await slots.acquire()
            tg.start_soon(process, row, record)


def _rate(value: str | None) -> Any:
    if value is None:
        return None
    from . import RateLimit

    try:
        count, _, per = value.partition("/")
        return RateLimit(int(count), float(per or 1))
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(f"expected N/SECONDS such as 20/1, got {value!r}") from exc


@click.command("batch")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default="videos")
@click.option("--manifest", "manifest_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--max-in-flight", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--listen", metavar="HOST:PORT", help="Receive callbacks on this address.")
@click.option("--public-url", help="The address the API reaches the listener at.")
@click.option("--rate-limit", metavar="N/S", help="At most N requests per S seconds.")
@click.option("--no-download", is_flag=True, help="Only record the video URLs.")
@click.option("--strict", is_flag=True, help="Refuse the whole file if any row is malformed.")
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
) -> None:
    """Make a video for every row of FILE (.csv with a header, or .jsonl).

    Rows need task_id and audio_id (taskId/audioId accepted), optionally author and
    domain_name. Results go to a JSONL manifest as they happen; running the same command
    again skips finished rows and re-attaches to submitted ones instead of paying twice.
    """
    from . import CallbackListener

    rows, problems = read_rows(file)
    for problem in problems:
        click.echo(f"{file}: {problem}", err=True)
    if problems and strict:
        click.echo(f"{len(problems)} malformed row(s): nothing submitted (--strict)", err=True)
        sys.exit(2)
    manifest = Manifest(manifest_path or out_dir / "manifest.jsonl")
    callbacks = None
    if listen:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise click.BadParameter("expected HOST:PORT", param_hint="--listen")
        callbacks = CallbackListener(host, int(port), public_url=public_url)
    limit = _rate(rate_limit)
    live = sys.stdout.isatty()

    outcome: Counter[str] = Counter()

    async def go() -> None:
        async with obj.client(callbacks=callbacks, rate_limit=limit) as client:
            with Display(len(rows), live=live) as display:
                async with anyio.create_task_group() as tg:

                    async def stop_on_signal() -> None:
                        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
                            async for _ in sigs:
                                display.line("interrupted: finishing in-flight submits")
                                tg.cancel_scope.cancel()
                                return

                    tg.start_soon(stop_on_signal)
                    await run_batch(
                        client,
                        rows,
                        manifest,
                        out_dir=out_dir,
                        max_in_flight=max_in_flight,
                        download=not no_download,
                        display=display,
                        outcome=outcome,
                    )
                    tg.cancel_scope.cancel()

    obj.run(go)
    summary = ", ".join(f"{k} {outcome[k]}" for k in ("done", "failed", "skipped") if outcome[k])
    finished = outcome["done"] + outcome["failed"] + outcome["skipped"]
    if finished < len(rows):
        click.echo(f"stopped: {summary or 'nothing finished'}; manifest {manifest.path}", err=True)
        sys.exit(130)
    click.echo(f"{summary or 'nothing to do'}; manifest {manifest.path}")
    sys.exit(1 if outcome["failed"] or problems else 0)
