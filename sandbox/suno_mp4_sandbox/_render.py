"""The sandbox's real renderer: one ffmpeg run turns a track into an H.264/AAC MP4 with
a cover (title, author signature), an animated spectrum and a domain watermark."""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import unicodedata
import zlib
from pathlib import Path
from typing import Literal

import anyio
import attrs

from ._probe import ProbeError, ffmpeg_exe, parse_ffmpeg_info, probe
from ._renderer import RenderFailed, RenderJob
from ._synth import synth_source

__all__ = [
    "FFmpegRenderer",
    "FfmpegRenderer",
    "Preset",
    "RenderFailed",
    "RenderJob",
    "build_ffmpeg_command",
    "ffmpeg_available",
]

Preset = Literal["vertical", "square", "landscape"]

#: Frames per second of every video: smooth bars, and what phones record.
FPS = 30
#: A track without a file and without a length lasts as long as the sandbox's default.
DEFAULT_SECONDS = 8.0
FONTS = Path(__file__).parent / "fonts"
#: drawtext has no font fallback: each text takes the first of these that covers it.
#: DejaVu: Latin, Greek, Cyrillic. WenQuanYi Micro Hei: CJK, plus Latin and Cyrillic
#: (so a mixed "音楽 - Artist" is drawn whole in it).
_BOLD_FONTS = ("DejaVuSans-Bold.ttf", "wqy-microhei.ttc")
_REGULAR_FONTS = ("DejaVuSans.ttf", "wqy-microhei.ttc")
#: How much of ffmpeg's stderr is kept: the start (a probe's report, however much
#: metadata precedes it) and the end (why a run failed).
_STDERR_HEAD = 1 << 20
_STDERR_TAIL = 1 << 16
#: ffmpeg's stderr lines that say nothing about why a run failed.
_NOISE = re.compile(r"^(Conversion failed!?|Error opening output files?.*|Exiting .*)$", re.I)


# Layout


@attrs.frozen
class _Text:
    """Where one line of text goes: centred on ``cx``, top at ``y``."""

    cx: int
    y: int
    size: int
    min_size: int
    max_width: int


@attrs.frozen
class _Layout:
    """One preset's geometry, in pixels."""

    width: int
    height: int
    cover_x: int
    cover_y: int
    cover_size: int
    title: _Text
    author: _Text
    viz_x: int
    viz_y: int
    viz_width: int
    viz_height: int
    bar_x: int
    bar_y: int
    bar_width: int
    time_size: int
    domain: _Text

    @property
    def reflection_height(self) -> int:
        return self.viz_height // 3 // 2 * 2  # even: chroma is subsampled


_LAYOUTS: dict[Preset, _Layout] = {
    # 720x1280 rather than 1080x1920: a sandbox video only has to look right, and the
    # smaller frame renders ~2x faster. The same goes for the other presets.
    "vertical": _Layout(
        width=720,
        height=1280,
        cover_x=140,
        cover_y=110,
        cover_size=440,
        title=_Text(cx=360, y=600, size=44, min_size=26, max_width=640),
        author=_Text(cx=360, y=664, size=30, min_size=20, max_width=600),
        viz_x=40,
        viz_y=790,
        viz_width=640,
        viz_height=200,
        bar_x=60,
        bar_y=1080,
        bar_width=600,
        time_size=20,
        domain=_Text(cx=360, y=1200, size=24, min_size=16, max_width=600),
    ),
    "square": _Layout(
        width=1080,
        height=1080,
        cover_x=340,
        cover_y=70,
        cover_size=400,
        title=_Text(cx=540, y=505, size=46, min_size=28, max_width=960),
        author=_Text(cx=540, y=568, size=30, min_size=20, max_width=900),
        viz_x=156,
        viz_y=640,
        viz_width=768,
        viz_height=180,
        bar_x=190,
        bar_y=905,
        bar_width=700,
        time_size=20,
        domain=_Text(cx=540, y=1010, size=26, min_size=16, max_width=900),
    ),
    "landscape": _Layout(
        width=1280,
        height=720,
        cover_x=90,
        cover_y=110,
        cover_size=440,
        title=_Text(cx=900, y=130, size=46, min_size=26, max_width=620),
        author=_Text(cx=900, y=196, size=30, min_size=20, max_width=600),
        viz_x=612,
        viz_y=290,
        viz_width=576,
        viz_height=170,
        bar_x=620,
        bar_y=545,
        bar_width=560,
        time_size=20,
        domain=_Text(cx=640, y=660, size=24, min_size=16, max_width=1000),
    ),
}


