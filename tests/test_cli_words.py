"""The command line speaks CLI: JSON out (errors too) with --json, folders for downloads,
its own options in its messages, and logs to debug with."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest
from suno_mp4_sandbox import Sandbox

from suno_mp4 import Client, PollPolicy

pytestmark = pytest.mark.anyio

_SCRIPT = Path(sys.executable).with_name("suno-mp4")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "suno_mp4.cli"]


async def _run(sb: Sandbox, *args: str, **env: str) -> tuple[int, str, str]:
    full = {**os.environ, "APIKLEY_API_KEY": sb.api_key, "SUNO_MP4_BASE_URL": sb.base_url}
    full.update(env)
    with anyio.fail_after(60):
        done = await anyio.run_process([*CLI, *args], env=full, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def _finished_video_task(sb: Sandbox) -> str:
    poll = PollPolicy(initial_delay=0.05, max_interval=0.2)
    async with Client(sb.api_key, base_url=sb.base_url, poll=poll) as client:
        job = await client.create_video(*sb.add_track())
        with anyio.fail_after(20):
            await job
    return job.task_id


async def test_download_into_a_folder_that_does_not_exist_yet(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    task_id = await _finished_video_task(sandbox)
    target = tmp_path / "videos"
    code, out, err = await _run(sandbox, "download", task_id, f"{target}/", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert Path(data["path"]).parent == target and Path(data["path"]).is_file()
    assert data["is_mp4"] is False  # the test sandbox serves placeholders, and says so


async def test_errors_are_json_with_json(sandbox: Sandbox) -> None:
    code, out, err = await _run(sandbox, "status", "some-task", "--json", APIKLEY_API_KEY="bad")
    assert code == 3
    error = json.loads(out)["error"]
    assert error["type"] == "AuthenticationError" and error["code"] == 401
    assert error["exit_code"] == 3 and err == ""


async def test_messages_name_the_cli_options_not_python(sandbox: Sandbox) -> None:
    code, _, err = await _run(sandbox, "status", "t", APIKLEY_API_KEY="")
    assert code == 2 and "--api-key" in err and "Client(" not in err
    task_id, audio_id = sandbox.add_track()
    sandbox.render_time = 30.0
    code, out, _ = await _run(sandbox, "create", task_id, audio_id, "--json")
    video_task = json.loads(out)["video_task_id"]
    code, _, err = await _run(sandbox, "wait", video_task, "--timeout", "0.2")
    assert code == 1 and f"suno-mp4 wait {video_task}" in err and "client.job" not in err


async def test_batch_has_a_json_summary(sandbox: Sandbox, tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    t, a = sandbox.add_track()
    rows.write_text(json.dumps({"task_id": t, "audio_id": a}) + "\n{oops\n")
    out_dir = tmp_path / "out"
    code, out, err = await _run(sandbox, "batch", str(rows), "--out-dir", str(out_dir), "--json")
    summary = json.loads(out)
    assert code == 1 == summary["exit_code"], err  # one malformed row
    assert summary["counts"] == {"done": 1}
    assert summary["malformed_rows"][0]["line"] == 2
    assert Path(summary["manifest"]).exists()


@pytest.mark.parametrize("how", [("--verbose",), ()])
async def test_verbose_or_suno_mp4_log_shows_every_request(
    sandbox: Sandbox, how: tuple[str, ...]
) -> None:
    task_id = await _finished_video_task(sandbox)
    env = {} if how else {"SUNO_MP4_LOG": "debug"}
    code, _, err = await _run(sandbox, *how, "status", task_id, **env)
    assert code == 0, err
    assert "suno_mp4.transport: GET /api/v1/mp4/record-info" in err
    assert "-> 200" in err and "attempt 1" in err
    assert sandbox.api_key not in err
