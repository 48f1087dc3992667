"""``python -m suno_mp4_sandbox``: run the sandbox as a server of its own until SIGINT or
SIGTERM. The first line on stdout holds its base URL, API key and admin token, for scripts
to read."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import anyio
import attrs

from ._callbacks import CallbackPolicy
from ._dialects import DIALECTS
from ._faults import Faults
from ._renderer import PlaceholderRenderer, Renderer
from ._server import Sandbox, render_by_default

__all__ = ["ADMIN_TOKEN_ENV", "build_arg_parser", "main", "sandbox_from_args"]

#: Where ``--admin-token`` is read from when not given (a command line is visible to every
#: user of the machine; the environment is not).
ADMIN_TOKEN_ENV = "SUNO_MP4_SANDBOX_ADMIN_TOKEN"


def _render_time(text: str) -> float | tuple[float, float]:
    try:
        if "," in text:
            low, high = (float(part) for part in text.split(","))
            return low, high
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SECONDS or LO,HI, got {text!r}") from None


def _delays(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SECONDS[,SECONDS...], got {text!r}") from None


def _rate_limit(text: str) -> tuple[int, float]:
    try:
        requests, _, per = text.partition("/")
        return int(requests), float(per or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected REQUESTS/SECONDS, got {text!r}") from None


def _fault(text: str) -> tuple[str, float | None]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), None if value.strip().lower() == "none" else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: expected a number, got {value!r}") from None


def build_arg_parser(prog: str = "python -m suno_mp4_sandbox") -> argparse.ArgumentParser:
    """The sandbox's command-line options (shared with ``suno-mp4 sandbox``)."""
    p = argparse.ArgumentParser(
        prog=prog, description="Run a local sandbox of the music-video API until Ctrl-C."
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (%(default)s)")
    p.add_argument("--api-key", help="the accepted key (default: a random sk-sandbox-...)")
    p.add_argument(
        "--admin-token",
        default=os.environ.get(ADMIN_TOKEN_ENV) or None,
        help=f"the token admin requests carry in X-Sandbox-Token (default: ${ADMIN_TOKEN_ENV}, "
        "else a random one; printed at start)",
    )
    p.add_argument(
        "--provider",
        choices=sorted(DIALECTS),
        default="apikley",
        help="whose code table the answers use (default: %(default)s, the seed's)",
    )
    p.add_argument(
        "--errors-in-http-status",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="send an error's code as the HTTP status too, or always HTTP 200 "
        "(default: as the provider does)",
    )
    p.add_argument("--credits", type=int, default=1_000_000, help="starting credits")
    p.add_argument("--video-cost", type=int, default=1, help="credits per video")
    p.add_argument(
        "--render-time",
        type=_render_time,
        default=0.2,
        metavar="SECONDS|LO,HI",
        help="seconds from submit to result, fixed or drawn per task (default: %(default)s)",
    )
    p.add_argument(
        "--render-time-per-audio-second",
        type=float,
        metavar="SECONDS",
        help="extra render time per second of audio",
    )
    p.add_argument(
        "--rate-limit", type=_rate_limit, metavar="N/SECONDS", help="e.g. 10/1: sliding window"
    )
    p.add_argument("--hmac-key", help="sign callbacks (X-Webhook-Signature)")
    p.add_argument("--time-format", choices=["ms", "string"], default="ms")
    p.add_argument(
        "--conflict-on-duplicate", action="store_true", help="answer 409 to a second submit"
    )
    p.add_argument(
        "--callback-attempts",
        "--callback-retries",
        dest="callback_attempts",
        type=int,
        default=3,
        metavar="N",
        help="POSTs per callback, the first included (default: %(default)s)",
    )
    p.add_argument(
        "--callback-retry-delays",
        type=_delays,
        default=(0.2, 0.5, 1.0),
        metavar="S[,S...]",
        help="seconds before each retry, the last repeating (default: 0.2,0.5,1.0)",
    )
    p.add_argument(
        "--callback-failure-status",
        choices=["CALLBACK_EXCEPTION", "none"],
        default="CALLBACK_EXCEPTION",
        help="what a made video's task becomes when its callback could not be delivered "
        "('none': stays SUCCESS; default: %(default)s)",
    )
    p.add_argument("--seed", type=int, help="seed the fault and render-time draws")
    p.add_argument("--video-dir", type=Path, help="keep videos here (default: a temp dir)")
    p.add_argument(
        "--render",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="real MP4 rendering (default: on when ffmpeg from the 'render' extra is there)",
    )
    p.add_argument(
        "--render-concurrency", type=int, default=2, metavar="N", help="renders at a time"
    )
    p.add_argument(
        "--placeholder-size", type=int, default=4096, metavar="BYTES", help="placeholder size"
    )
    p.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="inject a fault, e.g. callback_drop=0.2 (repeatable; names as in Faults)",
    )
    p.add_argument(
        "--tracks",
        type=_tracks,
        action="append",
        default=[],
        metavar="N|DIR",
        help="register N synthetic tracks, or every audio file of folder DIR, at start "
        "(repeatable); their ids are printed",
    )
    return p