@attrs.frozen
class _Palette:
    """Two-colour gradients: (top or left, bottom or right)."""

    background: tuple[str, str]
    cover: tuple[str, str]
    sun: tuple[str, str]
    bars: tuple[str, str]


#: Picked by the title, so one track always looks the same.
_PALETTES = (
    _Palette(  # dusk
        background=("0x1b1036", "0x06060c"),
        cover=("0xff6a88", "0x5b2a86"),
        sun=("0xffd36e", "0xff6f61"),
        bars=("0xffa0b9", "0x8f7bff"),
    ),
    _Palette(  # ocean
        background=("0x0b2540", "0x04080f"),
        cover=("0x2bc0e4", "0x1b3a8c"),
        sun=("0xf2ffd9", "0x6fe3c1"),
        bars=("0x6ff0e0", "0x4a7dff"),
    ),
    _Palette(  # forest
        background=("0x0f2c24", "0x040b09"),
        cover=("0x62b246", "0x0f4a3c"),
        sun=("0xfff1c1", "0xf8b500"),
        bars=("0xb7ec74", "0x2cb5a0"),
    ),
    _Palette(  # ember
        background=("0x2e1012", "0x0a0506"),
        cover=("0xf5563a", "0x5a1a3d"),
        sun=("0xffe6a7", "0xffa48f"),
        bars=("0xffc247", "0xf5563a"),
    ),
)


def _palette(title: str | None) -> _Palette:
    if not title:
        return _PALETTES[0]
    return _PALETTES[zlib.crc32(title.encode()) % len(_PALETTES)]


# Text: clean-up, font choice, fitting


def clean_text(text: str | None) -> str | None:
    """The text as drawn: whitespace runs (newlines too) become one space, other control
    characters go; None when nothing visible is left, and then nothing is drawn."""
    if text is None:
        return None
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char.isspace() or category in ("Zl", "Zp"):
            kept.append(" ")
        elif category not in ("Cc", "Cs"):  # controls; lone surrogates cannot be UTF-8
            kept.append(char)
    cleaned = " ".join("".join(kept).split())
    return cleaned or None


@attrs.frozen
class _FontMetrics:
    """The advance width of every character a font has, in font units."""

    units_per_em: int
    advances: dict[int, int]

    def covers(self, char: str) -> bool:
        return char == " " or ord(char) in self.advances

    def width(self, text: str, size: float) -> float:
        fallback = self.units_per_em // 2
        units = sum(self.advances.get(ord(char), fallback) for char in text)
        return units * size / self.units_per_em


@functools.cache
def _metrics(name: str) -> _FontMetrics:
    """Read ``cmap`` and ``hmtx`` of a TrueType font: enough to choose a font for a
    text and to shrink the text to fit, without an imaging library."""
    data = (FONTS / name).read_bytes()
    # A collection (.ttc) starts with a list of fonts: drawtext uses the first.
    start = struct.unpack_from(">I", data, 12)[0] if data[:4] == b"ttcf" else 0
    (count,) = struct.unpack_from(">H", data, start + 4)
    tables = {
        data[start + 12 + 16 * i : start + 16 + 16 * i]: struct.unpack_from(
            ">I", data, start + 20 + 16 * i
        )[0]
        for i in range(count)
    }
    (units_per_em,) = struct.unpack_from(">H", data, tables[b"head"] + 18)
    (long_metrics,) = struct.unpack_from(">H", data, tables[b"hhea"] + 34)
    hmtx = tables[b"hmtx"]

    def advance(glyph: int) -> int:
        index = min(glyph, long_metrics - 1)
        return int(struct.unpack_from(">H", data, hmtx + 4 * index)[0])

    return _FontMetrics(
        units_per_em, {c: advance(g) for c, g in _cmap(data, tables[b"cmap"]).items() if g}
    )


