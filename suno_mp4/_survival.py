"""How long this account's videos take to render, learned from the jobs the client sees:
a weighted Kaplan-Meier estimate that counts pending jobs as right-censored (the first jobs
to finish are the fastest: learning from finished jobs alone would think renders are
quick), forgets old observations so a change of the service's speed is followed, and
starts from a weak prior. The poller asks it when to poll next: the schedule that
minimises the mean lag, with its tail priced so it stays shorter than a fixed loop's, for
the budget of polls per job under the estimate (``_plan``): the estimate averaged over a
window, so the plan does not fit the steps of a small sample.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict

from ._plan import Plan, plan_polls

__all__ = ["RenderTimeEstimate"]


#: Render times of a day or more are not learned, nor restored: a server's far-off
#: timestamp (or a junk saved value) must not skew every job's schedule.
MAX_LEARNED_RENDER = 86_400.0


class RenderTimeEstimate:
    """Online estimate of the render-time distribution.

    ``finished(key, seconds)`` records a job that took ``seconds``; ``pending(key,
    seconds)`` records that a job was still rendering at that age (it replaces the job's
    earlier censoring). ``survival(t)`` is the estimated probability a render takes longer
    than ``t``; ``next_poll(age, budget=...)`` the age at which to poll a job next.
    """

    #: Cells of the grid the schedule is planned on (between 0 and the longest render).
    GRID = 80
    #: Plan for the mean squared lag instead (shortens the tail at a cost to the median).
    SQUARED = False
    #: Plan for the mean lag plus ``TAIL_WEIGHT`` times its mean excess over ``TAIL`` times
    #: the interval of the fixed loop spending the same budget under the estimate (``None``:
    #: the mean lag alone, whose longest gaps make a p95 no shorter than that loop's). The
    #: median stays near the mean-lag bound's, the p95 below the fixed loop's (``_plan``).
    TAIL: float | None = 0.9
    TAIL_WEIGHT = 3.0
    #: The schedule is planned on the estimate averaged over a window of ``SMOOTH`` times
    #: the median render, shrinking as renders are known (``n ** -0.2``, up to the window):
    #: a plan fitted to the steps of a sample polls where that sample's renders happened
    #: to end, and a sample that happens to be slow puts the first polls late, so the fast
    #: renders of the next jobs wait longer than a fixed loop would make them
    #: (``benchmarks.tail_price``). 0: the estimate itself.
    SMOOTH = 0.2
    #: Finished jobs needed before the schedule is trusted (the caller's fixed schedule
    #: serves until then).
    WARM = 10

    def __init__(
        self,
        *,
        window: int = 2000,
        half_life: float = 1000.0,
        prior: tuple[float, ...] = (2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0),
        prior_weight: float = 0.5,
        refresh_every: int = 100,
    ) -> None:
        #: Observations: key -> (seconds, finished?, sequence number).
        self._seen: OrderedDict[str, tuple[float, bool, int]] = OrderedDict()
        self._window = window
        self._decay = 0.5 ** (1 / half_life)  # the weight of an observation per newer one
        self._prior = prior
        self._prior_weight = prior_weight
        self._seq = 0
        self._curve: tuple[list[float], list[float]] | None = None
        # The curve (and the schedule) is recomputed after this many newly finished jobs,
        # every 10 while fewer than 100 are known (it moves slowly; a recomputation sorts
        # every observation), or after 20 times as many censoring updates.
        self._refresh_every = refresh_every
        self._dirty = 0
        self._dirty_finished = 0
        self._finished = 0
        self._plan: tuple[float, Plan] | None = None  # (budget, plan)
        self._price: float | None = None  # the last plan's (where the next one's search starts)
        #: The longest render seen (the prior's guesses beyond it are no knowledge).
        self._longest = max(prior)

    def __len__(self) -> int:
        return len(self._seen)

    def finished(self, key: str, seconds: float) -> None:
        if not 0 <= seconds < MAX_LEARNED_RENDER:  # NaN too: one figure skews every plan
            self.forget(key)
            return
        self._add(key, seconds, True)

    def pending(self, key: str, seconds: float) -> None:
        known = self._seen.get(key)
        if known is not None and known[1]:
            return  # finished already: a late "still pending" changes nothing
        self._add(key, max(0.0, seconds), False)

    def recent(self, limit: int = 500) -> list[float]:
        """The render times of the last ``limit`` finished jobs (to save with a store)."""
        done = [t for t, finished, _ in self._seen.values() if finished]
        return done[-limit:]

    def seed(self, seconds: object) -> None:
        """Start from render times saved by an earlier process (oldest first): the last
        ``window`` of them that are plausible (more than 0 s, less than a day)."""
        if not isinstance(seconds, list):
            return
        for i, took in enumerate(seconds[-self._window :]):
            if type(took) in (int, float) and 0 < took < MAX_LEARNED_RENDER:
                self._add(f"saved-{i}", float(took), True)

    def forget(self, key: str) -> None:
        """A job that will say nothing more (released, failed): drop its censoring."""
        known = self._seen.get(key)
        if known is not None and not known[1]:
            del self._seen[key]
            self._dirty += 1

    def _add(self, key: str, seconds: float, done: bool) -> None:
        # A job keeps the weight of when it was first seen: refreshing a pending job's
        # weight at every poll would weigh the slow (still pending) jobs above the finished
        # ones, and bias the estimate towards long renders.
        known = self._seen.pop(key, None)
        if known is None:
            self._seq += 1
        if done:
            self._finished += 1
            self._dirty_finished += 1
        seq = known[2] if known is not None else self._seq
        self._seen[key] = (seconds, done, seq)
        while len(self._seen) > self._window:
            self._seen.popitem(last=False)
        self._dirty += 1

    def _survival_curve(self) -> tuple[list[float], list[float]]:
        """Event times and S just after each (weighted Kaplan-Meier)."""
        every = 10 if self._finished < 100 else self._refresh_every
        if (
            self._curve is not None
            and self._dirty_finished < every
            and self._dirty < 20 * self._refresh_every
        ):
            return self._curve
        self._dirty = self._dirty_finished = 0
        self._plan = None
        rows: list[tuple[float, bool, float]] = [
            (t, done, self._decay ** (self._seq - seq)) for t, done, seq in self._seen.values()
        ]
        seen = [r[0] for r in rows if r[1]]
        self._longest = max(seen) if seen else max(self._prior)
        rows += [(t, True, self._prior_weight / len(self._prior)) for t in self._prior]
        rows.sort(key=lambda r: (r[0], not r[1]))  # at equal times, events before censoring
        at_risk = sum(w for _, _, w in rows)
        times: list[float] = []
        survival: list[float] = []
        s = 1.0
        i = 0
        while i < len(rows):
            t = rows[i][0]
            events = removed = 0.0
            while i < len(rows) and rows[i][0] == t:
                removed += rows[i][2]
                if rows[i][1]:
                    events += rows[i][2]
                i += 1
            if events > 0 and at_risk > 0:
                s *= 1 - events / at_risk
                times.append(t)
                survival.append(s)
            at_risk -= removed
        self._curve = (times, survival)
        return self._curve

    def survival(self, t: float) -> float:
        """P(render time > t), estimated."""
        times, survival = self._survival_curve()
        i = bisect.bisect_right(times, t)
        return 1.0 if i == 0 else survival[i - 1]

    def quantile(self, p: float) -> float:
        """The smallest t with P(render time <= t) >= p (the last event time if beyond)."""
        times, survival = self._survival_curve()
        for t, s in zip(times, survival, strict=True):
            if 1 - s >= p:
                return t
        return times[-1] if times else math.inf

    @property
    def ready(self) -> bool:
        """Whether enough jobs finished to plan on the estimate: :attr:`WARM` of them, and
        at least half the estimated mass within the longest render seen. (Jobs submitted
        together are all older than the first few to finish: planned up to those alone,
        every other job would be past the plan, polled at gaps of 0.3 x its age, about
        5 times each.)"""
        if self._finished < self.WARM:
            return False
        self._survival_curve()  # brings _longest up to date
        return self.survival(self._longest) <= 0.5

    def next_poll(self, age: float, *, budget: float, lane: float = 0.5) -> float | None:
        """The age at which to poll next a job still rendering at ``age``: the schedule
        minimising the mean lag at ``budget`` polls per job under the estimate, planned up
        to the longest render seen (``lane``, fixed per job in [0, 1), picks one of the
        plan's two schedules). ``None`` past it, or before :attr:`WARM` jobs finished
        (the caller falls back)."""
        return self.planned_after(age, budget=budget, lane=lane) if self.ready else None

    def planned_after(self, age: float, *, budget: float, lane: float = 0.5) -> float | None:
        """:meth:`next_poll` for a caller that checked :attr:`ready` already (the poller,
        once per poll: the check is not free)."""
        # The job's last poll is taken to be the planned one nearest its age: the plan
        # moves a little at each refresh, and "the first planned age after this one" would
        # then add polls a moment apart.
        ages = self.plan(budget).ages(lane)
        i = bisect.bisect_right(ages, age)
        before = ages[i - 1] if i else 0.0  # submission counts as a point at age 0
        if i < len(ages) and ages[i] - age < age - before:
            i += 1
        return ages[i] if i < len(ages) else None

    def plan(self, budget: float) -> Plan:
        """The planned schedules (recomputed with the curve)."""
        self._survival_curve()
        if self._plan is not None and self._plan[0] == budget:
            return self._plan[1]
        top = self._longest
        grid = [top * j / self.GRID for j in range(self.GRID + 1)]
        tail = None
        if self.TAIL is not None:
            tail = (self.TAIL * self.fixed_interval(budget), self.TAIL_WEIGHT)
        plan = plan_polls(
            grid,
            self._smoothed(grid),
            budget,
            squared=self.SQUARED,
            tail=tail,
            price=self._price,
        )
        self._price = plan.price
        self._plan = (budget, plan)
        return plan

    def _smoothed(self, grid: list[float]) -> list[float]:
        """The estimate's survival at each grid point, averaged over ``[t - h, t + h]``
        (``h`` from :attr:`SMOOTH`), exactly: the integral of the step curve, where the
        survival is 1 before age 0. Every job is polled once: 1 at age 0."""
        times, survival = self._survival_curve()
        known = max(1, min(self._finished, self._window))
        half = self.SMOOTH * self.quantile(0.5) / known**0.2 if times else 0.0
        if not half > 0 or math.isinf(half):
            return [self.survival(t) for t in grid]
        # area[i]: the integral of the survival from 0 to times[i].
        area: list[float] = []
        total, level, last = 0.0, 1.0, 0.0
        for t, s in zip(times, survival, strict=True):
            total += level * (t - last)
            area.append(total)
            level, last = s, t

        def integral(x: float) -> float:  # from 0 to x (before the first event: x itself)
            i = bisect.bisect_right(times, x) if x > 0 else 0
            return x if i == 0 else area[i - 1] + survival[i - 1] * (x - times[i - 1])

        return [1.0] + [(integral(t + half) - integral(t - half)) / (2 * half) for t in grid[1:]]

    def fixed_interval(self, budget: float) -> float:
        """The interval of the fixed loop (polls at ``h, 2h, ...``) spending ``budget`` polls
        per job under the estimate, up to the longest render seen (bisection)."""
        top = self._longest
        low, high = top / 1000, top
        for _ in range(30):
            every = (low + high) / 2
            polls, age = 0.0, 0.0
            while age < top:  # a poll at each k * every below top, and one at or past it
                polls += self.survival(age)
                age += every
            if polls > budget:
                low = every
            else:
                high = every
        return high
