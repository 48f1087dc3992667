"""``suno-mp4 batch`` on the SDK's keyed batch and a store in the output folder: each
re-run does the right thing for each row's state, and no row is billed twice."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream
from suno_mp4_sandbox import PlaceholderRenderer, Sandbox

pytestmark = pytest.mark.anyio

_SCRIPT = Path(sys.executable).with_name("suno-mp4")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "suno_mp4.cli"]


async def _batch(
    sb: Sandbox, source: Path, out: Path, *args: str, key: str | None = None
) -> tuple[int, str, str]:
    env = dict(os.environ, APIKLEY_API_KEY=key or sb.api_key, SUNO_MP4_BASE_URL=sb.base_url)
    command = [*CLI, "batch", str(source), "--out-dir", str(out), *args]
    with anyio.fail_after(90):
        done = await anyio.run_process(command, env=env, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def _jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def _manifest(out: Path) -> list[dict[str, object]]:
    lines = (out / "manifest.jsonl").read_text().split("\n")
    return [json.loads(line) for line in lines if line]


def _rows(sb: Sandbox, n: int) -> list[dict[str, str]]:
    return [dict(zip(("task_id", "audio_id"), sb.add_track(), strict=True)) for _ in range(n)]


async def test_a_401_stops_the_batch_and_the_rerun_with_the_fixed_key_bills_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = _jsonl(tmp_path / "t.jsonl", _rows(sandbox, 30))
    code, _, err = await _batch(sandbox, source, tmp_path / "out", key="wrong-key")
    assert code == 3, err
    assert "stopped" in err and "run the same command again" in err
    assert sandbox.stats.submits_accepted == 0
    code, out, err = await _batch(sandbox, source, tmp_path / "out")
    assert code == 0, err
    assert "done 30" in out
    assert sorted(sandbox.stats.submits.values()) == [1] * 30


async def test_402_then_top_up_then_rerun_bills_each_track_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = _jsonl(tmp_path / "t.jsonl", _rows(sandbox, 30))
    sandbox.credits = 10 * sandbox.video_cost
    code, out, err = await _batch(sandbox, source, tmp_path / "out", "--max-in-flight", "1")
    assert code == 3, err
    assert "top up" in err
    assert sandbox.stats.submits_accepted == 10
    sandbox.credits = 1000
    code, out, err = await _batch(sandbox, source, tmp_path / "out")
    assert code == 0, err
    assert "done 20, skipped 10" in out
    assert sorted(sandbox.stats.submits.values()) == [1] * 30
    assert {r["state"] for r in _manifest(tmp_path / "out")} == {"done"}


async def test_rows_that_tricked_the_old_manifest_are_billed_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    a, b, c = _rows(sandbox, 3)
    rows = [
        {**a, "author": "line\u2028separator"},  # str.splitlines() would split this row
        {**b, "author": "next\u0085line"},
        c,
        c,
        c,  # three identical rows: one video
    ]
    source = _jsonl(tmp_path / "t.jsonl", rows)
    (tmp_path / "t.jsonl").write_text(
        source.read_text() + '{"task_id": "\\ud800", "audio_id": "x"}\n'  # lone surrogate
    )
    for _ in range(2):
        code, _, err = await _batch(sandbox, source, tmp_path / "out")
        assert code == 1, err  # the surrogate row is malformed (reported, never billed)
        assert "line 6" in err
    assert sorted(sandbox.stats.submits.values()) == [1, 1, 1]
    manifest = _manifest(tmp_path / "out")
    assert [r["line"] for r in manifest] == [1, 2, 3, 4, 5]
    assert manifest[0]["author"] == "line\u2028separator"


async def test_a_failed_download_is_fetched_on_the_rerun_and_nothing_is_billed_again(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = _jsonl(tmp_path / "t.jsonl", _rows(sandbox, 4))
    sandbox.faults.download_reset = 1.0  # every download is cut
    code, out, err = await _batch(sandbox, source, tmp_path / "out")
    assert code == 1 and "download failed 4" in out, out + err
    assert not list((tmp_path / "out").glob("*.mp4"))
    sandbox.faults.download_reset = 0.0
    code, out, err = await _batch(sandbox, source, tmp_path / "out")
    assert code == 0, err
    assert len(list((tmp_path / "out").glob("*.mp4"))) == 4
    assert sandbox.stats.submits_accepted == 4
    assert all(Path(str(r["path"])).exists() for r in _manifest(tmp_path / "out"))


async def test_a_render_failure_is_reported_and_rendered_again_only_when_asked(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    track = sandbox.add_track(fail="bad audio")
    source = _jsonl(tmp_path / "t.jsonl", [dict(zip(("task_id", "audio_id"), track, strict=True))])
    code, out, err = await _batch(sandbox, source, tmp_path / "out")
    assert code == 1 and "render failed 1" in out and "--retry-failed" in err
    code, out, err = await _batch(sandbox, source, tmp_path / "out")
    assert code == 1 and sandbox.stats.submits_accepted == 1
    code, out, err = await _batch(sandbox, source, tmp_path / "out", "--retry-failed")
    assert sandbox.stats.submits_accepted == 2


async def test_one_ctrl_c_exits_within_seconds_with_the_rerun_command(tmp_path: Path) -> None:
    async with Sandbox(render_time=(0.2, 1.0), seed=3) as sb:
        source = _jsonl(tmp_path / "t.jsonl", _rows(sb, 200))
        env = dict(os.environ, APIKLEY_API_KEY=sb.api_key, SUNO_MP4_BASE_URL=sb.base_url)
        # A tight rate limit: most submits wait in the queue when Ctrl-C comes.
        command = [*CLI, "batch", str(source), "--out-dir", str(tmp_path / "out")]
        command += ["--rate-limit", "5/1", "--no-download"]
        with anyio.fail_after(60):
            async with await anyio.open_process(command, env=env) as proc:
                assert proc.stdout is not None and proc.stderr is not None
                async for chunk in TextReceiveStream(proc.stdout):
                    if "done   " in chunk:
                        break
                proc.send_signal(signal.SIGINT)
                start = time.monotonic()
                await proc.wait()
                took = time.monotonic() - start
                err = (await proc.stderr.receive()).decode()
        assert proc.returncode == 130
        assert "run the same command again" in err
        print(f"\nCtrl-C to exit: {took:.2f} s")  # a figure, not an assertion (busy machines)
        billed = sb.stats.submits_accepted
        code, _, err = await _batch(sb, source, tmp_path / "out", "--no-download")
        assert code == 0, err
        assert sorted(sb.stats.submits.values()) == [1] * 200 and billed < 200


async def test_a_second_batch_in_the_same_folder_is_refused(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    source = _jsonl(tmp_path / "t.jsonl", _rows(sandbox, 1))
    with open(out / ".suno-mp4.lock", "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        code, _, err = await _batch(sandbox, source, out)
    assert code == 2 and "another batch" in err
    assert sandbox.stats.submits_accepted == 0


async def test_a_manifest_of_the_previous_version_is_carried_over(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    from suno_mp4 import Client

    rows = _rows(sandbox, 2)
    async with Client(sandbox.api_key, base_url=sandbox.base_url) as client:
        job = await client.create_video(rows[0]["task_id"], rows[0]["audio_id"])
    out = tmp_path / "out"
    out.mkdir()
    old = {**rows[0], "key": "[...]", "line": 1, "state": "submitted", "video_task_id": job.task_id}
    (out / "manifest.jsonl").write_text(json.dumps(old) + "\n")
    source = _jsonl(tmp_path / "t.jsonl", rows)
    code, _, err = await _batch(sandbox, source, out, "--no-download")
    assert code == 0, err
    assert sorted(sandbox.stats.submits.values()) == [1, 1]  # the first one was not re-sent


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
async def test_a_run_stopped_while_importing_the_old_manifest_bills_nothing_twice(
    tmp_path: Path, sig: signal.Signals
) -> None:
    async with Sandbox(render_time=0.05, renderer=PlaceholderRenderer()) as sb:
        await _stop_while_importing_then_rerun(sb, tmp_path, sig)


async def _stop_while_importing_then_rerun(
    sandbox: Sandbox, tmp_path: Path, sig: signal.Signals
) -> None:
    import sqlite3

    from suno_mp4 import Client

    # 600 rows the previous version submitted, in its manifest; the first run of this
    # version is stopped while it imports them (the import must then go on, not count
    # what it had for all: the rest would be billed again).
    rows = _rows(sandbox, 600)
    out = tmp_path / "out"
    out.mkdir()
    lines = []
    async with Client(sandbox.api_key, base_url=sandbox.base_url) as client:

        async def submit(i: int, row: dict[str, str]) -> None:
            job = await client.create_video(row["task_id"], row["audio_id"])
            old = {**row, "key": f"old-{i}", "state": "submitted", "video_task_id": job.task_id}
            lines.append(json.dumps(old) + "\n")

        async with anyio.create_task_group() as tg:
            for i, row in enumerate(rows):
                tg.start_soon(submit, i, row)
    (out / "manifest.jsonl").write_text("".join(lines))
    source = _jsonl(tmp_path / "t.jsonl", rows)
    env = dict(os.environ, APIKLEY_API_KEY=sandbox.api_key, SUNO_MP4_BASE_URL=sandbox.base_url)
    wide = ["--no-download", "--max-in-flight", "1000"]
    command = [*CLI, "batch", str(source), "--out-dir", str(out), *wide]
    with anyio.fail_after(90):
        async with await anyio.open_process(command, env=env) as process:
            while process.returncode is None:  # stop it once records are being imported
                if (out / "jobs.db").exists():
                    try:
                        with sqlite3.connect(out / "jobs.db", timeout=5) as db:
                            if db.execute("SELECT count(*) FROM jobs").fetchone()[0] > 0:
                                break
                    except sqlite3.OperationalError:
                        pass  # the table is not made yet
                await anyio.sleep(0.005)
            if process.returncode is None:
                process.send_signal(sig)
            await process.wait()
    code, _, err = await _batch(sandbox, source, out, *wide)
    assert code == 0, err
    assert sorted(sandbox.stats.submits.values()) == [1] * 600


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_bad_byte_or_a_huge_number_fails_its_row_alone(tmp_path: Path, suffix: str) -> None:
    from suno_mp4._batchfile import Row, iter_rows

    huge = "9" * 5000  # more digits than int() takes
    if suffix == ".csv":
        lines = [b"task_id,audio_id", b"t1,a1", b"t\xff2,a2", b"t3,a\xc3", b"t4,a4"]
    else:
        lines = [
            b'{"task_id": "t1", "audio_id": "a1"}',
            b'{"task_id": "t\xff2", "audio_id": "a2"}',
            b'{"task_id": "t3", "audio_id": ' + huge.encode() + b"}",
            b'{"task_id": "t4", "audio_id": "a4"}',
        ]
    # Then enough good rows that the file is read in several chunks of text.
    shape = b"t%d,a%d" if suffix == ".csv" else b'{"task_id": "t%d", "audio_id": "a%d"}'
    rows = [shape % (i, i) for i in range(5, 1000)]
    source = tmp_path / f"t{suffix}"
    source.write_bytes(b"\r\n".join(lines + rows) + b"\r\n")
    items = list(iter_rows(source))
    good = [item.request.task_id for item in items if isinstance(item, Row)]
    bad = [str(item) for item in items if not isinstance(item, Row)]
    assert good == ["t1", "t4", *(f"t{i}" for i in range(5, 1000))]
    first = 3 if suffix == ".csv" else 2
    assert bad[0] == f"line {first}: task_id is not UTF-8 text"
    assert bad[1].startswith(f"line {first + 1}: ")
    assert len(bad) == 2


async def test_an_output_folder_that_cannot_be_used_is_one_line_not_a_traceback(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = _jsonl(tmp_path / "t.jsonl", _rows(sandbox, 2))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "jobs.db").write_bytes(b"not a database" * 100)
    (tmp_path / "a-file").write_text("")
    for out, code, words in [
        (corrupt, 1, "job store"),
        (tmp_path / "a-file" / "out", 2, "Not a directory"),
    ]:
        got, _, err = await _batch(sandbox, source, out)
        assert got == code and words in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert sandbox.stats.submits_accepted == 0


#: ``suno-mp4 batch`` whose store another program locks for writing after five rows (a
#: backup, an ``sqlite3`` shell), with a busy timeout of 0.5 s instead of 30 s.
_LOCKED_AFTER_FIVE = """
import sqlite3, sys
import suno_mp4._cli_batch
from suno_mp4 import SQLiteJobStore
from suno_mp4.cli import main