def _cmap(data: bytes, cmap: int) -> dict[int, int]:
    """Code point -> glyph from the Unicode subtable (format 12, else format 4)."""
    (count,) = struct.unpack_from(">H", data, cmap + 2)
    subtables = {}
    for i in range(count):
        platform, encoding, offset = struct.unpack_from(">HHI", data, cmap + 4 + 8 * i)
        subtables[platform, encoding] = cmap + offset
    glyphs: dict[int, int] = {}
    if (table := subtables.get((3, 10))) is not None:
        (groups,) = struct.unpack_from(">I", data, table + 12)
        for i in range(groups):
            start, end, glyph = struct.unpack_from(">III", data, table + 16 + 12 * i)
            chars = range(start, end + 1)
            glyphs.update(zip(chars, range(glyph, glyph + len(chars)), strict=True))
        return glyphs
    table = subtables[3, 1]
    segments = struct.unpack_from(">H", data, table + 6)[0] // 2
    ends = table + 14
    starts = ends + 2 * segments + 2
    deltas = starts + 2 * segments
    ranges = deltas + 2 * segments
    for i in range(segments):
        (end,) = struct.unpack_from(">H", data, ends + 2 * i)
        (start,) = struct.unpack_from(">H", data, starts + 2 * i)
        (delta,) = struct.unpack_from(">h", data, deltas + 2 * i)
        (range_offset,) = struct.unpack_from(">H", data, ranges + 2 * i)
        for char in range(start, min(end, 0xFFFE) + 1):
            if range_offset == 0:
                glyphs[char] = (char + delta) & 0xFFFF
            else:
                at = ranges + 2 * i + range_offset + 2 * (char - start)
                (glyph,) = struct.unpack_from(">H", data, at)
                glyphs[char] = (glyph + delta) & 0xFFFF if glyph else 0
    return glyphs


def _choose_font(text: str, candidates: tuple[str, ...]) -> str:
    """The first font with a glyph for every character, else the one that misses fewest."""

    def missing(name: str) -> int:
        metrics = _metrics(name)
        return sum(not metrics.covers(char) for char in text)

    return min(candidates, key=missing)  # min() keeps the first of equals


#: More characters than any line holds even at its smallest size: keeps the loop in
#: ``_fit`` short for an absurdly long title.
_MAX_CHARS = 200


def _fit(text: str, font: str, spec: _Text) -> tuple[str, int]:
    """Shrink the text down to ``spec.min_size`` to fit ``spec.max_width``; cut it with
    an ellipsis if even that is too wide."""
    metrics = _metrics(font)
    text = text[:_MAX_CHARS]
    # 6% slack: harfbuzz kerning and hinting shift widths a little from the advances.
    room = spec.max_width * 0.94
    width = metrics.width(text, spec.size)
    if width <= room:
        return text, spec.size
    size = max(spec.min_size, math.floor(spec.size * room / width))
    while metrics.width(text, size) > room and len(text) > 1:
        text = text[:-2].rstrip() + "…"
    return text, size


# The ffmpeg command


def _escape(value: str) -> str:
    """Escape a filter option's value for a filtergraph: first for the option parser
    (``\\ ' : =``), then for the graph parser (``\\ ' [ ] , ;``)."""
    value = re.sub(r"([\\':=])", r"\\\1", value)
    return re.sub(r"([\\'\[\],;])", r"\\\1", value)


def _path(path: Path) -> str:
    # Forward slashes work on every platform and need no escaping of their own.
    return _escape(path.resolve().as_posix())


