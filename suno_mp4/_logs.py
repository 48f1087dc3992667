"""Turning the SDK's logs on: ``suno_mp4.enable_logging("debug")``, or the environment
variable ``SUNO_MP4_LOG=debug`` for scripts and the CLI (``suno-mp4 --verbose``).

The loggers are ``suno_mp4`` and its children, one per part: ``suno_mp4.transport`` (every
request at DEBUG, every retry at WARNING), ``.poller``, ``.jobs`` (state changes),
``.listener``, ``.store``, ``.download``, ``.batch``, ``.client``, ``.redis``. Nothing in
them carries the API key or a callback secret.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["enable_logging"]

_HANDLER_NAME = "suno_mp4.stderr"

# A library prints nothing unless asked: without this, Python's last-resort handler would
# print every WARNING (a retry) to stderr of an application that configured no logging.
logging.getLogger("suno_mp4").addHandler(logging.NullHandler())


def enable_logging(level: str | int = "DEBUG") -> None:
    """Print the SDK's log records at ``level`` and above to stderr (once, however often
    called). For anything finer, configure ``logging.getLogger("suno_mp4")`` yourself."""
    logger = logging.getLogger("suno_mp4")
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


def enable_from_environment() -> None:
    level = os.environ.get("SUNO_MP4_LOG", "").strip()
    if level:
        try:
            enable_logging(level)
        except ValueError:  # not a level name: say so, once, and go on without
            print(f"suno_mp4: SUNO_MP4_LOG={level!r} is no log level", file=sys.stderr)
