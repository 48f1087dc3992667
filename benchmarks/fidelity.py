"""Does the simulation tell what the sandbox shows? The same renders, both ways.

    python -m benchmarks.fidelity [--jobs 600] [--runs 2] [--scale 0.08]

For each run (seed ``i``, the resolution benchmark's draw of the uniform 1-20 s spread), the
SDK's default ``PollPolicy()`` (learned) and the fixed loop spending the same polls per job
are run twice on the same render times: on the sandbox (``benchmarks.resolution``: real
requests, real timers, every time x ``--scale``) and in the simulation
(``benchmarks.schedules``: no network, exact times). Where the two agree run by run, the
simulation's many seeds stand for many sandbox runs, which would take half an hour each.
"""

from __future__ import annotations

import argparse
import random
from typing import Any

import anyio

from ._common import table
from .resolution import figures, fixed_at_budget, scaled_policy, sdk, spread_sandbox
from .schedules import SPREADS, fixed_loop_at, simulate_learned

SPREAD = "uniform 1-20 s"


def simulated(renders: list[float], interval: float) -> tuple[dict[str, float], dict[str, float]]:
    """The learned schedule and the fixed loop of its budget, simulated on ``renders``."""
    learned = simulate_learned(renders, interval)
    _, fixed = fixed_loop_at(renders, interval, learned["polls"])
    return learned, fixed


async def on_sandbox(
    renders: list[float], interval: float, scale: float
) -> tuple[dict[str, float], dict[str, float]]:
    """The same, on the sandbox (times x ``scale``; figures back in the spread's seconds)."""
    scaled = [r * scale for r in renders]
    pace = interval * scale
    with spread_sandbox() as sb:
        tracks = await sb.add_tracks(len(scaled), each=[{"duration": r} for r in scaled])
        learned = figures(await sdk(sb, tracks, pace, scaled_policy(scale)), scale)
        fixed = await fixed_at_budget(sb, scaled, pace, scale, learned["polls"])
    return learned, fixed


async def run(jobs: int, runs: int, scale: float, interval: float = 0.5) -> tuple[list[str], Any]:
    draw = SPREADS[SPREAD]
    rows: list[list[Any]] = []
    for seed in range(runs):
        rng = random.Random(seed)  # the resolution benchmark's draw for this run
        renders = [draw(rng) for _ in range(jobs)]
        sim = simulated(renders, interval)
        real = await on_sandbox(renders, interval, scale)
        for where, (learned, fixed) in (("simulation", sim), ("sandbox", real)):
            rows.append(
                [
                    seed,
                    where,
                    f"{learned['polls']:.2f}",
                    f"{learned['p50']:.2f}",
                    f"{learned['p95']:.2f}",
                    f"{fixed['p50']:.2f}",
                    f"{fixed['p95']:.2f}",
                ]
            )
    headers = [
        "run (seed)",
        "where",
        "learned polls/job",
        "learned p50 (s)",
        "learned p95 (s)",
        "fixed loop p50 (s)",
        "fixed loop p95 (s)",
    ]
    return headers, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--scale", type=float, default=0.08)
    args = parser.parse_args(argv)
    headers, rows = anyio.run(run, args.jobs, args.runs, args.scale)
    print(f"{SPREAD}, {args.jobs} jobs per run, sandbox times x {args.scale}")
    print(table(headers, rows))


if __name__ == "__main__":
    main()
