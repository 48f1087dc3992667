"""Batches killed with SIGKILL at random moments, several times, then run to completion —
through the SDK (the README recipe) and through ``suno-mp4 batch``. Counted at the sandbox:
no track is ever billed twice, and every track ends done or reported in doubt.

Small here; ``make chaos`` runs it long (SUNO_MP4_CRASH_TRACKS, SUNO_MP4_CRASH_KILLS).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from pathlib import Path

import anyio
import pytest
from suno_mp4_sandbox import Sandbox

from suno_mp4 import JobState, SQLiteJobStore

pytestmark = pytest.mark.anyio

TRACKS = int(os.environ.get("SUNO_MP4_CRASH_TRACKS", "60"))
KILLS = int(os.environ.get("SUNO_MP4_CRASH_KILLS", "3"))
_SCRIPT = Path(sys.executable).with_name("suno-mp4")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "suno_mp4.cli"]


def _command(mode: str, sb: Sandbox, tracks: Path, work: Path) -> list[str]:
    if mode == "sdk":
        worker = str(Path(__file__).with_name("_batch_worker.py"))
        return [sys.executable, worker, sb.base_url, sb.api_key, str(tracks), str(work / "j.db")]
    return [*CLI, "batch", str(tracks), "--out-dir", str(work), "--no-download"]


@pytest.mark.parametrize("mode", ["sdk", "cli"])
@pytest.mark.parametrize("seed", [1, 2])
async def test_sigkill_at_random_moments_never_bills_a_track_twice(
    tmp_path: Path, mode: str, seed: int
) -> None:
    rng = random.Random(seed)
    async with Sandbox(render_time=(0.05, 0.4), seed=seed) as sb:
        if seed == 2:  # slow answers: kills land while submits are on the wire
            sb.faults.slow_answer = 0.5
            sb.faults.slow_seconds = 0.3
        tracks = [sb.add_track() for _ in range(TRACKS)]
        source = tmp_path / ("tracks.json" if mode == "sdk" else "tracks.jsonl")
        if mode == "sdk":
            source.write_text(json.dumps(tracks))
        else:
            rows = ({"task_id": t, "audio_id": a} for t, a in tracks)
            source.write_text("".join(json.dumps(row) + "\n" for row in rows))
        command = _command(mode, sb, source, tmp_path)
        env = dict(os.environ, APIKLEY_API_KEY=sb.api_key, SUNO_MP4_BASE_URL=sb.base_url)
        kills = 0
        with anyio.fail_after(120 + 10 * KILLS):
            for _ in range(KILLS):
                async with await anyio.open_process(command, env=env) as proc:
                    # The random moment itself: a time, not a condition to wait for.
                    await anyio.sleep(rng.uniform(0.05, 1.0))
                    if proc.returncode is None:
                        proc.send_signal(signal.SIGKILL)
                        kills += 1
                    await proc.wait()
            done = await anyio.run_process(command, env=env, check=False)
        assert done.returncode in (0, 1), done.stderr.decode()[-2000:]
        store = SQLiteJobStore(tmp_path / ("j.db" if mode == "sdk" else "jobs.db"))
        records = {(r.request.task_id, r.request.audio_id): r for r in await store.by_state()}
        await store.aclose()
    in_doubt = {t for t, r in records.items() if r.state.in_doubt}
    finished = {t for t, r in records.items() if r.state is JobState.DONE}
    # Every track ends done or reported in doubt; none is lost.
    assert finished | in_doubt == set(tracks)
    # Billed at most once: a track in doubt is never re-sent either.
    assert max(sb.stats.submits.values()) == 1
    assert sum(sb.stats.submits.values()) == len(finished) + len(in_doubt & set(sb.stats.submits))
    if in_doubt:
        report = done.stderr.decode() + done.stdout.decode()
        assert ("in doubt" in report) if mode == "cli" else ("SubmissionInDoubtError" in report)
    print(
        f"\n{mode} seed {seed}: {TRACKS} tracks, {kills} kills, "
        f"{sum(sb.stats.submits.values())} submits, {len(in_doubt)} in doubt"
    )
