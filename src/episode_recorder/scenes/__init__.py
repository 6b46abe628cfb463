"""Rerun 3D scene sources: static geometry logged once, per-step poses buffered and sent in columns.

Every source follows :class:`SceneSource`, so ``LogRerun`` drives MuJoCo, Isaac Lab and USD alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import rerun as rr


class SceneSource(Protocol):
    """What ``LogRerun`` needs from a 3D scene.

    ``LogRerun`` owns the timelines: it calls ``log_geometry`` once per recording, ``record_poses``
    after the reset that starts a recording and after every recorded step, and ``flush`` with one
    time value per buffered row (every N rows and when a recording stops).
    """

    def log_geometry(self, stream: rr.RecordingStream) -> None:
        """Log static geometry (``static=True``) for every body, once per recording."""

    def record_poses(self) -> None:
        """Copy the current world poses of the logged bodies into the buffer (one row)."""

    def flush(self, stream: rr.RecordingStream, time_columns: Sequence[Any]) -> None:
        """``rr.send_columns`` the buffered rows with ``time_columns`` (one entry per row), then clear."""
