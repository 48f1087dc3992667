"""Slowloris: a process limited to 1,024 descriptors, running a sandbox and a client with a
``CallbackListener``, while another process holds 1,100 connections to the listener.

    python -m benchmarks.slowloris [--runs 3] [--connections 1100] [--jobs 10]

Both sides are tests/_slowloris_victim.py. Each run: a fresh victim submits ``--jobs`` jobs
with no attack (the baseline lag), then the attacker opens its connections (1 ms apart) and,
once the victim's descriptor count stops rising, the victim submits ``--jobs`` more. The
safety poll is 60 s away, so a job resolved within the 10 s allowed was resolved by its
callback. Lag = resolved in the client - finished in the sandbox. Attacks: ``idle`` (connect,
send nothing), ``trickle`` (one header byte a second), ``+ reopen`` (every connection the
victim closes is opened again at once). The last row turns the guard off
(``max_connections=100000``, ``read_timeout=3600``) for comparison; the accept-error log
filter still applies there. Cells: median [min-max] over ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from ._common import median, table

VICTIM = Path(__file__).resolve().parent.parent / "tests" / "_slowloris_victim.py"
NOFILE = 1024
GUARD_OFF = ["--max-connections", "100000", "--read-timeout", "3600"]
#: label, attacker options, victim options.
ATTACKS: list[tuple[str, list[str], list[str]]] = [
    ("idle", [], []),
    ("trickle", ["--trickle"], []),
    ("idle + reopen", ["--reopen"], []),
    ("trickle + reopen", ["--trickle", "--reopen"], []),
    ("idle, guard off (baseline)", [], GUARD_OFF),
]


@asynccontextmanager
async def spawn_victim(*args: str) -> AsyncIterator[tuple[Process, BufferedByteReceiveStream]]:
    """``tests/_slowloris_victim.py`` in a process of its own (``victim`` or ``attack``),
    talking JSON lines; EOF on its stdin ends it."""
    proc = await anyio.open_process([sys.executable, str(VICTIM), *args], stderr=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        yield proc, BufferedByteReceiveStream(proc.stdout)
    finally:
        with anyio.move_on_after(15, shield=True) as waited:
            await proc.stdin.aclose()  # EOF ends both roles
            await proc.wait()
        if waited.cancelled_caught:
            proc.kill()
            with anyio.CancelScope(shield=True):
                await proc.wait()
        await proc.aclose()


async def ask(proc: Process, out: BufferedByteReceiveStream, line: str | None) -> Any:
    """Send ``line`` (if any) and read the process's next JSON answer."""
    if line is not None:
        assert proc.stdin is not None
        await proc.stdin.send(line.encode() + b"\n")
    return json.loads(await out.receive_until(b"\n", 1 << 20))


def _lag_ms(result: dict[str, Any]) -> float:
    lags = [j["lag"] * 1000 for j in result["jobs"] if j["resolved_by"] == "callback"]
    return median(lags)


async def one_run(
    attack: list[str], victim: list[str], connections: int, jobs: int
) -> dict[str, float]:
    with anyio.fail_after(120):
        async with spawn_victim("victim", "--nofile", str(NOFILE), *victim) as (vp, vout):
            port = (await ask(vp, vout, None))["port"]
            calm = await ask(vp, vout, f"jobs {jobs}")
            attacker = ("attack", str(port), "--connections", str(connections), *attack)
            async with spawn_victim(*attacker) as (ap, aout):
                await ask(ap, aout, None)
                await ask(vp, vout, "settle")
                hit = await ask(vp, vout, f"jobs {jobs}")
                held = await ask(ap, aout, "stats")
    fds = hit["fds_peak"]
    return {
        "attempted": held["attempted"],
        "held": held["open"],
        "lag_calm": _lag_ms(calm),
        "lag_attack": _lag_ms(hit),
        "submits_ok": sum(j["submitted"] for j in hit["jobs"]),
        "by_callback": sum(j["resolved_by"] == "callback" for j in hit["jobs"]),
        "fds_peak": NOFILE if fds < 0 else fds,  # -1: none left to count them with
        "errors": hit["errors"] - calm["errors"],
    }


def _cell(values: Sequence[float], digits: str = ".3g") -> str:
    if not values:
        return "-"
    lo, mid, hi = min(values), median(values), max(values)
    return f"{mid:{digits}} [{lo:{digits}}-{hi:{digits}}]"


async def run(runs: int, connections: int, jobs: int) -> tuple[list[str], list[list[Any]]]:
    headers = [
        f"attack, {connections:,} connections",
        "attempted",
        "held at the end",
        "lag no attack (ms)",
        "lag under attack (ms)",
        f"submits ok /{jobs}",
        f"by callback /{jobs}",
        f"fds peak /{NOFILE}",
        "ERROR log lines",
    ]
    rows: list[list[Any]] = []
    for label, attack, victim in ATTACKS:
        results = [await one_run(attack, victim, connections, jobs) for _ in range(runs)]

        def col(key: str, results: list[dict[str, float]] = results) -> list[float]:
            return [r[key] for r in results]

        rows.append(
            [
                label,
                _cell(col("attempted"), ".0f"),
                _cell(col("held"), ".0f"),
                _cell(col("lag_calm")),
                _cell([v for v in col("lag_attack") if v == v]),  # NaN: none resolved
                _cell(col("submits_ok"), ".0f"),
                _cell(col("by_callback"), ".0f"),
                _cell(col("fds_peak"), ".0f"),
                _cell(col("errors"), ".0f"),
            ]
        )
    return headers, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args(argv)
    headers, rows = anyio.run(run, args.runs, args.connections, args.jobs)
    print(f"median [min-max] of {args.runs} runs, each with a fresh victim process")
    print(table(headers, rows))


if __name__ == "__main__":
    main()
