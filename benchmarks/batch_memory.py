"""``suno-mp4 batch`` on a very long file: the CLI's peak memory while it reads the file,
and while a re-run works out what is left to do, each in a fresh process (``wait4``'s
``ru_maxrss``). Baseline in the same run: ``suno-mp4 --version`` (the interpreter and the
imports alone).

    python -m benchmarks.batch_memory [--rows 1000000] [--runs 3]

"Reads the file": the store is empty and the key is rejected, so the batch reads (and
checks) every row, then stops at the first 401 — nothing is billed. "Re-run": the
store already holds every row as done (written straight into ``jobs.db``), so the run
streams every row through the SDK's batch, finds it done, and submits nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from suno_mp4 import JobRecord, JobState, MusicVideo, SQLiteJobStore, VideoRequest
from suno_mp4._store import _FIELDS, _row

from ._common import sandbox_process, spread, table

CLI = [sys.executable, "-m", "suno_mp4.cli"]


def write_rows(path: Path, rows: int) -> None:
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["task_id", "audio_id", "author"])
        for i in range(rows):
            out.writerow([f"music-{i:08d}", f"audio-{i:08d}", "DJ Bench"])


def fill_store(db: Path, rows: int) -> None:
    """Every row done, as a finished batch leaves it (straight into the table: fast)."""
    from datetime import UTC, datetime

    SQLiteJobStore(db)._connect().close()  # the schema
    now = datetime.now(UTC)
    conn = sqlite3.connect(db)
    marks = ", ".join("?" * len(_FIELDS))
    batch: list[tuple[Any, ...]] = []
    for i in range(rows):
        request = VideoRequest(f"music-{i:08d}", f"audio-{i:08d}", author="DJ Bench")
        video = MusicVideo(f"video-{i:08d}", f"http://127.0.0.1:9/v/{i}.mp4", now)
        record = JobRecord(request.key, request, JobState.DONE, video.task_id, video=video)
        batch.append(_row(record))
        if len(batch) == 10_000:
            conn.executemany(f"INSERT INTO jobs ({', '.join(_FIELDS)}) VALUES ({marks})", batch)
            batch.clear()
    if batch:
        conn.executemany(f"INSERT INTO jobs ({', '.join(_FIELDS)}) VALUES ({marks})", batch)
    conn.commit()
    conn.close()


def peak_mb(command: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Run ``command``; its peak RSS (MB), seconds, exit code and last stdout line."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    last = ""
    for line in proc.stdout:
        last = line.strip() or last
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - start, proc.returncode, last


def measure(rows: int, runs: int) -> tuple[list[str], list[list[Any]]]:
    work = Path(tempfile.mkdtemp(prefix="suno-mp4-batchmem-"))
    source = work / "rows.csv"
    write_rows(source, rows)
    results: dict[str, list[tuple[float, float, int, str]]] = {}
    with sandbox_process() as sb:
        env = dict(os.environ, APIKLEY_API_KEY=sb.api_key, SUNO_MP4_BASE_URL=sb.base_url)
        rejected = dict(env, APIKLEY_API_KEY="a-rejected-key")
        for run in range(runs):
            phases = {
                "baseline: suno-mp4 --version": ([*CLI, "--version"], None),
                "reads the file (key rejected)": (
                    [*CLI, "batch", str(source), "--out-dir", str(work / f"read{run}")],
                    None,
                ),
                "re-run: every row done": (
                    [*CLI, "batch", str(source), "--out-dir", str(work / f"done{run}")],
                    work / f"done{run}",
                ),
            }
            for name, (command, prefill) in phases.items():
                if prefill is not None:
                    prefill.mkdir()
                    fill_store(prefill / "jobs.db", rows)
                    command = [*command, "--no-download"]
                run_env = rejected if "rejected" in name else env
                results.setdefault(name, []).append(peak_mb(command, run_env))
    rows_out = []
    for name, samples in results.items():
        rows_out.append(
            [
                name,
                spread((s[0] for s in samples), 0),
                spread((s[1] for s in samples), 1),
                samples[-1][2],
                samples[-1][3][:70],
            ]
        )
    headers = [f"{rows:,} rows", "peak RSS (MB)", "seconds", "exit", "last line"]
    return headers, rows_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    headers, rows = measure(args.rows, args.runs)
    print(table(headers, rows))
    print(json.dumps({"rows": args.rows, "runs": args.runs}))


if __name__ == "__main__":
    main()
