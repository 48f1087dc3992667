"""Client CPU per request: the SDK against raw aiohttp making the same calls, in one run.

    python -m benchmarks.overhead [--jobs 2000] [--runs 3]

Three kinds of work, each done by both sides on the same tracks and task ids, at most 50
requests in flight (a fixed set of 50 tasks on both sides):

- submit: ``POST /api/v1/mp4/generate`` and read the task id. SDK: ``client.create_video``
  (checks the request, keys it, writes the job store ahead, registers the job; no poll
  comes due). Raw: ``session.post`` + ``resp.json()``.
- poll: ``GET /api/v1/mp4/record-info`` of a finished task. SDK:
  ``client.get_video_details`` (a ``VideoDetails``). Raw: ``session.get`` + ``resp.json()``.
- job by callback: submit, then the task's callback resolves it (0 s render). SDK:
  ``Client`` + ``CallbackListener``, ``await job``. Raw: the POST plus a tiny aiohttp server
  that sets an event per task id.

The sandbox runs in its own process, so ``time.process_time()`` here is the client's CPU
alone. Both sides are open at once (a session, a client); each makes 50 warm-up calls
before the clock starts. Each run's work is cut into 6 blocks and the sides take turns on
them (which goes first swaps every block and every run), so whatever else the machine
does falls on both alike. A block counts only its steady state, 50 requests on the wire
all along: the CPU from its 100th completed request to its 100th before last (its start
and its drain cost both sides the same per block, whatever a request costs; see
``Window``). The SDK gets the raw side's 50 submits on the wire
(``max_concurrent_submits=50``; its default is 16). A run's ratio is SDK / raw of that
run; figures are median [min-max] over ``--runs``, never the best run.

Each side's time in Python's garbage collector is measured too (``gc.callbacks``), as
"of which GC", with the collections per 1,000 requests: the SDK keeps objects per pending
job (the job, its request, its store record), so its collections run more often than
raw's, and each walks every object of the requests in flight, of which the SDK's have
more (its coroutines, its shield, its write-ahead).

``anatomy`` (a second table) is the SDK's own CPU per submit and per poll with the HTTP
exchange answered at once, and the collector-tracked objects a pending job keeps.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import aiohttp
import anyio

from suno_mp4 import CallbackListener, Client, PollPolicy
from suno_mp4._client import NO_CALLBACK_URL

from ._common import SandboxProcess, raw_callback_server, sandbox_process, spread, table

IN_FLIGHT = 50
WARM_UP = 50
#: Blocks each run's work is cut into, the sides taking turns on them.
BLOCKS = 6
TARGET = 1.2
GENERATE = "/api/v1/mp4/generate"
RECORD_INFO = "/api/v1/mp4/record-info"
#: No poll comes due during a run: the SDK sends only the requests measured.
QUIET = PollPolicy(initial_delay=3000, max_interval=3000, fallback_interval=3000, max_wait=3600)
#: Both sides with ``IN_FLIGHT`` submits on the wire (the SDK's default is 16).
SAME_WORK: dict[str, Any] = {"max_concurrent_submits": IN_FLIGHT}
SIDES = ("raw", "sdk")
KINDS = {
    "submit": "submit (POST)",
    "poll": "poll (GET)",
    "callback": "job by callback (POST + callback)",
}

T = TypeVar("T")
Track = tuple[str, str]


async def each(
    items: Iterable[T], call: Callable[[T], Awaitable[object]], window: Window | None = None
) -> None:
    """``call`` every item, ``IN_FLIGHT`` at a time; ``window`` is told of each completion."""
    it = iter(items)

    async def worker() -> None:
        for item in it:
            await call(item)
            if window is not None:
                window.completed()

    with anyio.fail_after(600):
        async with anyio.create_task_group() as tg:
            for _ in range(IN_FLIGHT):
                tg.start_soon(worker)


Calls = dict[str, Callable[[T], Awaitable[object]]]


class GcClock:
    """CPU seconds spent in the garbage collector (``gc.callbacks``) while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started
            self.collections += 1


