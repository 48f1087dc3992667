"""The sandbox's ffmpeg renderer: what its videos hold, where the texts go, how it fails.

Renders are 1-3 s long so the module stays quick; the videos shared by several tests are
rendered once per module.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from suno_mp4_sandbox._probe import ffmpeg_exe, frame_rgb, moov_before_mdat, probe
from suno_mp4_sandbox._render import (
    FfmpegRenderer,
    RenderFailed,
    RenderJob,
    _choose_font,
    _fit,
    _metrics,
    _Text,
    build_ffmpeg_command,
    clean_text,
    ffmpeg_available,
)
from suno_mp4_sandbox._synth import synth_demo_track

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not ffmpeg_available(), reason="needs imageio-ffmpeg (the render extra)"),
]

TRACK_SECONDS = 3.0
#: Rows of the 720x1280 frame: the cover section with title and author, the spectrum,
#: and the band of the domain watermark.
COVER_ROWS = range(0, 740)
SPECTRUM_ROWS = range(790, 1056)
DOMAIN_ROWS = range(1150, 1280)
NASTY = "'a:b\\c%{pts}\"; [x],y"
#: Filtergraph and drawtext syntax, controls, and several scripts (emoji: no font has it).
TEXT_ALPHABET = "aZ09 '\"\\:;,%{}[]=@\n\t\r\x00\x1bЖжЁ音楽家한글éß—…🎵"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # Module scope, so the videos that several tests inspect are rendered once.
    return "asyncio"


@pytest.fixture(scope="module")
def track(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_demo_track(tmp_path_factory.mktemp("track") / "song.wav", seconds=TRACK_SECONDS)


@pytest.fixture(scope="module")
def renderer() -> FfmpegRenderer:
    return FfmpegRenderer()


@pytest.fixture(scope="module")
def job(track: Path, tmp_path_factory: pytest.TempPathFactory) -> RenderJob:
    return RenderJob(
        video_task_id="mp4_full",
        audio_path=track,
        duration=TRACK_SECONDS,
        title="Midnight Drive",
        author="Nova Lane",
        domain_name="suno-mp4.example",
        out_dir=tmp_path_factory.mktemp("videos"),
    )


@pytest.fixture(scope="module")
async def video(renderer: FfmpegRenderer, job: RenderJob) -> AsyncIterator[Path]:
    yield await renderer.render(job)


@pytest.fixture(scope="module")
async def video_without_domain(renderer: FfmpegRenderer, job: RenderJob) -> AsyncIterator[Path]:
    yield await renderer.render(attrs.evolve(job, video_task_id="mp4_nodomain", domain_name=None))


@pytest.fixture(scope="module")
async def video_without_author(renderer: FfmpegRenderer, job: RenderJob) -> AsyncIterator[Path]:
    yield await renderer.render(attrs.evolve(job, video_task_id="mp4_noauthor", author=None))


def short_job(out_dir: Path, **changes: Any) -> RenderJob:
    """A 1-second job with a synthesised track."""
    job = RenderJob("mp4_short", None, 1.0, "Title", "Author", "example.org", out_dir)
    return attrs.evolve(job, **changes)


@functools.cache
def frame(video: Path, at: float) -> tuple[int, int, bytes]:
    return frame_rgb(video, at)


def band_difference(a: Path, b: Path, rows: range, at: float = 1.5) -> float:
    """Mean absolute difference (0-255) of two videos' frames over some rows."""
    width, _, pixels_a = frame(a, at)
    _, _, pixels_b = frame(b, at)
    start, stop = rows.start * width * 3, rows.stop * width * 3
    band = zip(pixels_a[start:stop], pixels_b[start:stop], strict=True)
    return sum(abs(x - y) for x, y in band) / (stop - start)


def outside(rows: range, height: int = 1280) -> list[range]:
    """The rows above and below a band."""
    return [band for band in (range(0, rows.start), range(rows.stop, height)) if band]


# What the video is


async def test_video_is_h264_and_aac_in_yuv420p_at_30_fps_720x1280(video: Path) -> None:
    info = probe(video)
    assert (info.video_codec, info.audio_codec, info.pix_fmt) == ("h264", "aac", "yuv420p")
    assert (info.width, info.height, info.fps) == (720, 1280, 30.0)


async def test_video_lasts_as_long_as_its_track(video: Path) -> None:
    assert probe(video).duration == pytest.approx(TRACK_SECONDS, abs=0.1)


