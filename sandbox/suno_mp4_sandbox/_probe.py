"""What a media file holds (length, codecs, size, frame rate, pixel format, atom order)
and what one of its frames looks like, read with the ffmpeg of the ``imageio-ffmpeg``
wheel: the wheel ships ffmpeg but no ffprobe, so the facts come from ``ffmpeg -i``."""

from __future__ import annotations

import os
import re
import struct
import subprocess
from pathlib import Path

import attrs

__all__ = [
    "MediaInfo",
    "ProbeError",
    "extract_frame",
    "ffmpeg_exe",
    "frame_rgb",
    "moov_before_mdat",
    "parse_ffmpeg_info",
    "probe",
]

#: ``ffmpeg -i`` reads only the headers; a minute is far beyond any sane file.
TIMEOUT = 60.0

_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\S+: Video: (\w+).*")
_SIZE = re.compile(r", (\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r", ([\d.]+) fps\b")
# The pixel format follows the codec's description, e.g. "h264 (High) (avc1 / ...), yuv420p(tv".
_PIX_FMT = re.compile(r"Video: \w+(?: \([^)]*\))*, (\w+)")
_AUDIO = re.compile(r"Stream #\S+: Audio: (\w+)")


class ProbeError(Exception):
    """The file is not media that ffmpeg can read."""


@attrs.frozen
class MediaInfo:
    """The facts a test or the demo checks about a video (or an audio track).

    The video fields are None for a file without a video stream, such as a track.
    """

    duration: float
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    audio_codec: str | None = None
    pix_fmt: str | None = None
    #: The MP4 index (``moov``) comes before the media data (``mdat``), so a player
    #: can start before the download ends ("fast start"). False for non-MP4 files.
    moov_before_mdat: bool = False


def ffmpeg_exe() -> str:
    """The path of the ffmpeg binary that the ``imageio-ffmpeg`` wheel ships.

    Raises ImportError, saying which extra to install, when the wheel is missing or
    holds no binary for this platform.
    """
    try:
        import imageio_ffmpeg

        exe: str = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise ImportError(
            f"rendering needs ffmpeg from imageio-ffmpeg: pip install 'suno-mp4[render]' ({exc})"
        ) from exc
    return exe


def parse_ffmpeg_info(text: str) -> MediaInfo:
    """Parse what ``ffmpeg -hide_banner -i FILE`` prints on stderr (the first video and
    the first audio stream)."""
    duration = _DURATION.search(text)
    if duration is None:
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        detail = f": {lines[-1]}" if lines else ""
        raise ProbeError(f"ffmpeg reports no duration, not a media file{detail}")
    hours, minutes, seconds = duration.groups()
    info = MediaInfo(duration=int(hours) * 3600 + int(minutes) * 60 + float(seconds))
    if (video := _VIDEO.search(text)) and (size := _SIZE.search(video.group())):
        fps = _FPS.search(video.group())
        pix_fmt = _PIX_FMT.search(video.group())
        info = attrs.evolve(
            info,
            video_codec=video.group(1),
            width=int(size.group(1)),
            height=int(size.group(2)),
            fps=None if fps is None else float(fps.group(1)),
            pix_fmt=None if pix_fmt is None else pix_fmt.group(1),
        )
    if audio := _AUDIO.search(text):
        info = attrs.evolve(info, audio_codec=audio.group(1))
    return info


def moov_before_mdat(path: str | os.PathLike[str]) -> bool:
    """Whether the file's top-level MP4 atoms put ``moov`` before ``mdat``.

    Walks the atom headers only (size, type), so it costs a few reads however large
    the file is. False when the file is no MP4 or lacks either atom.
    """
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        offset = 0
        while offset + 8 <= end:
            fh.seek(offset)
            size, kind = struct.unpack(">I4s", fh.read(8))
            if size == 1:  # a 64-bit size follows the type
                (size,) = struct.unpack(">Q", fh.read(8))
            elif size == 0:  # the atom runs to the end of the file
                size = end - offset
            if kind == b"moov":
                return True
            if kind == b"mdat" or size < 8:
                return False
            offset += size
    return False


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Probe ``path`` with the bundled ffmpeg (needs the ``render`` extra). Blocking.

    Raises ImportError without imageio-ffmpeg and ProbeError for a file that is no media.
    """
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", os.fspath(path)]
    # ffmpeg exits 1 here ("no output file"): the report on stderr is what we want.
    result = subprocess.run(
        command, capture_output=True, text=True, errors="replace", timeout=TIMEOUT, check=False
    )
    info = parse_ffmpeg_info(result.stderr)
    return attrs.evolve(info, moov_before_mdat=moov_before_mdat(path))


def _decode_one_frame(video: Path, at_seconds: float, output: list[str]) -> bytes:
    # -ss before -i seeks to the keyframe before, then decodes up to the exact time.
    command = [
        *(ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error"),
        *("-ss", f"{at_seconds:.3f}", "-i", os.fspath(video), "-frames:v", "1", "-an"),
        *output,
    ]
    result = subprocess.run(command, capture_output=True, timeout=TIMEOUT, check=False)
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        raise ProbeError(f"no frame at {at_seconds} s of {video}: {lines[-1] if lines else '?'}")
    return result.stdout


def extract_frame(video: Path, at_seconds: float, out_png: Path) -> Path:
    """Save the frame shown at ``at_seconds`` as a PNG (a screenshot) and return its path.

    The same as ``ffmpeg -ss SECONDS -i VIDEO -frames:v 1 OUT.png``.
    """
    _decode_one_frame(video, at_seconds, ["-y", os.fspath(out_png)])
    if not out_png.is_file():
        raise ProbeError(f"no frame at {at_seconds} s of {video}: the video is shorter")
    return out_png


def frame_rgb(video: Path, at_seconds: float) -> tuple[int, int, bytes]:
    """The frame shown at ``at_seconds`` as ``(width, height, rgb24 bytes)``, row by row:
    for comparing frames without an imaging library."""
    info = probe(video)
    if info.width is None or info.height is None:
        raise ProbeError(f"{video} has no video stream")
    data = _decode_one_frame(video, at_seconds, ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
    if len(data) != info.width * info.height * 3:
        raise ProbeError(f"no frame at {at_seconds} s of {video}: the video is shorter")
    return info.width, info.height, data