def _drawtext(
    text_file: Path, font: str, size: int, spec: _Text, color: str, *, bold: bool, chip: bool
) -> str:
    # A font without a bold face is emboldened by an outline in the text's own colour.
    outline = f":borderw={max(1, size // 40)}:bordercolor={color}" if bold else ""
    # A chip: a faint rounded-looking box, wider than high, behind the text.
    box = f":box=1:boxcolor=white@0.08:boxborderw={size // 3}|{size * 2 // 3}" if chip else ""
    return (
        f"drawtext=fontfile={_path(FONTS / font)}:textfile={_path(text_file)}"
        f":expansion=none:fontsize={size}:fontcolor={color}{outline}{box}"
        f":x={spec.cx}-text_w/2:y={spec.y}"
        ":shadowcolor=black@0.55:shadowx=2:shadowy=3"
    )


def _texts(job: RenderJob, out: Path, layout: _Layout) -> list[str]:
    """drawtext filters for the title, author and domain that are given; each text goes
    to a file next to ``out`` and is read back verbatim (``expansion=none``), so no
    character of it ever reaches the filtergraph parser."""
    filters = []
    for role, raw, spec, fonts, color in (
        ("title", job.title, layout.title, _BOLD_FONTS, "white"),
        ("author", job.author, layout.author, _REGULAR_FONTS, "0xe6e1f5"),
        ("domain", job.domain_name, layout.domain, _REGULAR_FONTS, "white@0.72"),
    ):
        text = clean_text(raw)
        if text is None:
            continue
        font = _choose_font(text, fonts)
        text, size = _fit(text, font, spec)
        text_file = out.with_name(f"{out.name}.{role}.txt")
        text_file.write_text(text, encoding="utf-8")
        bold = fonts is _BOLD_FONTS and font != _BOLD_FONTS[0]
        chip = role == "domain"
        filters.append(_drawtext(text_file, font, size, spec, color, bold=bold, chip=chip))
    return filters


def _clock(seconds: float) -> str:
    whole = math.ceil(seconds - 0.05)
    return f"{whole // 60}:{whole % 60:02d}"


