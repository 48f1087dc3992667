"""``python -m benchmarks`` (``make bench``): run every benchmark, print the tables and
write them to ``benchmarks/RESULTS.md`` with the machine's CPU count and Python version.

``--quick`` runs tiny sizes (CI's smoke run).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import anyio

from . import render, resolution


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    args = parser.parse_args(argv)
    jobs, scale = (20, 0.05) if args.quick else (200, 0.2)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    sections = []
    headers, rows = anyio.run(resolution.run, jobs, scale)
    from ._common import table

    sections.append(
        f"## Resolution: polling vs callbacks vs naive loops\n\n"
        f"{jobs} jobs per strategy, render times 1-20 s x {scale} (every interval scaled the "
        f"same), sandbox in its own process.\n\n{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.resolution --jobs {jobs} --scale {scale}`\n"
    )
    render_seconds, runs = (3.0, 1) if args.quick else (30.0, 3)
    headers, rows = render.run(render_seconds, runs)
    sections.append(
        f"## Rendering (the sandbox's renderer)\n\nMedian of {runs} alternating runs; target "
        f"<= 1.1x the bare command and >= 4x real time.\n\n{table(headers, rows)}\n\n"
        f"Reproduce: `python -m benchmarks.render --seconds {render_seconds:g} --runs {runs}`\n"
    )
    header = (
        f"# Benchmark results\n\n{started}; {os.cpu_count()} CPUs; Python "
        f"{platform.python_version()} on {platform.system()} {platform.machine()}.\n"
    )
    text = header + "\n" + "\n".join(sections)
    print(text)
    if not args.quick:
        Path(__file__).with_name("RESULTS.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
