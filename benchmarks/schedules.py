"""Poll schedules side by side on three render-time spreads: a simulation of streamed jobs
(no network: every strategy sees the same jobs, the same render times, paired by seed).

    python -m benchmarks.schedules [--jobs 2000] [--seeds 3]

Strategies: the learned schedule (``PollPolicy(schedule="learned")``: online, from the
jobs seen so far, censoring-aware, ~3 polls/job), the same rule on the true distribution,
the bound (the schedule minimising the mean lag at 3 polls/job, computed offline from the
true distribution), the geometric default (2 s, x1.5, cap 30 s), and fixed loops of 1, 2,
5, 10 s. Jobs arrive at a steady rate; a job is resolved by the
first poll at or after its render ends; lag = that poll - the end of the render. The
first 100 jobs are a warm-up, not counted. Median [min-max] over the seeds. The uniform
30-300 s spread runs at 1/15 time scale.
"""

from __future__ import annotations

import argparse
import bisect
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


def optimal_schedule(samples: list[float], budget: float, cells: int = 150) -> list[float]:
    """The poll ages that minimise the mean lag at ``budget`` polls per job, for render
    times distributed as ``samples``: a dynamic programme over a grid (a poll at cell j after
    one at cell i costs the lag of the renders ending between them, plus lambda for every
    job still rendering at i), with lambda bisected until the schedule spends the budget."""
    ordered = sorted(samples)
    top = ordered[int(len(ordered) * 0.999)]
    grid = [top * j / cells for j in range(cells + 1)]
    mass = [0.0] * (cells + 1)
    for r in ordered:
        mass[min(cells, max(1, math.ceil(r / top * cells)))] += 1 / len(ordered)
    mid = [0.0] + [(grid[j - 1] + grid[j]) / 2 for j in range(1, cells + 1)]
    cum_m, cum_w = [0.0], [0.0]
    for j in range(1, cells + 1):
        cum_m.append(cum_m[-1] + mass[j])
        cum_w.append(cum_w[-1] + mass[j] * mid[j])

    def solve(lam: float) -> tuple[list[float], float]:
        best = [0.0] + [math.inf] * cells
        back = [0] * (cells + 1)
        for j in range(1, cells + 1):
            g = grid[j]
            for i in range(j):
                cost = g * (cum_m[j] - cum_m[i]) - (cum_w[j] - cum_w[i])
                total = best[i] + cost + lam * (1 - cum_m[i])
                if total < best[j]:
                    best[j], back[j] = total, i
        ages, j = [], cells
        while j > 0:
            ages.append(grid[j])
            j = back[j]
        ages.reverse()
        polls = sum(1 - cum_m[round(a / top * cells)] for a in [0.0, *ages[:-1]])
        return ages, polls

    low, high = 0.0, top
    ages, _ = solve(high)
    for _ in range(30):
        lam = (low + high) / 2
        candidate, polls = solve(lam)
        if polls > budget:
            low = lam
        else:
            high, ages = lam, candidate
    return ages


def _fixed_ages(ages: list[float]) -> Callable[..., float | None]:
    def gap(job: int, age: float, polls: int) -> float | None:
        i = bisect.bisect_right(ages, age + 1e-9)
        return ages[i] - age if i < len(ages) else 1.0

    return gap


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
            truth = [draw(random.Random(10_000 + i)) for i in range(20_000)]
            known = RenderTimeEstimate(window=20_000, prior_weight=0.0, refresh_every=10**9)
            for i, took in enumerate(truth):
                known.finished(str(i), took)
            results.setdefault("same rule, true distribution", []).append(
                _simulate(renders, interval, _learned(known, bounds), None)
            )
            results.setdefault("bound: optimal offline, true distribution", []).append(
                _simulate(renders, interval, _fixed_ages(optimal_schedule(truth, BUDGET)), None)
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