def _graph(job: RenderJob, out: Path, layout: _Layout, duration: float) -> str:
    """The filtergraph: a still background (gradient, glow, cover, texts) computed once
    and looped, with the spectrum, the progress bar and the clock drawn per frame."""
    palette = _palette(clean_text(job.title))
    w, h = layout.width, layout.height
    cs = layout.cover_size
    vw, vh, rh = layout.viz_width, layout.viz_height, layout.reflection_height
    bw = layout.bar_width
    clock_file = out.with_name(f"{out.name}.clock.txt")
    # A template of our own, expanded by drawtext: the elapsed time as m:ss.
    clock_file.write_text("%{eif:trunc(t/60):d}:%{eif:mod(trunc(t),60):d:2}", encoding="utf-8")
    total_file = out.with_name(f"{out.name}.total.txt")
    total_file.write_text(_clock(duration), encoding="utf-8")
    time_font = _path(FONTS / _REGULAR_FONTS[0])
    time_y = layout.bar_y + 16

    # The cover: a diagonal gradient with a striped "sunset" disc, rounded corners.
    c0, c1 = (_rgb(c) for c in palette.cover)
    s0, s1 = (_rgb(c) for c in palette.sun)
    u = "(X+Y)/(W+H)"
    # Below its middle the disc is cut by gaps that widen towards the bottom.
    disc = (
        "lte(hypot(X-W/2,Y-H*0.47),W*0.27)"
        "*(lt(Y,H*0.51)+gte(mod(Y-H*0.51,H*0.06),2.5+(Y-H*0.51)*0.2))"
    )
    sun_v = "clip((Y-H*0.2)/(H*0.54),0,1)"

    def channel(i: int) -> str:
        base = f"{c0[i]}+({c1[i] - c0[i]})*{u}"
        sun = f"{s0[i]}+({s1[i] - s0[i]})*{sun_v}"
        return _escape(f"if({disc},{sun},{base})")

    radius = cs // 16
    corner = f"hypot(max(0,abs(X-W/2)-(W/2-{radius})),max(0,abs(Y-H/2)-(H/2-{radius})))"
    cover = (
        f"color=c=black:s={cs}x{cs}:r={FPS}:d=1,format=rgba,trim=end_frame=1,"
        f"geq=r={channel(0)}:g={channel(1)}:b={channel(2)}"
        f":a={_escape(f'255*clip({radius}+0.5-{corner},0,1)')}"
    )
    glow_pad = cs // 8
    background = (
        f"{_gradient(w, h, *palette.background, towards=(w // 4, h * 3 // 4))},"
        # A soft glow in the cover's colour behind it.
        f"drawbox=x={layout.cover_x - glow_pad}:y={layout.cover_y - glow_pad}"
        f":w={cs + 2 * glow_pad}:h={cs + 2 * glow_pad}:c={palette.cover[1]}@0.55:t=fill,"
        f"drawbox=x={layout.cover_x + 6}:y={layout.cover_y + 18}:w={cs - 12}:h={cs - 6}"
        ":c=black@0.6:t=fill,"
        f"gblur=sigma={cs // 7}"
    )
    track = (
        f"drawbox=x={layout.bar_x}:y={layout.bar_y}:w={bw}:h=6:c=white@0.18:t=fill,"
        f"drawtext=fontfile={time_font}:textfile={_path(total_file)}:expansion=none"
        f":fontsize={layout.time_size}:fontcolor=white@0.6"
        f":x={layout.bar_x + bw}-text_w:y={time_y}"
    )
    still = ",".join([*_texts(job, out, layout), track])
    parts = [
        f"{background}[bg]",
        f"{cover}[cover]",
        f"[bg][cover]overlay={layout.cover_x}:{layout.cover_y},{still},"
        # Computed once, then repeated for every frame.
        f"format=yuv420p,loop=loop=-1:size=1[still]",
        # The spectrum: 64 bars whose heights are the alpha of a gradient, plus a faint
        # mirror image below them.
        "[0:a]asplit[aout][av]",
        # Up to 4 kHz, where most of the music is; the log scale's bottom 30% (below -84 dB,
        # hiss and reverb tails) is cut off so quiet bands lie flat.
        f"[av]aformat=channel_layouts=mono,aresample=8000,showfreqs=s=64x{vh * 10 // 7}"
        f":r={FPS}:mode=bar:ascale=log:fscale=log:win_size=1024:averaging=2:colors=white,"
        f"crop=64:{vh}:0:0,format=gray,scale={vw}x{vh}:flags=neighbor,"
        f"drawgrid=w={vw // 64}:h={vh + 10}:t=3:c=black[mask]",
        f"{_gradient(vw, vh, palette.bars[1], palette.bars[0], towards=(0, vh))},"
        "format=yuva420p,loop=loop=-1:size=1[barcolor]",
        "[barcolor][mask]alphamerge=shortest=1,split[bars][mirror]",
        f"[mirror]vflip,crop={vw}:{rh}:0:0,lut=a=val*0.22[reflection]",
        "[bars][reflection]vstack[viz]",
        # The progress bar: a full bar sliding into its track.
        f"color=c=white:s={bw}x6:r={FPS},format=yuva420p[fill]",
        f"color=c=black@0:s={bw}x6:r={FPS},format=yuva420p[empty]",
        f"[empty][fill]overlay=x={_escape(f'-{bw}+{bw}*t/{duration:.3f}')}:eval=frame[bar]",
        f"[still][viz]overlay={layout.viz_x}:{layout.viz_y}:shortest=1[withviz]",
        f"[withviz][bar]overlay={layout.bar_x}:{layout.bar_y}:shortest=1,"
        f"drawtext=fontfile={time_font}:textfile={_path(clock_file)}"
        f":fontsize={layout.time_size}:fontcolor=white@0.6:x={layout.bar_x}:y={time_y}"
        "[vout]",
    ]
    return ";".join(parts)


