"""The learned schedule's tail price, swept: how often its p95 lag is over the fixed loop's
of the same budget, and what it costs the median (simulation, no network).

    python -m benchmarks.tail_price [--jobs 600] [--seeds 3-51] [--prices 0.9/3/0.2,...]

The learned schedule minimises the mean lag plus ``weight`` times the mean excess of the lag
over ``tau`` times the interval of the fixed loop spending the same polls, planned on the
estimate averaged over a window of ``smooth`` times the median render
(``RenderTimeEstimate.TAIL``, ``TAIL_WEIGHT`` and ``SMOOTH``; a smooth of 0 plans on the
estimate's steps). Each price is run on the same jobs as
``benchmarks.schedules`` (same spreads, same render times by seed, a job every 0.5 s, the
first 100 a warm-up), at the resolution benchmark's size by default, over seeds it does not
use (3 and up: the resolution benchmark and the fidelity check use 0-2). Per spread and
price: on how many seeds the learned p95 is over the fixed loop's, the mean difference, and
the learned p50 and polls/job against the bound's (median over the seeds, and the worst
seed's p50). A second table shows which jobs the first price's long lags fall on.
"""

from __future__ import annotations

import argparse
import random
import statistics
from typing import Any

from suno_mp4 import PollPolicy
from suno_mp4._survival import RenderTimeEstimate

from ._common import table
from .schedules import (
    BUDGET,
    SPREADS,
    WARM_UP,
    _learned,
    _planned,
    _simulate,
    fixed_loop_at,
    optimal_schedule,
)

Price = tuple[float, float, float]  # (tau, weight, smooth)
#: The learned schedule's own price (``RenderTimeEstimate``'s defaults).
DEFAULT: Price = (
    RenderTimeEstimate.TAIL or 0.0,
    RenderTimeEstimate.TAIL_WEIGHT,
    RenderTimeEstimate.SMOOTH,
)
#: The default, the same planned on the estimate's steps, a higher weight.
PRICES: list[Price] = [DEFAULT, (DEFAULT[0], DEFAULT[1], 0.0), (DEFAULT[0], 10.0, DEFAULT[2])]
#: Seeds the resolution benchmark and the fidelity check (0-2) do not use.
SEEDS = range(3, 51)
#: Jobs per column of the second table (jobs 100-199, 200-299, ... after the warm-up).
AGE_BLOCK = 100


def spelled(prices: list[Price]) -> str:
    """``--prices`` as written on the command line."""
    return ",".join("/".join(f"{part:g}" for part in price) for price in prices)


def _estimate(price: Price) -> RenderTimeEstimate:
    estimate = RenderTimeEstimate()
    estimate.TAIL, estimate.TAIL_WEIGHT, estimate.SMOOTH = price
    return estimate


Table = tuple[list[str], list[list[Any]]]


def run(jobs: int, seeds: range, prices: list[Price]) -> tuple[Table, Table]:
    """Two tables: each price per spread (see the module), and where the first price's long
    lags fall: per block of ``AGE_BLOCK`` jobs in submission order, how many of its lags
    are over the p95 lag of the fixed loop spending the same polls, and the loop's own
    (summed over the seeds). A block submitted while the estimate rests on few renders is
    where a plan fitted to the sample shows."""
    policy = PollPolicy()  # the defaults but for the price
    blocks = range(WARM_UP, jobs, AGE_BLOCK)
    rows: list[list[Any]] = []
    block_rows: list[list[Any]] = []
    for name, draw in SPREADS.items():
        truth = [draw(random.Random(10_000 + i)) for i in range(20_000)]
        bound_plan = optimal_schedule(truth, BUDGET)
        found: dict[Price, list[tuple[float, float, float]]] = {p: [] for p in prices}
        counts = {side: [0] * len(blocks) for side in ("learned", "fixed")}
        for seed in seeds:
            rng = random.Random(seed)
            renders = [draw(rng) for _ in range(jobs)]
            bound = _simulate(renders, 0.5, _planned(bound_plan), None)
            for price in prices:
                estimate = _estimate(price)
                learned_lags: dict[int, float] = {}
                learned = _simulate(
                    renders, 0.5, _learned(estimate, policy, 0.5), estimate, learned_lags
                )
                every, fixed = fixed_loop_at(renders, 0.5, learned["polls"])
                found[price].append(
                    (
                        learned["p95"] - fixed["p95"],
                        learned["p50"] / bound["p50"] - 1,
                        learned["polls"] / bound["polls"] - 1,
                    )
                )
                if price != prices[0]:
                    continue
                fixed_lags: dict[int, float] = {}
                _simulate(renders, 0.5, lambda j, a, n, e=every: e, None, fixed_lags)
                for side, lags in (("learned", learned_lags), ("fixed", fixed_lags)):
                    for job, lag in lags.items():
                        if job >= WARM_UP and lag > fixed["p95"]:
                            counts[side][(job - WARM_UP) // AGE_BLOCK] += 1
        for (tau, weight, smooth), figures in found.items():
            over = [f[0] for f in figures]
            p50s = [f[1] for f in figures]
            rows.append(
                [
                    name,
                    f"{tau:g} x interval, weight {weight:g}, smooth {smooth:g}",
                    f"{sum(d > 0 for d in over)} of {len(over)}",
                    f"{statistics.mean(over):+.3f}",
                    f"{100 * statistics.median(p50s):+.1f} % (worst {100 * max(p50s):+.1f} %)",
                    f"{100 * statistics.median(f[2] for f in figures):+.1f} %",
                ]
            )
        block_rows.append(
            [name] + [f"{a} / {b}" for a, b in zip(counts["learned"], counts["fixed"], strict=True)]
        )
    headers = [
        "spread",
        "tail price (tau, weight, smooth)",
        "seeds with p95 over the fixed loop's",
        "mean p95 - fixed loop's (s)",
        "learned p50 vs bound",
        "polls/job vs bound",
    ]
    block_headers = ["spread"] + [f"jobs {b}-{min(b + AGE_BLOCK, jobs) - 1}" for b in blocks]
    return (headers, rows), (block_headers, block_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument(
        "--seeds", default=f"{SEEDS.start}-{SEEDS.stop}", help="first-last (last not included)"
    )
    parser.add_argument("--prices", default=spelled(PRICES), help="tau/weight/smooth,...")
    args = parser.parse_args()
    first, last = (int(x) for x in args.seeds.split("-"))
    prices = [
        (float(t), float(w), float(m)) for t, w, m in (p.split("/") for p in args.prices.split(","))
    ]
    prices_table, blocks_table = run(args.jobs, range(first, last), prices)
    print(table(*prices_table))
    print()
    print(table(*blocks_table))


if __name__ == "__main__":
    main()
