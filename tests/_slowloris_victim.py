"""Both sides of a slowloris attack on the callback listener, as separate processes (for
tests/test_slowloris.py and benchmarks/slowloris.py).

    python tests/_slowloris_victim.py victim [--nofile 1024] [--max-connections N]
                                             [--read-timeout S] [--job-timeout 10]
    python tests/_slowloris_victim.py attack PORT [--connections 1100] [--trickle]
                                                  [--reopen] [--ramp 0.001]

victim: a process limited to ``--nofile`` descriptors running a ``Sandbox`` and a ``Client``
with a ``CallbackListener`` (guard options passed only when given, so the script also runs
against a listener that has none). It prints ``{"port": P, ...}``, then reads commands,
one a line, each answered with one JSON line:

- ``settle``: wait until the descriptors in use stop rising (the attack has landed);
  ``{"fds": highest}`` (-1: none left).
- ``jobs N``: N submits, each job awaited (``--job-timeout`` s) with the safety poll 60 s
  away, so only a callback resolves it in time; per job whether it was submitted, what
  resolved it and the lag (resolved here - finished in the sandbox); the descriptors in
  use (peak while the jobs ran); ERROR log records so far; the guard's counters.
- ``exit`` (or EOF) ends it.

attack: opens ``--connections`` TCP connections to 127.0.0.1:PORT (``--ramp`` s apart) and
keeps them open, sending nothing (or, with ``--trickle``, one header byte per second, never
ending the head); with ``--reopen`` each one the victim closes is opened again. Prints
``{"ready": ...}`` once every connection was attempted, then answers the stdin line
``stats`` with its counts; any other line (or EOF) prints them a last time and ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import socket
import sys
import time
from typing import Any

# The victim.


class _ErrorCounter(logging.Handler):
    """Counts ERROR (and worse) records; keeps the first few, shortened."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.samples) < 3:
            self.samples.append(f"{record.name}: {record.getMessage()[:160]}")


