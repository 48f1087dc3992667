"""A throwaway ``redis-server`` on 127.0.0.1 for tests, the benchmarks and local trials."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator

__all__ = ["RedisServer", "redis_server", "stop_process"]


class RedisServer:
    """A running ``redis-server`` child process (see :func:`redis_server`)."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"

    def kill(self) -> None:
        """Stop it abruptly (SIGKILL), for outage tests."""
        self.proc.kill()
        self.proc.wait()


def stop_process(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """Terminate a child process (kill it if it does not exit in ``timeout`` s) and close
    its output pipe."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[str], timeout: float) -> bool:
    """Read the server's log until it accepts connections (or it exits, or time is up)."""
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        # Keep draining to EOF so the child never blocks on a full pipe.
        with contextlib.suppress(ValueError, OSError):
            for line in proc.stdout:
                if "Ready to accept connections" in line:
                    ready.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.wait(0.05):
            return True
        if proc.poll() is not None:
            return False
    return False


@contextlib.contextmanager
def redis_server(*, port: int | None = None, timeout: float = 10.0) -> Iterator[RedisServer]:
    """Start ``redis-server`` on 127.0.0.1 (a free port unless given), without persistence,
    and stop it on exit. Raises ``RuntimeError`` if ``redis-server`` is not installed
    (``apt-get install redis-server``; ``make test`` installs it) or does not start."""
    exe = os.environ.get("SUNO_MP4_REDIS_SERVER") or shutil.which("redis-server")
    if exe is None:
        raise RuntimeError(
            "redis-server is not installed: `apt-get install redis-server` (make test does it)"
        )
    for _attempt in range(5):
        chosen = port or _free_port()
        with tempfile.TemporaryDirectory(prefix="suno-mp4-redis-") as workdir:
            args = f"--bind 127.0.0.1 --port {chosen} --appendonly no --daemonize no".split()
            proc = subprocess.Popen(
                [exe, *args, "--save", "", "--dir", workdir],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                if _wait_ready(proc, timeout):
                    yield RedisServer(proc, chosen)
                    return
            finally:
                stop_process(proc)
        if port is not None:
            break  # the port was chosen for us: no point in trying again
    raise RuntimeError("redis-server did not start")
