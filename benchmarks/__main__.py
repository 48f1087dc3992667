"""``python -m benchmarks`` (``make bench``): run every benchmark, print the tables and
write them to ``benchmarks/RESULTS.md`` (and ``benchmarks/polls_vs_lag.png``) with the
machine's CPU count and Python version.

``--quick`` runs tiny sizes (CI's smoke run) and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import anyio

from . import (
    download,
    hostile,
    overhead,
    polling_bound,
    ratelimit,
    render,
    resolution,
    scale,
    scaleout,
)
from ._common import table

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    args = parser.parse_args(argv)
    quick = args.quick
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    sections = []

    def add(section: str) -> None:
        print(section, flush=True)
        sections.append(section)

    jobs, factor = (20, 0.05) if quick else (200, 0.2)
    headers, rows = anyio.run(resolution.run, jobs, factor)
    plot_note = ""
    if not quick:
        from .plot import polls_vs_lag

        polls_vs_lag(headers, rows, HERE / "polls_vs_lag.png")
        plot_note = "\n![polls per job vs detection lag p50](polls_vs_lag.png)\n"
    add(
        f"## Resolution: polling vs callbacks vs naive loops\n\n"
        f"{jobs} jobs per strategy, render times 1-20 s x {factor} (every interval scaled the "
        f"same), sandbox in its own process.\n\n{table(headers, rows)}\n{plot_note}\n"
        f"Reproduce: `python -m benchmarks.resolution --jobs {jobs} --scale {factor}`\n"
    )

    headers, rows = polling_bound.run(2_000 if quick else 20_000)
    add(
        "## What polling alone can reach\n\nFor render times uniform on 1-20 s, the best "
        "fixed or geometric poll schedule under each budget of polls per job (a computation, "
        "no network): <= 3 polls/job and a p50 lag <= 10 % of the render time cannot both "
        "hold without per-job information. Callbacks give both (0 polls, ms lag).\n\n"
        f"{table(headers, rows)}\n\nReproduce: `python -m benchmarks.polling_bound`\n"
    )

    jobs, runs = (50, 1) if quick else (2000, 3)
    headers, rows = anyio.run(overhead.run, jobs, runs)
    add(
        f"## Client overhead: CPU per job\n\n{jobs} jobs per client, 0 s render, resolved by "
        f"callback, at most {overhead.IN_FLIGHT} in flight; client CPU "
        f"(`time.process_time`), median of {runs} alternating runs. Target <= "
        f"{overhead.TARGET}x the raw aiohttp client.\n\n{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.overhead --jobs {jobs} --runs {runs}`\n"
    )

    jobs, seconds = (500, 1.0) if quick else (10_000, 3.0)
    headers, rows = anyio.run(scale.run, jobs, seconds)
    add(
        f"## Scale: {jobs:,} pending jobs\n\nRSS growth (VmRSS after `gc.collect()`) and "
        f"event-loop lag (overshoot of a 10 ms sleep, over {seconds:g} s) against the same "
        f"client with no job pending. Targets: <= {scale.TARGET_MB:g} MB growth, lag p99 <= "
        f"{scale.TARGET_LAG_MS:g} ms.\n\n{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.scale --jobs {jobs} --seconds {seconds:g}`\n"
    )

    submits = 40 if quick else 200
    headers, rows = anyio.run(ratelimit.run, submits)
    add(
        f"## Rate limit: {ratelimit.LIMIT}/{ratelimit.PER:g} s\n\n{submits} submits at once "
        f"against a sandbox enforcing the limit. Throughput is measured after the first burst: "
        f"(n - {ratelimit.LIMIT}) / elapsed. Targets: >= {ratelimit.TARGET} of the limit, "
        f"no 429.\n\n{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.ratelimit --submits {submits}`\n"
    )

    mb, runs = (20.0, 1) if quick else (200.0, 3)
    headers, rows = anyio.run(download.run, mb, runs)
    add(
        f"## Download: {mb:g} MB\n\nEach download in a fresh process, median of {runs} "
        f"alternating runs; peak RSS growth = highest VmRSS sample (every 10 ms) minus the "
        f"one before the transfer. Targets: >= {download.TARGET}x the raw MB/s, flat "
        f"memory.\n\n{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.download --mb {mb:g} --runs {runs}`\n"
    )

    render_seconds, runs = (3.0, 1) if quick else (30.0, 3)
    headers, rows = render.run(render_seconds, runs)
    add(
        f"## Rendering (the sandbox's renderer)\n\nMedian of {runs} alternating runs; target "
        f"<= 1.1x the bare command and >= 4x real time.\n\n{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.render --seconds {render_seconds:g} --runs {runs}`\n"
    )

    runs = 1 if quick else 3
    headers, rows = anyio.run(lambda: hostile.measure(runs, baseline=not quick))
    add(
        f"## Hostile answers: client memory\n\nEach answer read in a fresh process, median "
        f"[min-max] of {runs} paired runs; the baseline is plain aiohttp `resp.read()` (what "
        f"the SDK did before answers were capped). Target: a typed error, growth < 50 MB."
        f"\n\n{table(headers, rows)}\n\nReproduce: `python -m benchmarks.hostile --runs {runs}`\n"
    )

    jobs, rate = (30, 50) if quick else (400, 20)
    headers, rows = anyio.run(lambda: scaleout.bench(jobs, rate, kill_jobs=0 if quick else jobs))
    add(
        f"## Scale-out on Redis: 1, 2, 4 worker processes\n\n{jobs} jobs, sandbox limit "
        f"{rate} requests/s, shared `RedisRateLimit`, `RedisCallbackRelay`, `RedisJobStore`; "
        f"every callback goes to worker 0's listener. Throughput = submits per second after "
        f"the first burst, (n - limit) / elapsed, over the limit; lag = resolved on the "
        f"submitting worker - finished by the sandbox. The 1-worker row is the baseline; "
        f"the last row SIGKILLs worker 2 midway. "
        f"Targets: 0 x 429, throughput >= 0.9 of the limit, 0 re-submitted.\n\n"
        f"{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.scaleout --bench --jobs {jobs} --rate {rate}`; the "
        f"2,000-job acceptance run: `make scale`\n"
    )

    header = (
        f"# Benchmark results\n\n{started}; {os.cpu_count()} CPUs; Python "
        f"{platform.python_version()} on {platform.system()} {platform.machine()}.\n"
    )
    text = header + "\n" + "\n".join(sections)
    if not quick:
        (HERE / "RESULTS.md").write_text(text)


if __name__ == "__main__":
    main()
