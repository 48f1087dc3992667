"""Rendering: the sandbox's renderer against the bare ffmpeg command it runs, and the
real-time factor, measured in one run (alternating, median of ``--runs``).

    python -m benchmarks.render [--seconds 30] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from suno_mp4_sandbox import RenderJob
from suno_mp4_sandbox._probe import ffmpeg_exe, probe
from suno_mp4_sandbox._render import FfmpegRenderer, build_ffmpeg_command
from suno_mp4_sandbox._synth import synth_demo_track

from ._common import table


def run(seconds: float, runs: int) -> tuple[list[str], list[list[Any]]]:
    work = Path(tempfile.mkdtemp(prefix="suno-mp4-bench-"))
    try:
        track = synth_demo_track(work / "track.wav", seconds=seconds)
        duration = probe(track).duration
        renderer = FfmpegRenderer()
        bare_times, sdk_times = [], []
        for i in range(runs):
            job = RenderJob(
                video_task_id=f"bench{i}",
                audio_path=track,
                duration=duration,
                title="Benchmark Track",
                author="suno-mp4",
                domain_name="suno-mp4.example",
                out_dir=work,
            )
            command = build_ffmpeg_command(job, work / f"bare{i}.mp4", ffmpeg=ffmpeg_exe())
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            bare_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            anyio.run(renderer.render, job)
            sdk_times.append(time.perf_counter() - start)
        bare, sdk = statistics.median(bare_times), statistics.median(sdk_times)
        rows = [
            ["bare ffmpeg command (baseline)", bare, duration / bare, 1.0],
            ["FfmpegRenderer.render", sdk, duration / sdk, sdk / bare],
        ]
        headers = ["render of a 30 s track, 720x1280", "median s", "x real time", "vs bare"]
        if seconds != 30:
            headers[0] = f"render of a {seconds:g} s track, 720x1280"
        return headers, rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    headers, rows = run(args.seconds, args.runs)
    print(table(headers, rows))


if __name__ == "__main__":
    main()
