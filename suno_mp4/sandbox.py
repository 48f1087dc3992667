"""The sandbox, re-exported: it is its own distribution, ``suno-mp4-sandbox`` (import name
``suno_mp4_sandbox``), so the SDK's wheel carries no server, renderer or fonts.

``pip install 'suno-mp4[sandbox]'`` (from a checkout: ``pip install . ./sandbox``).
"""

from __future__ import annotations

try:
    from suno_mp4_sandbox import *  # noqa: F403 - the sandbox's public names, unchanged
    from suno_mp4_sandbox import __all__ as __all__
    from suno_mp4_sandbox import main
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the sandbox is its own distribution: pip install 'suno-mp4[sandbox]' "
        "(from a checkout: pip install ./sandbox)"
    ) from exc

if __name__ == "__main__":  # python -m suno_mp4.sandbox, as before
    import sys

    sys.exit(main())