async def test_video_index_precedes_its_media_data_for_fast_start(video: Path) -> None:
    assert probe(video).moov_before_mdat


async def test_video_is_named_after_the_task_and_its_work_files_are_gone(
    video: Path, job: RenderJob
) -> None:
    assert video == job.out_dir / "mp4_full.mp4"
    assert [p.name for p in job.out_dir.iterdir() if p.name.startswith(".")] == []


async def test_the_visualisation_moves(video: Path) -> None:
    assert band_difference(video, video, SPECTRUM_ROWS, at=0.5) == 0
    width, _, early = frame_rgb(video, 0.5)
    _, _, late = frame_rgb(video, 2.2)
    start, stop = SPECTRUM_ROWS.start * width * 3, SPECTRUM_ROWS.stop * width * 3
    changed = sum(abs(x - y) > 40 for x, y in zip(early[start:stop], late[start:stop], strict=True))
    assert changed > 0.02 * (stop - start)


@pytest.mark.parametrize("suffix", ["mp3", "flac"])
async def test_compressed_tracks_render_at_their_own_length(
    suffix: str, track: Path, renderer: FfmpegRenderer, tmp_path: Path
) -> None:
    compressed = tmp_path / f"song.{suffix}"
    await anyio.run_process([ffmpeg_exe(), "-v", "error", "-i", str(track), str(compressed)])
    # A wrong duration in the job does not matter: the file's own length wins.
    job = short_job(tmp_path, audio_path=compressed, duration=99.0)
    info = probe(await renderer.render(job))
    assert info.duration == pytest.approx(TRACK_SECONDS, abs=0.1)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")


async def test_without_a_file_a_track_of_the_job_duration_is_synthesised(
    renderer: FfmpegRenderer, tmp_path: Path
) -> None:
    info = probe(await renderer.render(short_job(tmp_path, duration=1.5)))
    assert info.duration == pytest.approx(1.5, abs=0.1)
    assert info.audio_codec == "aac"


async def test_the_bare_command_renders_on_its_own(tmp_path: Path) -> None:
    out = tmp_path / "bare.mp4"
    await anyio.run_process(build_ffmpeg_command(short_job(tmp_path), out, ffmpeg=ffmpeg_exe()))
    assert probe(out).duration == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize(("preset", "size"), [("square", (1080, 1080)), ("landscape", (1280, 720))])
async def test_presets_set_the_frame_size(
    preset: str, size: tuple[int, int], tmp_path: Path
) -> None:
    renderer = FfmpegRenderer(preset=preset)  # type: ignore[arg-type]
    info = probe(await renderer.render(short_job(tmp_path)))
    assert (info.width, info.height) == size


# Where the texts go


async def test_domain_name_is_drawn_in_the_bottom_band_only(
    video: Path, video_without_domain: Path
) -> None:
    assert band_difference(video, video_without_domain, DOMAIN_ROWS) > 1.0
    for rows in outside(DOMAIN_ROWS):
        assert band_difference(video, video_without_domain, rows) < 0.1


async def test_author_is_drawn_in_the_cover_section_only(
    video: Path, video_without_author: Path
) -> None:
    # One short line in a 740-row band: a small mean, but far from the zero elsewhere.
    assert band_difference(video, video_without_author, COVER_ROWS) > 0.2
    for rows in outside(COVER_ROWS):
        assert band_difference(video, video_without_author, rows) < 0.1


@pytest.mark.parametrize("text", ["Кино", "音楽家", NASTY, "line one\nline two\r\n\ttabbed"])
async def test_text_in_any_script_or_with_filtergraph_syntax_renders(
    text: str, renderer: FfmpegRenderer, tmp_path: Path
) -> None:
    job = short_job(tmp_path, title=text, author=text, domain_name=text[:50])
    assert probe(await renderer.render(job)).video_codec == "h264"


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=st.text(st.sampled_from(TEXT_ALPHABET), min_size=1, max_size=50))
async def test_arbitrary_author_and_domain_render(
    text: str, renderer: FfmpegRenderer, tmp_path: Path
) -> None:
    job = short_job(tmp_path, author=text, domain_name=text)
    assert probe(await renderer.render(job)).video_codec == "h264"


async def test_out_dir_with_filtergraph_syntax_in_its_path_renders(
    renderer: FfmpegRenderer, tmp_path: Path
) -> None:
    out_dir = tmp_path / "we'ird: [dir], a;b=c %d"
    out_dir.mkdir()
    video = await renderer.render(short_job(out_dir))
    assert video.parent == out_dir and probe(video).video_codec == "h264"


