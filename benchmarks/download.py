"""Downloads: ``client.download`` against raw aiohttp streaming to disk from the same
sandbox URL, measured in one run (alternating; median [min-max] of ``--runs``).

    python -m benchmarks.download [--mb 200] [--runs 3]

The sandbox (its own process) serves a placeholder video of ``--mb`` MB. Each download
runs in a fresh subprocess, which samples its own VmRSS every 10 ms: peak RSS growth is
the highest sample minus the one taken just before the transfer. The raw baseline is
``resp.content.iter_chunked(CHUNK)`` + a plain file write, with the SDK's chunk size
(1 MiB): the same reads and writes on both sides. A run's ratio is SDK / raw MB/s of
that run; which side goes first swaps every run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from suno_mp4 import Client, PollPolicy
from suno_mp4._download import CHUNK

from ._common import proc_status_kb, sandbox_process, spread, table

TARGET = 0.9
MODES = {
    "raw": "raw aiohttp iter_chunked(1 MiB) + write (baseline)",
    "sdk": "suno_mp4 client.download",
}


class _Meter:
    """Samples this process's VmRSS every 10 ms from a thread, and times, once started."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.samples.append(proc_status_kb("VmRSS"))
            self._stop.wait(0.010)

    def start(self) -> None:
        self.start_kb = proc_status_kb("VmRSS")
        self._thread.start()
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()

    def result(self) -> dict[str, float]:
        peak = max(self.samples, default=self.start_kb)
        return {"seconds": self.seconds, "peak_growth_mb": (peak - self.start_kb) / 1024}


async def _raw(meter: _Meter, url: str, out: Path) -> None:
    async with aiohttp.ClientSession() as session:
        meter.start()
        async with session.get(url) as resp:
            resp.raise_for_status()
            with out.open("wb") as fh:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    fh.write(chunk)
        meter.stop()


async def _sdk(meter: _Meter, url: str, out: Path, api_key: str, base_url: str) -> None:
    async with Client(api_key, base_url=base_url) as client:
        meter.start()
        await client.download(url, out)
        meter.stop()


def worker(mode: str, url: str, out: Path, api_key: str, base_url: str) -> dict[str, float]:
    """One download in this process; the session or client is opened before the clock."""
    meter = _Meter()
    if mode == "sdk":
        anyio.run(_sdk, meter, url, out, api_key, base_url)
    else:
        anyio.run(lambda: _raw(meter, url, out))
    return {**meter.result(), "bytes": out.stat().st_size}


# The driver.


def _spawn(mode: str, url: str, out: Path, api_key: str, base_url: str) -> dict[str, float]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.download",
        "--worker",
        mode,
        "--url",
        url,
        "--out",
        str(out),
        "--api-key",
        api_key,
        "--base-url",
        base_url,
    ]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    out.unlink(missing_ok=True)
    return result


async def run(mb: float, runs: int = 3) -> tuple[list[str], list[list[Any]]]:
    size = int(mb * 1_000_000)
    with (
        sandbox_process("--render-time", "0", "--no-render", "--placeholder-size", str(size)) as sb,
        tempfile.TemporaryDirectory(prefix="suno-mp4-bench-") as work,
    ):
        (track,) = await sb.add_tracks(1)
        poll = PollPolicy(initial_delay=0.2, max_interval=0.5, max_wait=120)
        async with Client(sb.api_key, base_url=sb.base_url, poll=poll) as client:
            job = await client.create_video(*track)
            url = (await job).video_url
        results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
        for i in range(runs):
            for mode in MODES if i % 2 == 0 else reversed(MODES):
                out = Path(work) / f"{mode}{i}.mp4"
                r = await anyio.to_thread.run_sync(_spawn, mode, url, out, sb.api_key, sb.base_url)
                if r["bytes"] != size:
                    raise RuntimeError(f"{mode}: got {r['bytes']} of {size} bytes")
                results[mode].append(r)
    speed = {m: [size / 1e6 / r["seconds"] for r in rs] for m, rs in results.items()}
    ratio = [s / r for s, r in zip(speed["sdk"], speed["raw"], strict=True)]
    headers = [f"download of {mb:g} MB", "MB/s", "vs raw", "peak RSS growth (MB)"]
    rows: list[list[Any]] = [
        [
            MODES[m],
            spread(speed[m], 0),
            spread(ratio) if m == "sdk" else "1",
            spread([r["peak_growth_mb"] for r in results[m]], 1),
        ]
        for m in MODES
    ]
    return headers, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.url, args.out, args.api_key, args.base_url)))
        return
    headers, rows = anyio.run(run, args.mb, args.runs)
    print(f"median [min-max] of {args.runs} alternating runs, each in a fresh process")
    print(table(headers, rows))


if __name__ == "__main__":
    main()