AUDIO_SUFFIXES = (".mp3", ".wav", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".flac")


def _tracks(value: str) -> int | Path:
    if value.isdigit():
        return int(value)
    folder = Path(value)
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is neither a number nor a folder")
    return folder


def register_tracks(sandbox: Sandbox, sources: list[int | Path]) -> list[tuple[str, str, str]]:
    """Register synthetic tracks and audio files; returns (task id, audio id, label)."""
    out = []
    for source in sources:
        if isinstance(source, int):
            for _ in range(source):
                out.append((*sandbox.add_track(), "synthetic"))
            continue
        for file in sorted(source.iterdir()):
            if file.suffix.lower() in AUDIO_SUFFIXES:
                out.append((*sandbox.add_track(file, title=file.stem), str(file)))
    return out


def sandbox_from_args(args: argparse.Namespace) -> Sandbox:
    """A Sandbox configured from parsed options; ValueError for settings that clash."""
    faults = Faults()
    faults.update(dict(args.fault))
    render = render_by_default() if args.render is None else args.render
    renderer: Renderer | None = None if render else PlaceholderRenderer(args.placeholder_size)
    provider = DIALECTS[args.provider]
    if args.errors_in_http_status is not None:
        provider = attrs.evolve(provider, errors_in_http_status=args.errors_in_http_status)
    return Sandbox(
        provider=provider,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        admin_token=args.admin_token,
        credits=args.credits,
        video_cost=args.video_cost,
        render_time=args.render_time,
        render_time_per_audio_second=args.render_time_per_audio_second,
        rate_limit=args.rate_limit,
        hmac_key=args.hmac_key,
        time_format=args.time_format,
        conflict_on_duplicate=args.conflict_on_duplicate,
        faults=faults,
        renderer=renderer,
        render=render,
        render_concurrency=args.render_concurrency,
        callbacks=CallbackPolicy(
            attempts=args.callback_attempts,
            retry_delays=args.callback_retry_delays,
            failure_status=None
            if args.callback_failure_status == "none"
            else args.callback_failure_status,
        ),
        seed=args.seed,
        video_dir=args.video_dir,
    )


async def serve(sandbox: Sandbox, tracks: list[int | Path] | None = None) -> None:
    """Run ``sandbox`` until SIGINT or SIGTERM, then stop it cleanly."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with sandbox:
            print(
                f"sandbox at {sandbox.base_url} api key {sandbox.api_key} "
                f"admin token {sandbox.admin_token}",
                flush=True,
            )
            print(f"dashboard: {sandbox.dashboard_url}", flush=True)
            for task_id, audio_id, label in register_tracks(sandbox, tracks or []):
                print(f"track: taskId={task_id} audioId={audio_id} {label}", flush=True)
            print(
                "admin routes under /sandbox/ (header X-Sandbox-Token: <admin token>); "
                "Ctrl-C or SIGTERM stops",
                flush=True,
            )
            async for _ in signals:
                break


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv`` (default ``sys.argv[1:]``), serve, return the exit code."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    try:
        sandbox = sandbox_from_args(args)
    except (ValueError, ImportError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        anyio.run(serve, sandbox, args.tracks)
    except OSError as exc:  # the port is taken, or the host cannot be bound
        print(f"{parser.prog}: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