def test_text_is_cleaned_to_one_visible_line() -> None:
    assert clean_text("  line one\nline two\r\n\t tabbed\x00\x1b ") == "line one line two tabbed"
    assert clean_text(" \n\t") is None and clean_text(None) is None and clean_text("") is None


@given(text=st.text(max_size=80))
def test_cleaned_text_has_no_control_characters_and_is_stable(text: str) -> None:
    cleaned = clean_text(text)
    if cleaned is not None:
        assert cleaned == cleaned.strip() and "  " not in cleaned
        assert all(c == " " or c.isprintable() or not c.isspace() for c in cleaned)
        assert not any(ord(c) < 32 or ord(c) == 127 for c in cleaned)
        assert clean_text(cleaned) == cleaned


def test_each_text_gets_a_font_with_all_its_glyphs() -> None:
    fonts = ("DejaVuSans.ttf", "wqy-microhei.ttc")
    assert _choose_font("Кино", fonts) == "DejaVuSans.ttf"
    assert _choose_font("音楽家 - Nova Lane", fonts) == "wqy-microhei.ttc"
    assert _choose_font("한국어", fonts) == "wqy-microhei.ttc"


def test_long_text_shrinks_then_is_cut_to_fit() -> None:
    spec = _Text(cx=360, y=0, size=44, min_size=26, max_width=640)
    text, size = _fit("W" * 50, "DejaVuSans-Bold.ttf", spec)
    assert size == 26 and text.endswith("…")
    assert _metrics("DejaVuSans-Bold.ttf").width(text, size) <= spec.max_width
    assert _fit("Short", "DejaVuSans-Bold.ttf", spec) == ("Short", 44)


# How it fails


async def test_corrupt_audio_fails_with_a_reason_and_leaves_no_file(
    renderer: FfmpegRenderer, tmp_path: Path
) -> None:
    corrupt = tmp_path / "broken.mp3"
    corrupt.write_bytes(b"\x00\x01not audio at all" * 64)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(RenderFailed) as failed:
        await renderer.render(short_job(out_dir, audio_path=corrupt))
    assert failed.value.reason.startswith("audio could not be decoded: ")
    assert "Invalid data" in failed.value.reason
    assert list(out_dir.iterdir()) == []


async def test_a_track_to_synthesise_needs_a_positive_duration(
    renderer: FfmpegRenderer, tmp_path: Path
) -> None:
    with pytest.raises(RenderFailed, match="no track to synthesise"):
        await renderer.render(short_job(tmp_path, duration=0.0))
    assert list(tmp_path.iterdir()) == []


async def test_missing_audio_fails_with_a_reason(renderer: FfmpegRenderer, tmp_path: Path) -> None:
    with pytest.raises(RenderFailed, match=r"audio could not be decoded: .*No such file"):
        await renderer.render(short_job(tmp_path, audio_path=tmp_path / "missing.wav"))


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
async def test_cancelling_a_render_kills_ffmpeg_and_leaves_no_file(
    renderer: FfmpegRenderer, tmp_path: Path
) -> None:
    def ffmpeg_processes() -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if entry.name.isdigit() and os.fsencode(tmp_path) in cmdline:
                found.append(entry.name)
        return found

    with anyio.move_on_after(1.0) as scope:
        await renderer.render(short_job(tmp_path, duration=120.0))
    assert scope.cancelled_caught
    assert ffmpeg_processes() == []
    assert list(tmp_path.iterdir()) == []


# The demo track and the probe


def test_synth_track_has_the_asked_length(tmp_path: Path) -> None:
    wav = synth_demo_track(tmp_path / "demo.wav", seconds=2.5)
    m4a = synth_demo_track(tmp_path / "demo.m4a", seconds=2.5)
    assert probe(wav).duration == pytest.approx(2.5, abs=0.01)
    assert probe(m4a).duration == pytest.approx(2.5, abs=0.1)
    assert probe(wav).audio_codec == "pcm_s16le" and probe(m4a).audio_codec == "aac"


def test_probe_sees_an_index_after_the_media_data(tmp_path: Path) -> None:
    plain = tmp_path / "plain.mp4"
    command = [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=d=0.2:s=64x64"]
    subprocess.run([*command, "-c:v", "libx264", str(plain)], check=True)
    assert not moov_before_mdat(plain) and not probe(plain).moov_before_mdat
