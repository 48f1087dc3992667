"""``python -m benchmarks`` (``make bench``): run every benchmark, print its section and
write them all to ``benchmarks/RESULTS.md`` (and ``benchmarks/polls_vs_lag.png``).

Every section of RESULTS.md is made here, by calling its benchmark module: none is written
by hand, so none is lost when the file is written again. ``--only scale,download``
measures those sections and keeps the others as they were (each section says when, and on
what machine, it was measured). ``--quick`` runs every benchmark at tiny sizes (CI's smoke
run) and writes nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from . import (
    batch_memory,
    callbacks,
    download,
    fidelity,
    hostile,
    overhead,
    pending,
    polling_bound,
    ratelimit,
    render,
    resolution,
    scale,
    scaleout,
    schedules,
    slowloris,
    tail_price,
)
from ._common import table

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
MARK = "<!-- section: {} -->"
_MARK = re.compile(r"^<!-- section: ([a-z_]+) -->$", re.MULTILINE)


def _resolution(quick: bool) -> str:
    jobs, runs, factor = (120, 1, 0.02) if quick else (600, 3, 0.08)
    # Checked before the half-hour run, not after it: without the plot's library the
    # figures would be lost at the end.
    if not quick and importlib.util.find_spec("matplotlib") is None:
        raise SystemExit(
            "the resolution section draws a plot with matplotlib: install the bench extra "
            "(`pip install -e '.[bench]'`, or `make bench`) first"
        )
    paired: list[list[Any]] = []
    headers, rows = anyio.run(resolution.run, jobs, runs, factor, 0.5, paired)
    plot_note = ""
    if not quick:
        from .plot import polls_vs_lag

        polls_vs_lag(headers, rows, HERE / "polls_vs_lag.png")
        plot_note = "\n![polls per job vs detection lag, per spread](polls_vs_lag.png)\n"
    return (
        f"## Resolution on the sandbox: poll schedules on three spreads\n\n"
        f"{jobs} jobs per strategy and run, one submitted every 0.5 s, render times drawn per "
        f"spread and paired across strategies (same seed), every time x {factor} (lags shown "
        f"in the spread's own seconds); the first {resolution.WARM_UP} jobs are a warm-up for "
        f"every strategy. Median [min-max] of {runs} runs, each in a fresh sandbox process. "
        f"The SDK rows use the default `PollPolicy()` (learned) and the old default "
        f"(geometric); the bound polls on the schedule planned from the true distribution; "
        f'"fixed loop at the learned budget" spends what the learned schedule spent.\n\n'
        f"{table(headers, rows)}\n{plot_note}\n"
        f"Run by run (the same renders on both sides of each comparison): the learned "
        f"schedule's p95 against the fixed loop spending its polls, and its median lag "
        f"against the bound's.\n\n{table(resolution.PAIRED, paired)}\n\n"
        f"Reproduce: `python -m benchmarks.resolution --jobs {jobs} --runs {runs} "
        f"--scale {factor} --plot benchmarks/polls_vs_lag.png`\n"
    )


def _schedules(quick: bool) -> str:
    jobs, seeds = (300, 1) if quick else (2000, 3)
    headers, rows = schedules.run(jobs, seeds)
    # At the sandbox runs' size (600 jobs) over many seeds: what 3 sandbox runs sample.
    small, many = (300, 2) if quick else (600, 12)
    small_headers, small_rows = schedules.run(small, many)
    return (
        f"## Poll schedules on three spreads (simulation)\n\n"
        f"No network: every strategy sees the same {jobs:,} jobs, one submitted every 0.5 s, "
        f"with the same render times (paired by seed), median [min-max] over {seeds} seeds; "
        f'the first {schedules.WARM_UP} jobs are a warm-up. "learned" is the default '
        f'`PollPolicy()`; "bound": the schedule that minimises the mean lag at the same '
        f"budget, planned offline from the true distribution; the fixed loop at the learned "
        f"budget spends what the learned schedule spent.\n\n{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.schedules --jobs {jobs} --seeds {seeds}`\n\n"
        f"The same at the size of a sandbox run ({small} jobs), over {many} seeds (seeds 0-2 "
        f"are the resolution benchmark's three runs; the fidelity section shows the "
        f"simulation reproducing such runs):\n\n{table(small_headers, small_rows)}\n\n"
        f"Reproduce: `python -m benchmarks.schedules --jobs {small} --seeds {many}`\n"
    )


def _tail_price(quick: bool) -> str:
    jobs, seeds = (300, range(3, 5)) if quick else (600, tail_price.SEEDS)
    prices = tail_price.PRICES
    (headers, rows), blocks = tail_price.run(jobs, seeds, prices)
    default = tail_price.spelled([tail_price.DEFAULT])
    return (
        f"## The learned schedule's tail price (simulation)\n\n"
        f"The learned schedule minimises the mean lag plus `weight` times the mean excess of "
        f"the lag over `tau` times the interval of the fixed loop spending the same polls, "
        f"planned on the estimate averaged over a window of `smooth` times the median render "
        f"(0: on the estimate's steps; the default: {default}). Each price on the same "
        f"{jobs} jobs per seed as the schedules section, over seeds "
        f"{seeds.start}-{seeds.stop - 1} (not the resolution benchmark's 0-2); p50 and "
        f"polls/job against the bound's, median over the seeds.\n\n"
        f"{table(headers, rows)}\n\n"
        f"Where the default's long lags come from: its lags over the p95 of the fixed loop "
        f"spending the same polls, against the loop's own, per block of "
        f"{tail_price.AGE_BLOCK} jobs in submission order (summed over the same seeds). The "
        f"first block after the warm-up is planned on an estimate from few renders:\n\n"
        f"{table(*blocks)}\n\n"
        f"Reproduce: `python -m benchmarks.tail_price --jobs {jobs} "
        f"--seeds {seeds.start}-{seeds.stop} --prices {tail_price.spelled(prices)}`\n"
    )


def _fidelity(quick: bool) -> str:
    jobs, runs, factor = (150, 1, 0.05) if quick else (600, 2, 0.08)
    headers, rows = anyio.run(fidelity.run, jobs, runs, factor)
    return (
        f"## Simulation against the sandbox: the same renders both ways\n\n"
        f"{fidelity.SPREAD}, {jobs} jobs per run (the resolution benchmark's draw for each "
        f"seed): the default `PollPolicy()` and the fixed loop spending its budget, in the "
        f"simulation and on the sandbox (times x {factor}). Where they agree run by run, "
        f"the simulation's many seeds stand for as many sandbox runs.\n\n"
        f"{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.fidelity --jobs {jobs} --runs {runs} "
        f"--scale {factor}`\n"
    )


def _pending(quick: bool) -> str:
    sizes, runs, over = ([2_000], 1, 1.0) if quick else ([10_000, 100_000], 3, 20.0)
    headers, rows = pending.run(sizes, runs, over)
    return (
        f"## Many pending jobs: are polls on time?\n\n"
        f"The client's one poller (default schedule) with a server that answers at once (an "
        f"in-process fetch: the SDK's own capacity is measured, not a server's); the jobs are "
        f"submitted evenly over {over:g} s and render uniform 1-20 s. Late = when a worker "
        f"took the poll - when it was due. Median [min-max] of {runs} runs.\n\n"
        f"{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.pending --jobs {' '.join(map(str, sizes))} "
        f"--runs {runs} --over {over:g}`\n"
    )


def _polling_bound(quick: bool) -> str:
    samples = 2_000 if quick else 20_000
    headers, rows = polling_bound.run(samples)
    return (
        f"## What polling alone can reach\n\n"
        f"Render times uniform on 1-20 s (median 10.5 s), nothing known about one job: for "
        f"each budget, the schedule of least mean lag computed from the true distribution, "
        f"on {samples:,} seeded samples (a computation, no network). The last row only "
        f"optimises the median: ~10 % of the median render at 3 polls/job, paid by a 10 s "
        f"lag for the faster half. Callbacks give 0 polls and millisecond lags.\n\n"
        f"{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.polling_bound --samples {samples}`\n"
    )


def _overhead(quick: bool) -> str:
    # Fifteen runs: on a shared 2-core machine one run's ratio moves by up to 0.3 with what
    # else the machine does, and the median of nine still moved by 0.06 within an hour.
    jobs, runs = (100, 1) if quick else (3000, 15)
    headers, rows = anyio.run(overhead.run, jobs, runs)
    own = table(*anyio.run(overhead.anatomy, jobs, runs))
    return (
        f"## Client overhead: CPU per request\n\n"
        f"{jobs:,} requests per side and kind, at most {overhead.IN_FLIGHT} in flight on "
        f"both sides, the same tracks and task ids; client CPU (`time.process_time`, the "
        f"sandbox in its own process). Both sides run at once, taking turns on "
        f"{overhead.BLOCKS} blocks of each run's work; a block counts from its "
        f"{2 * overhead.IN_FLIGHT}th completed request to its {2 * overhead.IN_FLIGHT}th "
        f"before last, {overhead.IN_FLIGHT} on the wire all along (its start and its drain "
        f"are left out: they cost both sides the same per block). Median [min-max] of "
        f"{runs} runs; the "
        f"ratio is taken within each run. Target <= {overhead.TARGET}x raw aiohttp.\n\n"
        f"{table(headers, rows)}\n\n"
        f"Where the SDK's share goes: its own work, with the exchange answered at once "
        f"({overhead.OWN_WORK_SCALE * jobs:,} requests a run), and the objects a pending job "
        f"keeps for the collector to walk (median [min-max] of {runs} runs).\n\n{own}\n\n"
        f"Reproduce: `python -m benchmarks.overhead --jobs {jobs} --runs {runs}`\n"
    )


def _callbacks(quick: bool) -> str:
    jobs, runs = (20, 1) if quick else (200, 3)
    headers, rows = anyio.run(callbacks.run, jobs, runs)
    return (
        f"## Callback lag\n\n"
        f"{jobs} jobs submitted at once, render times 0.2-4 s; lag = the awaiting task wakes "
        f"- the sandbox finished the task. Each side gets a fresh sandbox with the same seed; "
        f"median [min-max] of {runs} alternating runs. Target: 0 polls, p99 <= "
        f"{callbacks.TARGET_P99_MS:g} ms.\n\n{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.callbacks --jobs {jobs} --runs {runs}`\n"
    )


def _scale(quick: bool) -> str:
    jobs, runs, seconds = (500, 1, 0.5) if quick else (10_000, 3, 3.0)
    headers, rows = anyio.run(scale.run, jobs, runs, seconds)
    return (
        f"## Scale: memory per pending job, event-loop lag\n\n"
        f"{jobs:,} jobs pending (renders take an hour). The tracks are registered by another "
        f"process; every figure comes from a fresh process that submits one job, takes its "
        f"baseline, then submits the {jobs:,}. RSS: VmRSS growth after `gc.collect()`; live: "
        f"`tracemalloc` (a process of its own). Lag: overshoot of a 10 ms sleep over "
        f"{seconds:g} s. Median [min-max] of {runs} alternating runs. Targets: <= "
        f"{scale.TARGET_KB:g} KB per pending job, lag p99 <= {scale.TARGET_LAG_MS:g} ms.\n\n"
        f"{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.scale --jobs {jobs} --runs {runs} "
        f"--seconds {seconds:g}`\n"
    )


def _ratelimit(quick: bool) -> str:
    submits = 40 if quick else 200
    headers, rows = anyio.run(ratelimit.run, submits)
    return (
        f"## Rate limit: {ratelimit.LIMIT}/{ratelimit.PER:g} s\n\n{submits} submits at once "
        f"against a sandbox enforcing the limit. Throughput is measured after the first burst: "
        f"(n - {ratelimit.LIMIT}) / elapsed. Targets: >= {ratelimit.TARGET} of the limit, "
        f"no 429.\n\n{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.ratelimit --submits {submits}`\n"
    )


def _download(quick: bool) -> str:
    mb, runs = (20.0, 1) if quick else (200.0, 3)
    headers, rows = anyio.run(download.run, mb, runs)
    return (
        f"## Download: {mb:g} MB\n\nEach download in a fresh process, both sides reading "
        f"1 MiB chunks; median [min-max] of {runs} alternating runs, the ratio taken within "
        f"each run; peak RSS growth = highest VmRSS sample (every 10 ms) minus the one before "
        f"the transfer. Targets: >= {download.TARGET}x the raw MB/s, flat memory.\n\n"
        f"{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.download --mb {mb:g} --runs {runs}`\n"
    )


def _render(quick: bool) -> str:
    seconds, runs = (3.0, 1) if quick else (30.0, 3)
    headers, rows = render.run(seconds, runs)
    return (
        f"## Rendering (the sandbox's renderer)\n\nMedian of {runs} alternating runs; target "
        f"<= 1.1x the bare command and >= 4x real time.\n\n{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.render --seconds {seconds:g} --runs {runs}`\n"
    )


def _hostile(quick: bool) -> str:
    runs = 1 if quick else 3
    headers, rows = anyio.run(lambda: hostile.measure(runs, baseline=not quick))
    return (
        f"## Hostile answers: client memory\n\nEach answer read in a fresh process, median "
        f"[min-max] of {runs} paired runs; the baseline is plain aiohttp `resp.read()` (what "
        f"the SDK did before answers were capped). Target: a typed error, growth < 50 MB."
        f"\n\n{table(headers, rows)}\n\nReproduce: `python -m benchmarks.hostile --runs {runs}`\n"
    )


def _batch_memory(quick: bool) -> str:
    rows_n, runs = (2_000, 1) if quick else (1_000_000, 3)
    headers, rows = batch_memory.measure(rows_n, runs)
    return (
        f"## A batch of {rows_n:,} rows: CLI memory\n\n"
        f"Each phase in a fresh process; peak RSS from `wait4` (an upper bound: a forked child "
        f'counts the parent\'s pages until it execs). "Reads the file": the whole file is '
        f"read and checked, then the first submit's 401 stops the batch (nothing billed). "
        f'"Re-run": a store holding every row as done; every row is streamed through '
        f"`create_videos`, found done, skipped. Median [min-max] of {runs} runs. Target: "
        f"under 150 MB.\n\n{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.batch_memory --rows {rows_n} --runs {runs}`\n"
    )


def _slowloris(quick: bool) -> str:
    runs, connections, jobs = (1, 100, 2) if quick else (3, 1100, 10)
    headers, rows = anyio.run(slowloris.run, runs, connections, jobs)
    return (
        f"## Callback listener under a slowloris load\n\n"
        f"A victim process limited to {slowloris.NOFILE:,} file descriptors (sandbox, client "
        f"and listener in it) while another process opens {connections:,} connections to the "
        f"listener; {jobs} jobs per phase, median [min-max] of {runs} runs.\n\n"
        f"{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.slowloris --runs {runs} --connections {connections} "
        f"--jobs {jobs}`\n"
    )


def _scaleout(quick: bool) -> str:
    jobs, rate = (30, 50) if quick else (400, 20)
    headers, rows = anyio.run(lambda: scaleout.bench(jobs, rate, kill_jobs=0 if quick else jobs))
    return (
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


#: Every section of RESULTS.md, in its order.
SECTIONS: dict[str, Callable[[bool], str]] = {
    "resolution": _resolution,
    "schedules": _schedules,
    "fidelity": _fidelity,
    "tail_price": _tail_price,
    "pending": _pending,
    "polling_bound": _polling_bound,
    "overhead": _overhead,
    "callbacks": _callbacks,
    "scale": _scale,
    "ratelimit": _ratelimit,
    "download": _download,
    "render": _render,
    "hostile": _hostile,
    "batch_memory": _batch_memory,
    "slowloris": _slowloris,
    "scaleout": _scaleout,
}

HEADER = (
    "# Benchmark results\n\n"
    "Written by `make bench` (`python -m benchmarks`): every section comes from its "
    "benchmark module, with the command that reproduces it. `python -m benchmarks --only "
    "NAME[,NAME]` measures those sections again and keeps the others; each section says "
    "when and where it was measured.\n"
)


def read_sections(text: str) -> dict[str, str]:
    """The sections of a RESULTS.md, by name (text from each marker to the next)."""
    marks = list(_MARK.finditer(text))
    out = {}
    for mark, after in zip(marks, [*marks[1:], None], strict=True):
        end = after.start() if after is not None else len(text)
        out[mark.group(1)] = text[mark.start() : end].rstrip() + "\n"
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument(
        "--only", help=f"comma-separated sections to measure ({', '.join(SECTIONS)})"
    )
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"no section {', '.join(unknown)}; there are {', '.join(SECTIONS)}")
    fresh: dict[str, str] = {}
    for name in names:
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        body = SECTIONS[name](args.quick)
        where = (
            f"_Measured {started}; {os.cpu_count()} CPUs; Python {platform.python_version()} "
            f"on {platform.system()} {platform.machine()}._\n"
        )
        fresh[name] = f"{MARK.format(name)}\n{body}\n{where}"
        print(fresh[name], flush=True)
    if args.quick:
        return
    kept = read_sections(RESULTS.read_text()) if RESULTS.exists() else {}
    kept.update(fresh)
    sections = [kept[name] for name in SECTIONS if name in kept]
    RESULTS.write_text(HEADER + "\n" + "\n".join(sections))


if __name__ == "__main__":
    main()