def _gradient(width: int, height: int, start: str, end: str, *, towards: tuple[int, int]) -> str:
    """One still frame (gbrp) going linearly from ``start`` at the top left corner to
    ``end`` at the point ``towards`` and beyond. (The ``gradients`` source would do, but
    its blend is not linear and its unused colours are random.)"""
    dx, dy = towards
    t = f"clip((X*{dx}+Y*{dy})/{dx * dx + dy * dy},0,1)"
    channels = [
        f"{name}={_escape(f'{a}+({b - a})*{t}')}"
        for name, a, b in zip("rgb", _rgb(start), _rgb(end), strict=True)
    ]
    return (
        f"color=c=black:s={width}x{height}:r={FPS}:d=1,trim=end_frame=1,format=gbrp,"
        f"geq={':'.join(channels)}"
    )


def _rgb(color: str) -> tuple[int, int, int]:
    value = int(color.removeprefix("0x"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


def build_ffmpeg_command(
    job: RenderJob, out: Path, *, preset: Preset = "vertical", ffmpeg: str
) -> list[str]:
    """The one ffmpeg command that renders ``job`` into ``out`` (an .mp4 path).

    Writes the small text files the command reads next to ``out``
    (``<out>.title.txt`` and so on); whoever runs the command removes them. Without
    ``audio_path`` the track is synthesised inside the same run. ``job.duration`` sets
    the progress bar's length: give the file's true length (``FfmpegRenderer`` probes
    it), or None to have it probed here (blocking).
    """
    layout = _LAYOUTS[preset]
    # None: a length nobody measured (annotated, as RenderJob may still say ``float``).
    duration: float | None = job.duration
    if duration is None:
        duration = DEFAULT_SECONDS if job.audio_path is None else probe(job.audio_path).duration
    if job.audio_path is None:
        audio = ["-f", "lavfi", "-i", synth_source(duration)]
    else:
        audio = ["-i", str(job.audio_path.resolve())]
    return [
        *(ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y"),
        *audio,
        *("-filter_complex", _graph(job, out, layout, duration)),
        *("-map", "[vout]", "-map", "[aout]"),
        # veryfast: the frames are mostly still, so x264 spends little time anyway, and
        # crf 23 keeps text edges clean at a small size.
        *("-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"),
        *("-r", str(FPS), "-g", str(2 * FPS)),
        *("-c:a", "aac", "-b:a", "160k"),
        *("-movflags", "+faststart"),
        *("-f", "mp4", str(out)),
    ]


# Running it


@functools.cache
def ffmpeg_available() -> bool:
    """Whether imageio-ffmpeg is installed and its ffmpeg binary runs here."""
    try:
        exe = ffmpeg_exe()
        subprocess.run([exe, "-version"], capture_output=True, timeout=30, check=True)
    except (ImportError, OSError, subprocess.SubprocessError):
        return False
    return True


class FfmpegRenderer:
    """Renders real videos with the ffmpeg of the ``imageio-ffmpeg`` wheel.

    ``preset`` picks the frame: ``"vertical"`` 720x1280 (stories, shorts; the default),
    ``"square"`` 1080x1080 or ``"landscape"`` 1280x720. At most ``max_concurrent``
    renders run at once (ffmpeg uses every core, so more only adds memory); the rest
    wait their turn. ``ffmpeg`` overrides the binary. Raises ImportError at once
    without the ``render`` extra, so a misconfigured sandbox fails at start-up rather
    than at its first video.
    """

    def __init__(
        self,
        *,
        preset: Preset = "vertical",
        max_concurrent: int = 2,
        ffmpeg: str | None = None,
    ) -> None:
        if preset not in _LAYOUTS:
            raise ValueError(f"preset must be one of {sorted(_LAYOUTS)}, got {preset!r}")
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        self.preset: Preset = preset
        self.ffmpeg = ffmpeg or ffmpeg_exe()
        self._limiter = anyio.CapacityLimiter(max_concurrent)

    async def render(self, job: RenderJob) -> Path:
        """Write ``<video_task_id>.mp4`` into ``job.out_dir`` and return its path.

        The video lasts as long as the audio file (``job.duration`` sizes the progress
        bar; the file is probed when it is not given), or ``job.duration`` seconds of
        synthesised music without a file. Raises RenderFailed with a short reason; a
        failed or cancelled render leaves no file behind, and cancelling kills ffmpeg.
        """
        async with self._limiter:
            probed = False
            if job.audio_path is not None and not (job.duration and job.duration > 0):
                # The sandbox measured the track when it was added; probe only if unknown.
                job = attrs.evolve(job, duration=await self._audio_seconds(job.audio_path))
                probed = True
            elif job.duration is not None and not job.duration > 0:
                raise RenderFailed(f"no track to synthesise: duration {job.duration!r} s")
            name = re.sub(r"[^\w.-]", "_", job.video_task_id) or "video"
            final = job.out_dir / f"{name}.mp4"
            # The work directory sits in out_dir, so the final rename never crosses a disk.
            work = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=job.out_dir))
            try:
                partial = work / "video.mp4"
                command = build_ffmpeg_command(job, partial, preset=self.preset, ffmpeg=self.ffmpeg)
                try:
                    await _run(command, "video could not be rendered")
                except RenderFailed:
                    if job.audio_path is not None and not probed:
                        # Say why in the audio's terms when the audio is what failed.
                        await self._audio_seconds(job.audio_path)
                    raise
                if not await anyio.Path(partial).is_file():
                    raise RenderFailed("video could not be rendered: ffmpeg wrote no file")
                os.replace(partial, final)
            finally:
                # Shielded: a cancelled render must still clean up after itself.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(shutil.rmtree, work, True)
            return final

    async def _audio_seconds(self, path: Path) -> float:
        """The track's length, or RenderFailed if it is no audio ffmpeg can read."""
        command = [self.ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)]
        stderr = await _run(command, "audio could not be decoded", check=False)
        try:
            info = parse_ffmpeg_info(stderr)
        except ProbeError:
            raise RenderFailed(f"audio could not be decoded: {_last_line(stderr)}") from None
        if info.audio_codec is None:
            raise RenderFailed("audio could not be decoded: the file has no audio stream")
        if not info.duration > 0:
            raise RenderFailed("audio could not be decoded: the track is empty")
        return info.duration


