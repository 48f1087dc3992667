"""What a media file holds (length, codecs, size, frame rate), read from ``ffmpeg -i`` of
the ``imageio-ffmpeg`` wheel: the wheel ships ffmpeg but no ffprobe."""

from __future__ import annotations

import os
import re
import subprocess

import attrs

__all__ = ["MediaInfo", "ProbeError", "parse_ffmpeg_info", "probe"]

_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\S+: Video: (\w+).*?, (\d{2,5})x(\d{2,5})\b(?:.*?, ([\d.]+) fps)?")
_AUDIO = re.compile(r"Stream #\S+: Audio: (\w+)")


class ProbeError(Exception):
    """The file is not media that ffmpeg can read."""


@attrs.frozen
class MediaInfo:
    """The facts a test or the demo checks about a video (or an audio track)."""

    duration: float
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    audio_codec: str | None = None


def parse_ffmpeg_info(text: str) -> MediaInfo:
    """Parse what ``ffmpeg -hide_banner -i FILE`` prints on stderr."""
    duration = _DURATION.search(text)
    if duration is None:
        raise ProbeError("ffmpeg reports no duration: not a media file")
    hours, minutes, seconds = duration.groups()
    info = MediaInfo(duration=int(hours) * 3600 + int(minutes) * 60 + float(seconds))
    if video := _VIDEO.search(text):
        codec, width, height, fps = video.groups()
        info = attrs.evolve(
            info,
            video_codec=codec,
            width=int(width),
            height=int(height),
            fps=None if fps is None else float(fps),
        )
    if audio := _AUDIO.search(text):
        info = attrs.evolve(info, audio_codec=audio.group(1))
    return info


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Probe ``path`` with the bundled ffmpeg (needs the ``render`` extra).

    Raises ImportError without imageio-ffmpeg and ProbeError for a file that is no media.
    """
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", os.fspath(path)]
    # ffmpeg exits 1 here ("no output file"): the report on stderr is what we want.
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return parse_ffmpeg_info(result.stderr)
