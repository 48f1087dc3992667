"""Hostile answers and client memory: a gzip bomb, a 100 MB answer with a length, and one
sent chunked, read by the SDK (``get_video_details``) and, as the baseline, by plain
``aiohttp`` ``resp.read()`` (what the SDK did before it capped answers). Each reading runs
in a fresh child process that reports its peak RSS growth; the hostile server runs in this
process. Median and [min-max] over ``--runs``.

    python -m benchmarks.hostile [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import zlib
from typing import Any

from aiohttp import web

from ._common import spread, table

CASES = ("gzip bomb (1 MB -> 1 GB)", "100 MB, Content-Length", "100 MB, chunked")
MB = 1024 * 1024


def _bomb() -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b" " * MB
    parts = [packer.compress(b"{")] + [packer.compress(chunk) for _ in range(1024)]
    return b"".join([*parts, packer.compress(b"}"), packer.flush()])


def _app() -> web.Application:
    bomb = _bomb()

    async def answer(request: web.Request) -> web.StreamResponse:
        case = int(request.match_info["case"])
        if case == 0:
            return web.Response(
                body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
            )
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if case == 1:
            resp.content_length = 100 * MB
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(100):
                await resp.write(b" " * MB)
        except ConnectionError:
            pass  # the reader hung up
        return resp

    app = web.Application()
    # One base URL per case: /case<N> is the API's base URL for the reader.
    app.router.add_get(r"/case{case:\d}/api/v1/mp4/record-info", answer)
    return app


# The reading side, in a fresh child process: ``python -c _READER SIDE BASE_URL``.

_READER = """
import asyncio, json, resource, sys

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

async def main(side, url):
    import aiohttp
    import suno_mp4
    before = peak_mb()
    outcome = "ok"
    if side == "sdk":
        async with suno_mp4.Client("k", base_url=url, retry=suno_mp4.RetryPolicy(attempts=1)) as c:
            try:
                await c.get_video_details("t")
            except suno_mp4.SunoMp4Error as exc:
                outcome = type(exc).__name__
    else:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/api/v1/mp4/record-info", params={"taskId": "t"}) as r:
                outcome = f"read {len(await r.read()) / 1e6:.0f} MB"
    print(json.dumps({"growth_mb": peak_mb() - before, "outcome": outcome}))

asyncio.run(main(*sys.argv[1:]))
"""


async def _read(side: str, base_url: str, case: int) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _READER, side, f"{base_url}/case{case}", stdout=subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return json.loads(out)  # type: ignore[no-any-return]


async def measure(runs: int, *, baseline: bool = True) -> tuple[list[str], list[list[Any]]]:
    """The table; ``baseline=False`` skips the raw reads (they take gigabytes)."""
    runner = web.AppRunner(_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    rows: list[list[Any]] = []
    try:
        for case, name in enumerate(CASES):
            growth: dict[str, list[float]] = {"sdk": [], "raw": []}
            outcome: dict[str, str] = {}
            for _ in range(runs):
                for side in ("sdk", "raw") if baseline else ("sdk",):  # paired: same answer
                    result = await _read(side, base_url, case)
                    growth[side].append(result["growth_mb"])
                    outcome[side] = result["outcome"]
            raw = [spread(growth["raw"], 1), outcome["raw"]] if baseline else ["-", "-"]
            rows.append([name, spread(growth["sdk"], 1), outcome["sdk"], *raw])
    finally:
        await runner.cleanup()
    headers = ["answer", "SDK peak RSS growth (MB)", "SDK outcome", "raw aiohttp (MB)", "raw"]
    return headers, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    headers, rows = asyncio.run(measure(args.runs))
    print(table(headers, rows))


if __name__ == "__main__":
    main()
