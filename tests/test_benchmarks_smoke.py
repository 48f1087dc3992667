"""The benchmarks run (tiny sizes): CI checks they work, not how fast they are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmarks_quick_run_prints_every_strategy() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for row in (
        "SDK default (learned)",
        "bound: planned on the true distribution",
        "fixed loop at the learned budget",
        "Many pending jobs",
        "least mean lag, 3 polls/job (bound)",
        "submit (POST)",
        "poll (GET)",
        "raw aiohttp + tiny callback server (baseline)",
        "suno_mp4 Client + CallbackListener",
        "raw aiohttp, dict + heap (baseline)",
        "500 pending jobs",
        "suno_mp4 RateLimit(20, 1)",
        "raw aiohttp iter_chunked(1 MiB) + write (baseline)",
        "suno_mp4 client.download",
        "FfmpegRenderer.render",
        "Scale-out on Redis",
        "gzip bomb (1 MB -> 1 GB)",
        "Poll schedules on three spreads",
        "Simulation against the sandbox",
        "of which GC",
        "re-run: every row done",
        "idle, guard off (baseline)",
    ):
        assert row in done.stdout


def test_the_overhead_window_counts_a_blocks_steady_state() -> None:
    # The CPU clock of a block starts at its 2 * IN_FLIGHT-th completed request and stops at
    # the same count before its last; a block too short for that is counted whole.
    from benchmarks import overhead

    marks: list[tuple[str, int]] = []

    class Marked(overhead.Window):
        def begin(self) -> None:
            marks.append(("begin", self._done))

        def end(self) -> None:
            marks.append(("end", self._done))

    skip = 2 * overhead.IN_FLIGHT
    window = Marked(1000)
    for _ in range(1000):
        window.completed()
    assert marks == [("begin", skip), ("end", 1000 - skip)]
    assert window.requests == 1000 - 2 * skip

    marks.clear()
    short = Marked(3)  # skip 0: begun before the first request (measure), ended at the last
    for _ in range(3):
        short.completed()
    assert short.skip == 0 and short.requests == 3 and marks == [("end", 3)]
