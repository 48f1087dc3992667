"""Shared benchmark helpers: a sandbox in its own process, percentiles, a table printer."""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from suno_mp4_sandbox import admin_headers
from suno_mp4_sandbox._redis import stop_process

T = TypeVar("T")


@asynccontextmanager
async def raw_callback_server() -> AsyncIterator[tuple[str, defaultdict[str, asyncio.Event]]]:
    """The baseline's callback receiver: a tiny aiohttp server on 127.0.0.1 that sets an
    event per task id it is told about. Yields its URL and the events."""
    events: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def callback(request: web.Request) -> web.Response:
        body = await request.json()
        events[body["data"]["task_id"]].set()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/cb", callback)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/cb", events
    finally:
        await runner.cleanup()


class SandboxProcess:
    """``python -m suno_mp4_sandbox`` in a child process, so the client's CPU is its own."""

    def __init__(
        self, proc: subprocess.Popen[str], base_url: str, api_key: str, admin_token: str
    ) -> None:
        self.proc = proc
        self.base_url = base_url
        self.api_key = api_key
        #: What the admin routes under /sandbox/ want (see ``admin_headers``).
        self.admin_headers = admin_headers(admin_token)

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            # Admin POSTs must be JSON (Content-Type checked), even without a body.
            session.request(
                method,
                self.base_url + path,
                json={} if body is None and method != "GET" else body,
                headers=self.admin_headers,
            ) as resp,
        ):
            resp.raise_for_status()
            return await resp.json()

    async def add_tracks(
        self, n: int, *, each: Sequence[dict[str, Any]] | None = None, **fields: Any
    ) -> list[tuple[str, str]]:
        """Register ``n`` synthetic tracks (up to 32 requests in flight), in order; track
        ``i`` gets ``fields`` updated with ``each[i]`` (e.g. its own duration)."""

        async def one(session: aiohttp.ClientSession, i: int) -> tuple[str, str]:
            body = fields if each is None else {**fields, **each[i]}
            async with session.post(self.base_url + "/sandbox/tracks", json=body) as resp:
                data = await resp.json()
            return data["task_id"], data["audio_id"]

        return await self._each_admin(n, one)

    async def completed_at(self, task_ids: Sequence[str]) -> dict[str, float]:
        """When the sandbox finished each task (its clock, seconds since the epoch)."""

        async def one(session: aiohttp.ClientSession, i: int) -> float:
            async with session.get(f"{self.base_url}/sandbox/tasks/{task_ids[i]}") as resp:
                return float((await resp.json())["completed_at"])

        return dict(zip(task_ids, await self._each_admin(len(task_ids), one), strict=True))

    async def _each_admin(
        self, n: int, call: Callable[[aiohttp.ClientSession, int], Awaitable[T]]
    ) -> list[T]:
        """``call(session, i)`` for i in range(n) on one admin session, 32 at a time."""
        slots = asyncio.Semaphore(32)
        async with aiohttp.ClientSession(headers=self.admin_headers) as session:

            async def one(i: int) -> T:
                async with slots:
                    return await call(session, i)

            return list(await asyncio.gather(*(one(i) for i in range(n))))

    async def stats(self) -> Any:
        return await self.admin("GET", "/sandbox/stats")


@contextmanager
def sandbox_process(*args: str) -> Iterator[SandboxProcess]:
    cmd = [sys.executable, "-m", "suno_mp4_sandbox", "--port", "0", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        base_url = api_key = token = None
        for _ in range(20):
            line = proc.stdout.readline()
            if not line:
                break
            if m := re.search(r"(http://127\.0\.0\.1:\d+)", line):
                base_url = base_url or m.group(1)
            if m := re.search(r"(sk-sandbox-[0-9a-f]+)", line):
                api_key = api_key or m.group(1)
            if m := re.search(r"admin token (\S+)", line):
                token = token or m.group(1)
            if base_url and api_key and token:
                break
        if not (base_url and api_key and token):
            raise RuntimeError("the sandbox process did not print its URL, key and admin token")
        yield SandboxProcess(proc, base_url, api_key, token)
    finally:
        stop_process(proc)


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def spread(values: Iterable[float], digits: int = 2) -> str:
    """``median [min-max]`` of several runs: the figure the README and RESULTS quote."""
    ordered = sorted(values)
    mid, low, high = ordered[len(ordered) // 2], ordered[0], ordered[-1]
    return f"{mid:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def dump(path: str, data: Any) -> None:
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2)


def proc_status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``); 0 where there is none."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb() -> float:
    """This process's resident set size, MB (from ``/proc/self/status`` VmRSS)."""
    return proc_status_kb("VmRSS") / 1024
