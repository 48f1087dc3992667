"""``python -m suno_mp4_sandbox --port 8765``: see ``--help``."""

import sys

from ._main import main

sys.exit(main())
