"""The sandbox renders real videos end to end: SDK -> sandbox -> ffmpeg -> download -> probe."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream
from suno_mp4_sandbox import Sandbox

from suno_mp4 import CallbackListener, Client, VideoGenerationError

from .conftest import FAST_POLL

pytest.importorskip("imageio_ffmpeg")
from suno_mp4_sandbox._probe import probe
from suno_mp4_sandbox._synth import synth_demo_track

pytestmark = pytest.mark.anyio


async def test_a_registered_track_becomes_a_playable_music_video(tmp_path: Path) -> None:
    track = synth_demo_track(tmp_path / "song.wav", seconds=3.0)
    async with Sandbox(render=True, render_time=0) as sb:
        task_id, audio_id = sb.add_track(track, title="Кино 音楽")
        async with Client(
            sb.api_key, base_url=sb.base_url, callbacks=CallbackListener(), poll=FAST_POLL
        ) as client:
            job = await client.create_video(
                task_id, audio_id, author="DJ 'Q': 100%", domain_name="x.io"
            )
            with anyio.fail_after(60):
                video = await job
            path = await client.download(video, tmp_path / "clip.mp4")
    info = probe(path)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height) == (720, 1280) and info.moov_before_mdat
    assert abs(info.duration - 3.0) < 0.1


async def test_bad_audio_fails_the_task_with_its_reason(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"this is not audio" * 100)
    async with Sandbox(render=True, render_time=0) as sb:
        task_id, audio_id = sb.add_track(bad)
        async with Client(
            sb.api_key, base_url=sb.base_url, callbacks=CallbackListener(), poll=FAST_POLL
        ) as client:
            job = await client.create_video(task_id, audio_id)
            with anyio.fail_after(60), pytest.raises(VideoGenerationError) as info:
                await job
    assert job.resolved_by == "callback"
    assert "audio" in (info.value.error_message or "")


async def test_sandbox_command_registers_a_folder_of_tracks(tmp_path: Path) -> None:
    synth_demo_track(tmp_path / "one.wav", seconds=1.0)
    synth_demo_track(tmp_path / "two.wav", seconds=1.0)
    (tmp_path / "notes.txt").write_text("not audio")
    args = [sys.executable, "-m", "suno_mp4", "sandbox", "--port", "0", "--tracks", str(tmp_path)]
    lines: list[str] = []
    with anyio.fail_after(30):
        async with await anyio.open_process(args) as proc:
            assert proc.stdout is not None
            buffer = ""
            async for chunk in TextReceiveStream(proc.stdout):
                buffer += chunk
                if "admin routes" in buffer:
                    break
            proc.send_signal(signal.SIGINT)
            assert await proc.wait() == 0
    lines = [line for line in buffer.splitlines() if line.startswith("track:")]
    assert len(lines) == 2
    assert "one.wav" in lines[0] and "two.wav" in lines[1]
    assert all("taskId=" in line and "audioId=" in line for line in lines)
