"""The resolution table as a picture: per spread, polls per job against detection lag (p50
as a dot, p95 as the end of its line), one labelled point per strategy (matplotlib, Agg
backend; the ``bench`` extra)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _median(cell: Any) -> float:
    """The median of a "median [min-max]" cell (or a plain number)."""
    found = re.match(r"\s*([-+0-9.eE]+)", str(cell))
    return float(found.group(1)) if found else float("nan")


def polls_vs_lag(headers: Sequence[str], rows: Sequence[Sequence[Any]], path: Path) -> Path:
    """Write ``path`` (PNG) from ``resolution.run``'s table; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    polls_i, p50_i, p95_i = (headers.index(h) for h in ("polls/job", "lag p50 (s)", "lag p95 (s)"))
    spreads = list(dict.fromkeys(str(r[0]) for r in rows))
    fig, axes = plt.subplots(1, len(spreads), figsize=(6 * len(spreads), 5), dpi=110)
    for ax, name in zip(axes if len(spreads) > 1 else [axes], spreads, strict=True):
        for row in (r for r in rows if r[0] == name):
            label = str(row[1])
            x, p50, p95 = _median(row[polls_i]), _median(row[p50_i]), _median(row[p95_i])
            sdk = label.startswith("SDK default")
            color = "tab:blue" if sdk else "tab:green" if label.startswith("bound") else "tab:gray"
            ax.plot([x, x], [p50, p95], color=color, alpha=0.5, zorder=2)
            ax.scatter([x], [p50], s=60, color=color, zorder=3)
            ax.annotate(label, (x, p50), textcoords="offset points", xytext=(6, -10), fontsize=8)
        ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel("polls per job (log; fewer is better)")
        ax.set_ylabel("detection lag, s: dot p50, line up to p95")
        ax.grid(True, alpha=0.3)
    fig.suptitle("Poll schedules on the sandbox: polls spent vs how late a finished job is seen")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
