"""A generated demo track: a few bars of synth-pop (chords, arpeggio, bass, drums) made
by ffmpeg's ``aevalsrc``, so the sandbox can render a video without any audio file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ._probe import ffmpeg_exe

__all__ = ["SAMPLE_RATE", "synth_demo_track", "synth_source"]

#: CD rate: what music files usually have, and what the AAC encoder takes as is.
SAMPLE_RATE = 44100
#: The chord progression's length: four 2-second bars.
LOOP_SECONDS = 8

# 120 BPM, one chord per 2-second bar: Am - F - C - G (vi-IV-I-V, in C major).
# Each chord is its root in semitones from A3 (220 Hz) and the size of its third.
_ROOT = "if(eq(ld(0),0),0,if(eq(ld(0),1),-4,if(eq(ld(0),2),3,-2)))"
_THIRD = "if(eq(ld(0),0),3,4)"
# The arpeggio's eighth notes climb and fall over the chord: root, third, fifth, octave...
_ARP_STEPS = ("0", "ld(2)", "7", "12", "ld(2)+12", "12", "7", "ld(2)")


def _arp_semitones() -> str:
    expr = _ARP_STEPS[-1]
    for step in range(len(_ARP_STEPS) - 2, -1, -1):
        expr = f"if(eq(ld(3),{step}),{_ARP_STEPS[step]},{expr})"
    return expr


def _mono() -> str:
    """The track's sample at time ``t`` (mono: ``haas`` spreads it to stereo later,
    at a fraction of the cost of a second expression)."""
    variables = [
        # 0 chord, 1 root (Hz), 2 third (semitones), 3 arpeggio step, 4 time in bar,
        # 5 time in eighth, 6 time in beat, 7 arpeggio note (Hz), 8 2*PI*t.
        "st(0,mod(floor(t/2),4))",
        f"st(1,220*pow(2,{_ROOT}/12))",
        f"st(2,{_THIRD})",
        "st(3,mod(floor(t*4),8))",
        "st(4,mod(t,2))",
        "st(5,mod(t,0.25))",
        "st(6,mod(t,0.5))",
        f"st(7,2*ld(1)*pow(2,({_arp_semitones()})/12))",
        "st(8,2*PI*t)",
    ]
    voices = [
        # Pad: the triad and a low root, faded at the bar's edges so changes do not click.
        "0.08*min(1,ld(4)*6)*min(1,(2-ld(4))*10)*(sin(ld(8)*ld(1))"
        "+sin(ld(8)*ld(1)*pow(2,ld(2)/12))+sin(ld(8)*ld(1)*1.4983)+0.5*sin(ld(8)*ld(1)/2))",
        # Arpeggio: a plucked tone with a soft second harmonic.
        "0.16*min(1,ld(5)*300)*exp(-ld(5)*11)*(sin(ld(8)*ld(7))+0.3*sin(2*ld(8)*ld(7)))",
        # Bass: the root two octaves down, on every beat.
        "0.22*min(1,ld(6)*200)*exp(-ld(6)*5)*sin(ld(8)*ld(1)/4)",
        # Kick: a sine falling from 135 Hz to 45 Hz, on every beat.
        "0.5*exp(-ld(6)*11)*sin(2*PI*(45*ld(6)+3.6*(1-exp(-25*ld(6)))))",
        # Snare on beats 2 and 4: noise plus a short tone.
        "exp(-mod(t+0.5,1)*20)*(0.12*(2*random(9)-1)+0.1*sin(2*PI*185*mod(t+0.5,1)))",
        # Hi-hat on the off-beats.
        "0.05*exp(-mod(t+0.25,0.5)*70)*(2*random(9)-1)",
    ]
    return ";".join(variables) + ";" + "+".join(voices)


def synth_source(seconds: float) -> str:
    """The lavfi source description of a ``seconds``-long track: usable as
    ``ffmpeg -f lavfi -i <this>``, so a render needs no intermediate file.

    The expressions are single-quoted for the filtergraph parser; they hold no ``:``
    or quote of their own, so no further escaping is needed.
    """
    if not seconds > 0:
        raise ValueError(f"a track lasts more than 0 seconds, got {seconds!r}")
    fade = min(0.8, seconds / 4)
    return (
        f"aevalsrc=exprs='{_mono()}':s={SAMPLE_RATE}:d={min(seconds, LOOP_SECONDS):.6f},"
        # The 4 bars repeat: computing them once keeps long tracks cheap (the expression
        # evaluator manages only about 15x real time).
        f"aloop=loop=-1:size={LOOP_SECONDS * SAMPLE_RATE},"
        "haas=middle_source=mid:side_gain=0.6,"
        # A little room: two short echoes stand in for reverb.
        "aecho=in_gain=0.9:out_gain=0.8:delays=150|230:decays=0.25|0.18,"
        "highpass=f=30,alimiter=limit=0.9:level=false,"
        f"afade=t=in:d=0.02,afade=t=out:st={seconds - fade:.6f}:d={fade:.6f},"
        f"atrim=end_sample={round(seconds * SAMPLE_RATE)}"
    )


def synth_demo_track(path: Path, *, seconds: float = 8.0, ffmpeg: str | None = None) -> Path:
    """Write a ``seconds``-long demo track to ``path`` and return it.

    The container follows the suffix: ``.wav`` (16-bit PCM, exact length) or ``.m4a``
    (AAC). Blocks while ffmpeg runs, under a second whatever the length (the 8-second
    loop is computed once): call it through ``anyio.to_thread`` from async code.
    Raises RuntimeError with ffmpeg's complaint if it fails, ImportError without the
    ``render`` extra.
    """
    suffix = path.suffix.lower()
    codec = {".wav": ["-c:a", "pcm_s16le"], ".m4a": ["-c:a", "aac", "-b:a", "192k"]}
    if suffix not in codec:
        raise ValueError(f"write the demo track as .wav or .m4a, not {path.name!r}")
    command = [
        ffmpeg or ffmpeg_exe(),
        *("-hide_banner", "-nostdin", "-v", "error", "-y"),
        *("-f", "lavfi", "-i", synth_source(seconds)),
        *codec[suffix],
        str(path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise RuntimeError(f"could not synthesise the demo track: {lines[-1]}")
    return path