class LockedAfterFive(SQLiteJobStore):
    def __init__(self, path):
        super().__init__(path, busy_timeout=0.5)
        self.inserts = 0

    async def insert(self, record):
        self.inserts += 1
        if self.inserts == 6:
            self.blocker = sqlite3.connect(self.path, isolation_level=None)
            self.blocker.execute("BEGIN IMMEDIATE")  # held until this process ends
        return await super().insert(record)

suno_mp4._cli_batch.SQLiteJobStore = LockedAfterFive
sys.exit(main(sys.argv[1:]))
"""


async def test_a_store_locked_mid_run_stops_the_batch_at_once_and_the_rerun_bills_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = _jsonl(tmp_path / "t.jsonl", _rows(sandbox, 60))
    out = tmp_path / "out"
    env = dict(os.environ, APIKLEY_API_KEY=sandbox.api_key, SUNO_MP4_BASE_URL=sandbox.base_url)
    args = ["batch", str(source), "--out-dir", str(out), "--no-download", "--max-in-flight", "5"]
    # 55 rows at 0.5 s each would pass the deadline: the run must stop at the first.
    with anyio.fail_after(15):
        done = await anyio.run_process(
            [sys.executable, "-c", _LOCKED_AFTER_FIVE, *args], env=env, check=False
        )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "stopped" in err and "locked" in err and "run the same command again" in err
    assert sandbox.stats.submits_accepted == 5  # nothing was sent for the row that failed
    code, _, err = await _batch(sandbox, source, out, "--no-download")
    assert code == 0, err
    assert sorted(sandbox.stats.submits.values()) == [1] * 60
