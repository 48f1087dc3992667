"""The ``suno-mp4`` command line (needs the ``cli`` extra: click and rich).

Exit codes: 0 all done, 1 some items failed, 2 usage error, 3 authentication or credits,
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

try:
    import click

    HAVE_CLICK = True
except ImportError:  # pragma: no cover - the core install has no CLI dependencies
    HAVE_CLICK = False

T = TypeVar("T")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _missing_extra() -> int:
    print("the suno-mp4 command needs its extra: pip install 'suno-mp4[cli]'", file=sys.stderr)
    return EXIT_USAGE


def _cli_words(text: str) -> str:
    """An SDK message in the CLI's words: its options and commands, not Python calls."""
    import re

    text = text.replace("pass Client(api_key=...)", "pass --api-key")
    return re.sub(r"client\.job\((['\"]?)([^)]*?)\1\)", r"suno-mp4 wait \2", text)


def is_mp4(path: object) -> bool:
    """Whether the file starts like an MP4 (an ISO media file: ``ftyp`` at byte 4)."""
    try:
        with open(str(path), "rb") as fh:
            return fh.read(12)[4:8] == b"ftyp"
    except OSError:
        return False


def _mask(text: str, secret: str | None) -> str:
    """``text`` fit for a terminal: the key masked, control characters replaced."""
    from ._untrusted import printable

    return printable(_unkeyed(text, secret))


def _unkeyed(text: str, secret: str | None) -> str:
    """``text`` with the key masked wherever it appears."""
    from ._untrusted import mask

    return text.replace(secret, mask(secret)) if secret and len(secret) >= 4 else text


async def run_demo(out_dir: Path, *, render: bool | None = None) -> dict[str, Any]:
    """Start a sandbox, make a video of the demo track through the SDK with a callback
    listener, download it, and return what happened (path, size, duration, seconds)."""
    import anyio
    from suno_mp4_sandbox import Sandbox

    from . import CallbackListener, Client, PollPolicy

    start = time.perf_counter()
    sandbox_options: dict[str, Any] = {"render_time": 0.5}
    if render is not None:
        sandbox_options["render"] = render
    async with Sandbox(**sandbox_options) as sb:
        task_id, audio_id = sb.add_track(title="Sandbox Sunrise", duration=8.0)
        poll = PollPolicy(initial_delay=1.0, fallback_interval=5.0, max_wait=110)
        listener = CallbackListener()
        async with Client(
            sb.api_key, base_url=sb.base_url, callbacks=listener, poll=poll
        ) as client:
            job = await client.create_video(
                task_id, audio_id, author="DJ Demo", domain_name="suno-mp4.example"
            )
            with anyio.fail_after(110):
                video = await job
            path = await client.download(video, out_dir / f"{video.task_id}.mp4")
    info: dict[str, Any] = {
        "video_task_id": video.task_id,
        "video_url": video.video_url,
        "resolved_by": job.resolved_by,
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "expires_at": video.expires_at.isoformat(),
    }
    try:
        from suno_mp4_sandbox._probe import probe

        media = probe(path)
        info["duration_s"] = round(media.duration, 2)
        info["video"] = f"{media.video_codec} {media.width}x{media.height} {media.fps:g} fps"
        info["audio"] = media.audio_codec
    except Exception as exc:  # a placeholder file is no MP4: say so, do not fail the demo
        info["duration_s"] = None
        info["note"] = f"not a playable MP4 ({type(exc).__name__}): rendering is off"
    info["seconds"] = round(time.perf_counter() - start, 2)
    return info


