"""The ``suno-mp4`` command, run as a real subprocess against a sandbox on loopback."""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream
from suno_mp4_sandbox import Sandbox

pytestmark = pytest.mark.anyio

# The installed console script, as a user runs it (the module as a fallback).
_SCRIPT = Path(sys.executable).with_name("suno-mp4")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "suno_mp4.cli"]


def _env(sb: Sandbox, key: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["APIKLEY_API_KEY"] = key or sb.api_key
    env["SUNO_MP4_BASE_URL"] = sb.base_url
    return env


async def _run(sb: Sandbox, *args: str, key: str | None = None) -> tuple[int, str, str]:
    with anyio.fail_after(60):
        done = await anyio.run_process([*CLI, *args], env=_env(sb, key), check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.fixture
async def sb() -> Sandbox:
    async with Sandbox(render_time=0.1, seed=2) as sandbox:
        yield sandbox  # type: ignore[misc]


async def test_create_prints_the_video_task_id(sb: Sandbox) -> None:
    task_id, audio_id = sb.add_track()
    code, out, _ = await _run(sb, "create", task_id, audio_id, "--author", "DJ")
    assert code == 0
    video_task_id = out.strip().split(": ")[1]
    assert sb.task(video_task_id).author == "DJ"


async def test_create_wait_json_and_download(sb: Sandbox, tmp_path: Path) -> None:
    task_id, audio_id = sb.add_track()
    target = tmp_path / "clip.mp4"
    code, out, err = await _run(
        sb, "create", task_id, audio_id, "--wait", "--json", "--download", str(target)
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["video_url"] == sb.task(data["video_task_id"]).video_url
    assert Path(data["path"]) == target and target.stat().st_size > 0


async def test_status_json_and_plain(sb: Sandbox) -> None:
    task_id, audio_id = sb.add_track()
    _, out, _ = await _run(sb, "create", task_id, audio_id, "--wait", "--json")
    video_task_id = json.loads(out)["video_task_id"]
    code, out, _ = await _run(sb, "status", video_task_id, "--json")
    assert code == 0
    assert json.loads(out)["successFlag"] == "CALLBACK_EXCEPTION"  # no listener: undeliverable
    code, out, _ = await _run(sb, "status", video_task_id)
    assert code == 0 and "status: CALLBACK_EXCEPTION" in out
    assert "\x1b[" not in out  # not a terminal: no colour codes


async def test_wait_and_download_by_task_id(sb: Sandbox, tmp_path: Path) -> None:
    task_id, audio_id = sb.add_track()
    _, out, _ = await _run(sb, "create", task_id, audio_id)
    video_task_id = out.strip().split(": ")[1]
    code, out, _ = await _run(sb, "wait", video_task_id, "--timeout", "30")
    assert code == 0 and "video_url: " in out
    code, out, _ = await _run(sb, "download", video_task_id, str(tmp_path))
    assert code == 0 and Path(out.strip()).parent == tmp_path


async def test_bad_key_exits_3_without_printing_the_key(sb: Sandbox) -> None:
    task_id, audio_id = sb.add_track()
    code, out, err = await _run(sb, "create", task_id, audio_id, key="sk-wrong-key-123456")
    assert code == 3
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "sk-wrong-key-123456" not in out + err


async def test_no_credits_exits_3(sb: Sandbox) -> None:
    sb.credits = 0
    code, _, err = await _run(sb, "create", *sb.add_track())
    assert code == 3 and "credits" in err


async def test_usage_errors_exit_2(sb: Sandbox) -> None:
    code, _, err = await _run(sb, "create", *sb.add_track(), "--author", "x" * 51)
    assert code == 2 and "at most 50" in err
    code, _, _ = await _run(sb, "create")
    assert code == 2
    assert sum(sb.stats.requests.values()) == 0


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["task_id", "audio_id", "author", "domain_name"])
        writer.writeheader()
        writer.writerows(rows)


def _manifest(path: Path) -> dict[str, dict[str, object]]:
    last: dict[str, dict[str, object]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        last[record["key"]] = record
    return last


async def test_batch_of_300_with_10_failures(sb: Sandbox, tmp_path: Path) -> None:
    rows = []
    for i in range(300):
        task_id, audio_id = sb.add_track(fail="broken audio" if i % 30 == 7 else None)
        rows.append(
            {"task_id": task_id, "audio_id": audio_id, "author": f"A{i}", "domain_name": ""}
        )
    source = tmp_path / "tracks.csv"
    _write_csv(source, rows)
    out_dir = tmp_path / "out"
    code, out, err = await _run(
        sb,
        "batch",
        str(source),
        "--out-dir",
        str(out_dir),
        "--max-in-flight",
        "50",
        "--listen",
        "127.0.0.1:0",
    )
    assert code == 1, err  # some rows failed
    records = _manifest(out_dir / "manifest.jsonl")
    done = [r for r in records.values() if r["state"] == "done"]
    failed = [r for r in records.values() if r["state"] == "failed"]
    assert (len(done), len(failed)) == (290, 10)
    assert all(Path(str(r["path"])).exists() for r in done)
    assert all("broken audio" in str(r["error"]) for r in failed)
    assert set(sb.stats.submits.values()) == {1}
    assert "done 290, render failed 10" in out
    # A re-run skips everything: nothing is submitted again; the failures are reported.
    code, out, err = await _run(sb, "batch", str(source), "--out-dir", str(out_dir))
    assert "skipped 290, render failed 10" in out
    assert "--retry-failed" in err
    assert set(sb.stats.submits.values()) == {1}


async def test_malformed_rows_are_reported_with_line_numbers(sb: Sandbox, tmp_path: Path) -> None:
    task_id, audio_id = sb.add_track()
    source = tmp_path / "tracks.csv"
    source.write_text(
        "taskId,audioId,author\n"
        f"{task_id},{audio_id},ok\n"
        f",{audio_id},missing task\n"
        f"{task_id},{audio_id},{'x' * 51}\n"
        f'{task_id},{audio_id},"unterminated\n'
    )
    code, out, err = await _run(sb, "batch", str(source), "--out-dir", str(tmp_path), "--strict")
    assert code == 2 and "line 3: missing task_id" in err and "line 4" in err
    assert sum(sb.stats.submits.values()) == 0
    code, out, err = await _run(
        sb, "batch", str(source), "--out-dir", str(tmp_path), "--listen", "127.0.0.1:0"
    )
    assert code == 1 and "done 1" in out
    assert sb.stats.submits[(task_id, audio_id)] == 1


async def test_batch_interrupted_and_rerun_submits_nothing_twice(tmp_path: Path) -> None:
    async with Sandbox(render_time=(0.2, 1.0), seed=4) as sandbox:
        rows = [
            dict(zip(("task_id", "audio_id"), sandbox.add_track(), strict=True)) for _ in range(120)
        ]
        source = tmp_path / "tracks.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out_dir = tmp_path / "out"
        args = [
            *CLI,
            "batch",
            str(source),
            "--out-dir",
            str(out_dir),
            "--max-in-flight",
            "20",
            "--listen",
            "127.0.0.1:0",
            "--no-download",
        ]
        with anyio.fail_after(60):
            async with await anyio.open_process(args, env=_env(sandbox)) as proc:
                assert proc.stdout is not None
                finished = 0
                async for chunk in TextReceiveStream(proc.stdout):
                    finished += chunk.count("done   ")
                    if finished >= 15:
                        break
                proc.send_signal(signal.SIGINT)
                await proc.wait()
            assert proc.returncode == 130
            first = _manifest(out_dir / "manifest.jsonl")
            assert len(first) == 120  # every row, with what the store knows of it
            assert 15 <= sum(r["state"] != "pending" for r in first.values()) < 120
            code, _, err = await _run(
                sandbox,
                "batch",
                str(source),
                "--out-dir",
                str(out_dir),
                "--no-download",
                "--listen",
                "127.0.0.1:0",
            )
        assert code == 0, err
        records = _manifest(out_dir / "manifest.jsonl")
        assert len(records) == 120 and all(r["state"] == "done" for r in records.values())
        # Every row was submitted exactly once over both runs.
        assert sorted(sandbox.stats.submits.values()) == [1] * 120


# What each command says when something goes wrong: the documented exit code, one line (or
# one JSON object with --json), never a traceback, never the key.


async def test_a_create_wait_that_fails_after_the_submit_still_names_the_video(
    sb: Sandbox, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    bad = str(blocker / "clip.mp4")  # under a file: the download cannot be written
    code, out, err = await _run(
        sb, "create", *sb.add_track(), "--wait", "--json", "--download", bad
    )
    assert code == 2, err
    error = json.loads(out)["error"]
    video_task_id = error["video_task_id"]
    assert sb.task(video_task_id).video_url  # billed and made: the id is what the user needs
    assert f"suno-mp4 wait {video_task_id}" in err and "Traceback" not in err


async def test_wait_downloads_into_a_folder_named_with_a_slash(sb: Sandbox, tmp_path: Path) -> None:
    code, out, err = await _run(sb, "create", *sb.add_track(), "--wait")
    assert code == 0, err
    video_task_id = out.split("video_task_id: ")[1].split()[0]
    folder = f"{tmp_path}/videos/"
    code, out, err = await _run(sb, "wait", video_task_id, "--download", folder)
    assert code == 0, err
    files = list(Path(folder).iterdir())
    assert len(files) == 1 and files[0].is_file() and files[0].stat().st_size > 0


@pytest.mark.parametrize("timeout", ["nan", "-5"])
async def test_a_timeout_that_is_no_number_of_seconds_is_a_usage_error(
    sb: Sandbox, timeout: str
) -> None:
    code, _, err = await _run(sb, "wait", "some-task", "--timeout", timeout)
    assert code == 2 and "--timeout" in err
    assert sum(sb.stats.requests.values()) == 0


@pytest.mark.parametrize(
    "args", [["create", "--json"], ["wait", "x", "--json", "--timeout", "soon"]]
)
async def test_json_usage_errors_are_one_json_object(sb: Sandbox, args: list[str]) -> None:
    code, out, _ = await _run(sb, *args)
    assert code == 2
    error = json.loads(out)["error"]
    assert error["exit_code"] == 2 and error["message"]


async def test_status_masks_the_key_and_prints_valid_json_whatever_the_server_sends(
    tmp_path: Path,
) -> None:
    from aiohttp import web

    from .hostile import KEY, envelope, hostile_server

    async with hostile_server() as server:
        data = {
            "taskId": "t1",
            "successFlag": "GENERATE_MP4_FAILED",
            "errorCode": 500,
            "errorMessage": f"bad key {KEY}",
            "callbackUrl": f"http://127.0.0.1:9/cb?key={KEY}",
        }
        body = json.dumps(envelope(data))[:-2] + ', "score": 1e999}}'  # not JSON out
        server.details["t1"] = lambda _req: web.Response(
            body=body.encode(), content_type="application/json"
        )
        env = dict(os.environ, APIKLEY_API_KEY=KEY, SUNO_MP4_BASE_URL=server.base_url)
        for args in (["status", "t1", "--json"], ["status", "t1"]):
            with anyio.fail_after(60):
                done = await anyio.run_process([*CLI, *args], env=env, check=False)
            out = done.stdout.decode()
            assert done.returncode == 0, done.stderr.decode()
            assert KEY not in out and "bad key" in out
            if "--json" in args:
                parsed = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
                assert parsed["score"] == "inf"


@pytest.mark.parametrize("command", [["sandbox", "--port", "0"], ["demo"]])
async def test_commands_needing_the_sandbox_say_how_to_get_it(
    command: list[str], tmp_path: Path
) -> None:
    # As with only `suno-mp4[cli]` installed: the sandbox is its own distribution.
    code = (
        "import sys; sys.modules['suno_mp4_sandbox'] = None\n"
        "from suno_mp4.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-c", code, *command], cwd=tmp_path, check=False
        )
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "pip install 'suno-mp4[sandbox]'" in err and "Traceback" not in err


async def test_download_of_a_task_still_rendering_says_to_wait_for_it() -> None:
    async with Sandbox(render_time=60) as slow:
        code, out, _ = await _run(slow, "create", *slow.add_track())
        assert code == 0
        video_task_id = out.split("video_task_id: ")[1].split()[0]
        code, out, _ = await _run(slow, "download", video_task_id, "x.mp4", "--json")
    error = json.loads(out)["error"]
    assert code == 2 and error["type"] == "InvalidRequestError"  # not "expired"
    assert f"suno-mp4 wait {video_task_id}" in error["message"]


async def test_a_ctrl_c_during_create_wait_json_still_names_the_paid_video() -> None:
    async with Sandbox(render_time=60) as slow:
        args = [*CLI, "create", *slow.add_track(), "--wait", "--json"]
        with anyio.fail_after(60):
            async with await anyio.open_process(args, env=_env(slow)) as proc:
                assert proc.stderr is not None and proc.stdout is not None
                async for chunk in TextReceiveStream(proc.stderr):
                    if "submitted: video task" in chunk:
                        break
                proc.send_signal(signal.SIGINT)
                await proc.wait()
                out = b"".join([chunk async for chunk in proc.stdout]).decode()
    assert proc.returncode == 130
    error = json.loads(out)["error"]
    assert error["type"] == "Interrupted"
    assert slow.task(error["video_task_id"]) is not None  # the paid task, by its id


async def test_download_of_a_finished_task_without_its_url_says_it_expired() -> None:
    from aiohttp import web

    from .hostile import KEY, envelope, hostile_server

    async with hostile_server() as server:
        server.details["t1"] = lambda _req: web.json_response(
            envelope({"taskId": "t1", "successFlag": "SUCCESS"})  # made; its URL is gone
        )
        env = dict(os.environ, APIKLEY_API_KEY=KEY, SUNO_MP4_BASE_URL=server.base_url)
        with anyio.fail_after(60):
            done = await anyio.run_process(
                [*CLI, "download", "t1", "x.mp4", "--json"], env=env, check=False
            )
    assert done.returncode == 1  # not "wait for it": no wait would ever end
    assert json.loads(done.stdout)["error"]["type"] == "VideoExpiredError"


async def test_demo_into_a_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [*CLI, "demo", "--out-dir", str(blocker / "out")], check=False
        )
    err = done.stderr.decode()
    assert done.returncode == 2 and err.startswith("error:") and "Traceback" not in err
