"""The scale-out acceptance, small: 4 worker processes + redis-server + sandbox on loopback,
every callback to worker 0's listener, worker 2 SIGKILLed midway (``make scale`` runs the
2,000-job version)."""

from __future__ import annotations

import anyio
import pytest

from benchmarks import scaleout

pytestmark = pytest.mark.anyio


async def test_four_workers_share_limit_callbacks_and_store_and_survive_a_kill() -> None:
    jobs = 240
    with anyio.fail_after(240):
        r = await scaleout.run(4, jobs, 40, kill=2, lease=2.0, render_time="1,3")
    assert r["killed"].startswith("w2 after")
    assert r["results"] == jobs  # every track has an outcome: none lost
    assert r["resubmitted"] == 0  # nothing paid for twice
    assert r["submits"] <= jobs  # one per track at most
    assert r["ok"] + r["unknown"] == jobs
    assert r["unknown"] <= 16  # only submits cut mid-flight by the kill
    assert r["answers_429"] == 0
    print(f"\nthroughput / limit: {r['throughput']:.3f} (a figure: make scale, benchmarks)")
    # Every job not taken over resolved by a callback relayed from worker 0, no polling.
    assert r["by_poll"] == 0
    assert r["by_callback"] + r["claimed"] == r["ok"]
    assert r["claimed"] >= 1  # the killed worker had jobs in flight: others finished them