if HAVE_CLICK:
    from ._cli_batch import batch_command
    from ._client import Client
    from ._errors import SunoMp4Error
    from ._jobs import VideoJob
    from ._untrusted import printable

    class _Context:
        def __init__(self, api_key: str | None, base_url: str | None, debug: bool) -> None:
            self.api_key = api_key
            self.base_url = base_url
            self.debug = debug
            #: Set by a command given --json: errors are JSON (on stdout) too.
            self.as_json = False

        def client(self, **kw: Any) -> Client:
            return Client(self.api_key, base_url=self.base_url, **kw)

        def run(self, fn: Callable[[], Awaitable[T]], *, as_json: bool = False) -> T:
            """Run ``fn`` on asyncio; SDK errors become one readable line (a JSON object with
            ``as_json``) and an exit code."""
            self.as_json = as_json
            import anyio

            from . import (
                AuthenticationError,
                InsufficientCreditsError,
                InvalidRequestError,
                SunoMp4Error,
            )

            try:
                return anyio.run(fn)
            except (AuthenticationError, InsufficientCreditsError) as exc:
                self._fail(exc, EXIT_AUTH)
            except InvalidRequestError as exc:
                self._fail(exc, EXIT_USAGE)
            except SunoMp4Error as exc:
                self._fail(exc, EXIT_FAILED)
            except TimeoutError as exc:  # (an OSError) the demo's own deadline
                self._fail(exc, EXIT_FAILED)
            except OSError as exc:  # a file or folder given that cannot be used
                self._fail(exc, EXIT_USAGE)
            raise AssertionError("unreachable")

        def _fail(self, exc: BaseException, code: int) -> None:
            if self.debug:
                traceback.print_exception(exc)
            message = _mask(_cli_words(str(exc) or type(exc).__name__), self.api_key)
            if self.as_json:
                error = {"type": type(exc).__name__, "message": message, "exit_code": code}
                names = (
                    "code",
                    "http_status",
                    "task_id",
                    "video_task_id",
                    "request_id",
                    "attempts",
                )
                for name in names:
                    if getattr(exc, name, None) is not None:
                        error[name] = getattr(exc, name)
                click.echo(json.dumps({"error": error}))
            else:
                click.echo(f"error: {message}", err=True)
            sys.exit(code)

    pass_ctx = click.make_pass_decorator(_Context)

    @click.group()
    @click.version_option(package_name="suno-mp4")
    @click.option(
        "--api-key",
        envvar="APIKLEY_API_KEY",
        show_envvar=True,
        help="API key (default: $APIKLEY_API_KEY). Never printed.",
    )
    @click.option("--base-url", envvar="SUNO_MP4_BASE_URL", show_envvar=True, help="API server.")
    @click.option("--debug", is_flag=True, help="Show tracebacks.")
    @click.option(
        "--verbose", "-v", is_flag=True, help="Log every request and job change (stderr)."
    )
    @click.pass_context
    def cli(
        ctx: click.Context, api_key: str | None, base_url: str | None, debug: bool, verbose: bool
    ) -> None:
        """Turn generated music into music videos (Suno-compatible music-video API).

        SUNO_MP4_LOG=debug logs as --verbose does."""
        if verbose:
            from ._logs import enable_logging

            enable_logging("debug")
        ctx.obj = _Context(api_key, base_url, debug)

    def _seconds(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
        if value is not None and not value >= 0:  # NaN too
            raise click.BadParameter(f"must be a number of seconds >= 0, got {value}")
        return value

    async def _finish(
        client: Client, job: VideoJob, timeout: float | None, download: str | None, as_json: bool
    ) -> None:
        """Wait for ``job``, download it if asked, print the result (create --wait, wait)."""
        video = await job.wait(timeout)
        path = await client.download(video, download) if download else None
        _print_video(video, path, as_json)

    def _print_video(video: Any, path: Path | None, as_json: bool) -> None:
        data = {
            "video_task_id": video.task_id,
            "video_url": video.video_url,
            "expires_at": video.expires_at.isoformat(),
            "path": str(path) if path else None,
        }
        if as_json:
            click.echo(json.dumps(data))
        else:
            for key, value in data.items():
                if value is not None:
                    click.echo(f"{key}: {printable(value)}")

    def _result_options(command: Callable[..., None]) -> Callable[..., None]:
        """--timeout, --download and --json: the options of commands that wait for a video."""
        for option in reversed(
            [
                click.option(
                    "--timeout",
                    type=float,
                    default=None,
                    callback=_seconds,
                    help="Seconds to wait at most.",
                ),
                click.option(
                    "--download",
                    type=click.Path(),  # a str: "videos/" (a folder) keeps its slash
                    help="Download it here (a file, or a folder: existing, or ending in /).",
                ),
                click.option("--json", "as_json", is_flag=True, help="Machine-readable output."),
            ]
        ):
            command = option(command)
        return command

    @cli.command()
    @click.argument("task_id")
    @click.argument("audio_id")
    @click.option("--author", help="Signature on the cover (at most 50 characters).")
    @click.option("--domain", "domain_name", help="Watermark at the bottom (at most 50).")
    @click.option("--wait", "wait_", is_flag=True, help="Wait for the video.")
    @_result_options
    @pass_ctx
    def create(
        obj: _Context,
        task_id: str,
        audio_id: str,
        author: str | None,
        domain_name: str | None,
        wait_: bool,
        timeout: float | None,
        download: str | None,
        as_json: bool,
    ) -> None:
        """Create a music video for a track (music TASK_ID and AUDIO_ID)."""

        submitted: list[str] = []

        async def go() -> None:
            async with obj.client() as client:
                job = await client.create_video(
                    task_id, audio_id, author=author, domain_name=domain_name
                )
                submitted.append(job.task_id)
                if not (wait_ or download):
                    if as_json:
                        click.echo(json.dumps({"video_task_id": job.task_id}))
                    else:
                        click.echo(f"video_task_id: {printable(job.task_id)}")
                    return
                # Billed now: whatever stops the wait (Ctrl-C, a timeout, a download that
                # fails), the id is known, and `wait` takes it up without a second submit.
                click.echo(
                    f"submitted: video task {printable(job.task_id)} "
                    f"(suno-mp4 wait {printable(job.task_id)} takes it up again)",
                    err=True,
                )
                try:
                    await _finish(client, job, timeout, download, as_json)
                except (SunoMp4Error, OSError) as exc:
                    setattr(exc, "video_task_id", job.task_id)  # noqa: B010 - any error
                    raise

        try:
            obj.run(go, as_json=as_json)
        except KeyboardInterrupt:
            if not (as_json and submitted):
                raise
            # The JSON error carries the paid task's id too (stderr has it already).
            interrupted = ("Interrupted", "interrupted", EXIT_INTERRUPTED)
            _error(True, *interrupted, video_task_id=submitted[0])
            sys.exit(EXIT_INTERRUPTED)

    @cli.command()
    @click.argument("video_task_id")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @pass_ctx
    def status(obj: _Context, video_task_id: str, as_json: bool) -> None:
        """Show what the API says about a video task."""
        from ._convert import unstructure_details

        async def go() -> None:
            async with obj.client() as client:
                details = await client.get_video_details(video_task_id)
            if as_json:
                # The server's words: the key masked in every string, no NaN or Infinity
                # (not JSON), whatever it sent.
                click.echo(json.dumps(_clean(unstructure_details(details), obj.api_key)))
                return
            rows = [
                ("task", details.task_id),
                ("status", details.status.value),
                ("video url", details.video_url or "-"),
                ("source track", details.music_id or "-"),
                ("audio id", details.audio_id or "-"),
                ("created", details.created_at.isoformat() if details.created_at else "-"),
                ("completed", details.completed_at.isoformat() if details.completed_at else "-"),
            ]
            if details.error_code is not None or details.error_message:
                rows.append(("error", f"{details.error_code}: {details.error_message}"))
            _table([(key, _mask(value, obj.api_key)) for key, value in rows])

        obj.run(go, as_json=as_json)

    def _table(rows: list[tuple[str, str]]) -> None:
        if sys.stdout.isatty():
            from rich.console import Console
            from rich.table import Table
            from rich.text import Text

            table = Table(show_header=False)
            for key, value in rows:
                table.add_row(key, Text(printable(value)))  # Text: no markup from the server
            Console().print(table)
        else:
            for key, value in rows:
                click.echo(f"{key}: {printable(value)}")

    @cli.command()
    @click.argument("video_task_id")
    @_result_options
    @pass_ctx
    def wait(
        obj: _Context,
        video_task_id: str,
        timeout: float | None,
        download: str | None,
        as_json: bool,
    ) -> None:
        """Wait for a video task made earlier, and optionally download the video."""

        async def go() -> None:
            async with obj.client() as client:
                await _finish(client, client.job(video_task_id), timeout, download, as_json)

        obj.run(go, as_json=as_json)

    @cli.command()
    @click.argument("url_or_task_id")
    @click.argument("path", type=click.Path())
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @pass_ctx
    def download(obj: _Context, url_or_task_id: str, path: str, as_json: bool) -> None:
        """Download a video by its URL or its video task id.

        PATH is the file, or a folder (existing, or ending in /) to put it in."""
        from . import InvalidRequestError, VideoExpiredError, VideoGenerationError

        async def go() -> Path:
            async with obj.client() as client:
                url = url_or_task_id
                if not url.startswith(("http://", "https://")):
                    details = await client.get_video_details(url)
                    if not details.video_url:
                        status = details.status
                        if status.is_ok:  # made, but its URL is gone (past its 14 days?)
                            raise VideoExpiredError(
                                f"task {url} has no video URL any more (status {status.value})"
                            )
                        if status.is_failure:
                            raise VideoGenerationError(
                                url, status, details.error_code, details.error_message
                            )
                        raise InvalidRequestError(  # a task still rendering: nothing to fetch
                            f"task {url} has no video yet (status {status.value}): "
                            f"suno-mp4 wait {url} --download PATH waits for it"
                        )
                    url = details.video_url
                return await client.download(url, path)

        saved = obj.run(go, as_json=as_json)
        mp4 = is_mp4(saved)
        if as_json:
            click.echo(json.dumps({"path": str(saved), "is_mp4": mp4}))
        else:
            click.echo(printable(str(saved)))
            if not mp4:
                click.echo("note: this file is no MP4 (a sandbox placeholder?)", err=True)

    cli.add_command(batch_command)

    @cli.command()
    @click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default="demo-out")
    @click.option("--render/--no-render", default=None, help="Real MP4 rendering (needs ffmpeg).")
    @pass_ctx
    def demo(obj: _Context, out_dir: Path, render: bool | None) -> None:
        """Make one music video end to end against a local sandbox."""
        _need_sandbox()

        async def go() -> dict[str, Any]:
            import anyio

            # Made before anything renders: a folder that cannot be made fails at once.
            await anyio.Path(out_dir).mkdir(parents=True, exist_ok=True)
            return await run_demo(out_dir, render=render)

        info = obj.run(go)
        for key, value in info.items():
            click.echo(f"{key:>14}: {value}")

    @cli.command(
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    @click.pass_context
    def sandbox(ctx: click.Context) -> None:
        """Run the local sandbox server (--help lists its options)."""
        _need_sandbox()
        from suno_mp4_sandbox import main as sandbox_main

        ctx.exit(sandbox_main(list(ctx.args)))


def _need_sandbox() -> None:
    """The sandbox is its own distribution (the ``sandbox`` extra): say so, not a traceback."""
    try:
        import suno_mp4_sandbox  # noqa: F401
    except ImportError:
        click.echo(
            "error: this command needs the sandbox: pip install 'suno-mp4[sandbox]'", err=True
        )
        sys.exit(EXIT_USAGE)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``suno-mp4`` command."""
    if not HAVE_CLICK:
        return _missing_extra()
    if os.name == "posix":
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `suno-mp4 status x | head` is fine
    # With --json, every outcome is one JSON object on stdout: usage errors and Ctrl-C too.
    as_json = "--json" in (sys.argv[1:] if argv is None else argv)
    try:
        code = cli.main(args=argv, prog_name="suno-mp4", standalone_mode=False)
    except click.exceptions.Abort:
        _error(as_json, "Interrupted", "interrupted", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        if as_json:
            _error(as_json, type(exc).__name__, exc.format_message(), EXIT_USAGE)
        else:
            exc.show()
        return EXIT_USAGE
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return code if isinstance(code, int) else EXIT_OK


def _error(as_json: bool, kind: str, message: str, code: int, **fields: object) -> None:
    """An error outside the SDK's own (usage, Ctrl-C): a JSON object on stdout with
    ``as_json`` (``fields`` added), else its message on stderr."""
    if as_json:
        error = {"type": kind, "message": message, "exit_code": code, **fields}
        click.echo(json.dumps({"error": error}))
    else:
        click.echo(message, err=True)


def _clean(value: Any, secret: str | None) -> Any:
    """A server's JSON-like ``value`` fit to print as JSON: strings with the key masked
    (control characters are escaped by ``json.dumps``), numbers out of JSON's range as
    text. (Its depth is bounded: it was parsed from an answer.)"""
    if isinstance(value, str):
        return _unkeyed(value, secret)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v, secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, secret) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _clean(str(value), secret)  # a datetime, an enum


if __name__ == "__main__":
    sys.exit(main())
