"""episode-recorder: record episodes of RL and robot-simulation environments.

Videos (mp4 / webm / gif) are encoded in a background process while the step loop runs;
Weights & Biases and Rerun sinks receive the finished files or columns.

    >>> from episode_recorder.unienv import EpisodeVideoWrapper
    >>> from episode_recorder.gym import RecordVideo
"""

from __future__ import annotations

import logging

# Silent unless the application configures logging (the CLI does): INFO per saved file.
logging.getLogger("episode_recorder").addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = ["__version__"]
