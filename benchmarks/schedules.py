"""Poll schedules side by side on three render-time spreads: a simulation of streamed jobs
(no network: every strategy sees the same jobs, the same render times, paired by seed).

    python -m benchmarks.schedules [--jobs 2000] [--seeds 3] [--interval 0.5]

Strategies: the learned schedule (the default ``PollPolicy()``, no setting changed between
spreads: online, from the jobs seen so far, censoring-aware, 3 polls/job), the bound (the
schedule minimising the mean lag at 3 polls/job, planned offline on the true distribution),
the fixed loop spending the same polls per job as the learned schedule (its interval found
by bisection, per spread and seed), the old geometric default (2 s, x1.5, cap 30 s), and
fixed loops of 1, 2, 5, 10 s. A job arrives every ``--interval`` seconds; it is resolved by
the first poll at or after its render ends; lag = that poll - the end of the render. The
first 100 jobs are a warm-up, not counted for any strategy. Median [min-max] over the
seeds. The uniform 30-300 s spread runs at 1/15 time scale (its renders and so, in effect,
the policy's bounds: in real time the default ``max_interval`` of 30 s would cap its gaps).
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
from suno_mp4._plan import Plan, plan_polls
from suno_mp4._poller import LearnedSchedule, lane
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
    lag_of: dict[int, float] | None = None,
) -> dict[str, float]:
    """Jobs submitted every ``interval`` s; ``next_gap(job, age, polls)`` the gap to its next
    poll. Returns polls/job and lag figures (of the jobs past the warm-up); ``lag_of``, if
    given, gets every job's lag by job number."""
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
                if lag_of is not None:
                    lag_of[job] = age - renders[job]
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


def optimal_schedule(samples: list[float], budget: float, cells: int = 200) -> Plan:
    """The bound: the SDK's planner (``suno_mp4._plan``) fed the true distribution (a large
    sample of it) instead of the estimate learned online."""
    ordered = sorted(samples)
    top = ordered[int(len(ordered) * 0.999)]
    grid = [top * j / cells for j in range(cells + 1)]
    survival = [1 - bisect.bisect_right(ordered, g) / len(ordered) for g in grid]
    return plan_polls(grid, survival, budget)


def fixed_loop_at(
    renders: list[float], interval: float, polls: float
) -> tuple[float, dict[str, float]]:
    """The fixed loop spending ``polls`` polls per job on these renders (its interval found
    by bisection), and its figures."""
    low, high = 0.05, 120.0
    best = (high, _simulate(renders, interval, lambda j, a, n: high, None))
    for _ in range(18):
        every = (low + high) / 2
        result = _simulate(renders, interval, lambda j, a, n, e=every: e, None)
        if result["polls"] > polls:
            low = every
        else:
            high, best = every, (every, result)
    return best


def _planned(plan: Plan) -> Callable[..., float | None]:
    def gap(job: int, age: float, polls: int) -> float | None:
        ages = plan.ages(lane(str(job)))
        i = bisect.bisect_right(ages, age + 1e-9)
        return ages[i] - age if i < len(ages) else 1.0

    return gap


def _learned(
    estimate: RenderTimeEstimate, policy: PollPolicy, interval: float
) -> Callable[..., float | None]:
    """The poller's own rule (``LearnedSchedule``), its geometric fallback while warming up."""
    schedule = LearnedSchedule(estimate, policy)

    def gap(job: int, age: float, polls: int) -> float | None:
        created = job * interval
        delay = schedule.delay(created, created + age, polls, lane(str(job)))
        return policy.delay(polls, random.Random(job)) if delay is None else delay

    return gap


def simulate_learned(
    renders: list[float], interval: float, policy: PollPolicy | None = None
) -> dict[str, float]:
    """The learned schedule (``policy``, by default ``PollPolicy()``), starting cold."""
    policy = policy or PollPolicy()
    estimate = RenderTimeEstimate()
    return _simulate(renders, interval, _learned(estimate, policy, interval), estimate)


def run(jobs: int, seeds: int, interval: float = 0.5) -> tuple[list[str], list[list[Any]]]:
    policy = PollPolicy()  # the defaults: the learned schedule, 3 polls/job, no setting
    geometric = PollPolicy(schedule="geometric")
    rows: list[list[Any]] = []
    for spread_name, draw in SPREADS.items():
        results: dict[str, list[dict[str, float]]] = {}
        for seed in range(seeds):
            rng = random.Random(seed)
            renders = [draw(rng) for _ in range(jobs)]
            results.setdefault("learned (online)", []).append(
                simulate_learned(renders, interval, policy)
            )
            truth = [draw(random.Random(10_000 + i)) for i in range(20_000)]
            results.setdefault("bound: planner on the true distribution", []).append(
                _simulate(renders, interval, _planned(optimal_schedule(truth, BUDGET)), None)
            )
            every, same = fixed_loop_at(renders, interval, results["learned (online)"][-1]["polls"])
            same["every"] = every
            results.setdefault("fixed loop at the learned budget", []).append(same)
            results.setdefault("geometric default (2 s x1.5, cap 30)", []).append(
                _simulate(
                    renders, interval, lambda j, a, n: geometric.delay(n, random.Random(j)), None
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
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between submits")
    args = parser.parse_args()
    headers, rows = run(args.jobs, args.seeds, args.interval)
    print(table(headers, rows))


if __name__ == "__main__":
    main()
