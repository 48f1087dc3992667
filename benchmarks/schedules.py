"""Poll schedules side by side on three render-time spreads: a simulation of streamed jobs
(no network: every strategy sees the same jobs, the same render times, paired by seed).

    python -m benchmarks.schedules [--jobs 2000] [--seeds 3]

Strategies: the learned schedule (``PollPolicy(schedule="learned")``: online, from the
jobs seen so far, censoring-aware, ~3 polls/job), the same schedule computed from the true
distribution (the bound it approaches), the geometric default (2 s, x1.5, cap 30 s), and
fixed loops of 1, 2, 5, 10 s. Jobs arrive at a steady rate; a job is resolved by the
first poll at or after its render ends; lag = that poll - the end of the render. The
first 100 jobs are a warm-up, not counted. Median [min-max] over the seeds. The uniform
30-300 s spread runs at 1/15 time scale.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
from collections.abc import Callable
from typing import Any

from suno_mp4 import PollPolicy
from suno_mp4._survival import RenderTimeEstimate

from ._common import spread, table

SPREADS: dict[str, Callable[[random.Random], float]] = {
    "uniform 1-20 s": lambda r: r.uniform(1, 20),
    "lognormal, median 8 s": lambda r: r.lognormvariate(math.log(8), 0.6),
    "uniform 30-300 s (/15)": lambda r: r.uniform(30, 300) / 15,
}
BUDGET = 3.0  # the learned schedule's polls per job
WARM_UP = 100  # the first jobs are not counted (the warm-up): every strategy alike


def _simulate(
    renders: list[float],
    interval: float,
    next_gap: Callable[[int, float, int], float | None],
    estimate: RenderTimeEstimate | None,
) -> dict[str, float]:
    """Jobs submitted every ``interval`` s; ``next_gap(job, age, polls)`` the gap to its next
    poll. Returns polls/job and lag figures (of all jobs)."""
    heap: list[tuple[float, int]] = [(i * interval, i) for i in range(len(renders))]
    heapq.heapify(heap)
    polls = [0] * len(renders)
    lags: list[float] = []
    counted: list[int] = []
    while heap:
        now, job = heapq.heappop(heap)
        submitted = job * interval
        age = now - submitted
        if polls[job] > 0 or age > 0:
            polls[job] += 1
            if age >= renders[job]:
                if job >= WARM_UP:
                    lags.append(age - renders[job])
                    counted.append(polls[job])
                if estimate is not None:
                    estimate.finished(str(job), renders[job])  # server timestamps: exact
                continue
            if estimate is not None:
                estimate.pending(str(job), age)
        gap = next_gap(job, age, polls[job])
        heapq.heappush(heap, (now + max(gap if gap is not None else 1.0, 0.01), job))
    lags.sort()
    return {
        "polls": statistics.mean(counted),
        "p50": lags[len(lags) // 2],
        "p95": lags[int(len(lags) * 0.95)],
        "max": lags[-1],
    }


def _learned(estimate: RenderTimeEstimate, policy: PollPolicy) -> Callable[..., float | None]:
    def gap(job: int, age: float, polls: int) -> float | None:
        when = estimate.next_poll(age, chance=1 / BUDGET)
        if when is None:  # as the poller: beyond what was seen, grow with the job's age
            return min(policy.max_interval, max(0.5, age * 0.3))
        low = policy.initial_delay if polls == 0 else 0.05
        return min(policy.max_interval, max(low - age, when - age, 0.05))

    return gap


def run(jobs: int, seeds: int) -> tuple[list[str], list[list[Any]]]:
    policy = PollPolicy()
    bounds = PollPolicy(initial_delay=0.0)  # the default cap of 30 s between polls
    rows: list[list[Any]] = []
    for spread_name, draw in SPREADS.items():
        results: dict[str, list[dict[str, float]]] = {}
        for seed in range(seeds):
            rng = random.Random(seed)
            renders = [draw(rng) for _ in range(jobs)]
            interval = 0.05
            learned = RenderTimeEstimate()
            results.setdefault("learned (online)", []).append(
                _simulate(renders, interval, _learned(learned, bounds), learned)
            )
            truth = RenderTimeEstimate(window=20_000, prior_weight=0.0, refresh_every=10**9)
            for i in range(20_000):
                truth.finished(str(i), draw(random.Random(10_000 + i)))
            results.setdefault("bound: same rule, true distribution", []).append(
                _simulate(renders, interval, _learned(truth, bounds), None)
            )
            results.setdefault("geometric default (2 s x1.5, cap 30)", []).append(
                _simulate(
                    renders, interval, lambda j, a, n: policy.delay(n, random.Random(j)), None
                )
            )
            for every in (1, 2, 5, 10):
                results.setdefault(f"fixed {every} s loop", []).append(
                    _simulate(renders, interval, lambda j, a, n, e=every: float(e), None)
                )
        for name, runs in results.items():
            rows.append(
                [spread_name, name]
                + [spread(r[k] for r in runs) for k in ("polls", "p50", "p95", "max")]
            )
    return ["spread", "strategy", "polls/job", "lag p50 (s)", "lag p95 (s)", "lag max (s)"], rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    headers, rows = run(args.jobs, args.seeds)
    print(table(headers, rows))


if __name__ == "__main__":
    main()
