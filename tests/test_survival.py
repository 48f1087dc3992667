"""The render-time estimate against known distributions, with the censoring a real client
sees: at any moment the jobs still rendering are the slow ones."""

from __future__ import annotations

import bisect
import math
import random
import statistics
from typing import Any

import pytest

from suno_mp4._plan import plan_polls
from suno_mp4._poller import lane
from suno_mp4._survival import RenderTimeEstimate


def _observe(draw: random.Random, render: object, *, jobs: int, rate: float, at: float):
    """Jobs submitted ``rate`` per second; what is known at time ``at``: the finished jobs'
    render times, and the ages of those still rendering."""
    finished, pending = [], []
    for i in range(jobs):
        submitted = i / rate
        if submitted > at:
            break
        took = render(draw)  # type: ignore[operator]
        age = at - submitted
        (finished if took <= age else pending).append(took if took <= age else age)
    return finished, pending


SPREADS = {
    "uniform 1-20 s": (lambda r: r.uniform(1, 20), 10.5),
    "lognormal, median 8 s": (lambda r: r.lognormvariate(math.log(8), 0.6), 8.0),
    "uniform 30-300 s": (lambda r: r.uniform(30, 300), 165.0),
}


@pytest.mark.parametrize("spread", SPREADS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_median_is_right_where_finished_jobs_alone_mislead(spread: str, seed: int) -> None:
    render, true_median = SPREADS[spread]
    draw = random.Random(seed)
    scale = true_median / 10.5
    # Early in a run (the warm-up the issue measures): most jobs still rendering.
    finished, pending = _observe(draw, render, jobs=3000, rate=20 / scale, at=20 * scale)
    estimate = RenderTimeEstimate(prior_weight=0.1)
    for i, took in enumerate(finished):
        estimate.finished(f"f{i}", took)
    for i, age in enumerate(pending):
        estimate.pending(f"p{i}", age)
    learned = estimate.quantile(0.5)
    naive = statistics.median(finished)
    assert abs(learned - true_median) <= 0.10 * true_median, (learned, true_median)
    assert abs(naive - true_median) > 0.10 * true_median, (naive, true_median)


def test_a_change_of_speed_is_followed() -> None:
    estimate = RenderTimeEstimate(half_life=200, prior_weight=0.1)
    draw = random.Random(7)
    for i in range(1000):
        estimate.finished(f"slow{i}", draw.uniform(50, 70))
    for i in range(1000):
        estimate.finished(f"fast{i}", draw.uniform(5, 7))
    assert 5 <= estimate.quantile(0.5) <= 7


def test_the_estimate_plans_nothing_until_jobs_finished() -> None:
    estimate = RenderTimeEstimate()
    for i in range(50):
        estimate.pending(f"p{i}", 3.0)
    assert not estimate.ready and estimate.next_poll(0.0, budget=3) is None
    for i in range(RenderTimeEstimate.WARM):
        estimate.finished(f"j{i}", 4.0 + i)
    assert estimate.ready and estimate.next_poll(0.0, budget=3) is not None


def _loss(lag: float, tail: tuple[float, float] | None) -> float:
    return lag if tail is None else lag + tail[1] * max(0.0, lag - tail[0])


def _brute_force(
    grid: list[float], survival: list[float], lam: float, tail: tuple[float, float] | None = None
) -> float:
    """The cheapest mean lag (``tail``: plus its priced excess) + lam * polls over every
    schedule (the O(n^2) programme)."""
    done = [1 - s for s in survival]
    best = [0.0] + [math.inf] * (len(grid) - 1)
    for j in range(1, len(grid)):
        for i in range(j):
            lag = sum(
                (done[k] - done[k - 1]) * _loss(grid[j] - (grid[k - 1] + grid[k]) / 2, tail)
                for k in range(i + 1, j + 1)
            )
            best[j] = min(best[j], best[i] + lag + lam * survival[i])
    return best[-1]


def _cost(
    grid: list[float],
    survival: list[float],
    ages: tuple[float, ...],
    lam: float,
    tail: tuple[float, float] | None = None,
) -> float:
    done = [1 - s for s in survival]
    index = [grid.index(a) for a in ages]
    total, last = 0.0, 0
    for j in index:
        total += lam * survival[last]
        total += sum(
            (done[k] - done[k - 1]) * _loss(grid[j] - (grid[k - 1] + grid[k]) / 2, tail)
            for k in range(last + 1, j + 1)
        )
        last = j
    return total


@pytest.mark.parametrize("tailed", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_the_planner_finds_the_cheapest_schedule_and_spends_the_budget(
    seed: int, tailed: bool
) -> None:
    draw = random.Random(seed)
    samples = sorted(draw.lognormvariate(math.log(draw.uniform(2, 50)), 0.8) for _ in range(2000))
    top = samples[int(0.99 * len(samples))]
    grid = [top * j / 60 for j in range(61)]
    survival = [1 - bisect.bisect_right(samples, g) / len(samples) for g in grid]
    tail = (top / 15, 3.0) if tailed else None  # a lag past top / 15 costs 4 times as much
    plan = plan_polls(grid, survival, 3.0, tail=tail)
    # Both schedules are optimal at the plan's price (the hull trick, or the tail's
    # programme, is the brute force): the cheaper one exactly (it was solved at that price),
    # the other within the bisection's last step.
    optimum = _brute_force(grid, survival, plan.price, tail)
    assert _cost(grid, survival, plan.less, plan.price, tail) == pytest.approx(optimum, rel=1e-9)
    assert _cost(grid, survival, plan.more, plan.price, tail) == pytest.approx(optimum, rel=1e-2)
    # Mixed by their shares, they spend the budget.
    spend = [
        sum(survival[grid.index(a)] for a in (0.0, *ages[:-1])) for ages in (plan.more, plan.less)
    ]
    mixed = plan.share_more * spend[0] + (1 - plan.share_more) * spend[1]
    assert mixed == pytest.approx(3.0, abs=0.01)


def _run_schedule(estimate: RenderTimeEstimate, draw: random.Random) -> tuple[float, ...]:
    """Polls per job, lag p50 and p95 of 4,000 uniform 1-20 s renders on the estimate's
    plan."""
    polls, lags = [], []
    for i in range(4000):  # each job polled on the schedule until it is seen done
        took, age, count = draw.uniform(1, 20), 0.0, 0
        while age < took:
            age = estimate.next_poll(age, budget=3.0, lane=lane(f"t{i}")) or age + 1
            count += 1
        polls.append(count)
        lags.append(age - took)
    lags.sort()
    return statistics.mean(polls), lags[len(lags) // 2], lags[int(0.95 * len(lags))]


def test_the_learned_schedule_spends_its_budget_with_a_shorter_tail_than_a_fixed_loop() -> None:
    figures = {}
    for tail in (RenderTimeEstimate.TAIL, None):  # the tail priced, the mean lag alone
        estimate = RenderTimeEstimate()
        estimate.TAIL = tail
        draw = random.Random(3)
        for i in range(2000):
            estimate.finished(f"j{i}", draw.uniform(1, 20))
        figures[tail] = _run_schedule(estimate, draw)
    spent, p50, p95 = figures[RenderTimeEstimate.TAIL]
    assert 2.9 <= spent <= 3.1
    # A fixed loop spending as much polls every (mean render) / (spent - 1/2) seconds; its
    # lag is uniform below that interval. The mean-lag plan's longest gaps are about as
    # long: pricing the lags past 0.9 of that interval shortens the tail below the loop's,
    # and costs the median little.
    every = 10.5 / (spent - 0.5)
    assert p95 < 0.97 * 0.95 * every
    assert p95 < figures[None][2]
    assert p50 < 1.08 * figures[None][1]


def test_the_plan_sees_the_estimate_averaged_over_a_window() -> None:
    estimate = RenderTimeEstimate()
    draw = random.Random(5)
    for i in range(150):
        estimate.finished(f"j{i}", draw.uniform(1, 20))
    for i in range(30):
        estimate.pending(f"p{i}", draw.uniform(0, 10))
    half = estimate.SMOOTH * estimate.quantile(0.5) / 150**0.2
    grid = [20 * j / 80 for j in range(81)]
    steps = 2000  # the window's average, summed point by point

    def averaged(t: float) -> float:
        ages = (t + half * k / steps for k in range(-steps, steps + 1))
        return statistics.fmean(1.0 if a < 0 else estimate.survival(a) for a in ages)

    smoothed = estimate._smoothed(grid)
    assert smoothed[0] == 1.0  # every job is polled at least once
    assert smoothed[1:] == pytest.approx([averaged(t) for t in grid[1:]], abs=1e-3)
    estimate.SMOOTH = 0.0
    assert estimate._smoothed(grid) == [estimate.survival(t) for t in grid]


def test_a_plan_on_few_renders_keeps_its_tail_and_its_budget() -> None:
    """Planned on the steps of a small sample, a schedule polls where that sample's
    renders happened to end; on the estimate averaged over a window it keeps closer to
    the budget with a shorter tail (judged on the true distribution: 20 samples of 50)."""
    default = RenderTimeEstimate.SMOOTH
    assert default > 0
    figures: dict[float, list[tuple[float, ...]]] = {default: [], 0.0: []}
    for seed in range(20):
        renders = random.Random(seed)
        sample = [renders.uniform(1, 20) for _ in range(50)]
        for smooth, found in figures.items():
            estimate = RenderTimeEstimate()
            estimate.SMOOTH = smooth
            for i, took in enumerate(sample):
                estimate.finished(f"j{i}", took)
            found.append(_run_schedule(estimate, random.Random(99)))
    (polls, p50, p95), (raw_polls, raw_p50, raw_p95) = (
        [statistics.fmean(f[k] for f in figures[s]) for k in range(3)] for s in (default, 0.0)
    )
    assert abs(polls - 3.0) < abs(raw_polls - 3.0)
    assert p95 < raw_p95
    assert p50 < 1.03 * raw_p50


@pytest.mark.anyio
async def test_a_client_on_the_learned_schedule_resolves_every_job_and_learns() -> None:
    import anyio
    from suno_mp4_sandbox import Sandbox

    from suno_mp4 import Client, PollPolicy

    poll = PollPolicy(schedule="learned", initial_delay=0.05, max_interval=0.5, max_wait=60)
    async with Sandbox(render_time=(0.1, 0.6), seed=5) as sb:
        async with Client(sb.api_key, base_url=sb.base_url, poll=poll) as client:
            jobs = [await client.create_video(*sb.add_track()) for _ in range(40)]
            with anyio.fail_after(60):
                for job in jobs:
                    await job
            estimate = client._poller.estimate
    assert estimate is not None and len(estimate) >= 40
    assert 0.05 <= estimate.quantile(0.5) <= 1.0  # learned from these renders, not the prior


@pytest.mark.anyio
async def test_the_learned_render_times_are_kept_with_the_store(tmp_path: object) -> None:
    from pathlib import Path

    import anyio
    from suno_mp4_sandbox import Sandbox

    from suno_mp4 import Client, PollPolicy, SQLiteJobStore

    poll = PollPolicy(schedule="learned", initial_delay=0.05, max_interval=0.5, max_wait=60)
    db = Path(str(tmp_path)) / "jobs.db"
    async with Sandbox(render_time=(0.1, 0.4), seed=6) as sb:
        store = SQLiteJobStore(db)
        async with Client(sb.api_key, base_url=sb.base_url, poll=poll, store=store) as first:
            jobs = [await first.create_video(*sb.add_track()) for _ in range(20)]
            with anyio.fail_after(60):
                for job in jobs:
                    await job
        await store.aclose()
        store = SQLiteJobStore(db)
        async with Client(sb.api_key, base_url=sb.base_url, poll=poll, store=store) as second:
            estimate = second._poller.estimate
            assert estimate is not None and len(estimate) >= 20  # warm before its first job
            assert estimate.quantile(0.5) <= 1.0
        await store.aclose()


@pytest.mark.anyio
async def test_jobs_resolved_by_callbacks_teach_the_estimate_too() -> None:
    import anyio
    from suno_mp4_sandbox import Sandbox

    from suno_mp4 import CallbackListener, Client

    async with Sandbox(render_time=(0.2, 0.3), seed=7) as sb:
        listener = CallbackListener()
        async with Client(sb.api_key, base_url=sb.base_url, callbacks=listener) as client:
            jobs = [await client.create_video(*sb.add_track()) for _ in range(12)]
            with anyio.fail_after(60):
                for job in jobs:
                    await job
            assert {job.resolved_by for job in jobs} == {"callback"}
            estimate = client._poller.estimate
            assert estimate is not None and estimate.ready  # the default schedule learns
            assert 0.15 <= estimate.quantile(0.5) <= 0.5


def test_jobs_started_while_warming_up_keep_the_geometric_schedule() -> None:
    from suno_mp4 import PollPolicy
    from suno_mp4._poller import LearnedSchedule

    estimate = RenderTimeEstimate()
    schedule = LearnedSchedule(estimate, PollPolicy())
    assert schedule.delay(0.0, 1.0, 0, 0.5) is None  # warming up: the geometric schedule
    rng = random.Random(3)
    for i in range(200):
        estimate.finished(f"j{i}", rng.uniform(1, 20))
    assert estimate.ready
    # Submitted before the estimate was ready (all together, say): geometric to the end,
    # not a plan made for a whole life applied to one already half spent.
    assert schedule.delay(0.0, 30.0, 3, 0.5) is None
    assert schedule.delay(30.0, 31.0, 0, 0.5) is not None  # made since: planned
    # An estimate ready from the start (restored from a store) plans every job.
    restored = LearnedSchedule(estimate, PollPolicy())
    assert restored.delay(0.0, 1.0, 0, 0.5) is not None


def test_the_learned_schedule_scales_with_its_renders_and_its_policy() -> None:
    """Renders and policy k times shorter: every gap k times shorter (the benchmarks run the
    sandbox at a small scale; a floor in absolute seconds made its last gaps longer)."""
    from suno_mp4 import PollPolicy
    from suno_mp4._poller import LearnedSchedule

    rng = random.Random(5)
    renders = [rng.uniform(1, 20) for _ in range(300)]
    by_scale: dict[float, list[list[float]]] = {}
    for scale in (1.0, 0.08):
        estimate = RenderTimeEstimate()
        for i, seconds in enumerate(renders):
            estimate.finished(f"j{i}", seconds * scale)
        policy = PollPolicy(initial_delay=2 * scale, max_interval=30 * scale)
        schedule = LearnedSchedule(estimate, policy)
        by_scale[scale] = []
        for which in (0.1, 0.4, 0.7, 0.95):
            # A poll at each age (a late answer, a restart): the next is due soon after.
            ages = [i * 0.37 * scale for i in range(70)]
            gaps = [schedule.delay(0.0, age, 1, which) for age in ages]
            assert None not in gaps
            by_scale[scale].append([gap / scale for gap in gaps if gap is not None])
    for full, small in zip(by_scale[1.0], by_scale[0.08], strict=True):
        assert small == pytest.approx(full, rel=1e-6)
    assert min(min(gaps) for gaps in by_scale[1.0]) < 0.05 / 0.08  # a floor would have bitten


def test_the_estimate_waits_while_most_jobs_are_past_the_longest_render() -> None:
    estimate = RenderTimeEstimate()
    for i in range(2000):  # submitted together: the first 20 finished, the rest pending
        if i < 20:
            estimate.finished(f"j{i}", 0.5 + i * 0.01)
        else:
            estimate.pending(f"j{i}", 0.8)
    assert not estimate.ready
    for i in range(20, 1500):
        estimate.finished(f"j{i}", 1.0 + i * 0.001)
    assert estimate.ready


def test_the_poller_plans_jobs_made_once_the_estimate_is_ready() -> None:
    # The poller's own path (not only LearnedSchedule): an empty estimate is falsy (it has
    # a length), and a poller that tested it so never used its plan.
    from types import SimpleNamespace

    from suno_mp4 import PollPolicy
    from suno_mp4._poller import Poller

    async def fetch(task_id: str) -> Any:
        raise AssertionError("no request here")

    poller = Poller(fetch, PollPolicy())
    assert poller.estimate is not None and len(poller.estimate) == 0
    job = SimpleNamespace(created_at=0.0, poll_attempt=0, task_id="early")
    assert poller._learned_delay(job, 0.5) is None  # type: ignore[arg-type]
    rng = random.Random(5)
    for i in range(200):
        poller.estimate.finished(f"j{i}", rng.uniform(1, 20))
    later = SimpleNamespace(created_at=100.0, poll_attempt=0, task_id="later")
    gap = poller._learned_delay(later, 100.0)  # type: ignore[arg-type]
    plan = poller.estimate.next_poll(0.0, budget=PollPolicy().polls_per_job, lane=lane("later"))
    assert gap is not None and plan is not None
    assert gap == pytest.approx(max(plan, PollPolicy().initial_delay))


def test_the_pollers_heap_holds_untracked_numbers_in_due_order() -> None:
    # An entry is one int (due microseconds above its number): the collector never tracks
    # it, where a (due, number) tuple was tracked until a collection walked it. The ints
    # must keep the tuples' order, come due within a microsecond of their time, and take a
    # due time of inf (a server's Retry-After can say so).
    import gc
    from types import SimpleNamespace

    from suno_mp4 import PollPolicy
    from suno_mp4._poller import Poller, _due, _due_by, _entry

    rng = random.Random(3)
    dues = [ms / 1000 for ms in rng.sample(range(-5_000, 10**9), 2000)]
    entries = [_entry(due, number) for number, due in enumerate(dues, 1)]
    assert not any(gc.is_tracked(entry) for entry in entries)
    assert sorted(range(len(dues)), key=entries.__getitem__) == sorted(
        range(len(dues)), key=dues.__getitem__
    )
    for due, entry in zip(dues, entries, strict=True):
        assert abs(_due(entry) - due) < 2e-6
        assert entry < _due_by(due)  # due at its time
        assert entry >= _due_by(due - 2e-6)  # not before its microsecond

    async def fetch(task_id: str) -> Any:
        raise AssertionError("no request here")

    poller = Poller(fetch, PollPolicy())
    job = SimpleNamespace(poll_generation=0)
    poller._push(math.inf, job)  # type: ignore[arg-type]
    poller._push(5.0, SimpleNamespace(poll_generation=0))  # type: ignore[arg-type]
    assert len(poller) == 2 and _due(poller._heap[0]) == 5.0
    assert _due(max(poller._heap)) == pytest.approx(1e12)


# What a server (or a store another process writes) can make the estimate learn.


def test_a_job_pending_for_thousands_of_polls_gets_the_longest_gap_not_an_overflow() -> None:
    from suno_mp4 import PollPolicy

    for factor in (2.0, 2):  # a float power overflows; an int one grows without bound
        policy = PollPolicy(schedule="geometric", max_wait=None, factor=factor, jitter=0.0)
        assert policy.delay(5000, random.Random(1)) == policy.max_interval


def test_render_times_no_render_takes_are_not_learned_nor_restored() -> None:
    estimate = RenderTimeEstimate()
    for i, took in enumerate([6.3e9, math.nan, math.inf, -1.0]):
        estimate.finished(f"bad-{i}", took)
    estimate.seed([0, -1, 1e12, "5", True, None, [1], 4.0, 5.0])
    estimate.seed({"not": "a list"})
    assert sorted(estimate.recent()) == [4.0, 5.0]
    big = RenderTimeEstimate(window=50)
    big.seed([3.0] * 3_000_000)  # only the window's worth is read
    assert len(big) == 50


def test_past_a_tiny_learned_render_the_first_poll_still_waits_initial_delay() -> None:
    from suno_mp4 import PollPolicy
    from suno_mp4._poller import LearnedSchedule

    estimate = RenderTimeEstimate()
    estimate.seed([0.001] * 50)
    schedule = LearnedSchedule(estimate, PollPolicy(initial_delay=1.0))
    first = schedule.delay(0.0, 0.01, 0, 0.5)  # 10 ms old: past every render learned
    assert first is not None and first >= 0.99


@pytest.mark.anyio
async def test_timestamps_of_a_hostile_server_teach_the_estimate_nothing_absurd() -> None:
    import anyio
    from aiohttp import web

    from suno_mp4 import Client, PollPolicy

    from .hostile import Hostile, envelope, hostile_server

    def done(server: Hostile, task_id: str, created: str, completed: str) -> object:
        data = {"taskId": task_id, "successFlag": "SUCCESS", "createTime": created}
        data.update(completeTime=completed, response={"videoUrl": server.video_url("v.mp4")})
        return lambda _req: web.json_response(envelope(data))

    poll = PollPolicy(initial_delay=0.01, max_interval=0.05, max_wait=20)
    async with hostile_server() as server:
        ids = iter(["far", "zero", "sane"])
        server.submit = lambda _req: envelope({"taskId": next(ids)})
        server.details["far"] = done(server, "far", "2000-01-01 00:00:02", "2199-12-31 23:59:00")
        server.details["zero"] = done(server, "zero", "2026-12-05 01:02:03", "2026-12-05 01:02:03")
        server.details["sane"] = done(server, "sane", "2026-12-05 01:02:03", "2026-12-05 01:02:04")
        old: dict[str, object] = {"taskId": "old", "successFlag": "SUCCESS"}
        old["response"] = {"videoUrl": server.video_url("o.mp4")}  # no times: none known
        server.details["old"] = lambda _req: web.json_response(envelope(old))
        async with Client(server.api_key, base_url=server.base_url, poll=poll) as client:
            started = anyio.current_time()
            jobs = [await client.create_video(f"t{i}", "a") for i in range(3)]
            attached = client.job("old")  # made long ago elsewhere: no render time here
            with anyio.fail_after(10):
                for job in jobs:
                    await job
                await attached
            elapsed = anyio.current_time() - started
            estimate = client._poller.estimate
            assert estimate is not None
            learned = sorted(estimate.recent())
    # "far" and "zero": the time seen here instead; "sane": the server's second.
    assert len(learned) == 3
    assert all(0 < took <= elapsed + 1.0 for took in learned), learned


@pytest.mark.anyio
async def test_a_poll_answer_that_breaks_scheduling_fails_no_other_job() -> None:
    import anyio

    from suno_mp4 import Client, PollPolicy

    from .hostile import hostile_server, pending, success

    # PENDING for thousands of polls (2 ms apart): the gap's growth passes a float's range.
    poll = PollPolicy(
        schedule="geometric", initial_delay=0.002, max_interval=0.002, factor=2.0, max_wait=None
    )
    async with hostile_server() as server:
        ids = iter(["stuck", "other"])
        server.submit = lambda _req: {"code": 200, "msg": "ok", "data": {"taskId": next(ids)}}
        url = server.video_url("o.mp4")
        server.details["other"] = lambda _req: (
            success("other", url) if server.polls > 2400 else pending("other")
        )
        async with Client(server.api_key, base_url=server.base_url, poll=poll) as client:
            stuck = await client.create_video("t1", "a")
            other = await client.create_video("t2", "a")
            with anyio.fail_after(60):
                assert (await other).video_url == url
            assert stuck.polls > 1100 and not stuck.done()
