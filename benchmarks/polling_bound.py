"""What polling alone can reach when render times are uniform on 1-20 s and nothing is
known about one job beyond that spread: a computation, no network.

    python -m benchmarks.polling_bound [--samples 20000]

For each budget of polls per job, the schedule that minimises the mean lag, computed from
the true distribution (``suno_mp4._plan.plan_polls``: the bound ``benchmarks.schedules``
measures the learned schedule against), is evaluated on the same sampled render times
(seeded): polls per job, lag p50 and p95, and the p50 as a share of the median render.

The last row is why the bound minimises the mean lag and not the median: a schedule that
waits 11.6 s, then polls every 1.05 s, brings the median lag to about 10 % of the median
render at 3 polls per job — by making the faster half of the jobs wait up to 10.6 s.
"""

from __future__ import annotations

import argparse
import bisect
import random
import statistics
from collections.abc import Callable, Sequence

from suno_mp4._plan import plan_polls

from ._common import pct, table

LOW, HIGH = 1.0, 20.0
CELL = 0.05
BUDGETS = (3.0, 4.0, 6.0)


def _survival(age: float) -> float:
    """P(render > age) for renders uniform on [LOW, HIGH]."""
    return min(1.0, max(0.0, (HIGH - age) / (HIGH - LOW)))


def evaluate(
    schedule: Callable[[float], Sequence[float]], renders: Sequence[float], lanes: Sequence[float]
) -> tuple[float, list[float]]:
    """Mean polls per job and every job's lag, a job rendering ``r`` being seen at the
    first poll of its schedule at or after ``r``."""
    polls, lags = 0, []
    for r, lane in zip(renders, lanes, strict=True):
        ages = schedule(lane)
        i = bisect.bisect_left(ages, r)
        if i == len(ages):
            raise RuntimeError(f"the schedule ends before a render of {r:.2f} s")
        polls += i + 1
        lags.append(ages[i] - r)
    return polls / len(renders), lags


def run(samples: int = 20_000) -> tuple[list[str], list[list[object]]]:
    rng = random.Random(7)
    renders = [rng.uniform(LOW, HIGH) for _ in range(samples)]
    lanes = [rng.random() for _ in range(samples)]
    median_render = statistics.median(renders)
    grid = [i * CELL for i in range(round(HIGH / CELL) + 1)]
    survival = [_survival(g) for g in grid]
    rows: list[list[object]] = []

    def row(name: str, schedule: Callable[[float], Sequence[float]]) -> None:
        polls, lags = evaluate(schedule, renders, lanes)
        p50 = pct(lags, 50)
        rows.append([name, polls, p50, pct(lags, 95), max(lags), f"{p50 / median_render:.0%}"])

    for budget in BUDGETS:
        plan = plan_polls(grid, survival, budget)
        row(f"least mean lag, {budget:g} polls/job (bound)", plan.ages)
    dense = tuple(11.6 + 1.05 * k for k in range(round((HIGH - 11.6) / 1.05) + 2))
    row("wait 11.6 s, then every 1.05 s", lambda _lane: dense)
    headers = [
        "schedule (renders uniform 1-20 s)",
        "polls/job",
        "lag p50 (s)",
        "lag p95 (s)",
        "lag max (s)",
        "p50 / median render",
    ]
    return headers, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=20_000)
    args = parser.parse_args(argv)
    headers, rows = run(args.samples)
    print(f"{args.samples:,} render times uniform on 1-20 s (seeded), median 10.5 s")
    print(table(headers, rows))


if __name__ == "__main__":
    main()
