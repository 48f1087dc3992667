"""The poll schedule that minimises the mean lag for a budget of polls per job, given a
render-time distribution: the planner behind ``PollPolicy(schedule="learned")`` (fed the
estimate the client learns) and behind the benchmarks' bound (fed the true distribution).

Polls are placed on a grid of ages ``0 = g_0 < g_1 < ... < g_n``. A poll at ``g_j`` after
one at ``g_i`` resolves the renders ending in ``(g_i, g_j]``, each with a lag of ``g_j``
minus its end, and is paid by every job still rendering at ``g_i``. With a price ``lam``
per poll, the cheapest schedule ending at ``g_j`` is a dynamic programme::

    best[j] = g_j * F_j - W_j + min over i < j of (best[i] + W_i + lam * S_i - g_j * F_i)

(``F`` the distribution function, ``S = 1 - F``, ``W`` the running sum of mass times its
cell's middle). The minimum is over lines of slope ``-F_i`` (falling with ``i``) queried at
rising ``g_j``: a monotone convex-hull trick makes each solve linear in the grid. ``lam``
is then bisected until the schedule spends the budget. The polls a schedule spends jump as
``lam`` crosses the value where a poll is added: the two schedules either side of it are
both optimal there, and a share of the jobs following each spends the budget exactly (the
randomised solution of the Lagrangian relaxation); without it a budget of 3 polls per job
can spend 2.8 with a tail to match.

``tail=(tau, weight)`` adds ``weight`` times the mean excess of the lag over ``tau``
(``E[(lag - tau)+]``) to the mean lag: a loss of slope 1 below ``tau`` and ``1 + weight``
above it. The learned schedule puts ``tau`` at 0.9 times the interval of the fixed loop
spending the same budget: the mean lag is minimised (its median near the bound's) while the
lags the fixed loop would beat are priced up, so the tail stays shorter than that loop's.
The mean squared lag, the other way to shorten the tail, prices every long lag, and pays for
it with the median (on a uniform 1-20 s spread, +5 % over the bound on the true
distribution, against +1 % for the tail price at the same p95). Its DP is O(n^2).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

__all__ = ["Plan", "plan_polls"]


@attrs.frozen
class Plan:
    """Two poll schedules (ages since submission) and the share of jobs that follow the
    first: together they spend the budget."""

    more: tuple[float, ...]  # spends more than the budget
    less: tuple[float, ...]  # spends at most the budget
    share_more: float
    #: The price of a poll (in lag) at which both are optimal: where the next plan starts.
    price: float

    def ages(self, lane: float) -> tuple[float, ...]:
        """The schedule of a job whose ``lane`` (a number in [0, 1) fixed per job) is given."""
        return self.more if lane < self.share_more else self.less


def plan_polls(
    grid: Sequence[float],
    survival: Sequence[float],
    budget: float,
    *,
    squared: bool = False,
    tail: tuple[float, float] | None = None,
    price: float | None = None,
) -> Plan:
    """The poll schedules (subsets of ``grid[1:]``, each ending with its last point) that
    minimise the mean lag (``squared``: the mean squared lag) at ``budget`` polls per job;
    ``survival[j]`` is the probability a render takes longer than ``grid[j]`` (``grid[0]``
    is 0). ``tail=(tau, weight)``: the mean lag plus ``weight`` times its mean excess over
    ``tau`` (see the module). ``price``, the last plan's, starts the search near its
    answer."""
    n = len(grid) - 1
    if n < 1:
        return Plan((), (), 0.0, 0.0)
    done = [1.0 - s for s in survival]
    weighted = [0.0] * (n + 1)
    squares = [0.0] * (n + 1)
    for j in range(1, n + 1):
        middle = (grid[j - 1] + grid[j]) / 2
        mass = done[j] - done[j - 1]
        weighted[j] = weighted[j - 1] + mass * middle
        squares[j] = squares[j - 1] + mass * middle * middle

    def solve_squared(lam: float) -> list[int]:
        # The same programme for the mean squared lag: the terms mixing i and j are
        # quadratic in g_j, with no hull to keep: every i is tried (a grid of ~80 cells).
        best = [0.0] * (n + 1)
        back = [0] * (n + 1)
        left = [lam * survival[0]] + [0.0] * n
        for j in range(1, n + 1):
            x = grid[j]
            x2, tx = x * x, 2 * x
            values = [
                a - x2 * f + tx * w
                for a, f, w in zip(left[:j], done[:j], weighted[:j], strict=True)
            ]
            low = min(values)
            back[j] = values.index(low)
            best[j] = x2 * done[j] - tx * weighted[j] + squares[j] + low
            left[j] = best[j] - squares[j] + lam * survival[j]
        return _path(back)

    # The cells whose middle lies more than tau before each grid point: polled at g_j,
    # their lag exceeds tau (cells 1..over[j]).
    tau, weight = tail if tail is not None else (0.0, 0.0)
    over = [0] * (n + 1)
    k = 0
    for j in range(1, n + 1):
        while k < j and (grid[k] + grid[k + 1]) / 2 < grid[j] - tau:
            k += 1
        over[j] = k

    def solve_tail(lam: float) -> list[int]:
        # The mean lag plus weight * E[(lag - tau)+]. From a poll at g_i < g_j, the cells
        # i+1..over[j] pay the excess: weight * ((g_j - tau) * (F_k - F_i) - (W_k - W_i)),
        # k = over[j]. Split at k, each side's minimum is over lines in g_j: with the terms
        # of i kept in ``left`` (no excess) and ``heavy`` (with it), every i is tried.
        best = [0.0] * (n + 1)
        back = [0] * (n + 1)
        left = [lam * survival[0]] + [0.0] * n
        heavy = [lam * survival[0] + weight * tau * done[0]] + [0.0] * n
        slope = 1 + weight
        for j in range(1, n + 1):
            x = grid[j]
            k = over[j]
            low, at = float("inf"), 0
            if k:
                sx = slope * x
                values = [a - sx * f for a, f in zip(heavy[:k], done[:k], strict=True)]
                least = min(values)
                low = least + weight * ((x - tau) * done[k] - weighted[k])
                at = values.index(least)
            if k < j:
                rest = [a - x * f for a, f in zip(left[k:j], done[k:j], strict=True)]
                other = min(rest)
                if other < low:
                    low, at = other, k + rest.index(other)
            back[j] = at
            best[j] = x * done[j] - weighted[j] + low
            left[j] = best[j] + weighted[j] + lam * survival[j]
            heavy[j] = left[j] + weight * (weighted[j] + tau * done[j])
        return _path(back)

    def solve(lam: float) -> list[int]:
        if squared:
            return solve_squared(lam)
        if tail is not None:
            return solve_tail(lam)
        best = [0.0] * (n + 1)
        back = [0] * (n + 1)
        hull: list[int] = []  # line indices, slopes -done[i] falling
        intercept = [0.0] * (n + 1)
        top = 0

        def value(i: int, x: float) -> float:
            return intercept[i] - x * done[i]

        def add(i: int) -> None:
            intercept[i] = best[i] + weighted[i] + lam * survival[i]
            if hull and done[hull[-1]] == done[i]:
                if intercept[hull[-1]] <= intercept[i]:
                    return  # the same slope, higher: never the minimum
                hull.pop()
            while len(hull) >= 2:
                a, b = hull[-2], hull[-1]
                # b is useless where a and i cross no later than a and b.
                left = (intercept[i] - intercept[a]) * (done[b] - done[a])
                right = (intercept[b] - intercept[a]) * (done[i] - done[a])
                if left <= right:
                    hull.pop()
                else:
                    break
            hull.append(i)

        add(0)
        for j in range(1, n + 1):
            x = grid[j]
            top = min(top, len(hull) - 1)
            while top + 1 < len(hull) and value(hull[top + 1], x) <= value(hull[top], x):
                top += 1
            i = hull[top]
            back[j] = i
            best[j] = x * done[j] - weighted[j] + value(i, x)
            add(j)
        return _path(back)

    def polls(cells: list[int]) -> float:
        return sum(survival[i] for i in [0, *cells[:-1]])

    low, high = 0.0, grid[n] ** 2 if squared else grid[n] * (1 + weight)
    less = more = None
    if price is not None and 0 < price < high:
        # The last plan's price: the new one is near, and two solves bracket it.
        cells = solve(price / 1.3)
        if polls(cells) > budget:
            low, more = price / 1.3, cells
        cells = solve(min(high, price * 1.3))
        if polls(cells) <= budget:
            high, less = min(high, price * 1.3), cells
    less = less if less is not None else solve(high)
    more = more if more is not None else solve(low)
    for _ in range(40):
        if high - low < 0.02 * high:
            break
        lam = (low + high) / 2
        cells = solve(lam)
        if polls(cells) > budget:
            low, more = lam, cells
        else:
            high, less = lam, cells
    spend_more, spend_less = polls(more), polls(less)
    share = 0.0
    if spend_more > budget >= spend_less and spend_more > spend_less:
        share = (budget - spend_less) / (spend_more - spend_less)
    return Plan(tuple(grid[j] for j in more), tuple(grid[j] for j in less), share, high)


def _path(back: list[int]) -> list[int]:
    """The cells polled, from the programme's back pointers (the last cell is always)."""
    cells, j = [], len(back) - 1
    while j > 0:
        cells.append(j)
        j = back[j]
    cells.reverse()
    return cells