def _fds() -> int:
    """Descriptors in use, or -1 when none is left to list them with."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir used
    except OSError:
        return -1


def _emit(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def _victim(args: argparse.Namespace, errors: _ErrorCounter) -> None:
    import anyio
    from suno_mp4_sandbox import Sandbox

    from suno_mp4 import CallbackListener, Client, PollPolicy, RetryPolicy

    guard: dict[str, Any] = {}
    if args.max_connections is not None:
        guard["max_connections"] = args.max_connections
    if args.read_timeout is not None:
        guard["read_timeout"] = args.read_timeout
    poll = PollPolicy(initial_delay=60, fallback_interval=60, max_wait=600)
    retry = RetryPolicy(attempts=3, initial_backoff=0.1, max_backoff=0.5)
    async with Sandbox(render_time=args.render_time, render=False) as sb:
        listener = CallbackListener(**guard)
        async with Client(
            sb.api_key, base_url=sb.base_url, callbacks=listener, poll=poll, retry=retry
        ) as client:
            _emit({"port": listener.port, "fds": _fds(), "pid": os.getpid()})
            while True:
                line = await anyio.to_thread.run_sync(sys.stdin.readline)
                words = line.split()
                if not words or words[0] == "exit":
                    break
                if words[0] == "settle":
                    _emit({"fds": await _settle()})
                elif words[0] == "jobs":
                    result = await _jobs(client, sb, int(words[1]), args.job_timeout)
                    server = getattr(listener, "_runner", None)
                    stats = getattr(server, "stats", None)
                    result.update(errors=errors.count, error_samples=errors.samples)
                    result.update(guard=dict(stats) if isinstance(stats, dict) else None)
                    _emit(result)


async def _settle(quiet: float = 0.3, longest: float = 5.0) -> int:
    """Wait until the descriptors in use stop reaching new highs (the attack has landed):
    none for ``quiet`` s, none left, or ``longest`` s; the highest count (-1: none left)."""
    import anyio

    peak, since = _fds(), time.monotonic()
    with anyio.move_on_after(longest):
        while peak >= 0 and time.monotonic() - since < quiet:
            await anyio.sleep(0.02)
            fds = _fds()
            if fds < 0 or fds > peak:
                peak, since = fds, time.monotonic()
    return peak


async def _jobs(client: Any, sb: Any, n: int, timeout: float) -> dict[str, Any]:
    import anyio

    outcomes: list[dict[str, Any]] = []
    peak = [_fds()]

    async def one() -> None:
        out: dict[str, Any] = {"submitted": False, "resolved_by": None, "lag": None}
        outcomes.append(out)
        try:
            with anyio.fail_after(timeout):
                job = await client.create_video(*sb.add_track())
                out["submitted"] = True
                await job
            out["resolved_by"] = job.resolved_by
            completed = sb.task(job.task_id).completed_at
            out["lag"] = time.time() - completed if completed is not None else None
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {str(exc)[:160]}"

    async def sample() -> None:
        while True:
            fds = _fds()
            peak[0] = -1 if fds < 0 or peak[0] < 0 else max(peak[0], fds)
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sample)
        async with anyio.create_task_group() as jobs:
            for _ in range(n):
                jobs.start_soon(one)
        tg.cancel_scope.cancel()
    return {"jobs": outcomes, "fds_peak": peak[0], "fds": _fds()}


def victim(args: argparse.Namespace) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
    os.environ.setdefault("SUNO_MP4_SANDBOX_RENDER", "0")
    errors = _ErrorCounter()
    logging.basicConfig(level=logging.WARNING, handlers=[errors])
    import anyio

    anyio.run(_victim, args, errors, backend="asyncio")


# The attacker.

_TRICKLE = b"POST /suno-mp4/callbacks/guess HTTP/1.1\r\nHost: victim\r\n" + b"X-Slow: a\r\n" * 500


async def _attack(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    counts = {"attempted": 0, "connected": 0, "failed": 0, "closed_by_peer": 0, "open": 0}
    first_round: set[int] = set(range(args.connections))
    settled = asyncio.Event()
    stopping = False

    def settle(i: int) -> None:
        first_round.discard(i)
        if not first_round:
            settled.set()

    async def hold(sock: socket.socket) -> None:
        """Until the victim closes it: silent, or one header byte per second."""
        if not args.trickle:
            await loop.sock_recv(sock, 1)
            return
        for i in range(len(_TRICKLE)):
            if stopping:
                return
            await loop.sock_sendall(sock, _TRICKLE[i : i + 1])
            try:
                if not await asyncio.wait_for(loop.sock_recv(sock, 1), 1.0):
                    return
            except TimeoutError:
                continue

    async def one(i: int) -> None:
        # Ramped, so the victim's accept queue does not overflow (an overflowed connection
        # only lands when the kernel retransmits its SYN-ACK, seconds later).
        await asyncio.sleep(i * args.ramp)
        # A flag as well as cancel(): Python 3.11's wait_for can swallow a cancellation.
        while not stopping:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            counts["attempted"] += 1
            try:
                await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", args.port)), 5)
            except (OSError, TimeoutError):
                counts["failed"] += 1
                sock.close()
                settle(i)
                if not args.reopen:
                    return
                await asyncio.sleep(0.5)
                continue
            counts["connected"] += 1
            counts["open"] += 1
            settle(i)
            with contextlib.suppress(OSError):
                await hold(sock)
            counts["open"] -= 1
            counts["closed_by_peer"] += 1
            sock.close()
            if not args.reopen:
                return

    tasks = [asyncio.create_task(one(i)) for i in range(args.connections)]
    await settled.wait()
    _emit({"ready": True, **counts})
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        _emit(dict(counts))
        if line.strip() != "stats":
            break
    stopping = True
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def attack(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 64
    if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    asyncio.run(_attack(args))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="role", required=True)
    v = sub.add_parser("victim")
    v.add_argument("--nofile", type=int, default=1024)
    v.add_argument("--max-connections", type=int)
    v.add_argument("--read-timeout", type=float)
    v.add_argument("--job-timeout", type=float, default=10.0)
    v.add_argument("--render-time", type=float, default=0.1)
    a = sub.add_parser("attack")
    a.add_argument("port", type=int)
    a.add_argument("--connections", type=int, default=1100)
    a.add_argument("--trickle", action="store_true")
    a.add_argument("--reopen", action="store_true")
    a.add_argument("--ramp", type=float, default=0.001, help="seconds between connections")
    args = parser.parse_args(argv)
    (victim if args.role == "victim" else attack)(args)


if __name__ == "__main__":
    main()