#: The name the sandbox server looks up.
FFmpegRenderer = FfmpegRenderer


async def _run(command: list[str], failure: str, *, check: bool = True) -> str:
    """Run ffmpeg off the event loop and return its stderr; kill it if cancelled.

    With ``check``, a non-zero exit raises RenderFailed("<failure>: <last stderr line>").
    """
    try:
        process = await anyio.open_process(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
    except OSError as exc:
        raise RenderFailed(f"{failure}: could not run ffmpeg ({exc})") from exc
    async with process:
        try:
            assert process.stderr is not None
            head, tail = bytearray(), bytearray()
            async for chunk in process.stderr:
                if len(head) < _STDERR_HEAD:
                    head += chunk
                else:
                    tail = (tail + chunk)[-_STDERR_TAIL:]
            returncode = await process.wait()
        except BaseException:
            # Cancelled (or failed) while ffmpeg runs: it must not outlive the render.
            with anyio.CancelScope(shield=True):
                process.kill()
                await process.wait()
            raise
    stderr = (head + tail).decode(errors="replace")
    if check and returncode != 0:
        detail = _last_line(stderr) or _signal_name(returncode)
        raise RenderFailed(f"{failure}: {detail}")
    return stderr


def _last_line(stderr: str) -> str:
    """The last line of ffmpeg's stderr that says something, without its
    ``[component @ 0x...]`` prefix."""
    for raw in reversed(stderr.splitlines()):
        line = re.sub(r"^(\[[^\]]*\]\s*)+", "", raw).strip()
        if line and not _NOISE.match(line):
            return line
    return ""


def _signal_name(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"ffmpeg was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            pass
    return f"ffmpeg exited with status {returncode}"
