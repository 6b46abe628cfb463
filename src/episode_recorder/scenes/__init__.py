"""Rerun 3D scene sources: static geometry logged once, per-step poses buffered and sent in columns.

Every source follows :class:`SceneSource`, so ``LogRerun`` drives MuJoCo, Isaac Lab and USD alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import rerun as rr


class SceneSource(Protocol):
    """What ``LogRerun`` needs from a 3D scene.

    ``LogRerun`` owns the timelines: it calls ``log_geometry`` once per recording, ``record_poses``
    after the reset that starts a recording and after every recorded step, and ``flush`` with one
    time value per buffered row (every N rows and when a recording stops). ``origin`` is the
    entity the default blueprint's 3D view is centred on.
    """

    origin: str

    def log_geometry(self, stream: rr.RecordingStream) -> None:
        """Log static geometry (``static=True``) for every body, once per recording."""

    def record_poses(self) -> None:
        """Copy the current world poses of the logged bodies into the buffer (one row)."""

    def flush(self, stream: rr.RecordingStream, time_columns: Sequence[Any]) -> None:
        """``rr.send_columns`` the buffered rows with ``time_columns`` (one entry per row), then clear."""


class ArrowBatch:
    """An already converted Arrow array, as ``rr.log`` and ``rr.ComponentColumn`` take it (``ComponentBatchLike``)."""

    __slots__ = ("array",)

    def __init__(self, array: Any) -> None:
        self.array = array

    def as_arrow_array(self) -> Any:
        return self.array


def send_pose_columns(
    stream: rr.RecordingStream,
    entities: Sequence[str],
    translations: np.ndarray,
    quaternions: np.ndarray,
    time_columns: Sequence[Any],
) -> None:
    """``rr.send_columns`` a ``Transform3D`` column to each entity, one row per time.

    ``translations`` is (entities, rows, 3) and ``quaternions`` (entities, rows, 4), x,y,z,w. Both are
    converted to Arrow once and sliced per entity: a third of the cost of ``rr.Transform3D.columns``
    per entity.
    """
    import rerun as rr

    rows = translations.shape[1]
    flat_translations = rr.components.Translation3DBatch(translations.reshape(-1, 3)).as_arrow_array()
    flat_quaternions = rr.components.RotationQuatBatch(quaternions.reshape(-1, 4)).as_arrow_array()
    translation = rr.Transform3D.descriptor_translation()
    quaternion = rr.Transform3D.descriptor_quaternion()
    for index, entity in enumerate(entities):
        start = index * rows
        stream.send_columns(
            entity,
            indexes=time_columns,
            columns=[
                rr.ComponentColumn(translation, ArrowBatch(flat_translations.slice(start, rows))),
                rr.ComponentColumn(quaternion, ArrowBatch(flat_quaternions.slice(start, rows))),
            ],
        )
