"""``python -m suno_mp4``: the ``suno-mp4`` command."""

import sys

from .cli import main

sys.exit(main())
