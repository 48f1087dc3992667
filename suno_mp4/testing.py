"""The pytest plugin moved to the sandbox's distribution (``suno_mp4_sandbox.testing``,
registered by ``suno-mp4-sandbox``): this name stays importable."""

from suno_mp4_sandbox.testing import suno_client, suno_sandbox

__all__ = ["suno_client", "suno_sandbox"]
