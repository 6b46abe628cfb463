"""``python -m episode_recorder``: the ``episode-recorder`` command (see :mod:`episode_recorder.cli`)."""

from __future__ import annotations

import sys

from episode_recorder.cli import main

if __name__ == "__main__":
    sys.exit(main())
