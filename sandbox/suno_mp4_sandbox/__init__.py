"""A local sandbox of the music-video API: a real aiohttp server on loopback with the
same routes, codes and callbacks, plus fault injection and a clock it can be told to
advance. For demos, tests and benchmarks without a paid key.

    async with Sandbox() as sb:
        task_id, audio_id = sb.add_track()
        async with suno_mp4.Client(sb.api_key, base_url=sb.base_url) as client: ...
"""

from ._admin import ADMIN_TOKEN_HEADER, admin_headers
from ._callback_log import CallbackEvent
from ._callbacks import CallbackPolicy
from ._dialects import ALT_RESELLER, APIKLEY, DIALECTS, Dialect, Meaning
from ._faults import Faults
from ._main import build_arg_parser, main
from ._redis import RedisServer, redis_server
from ._renderer import PlaceholderRenderer, Renderer, RenderFailed, RenderJob
from ._server import Sandbox
from ._state import Flag, VideoTaskRecord
from ._stats import SandboxStats

__all__ = [
    "ADMIN_TOKEN_HEADER",
    "ALT_RESELLER",
    "APIKLEY",
    "CallbackEvent",
    "CallbackPolicy",
    "DIALECTS",
    "Dialect",
    "Faults",
    "Flag",
    "Meaning",
    "PlaceholderRenderer",
    "RenderFailed",
    "RedisServer",
    "RenderJob",
    "Renderer",
    "Sandbox",
    "SandboxStats",
    "VideoTaskRecord",
    "admin_headers",
    "build_arg_parser",
    "main",
    "redis_server",
]
