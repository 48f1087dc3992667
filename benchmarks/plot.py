"""The resolution table as a picture: polls per job against detection lag p50, one labelled
point per strategy (matplotlib, Agg backend; the ``bench`` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def polls_vs_lag(headers: Sequence[str], rows: Sequence[Sequence[Any]], path: Path) -> Path:
    """Write ``path`` (PNG) from resolution.run's table; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name_i, polls_i, lag_i = 0, headers.index("polls/job"), headers.index("lag p50 (ms)")
    points = [(str(r[name_i]), float(r[polls_i]), float(r[lag_i])) for r in rows]
    x_span = max(p[1] for p in points) or 1.0
    y_span = max(p[2] for p in points) or 1.0
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, x, y in points:
        sdk = name.startswith("suno_mp4")
        ax.scatter([x], [y], s=70, color="tab:blue" if sdk else "tab:gray", zorder=3)
        # Two points close together: the lower one's label goes below it.
        near_above = any(
            abs(x - ox) < 0.25 * x_span and 0 <= oy - y < 0.15 * y_span and on != name
            for on, ox, oy in points
        )
        ax.annotate(
            name,
            (x, y),
            textcoords="offset points",
            xytext=(8, -14) if near_above else (8, 6),
            fontsize=9,
        )
    ax.set_xlabel("polls per job (fewer is better)")
    ax.set_ylabel("detection lag p50, ms (lower is better)")
    ax.set_title("Resolving jobs: polls spent vs how late a finished job is noticed")
    ax.set_xlim(left=-0.5, right=x_span * 1.45 + 1)
    ax.set_ylim(bottom=-0.08 * y_span, top=y_span * 1.2 + 1)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