class Window:
    """The CPU (and collector) seconds of a block's steady state: from its ``skip``-th
    completed request to its ``size - skip``-th, all that time with ``IN_FLIGHT`` on the
    wire. A block's start (its 50 tasks, about 0.8 ms, and the collections of their
    objects) and its drain (the last requests, ever fewer in flight) are the harness's
    cost, the same for both sides per block whatever each request costs (raw aiohttp's
    collections all fell there): counted, they are a share of both figures that the
    request path does not make. Blocks too short for that are counted whole."""

    def __init__(self, size: int) -> None:
        self.skip = min(2 * IN_FLIGHT, size // 4)
        self.requests = size - 2 * self.skip
        self.cpu = 0.0
        self.gc = GcClock()
        self._done = 0
        self._started = 0.0

    def begin(self) -> None:
        gc.callbacks.append(self.gc)
        self._started = time.process_time()

    def end(self) -> None:
        self.cpu = time.process_time() - self._started
        gc.callbacks.remove(self.gc)

    def completed(self) -> None:
        self._done += 1
        if self._done == self.skip:
            self.begin()
        elif self._done == self.skip + self.requests:
            self.end()

    async def measure(self, items: list[T], call: Callable[[T], Awaitable[object]]) -> None:
        """``each(items, call)``, its steady state measured."""
        if self.skip == 0:
            self.begin()
        try:
            await each(items, call, self)
        finally:
            if self.gc in gc.callbacks:  # a request failed before the window closed
                gc.callbacks.remove(self.gc)


async def interleaved(warm: list[T], work: list[T], calls: Calls[T], run: int) -> dict[str, float]:
    """CPU seconds per request of ``work`` for each side, the sides taking turns on
    ``BLOCKS`` blocks of it (the order swapping every block and every run): whatever else
    the machine does meanwhile falls on both alike. Each block counts its steady state
    only (see :class:`Window`). ``warm`` first, not counted. Also, per request:
    ``"<side> gc"``, the seconds of it spent collecting garbage, and
    ``"<side> collections"``, the collections."""
    for call in calls.values():
        await each(warm, call)
    cpu = dict.fromkeys(calls, 0.0)
    in_gc = dict.fromkeys(calls, 0.0)
    collections = dict.fromkeys(calls, 0.0)
    counted = dict.fromkeys(calls, 0)
    size = -(-len(work) // BLOCKS)
    for block in range(BLOCKS):
        part = work[block * size : (block + 1) * size]
        sides = list(calls) if (block + run) % 2 == 0 else list(reversed(calls))
        for side in sides:
            window = Window(len(part))
            await window.measure(part, calls[side])
            cpu[side] += window.cpu
            in_gc[side] += window.gc.seconds
            collections[side] += window.gc.collections
            counted[side] += window.requests
    figures = {side: seconds / counted[side] for side, seconds in cpu.items()}
    figures.update({f"{side} gc": seconds / counted[side] for side, seconds in in_gc.items()})
    figures.update({f"{side} collections": n / counted[side] for side, n in collections.items()})
    return figures


def _session(sb: SandboxProcess) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(headers={"Authorization": f"Bearer {sb.api_key}"})


def _client(sb: SandboxProcess, callbacks: CallbackListener | None = None) -> Client:
    return Client(sb.api_key, base_url=sb.base_url, poll=QUIET, callbacks=callbacks, **SAME_WORK)


async def _post(session: aiohttp.ClientSession, url: str, track: Track, callback_url: str) -> str:
    body = {"taskId": track[0], "audioId": track[1], "callBackUrl": callback_url}
    async with session.post(url + GENERATE, json=body) as resp:
        data = await resp.json()
    if data.get("code") != 200:
        raise RuntimeError(f"submit refused: {data}")
    task_id: str = data["data"]["taskId"]
    return task_id


async def submits(
    sb: SandboxProcess, tracks: list[Track], run: int
) -> tuple[dict[str, float], list[str]]:
    """Submit: the SDK's ``create_video`` and raw POSTs; returns the raw side's task ids."""
    task_ids: list[str] = []

    async def raw(track: Track) -> None:
        task_ids.append(await _post(session, sb.base_url, track, NO_CALLBACK_URL))

    async with _session(sb) as session, _client(sb) as client:
        calls: Calls[Track] = {"raw": raw, "sdk": lambda t: client.create_video(*t)}
        cpu = await interleaved(tracks[:WARM_UP], tracks[WARM_UP:], calls, run)
    return cpu, task_ids


async def polls(sb: SandboxProcess, task_ids: list[str], run: int) -> dict[str, float]:
    """Poll: the SDK's ``get_video_details`` and raw GETs of finished tasks."""

    async def raw(task_id: str) -> None:
        async with session.get(sb.base_url + RECORD_INFO, params={"taskId": task_id}) as resp:
            data = await resp.json()
        if data.get("code") != 200:
            raise RuntimeError(f"poll refused: {data}")

    async with _session(sb) as session, _client(sb) as client:
        calls: Calls[str] = {"raw": raw, "sdk": client.get_video_details}
        return await interleaved(task_ids[:WARM_UP], task_ids[WARM_UP:], calls, run)


async def by_callback(sb: SandboxProcess, tracks: list[Track], run: int) -> dict[str, float]:
    """Job by callback: submit, then the callback resolves it; the SDK awaits its job."""

    async def raw(track: Track) -> None:
        task_id = await _post(session, sb.base_url, track, callback_url)
        await events[task_id].wait()
        del events[task_id]

    async def sdk(track: Track) -> None:
        await (await client.create_video(*track))

    async with (
        raw_callback_server() as (callback_url, events),
        _session(sb) as session,
        _client(sb, CallbackListener()) as client,
    ):
        calls: Calls[Track] = {"raw": raw, "sdk": sdk}
        return await interleaved(tracks[:WARM_UP], tracks[WARM_UP:], calls, run)


# The driver.


async def measure(jobs: int, runs: int) -> dict[str, dict[str, list[float]]]:
    """CPU seconds per request, by kind then side, one figure per run."""
    cpu: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in KINDS}

    def keep(kind: str, figures: dict[str, float]) -> None:
        for side, seconds in figures.items():
            cpu[kind][side].append(seconds)

    with sandbox_process("--render-time", "0", "--no-render") as sb:
        for run in range(runs):
            # The same tracks for both sides (the sandbox takes a track more than once).
            tracks = await sb.add_tracks(jobs + WARM_UP)
            figures, finished = await submits(sb, tracks, run)
            keep("submit", figures)
            await anyio.sleep(0.5)  # 0 s renders: every task is finished
            keep("poll", await polls(sb, finished, run))
            keep("callback", await by_callback(sb, tracks, run))
    return cpu


def both(figures: dict[str, list[float]], what: str, factor: float) -> str:
    """``raw, sdk`` spreads of the ``"<side> <what>"`` figures, times ``factor``."""
    return ", ".join(spread([x * factor for x in figures[f"{side} {what}"]], 1) for side in SIDES)


async def run(jobs: int, runs: int = 3) -> tuple[list[str], list[list[Any]]]:
    cpu = await measure(jobs, runs)
    headers = [
        "work (50 in flight)",
        "raw aiohttp µs (baseline)",
        "suno_mp4 µs",
        "suno_mp4 / raw",
        "of which GC µs: raw, suno_mp4",
        "collections per 1,000: raw, suno_mp4",
        "target",
    ]
    rows: list[list[Any]] = []
    for kind, label in KINDS.items():
        raw, ours = cpu[kind]["raw"], cpu[kind]["sdk"]
        ratios = [s / r for s, r in zip(ours, raw, strict=True)]
        rows.append(
            [
                label,
                spread([r * 1e6 for r in raw], 0),
                spread([s * 1e6 for s in ours], 0),
                spread(ratios),
                both(cpu[kind], "gc", 1e6),
                both(cpu[kind], "collections", 1e3),
                f"<= {TARGET}x" if kind != "callback" else "",
            ]
        )
    return headers, rows


# Where the SDK's share goes: its own work without the network, and what a job keeps.

#: ``own_work`` makes this many times the run's requests (they are cheap alone).
OWN_WORK_SCALE = 10
#: A details answer as the sandbox sends it (a finished task), for ``own_work``'s polls.
DETAILS_ANSWER = (
    b'{"code":200,"msg":"success","data":{"taskId":"vid-0001","musicId":"aud-0001",'
    b'"callbackUrl":"https://callback.invalid/suno-mp4","musicIndex":0,'
    b'"completeTime":"2026-12-05 01:02:03","response":{"videoUrl":'
    b'"http://127.0.0.1:5555/files/vid-0001.mp4"},"successFlag":"SUCCESS",'
    b'"createTime":"2026-12-05 01:02:01","errorCode":null,"errorMessage":null}}'
)


async def own_work(requests: int, runs: int) -> dict[str, list[float]]:
    """The SDK's own CPU seconds per submit and per poll, the collector off, with the
    HTTP exchange answered at once (no network, no server): what is left is checking,
    keying, the store, the job and the poller, and reading the answer. Also
    ``"kept"``: collector-tracked objects a pending job keeps (after ``gc.collect()``)."""
    figures: dict[str, list[float]] = defaultdict(list)
    async with Client("k" * 20, base_url="http://127.0.0.1:9", poll=QUIET) as client:
        transport = client._transport()
        numbers = iter(range(10**9))

        async def exchange(method: str, path: str, *_: object) -> Any:
            if method == "POST":
                return {"taskId": f"vid-{next(numbers)}"}
            return transport._decode(path, 200, DETAILS_ANSWER, {}, "vid-0001")

        transport._exchange = exchange  # type: ignore[method-assign,assignment]
        tracks = iter((f"track-{i}", f"audio-{i}") for i in range(10**9))
        for _ in range(WARM_UP):
            await client.create_video(*next(tracks))
            await client.get_video_details("vid-0001")
        for _ in range(runs):
            gc.collect()
            objects = len(gc.get_objects())
            gc.disable()
            try:
                cpu0 = time.process_time()
                for _ in range(requests):
                    await client.create_video(*next(tracks))
                cpu1 = time.process_time()
                for _ in range(requests):
                    await client.get_video_details("vid-0001")
                cpu2 = time.process_time()
                for _ in range(requests):  # what raw aiohttp's resp.json() does too
                    json.loads(DETAILS_ANSWER)
                cpu3 = time.process_time()
            finally:
                gc.enable()
            gc.collect()
            figures["kept"].append((len(gc.get_objects()) - objects) / requests)
            figures["submit"].append((cpu1 - cpu0) / requests)
            figures["poll"].append((cpu2 - cpu1) / requests)
            figures["json"].append((cpu3 - cpu2) / requests)
    return figures


async def anatomy(jobs: int, runs: int) -> tuple[list[str], list[list[Any]]]:
    """``own_work`` on ``OWN_WORK_SCALE`` times ``jobs`` requests a run, as a table."""
    figures = await own_work(OWN_WORK_SCALE * jobs, runs)
    headers = ["the SDK's own work (exchange answered at once, collector off)", "value"]
    labels = {
        "submit": "CPU µs per submit",
        "poll": "CPU µs per poll",
        "json": "of which decoding its JSON (raw aiohttp does it too)",
        "kept": "collector-tracked objects kept per pending job",
    }
    scale = {"kept": 1.0}
    rows = [
        [label, spread([x * scale.get(k, 1e6) for x in figures[k]], 1)]
        for k, label in labels.items()
    ]
    return headers, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    headers, rows = anyio.run(run, args.jobs, args.runs)
    print(f"client CPU per request, {args.jobs} requests per side and kind;")
    print(f"median [min-max] of {args.runs} runs, the sides taking turns on {BLOCKS} blocks")
    print(table(headers, rows))
    print(table(*anyio.run(anatomy, args.jobs, args.runs)))


if __name__ == "__main__":
    main()
