"""MuJoCo scene source: every geom as static Rerun geometry, body poses buffered and sent in columns.

Layout of the logged entities (``root`` defaults to ``"world"``)::

    world/bodies/{body}          Transform3D, world pose (x,y,z,w), one row per frame
    world/bodies/{body}/{geom}   static Transform3D (the geom's pose in its body) + its shape

Bodies are flat (siblings under ``world/bodies``), so a world pose is applied exactly once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from episode_recorder._optional import require
from episode_recorder.rerun_stream import resolve_stream
from episode_recorder.scenes import send_pose_columns

if TYPE_CHECKING:
    import mujoco
    import rerun as rr

__all__ = ["MujocoRerunLogger"]

# mjtGeom values (stable across MuJoCo 2.x - 4.x).
PLANE, HFIELD, SPHERE, CAPSULE, ELLIPSOID, CYLINDER, BOX, MESH = range(8)
GEOM_KINDS = {
    PLANE: "plane",
    HFIELD: "hfield",
    SPHERE: "sphere",
    CAPSULE: "capsule",
    ELLIPSOID: "ellipsoid",
    CYLINDER: "cylinder",
    BOX: "box",
    MESH: "mesh",
}
_DEFAULT_RGBA = np.array([0.5, 0.5, 0.5, 1.0], dtype=np.float32)
_INFINITE_PLANE_HALF_SIZE = 20.0  # a plane of size 0 is infinite in MuJoCo; draw 40 m x 40 m


def _entity_names(names: Sequence[str], fallback: str) -> list[str]:
    """Unique entity-path parts: sanitized names, ``{fallback}_{i}`` for unnamed items."""
    parts: list[str] = []
    seen: set[str] = set()
    for index, name in enumerate(names):
        part = re.sub(r"[^A-Za-z0-9_\-]", "_", name) if name else f"{fallback}_{index}"
        if part in seen:
            part = f"{part}_{index}"
        seen.add(part)
        parts.append(part)
    return parts


def _wxyz_to_xyzw(quaternions: np.ndarray) -> np.ndarray:
    return quaternions[..., [1, 2, 3, 0]]


class MujocoRerunLogger:
    """Logs a MuJoCo model/data pair to Rerun: static geometry once, poses buffered in numpy.

    Follows :class:`episode_recorder.scenes.SceneSource`, so :class:`episode_recorder.rerun.LogRerun`
    drives it for every Gymnasium MuJoCo env. It can also be used on its own::

        >>> import mujoco, rerun as rr
        >>> model = mujoco.MjModel.from_xml_string(
        ...     "<mujoco><worldbody><body><freejoint/><geom size='.1'/></body></worldbody></mujoco>")
        >>> data = mujoco.MjData(model)
        >>> scene = MujocoRerunLogger(model, data, save_path="/tmp/er_doc/ball.rrd")
        >>> scene.log_geometry()
        >>> for _ in range(10):
        ...     mujoco.mj_step(model, data)
        ...     scene.record_poses()
        >>> scene.flush(time_columns=[rr.TimeColumn("step", sequence=range(10))])
        >>> scene.recording_stream.disconnect()

    Poses are computed from ``qpos`` and ``mocap_pos``/``mocap_quat`` on a private ``MjData``
    (``mj_kinematics``), so they match the state *after* ``mj_step`` (whose ``xpos`` lag one
    step behind) and the env's own ``data`` is never modified.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        recording_stream: rr.RecordingStream | None = None,
        save_path: str | os.PathLike[str] | None = None,
        application_id: str | None = None,
        root: str = "world",
    ) -> None:
        self._mujoco = require("mujoco", "mujoco", "MujocoRerunLogger")
        if not isinstance(model, self._mujoco.MjModel) or not isinstance(data, self._mujoco.MjData):
            raise TypeError(
                "MujocoRerunLogger needs a mujoco.MjModel and a mujoco.MjData, received "
                f"{type(model).__name__} and {type(data).__name__}."
            )
        self.model = model
        self.data = data
        self.root = root.strip("/")
        self._stream_args = (save_path, recording_stream, application_id or "mujoco")
        self._stream: rr.RecordingStream | None = None
        self._scratch = self._mujoco.MjData(model)

        body_names = [model.body(i).name for i in range(model.nbody)]
        geom_names = [model.geom(i).name for i in range(model.ngeom)]
        self.body_paths = [f"{self.root}/bodies/{part}" for part in _entity_names(body_names, "body")]
        geom_parts = _entity_names(geom_names, "geom")
        self.geom_paths = [
            f"{self.body_paths[int(model.geom_bodyid[g])]}/{geom_parts[g]}" for g in range(model.ngeom)
        ]
        # A body moves unless it is welded to the world (weldid 0); the world body itself is static.
        self.moving_bodies = np.flatnonzero(model.body_weldid != 0)
        self.static_bodies = np.flatnonzero(model.body_weldid == 0)

        self._positions: list[np.ndarray] = []
        self._quaternions: list[np.ndarray] = []

    @property
    def origin(self) -> str:
        """The entity every body hangs below (``/{root}``): the 3D view's origin."""
        return f"/{self.root}"

    @property
    def recording_stream(self) -> rr.RecordingStream:
        """The stream given at construction (resolved on first use, as ``LogRerun`` does)."""
        if self._stream is None:
            self._stream = resolve_stream(*self._stream_args)
        return self._stream

    def _kinematics(self) -> mujoco.MjData:
        scratch = self._scratch
        scratch.qpos[:] = self.data.qpos
        if self.model.nmocap:
            scratch.mocap_pos[:] = self.data.mocap_pos
            scratch.mocap_quat[:] = self.data.mocap_quat
        self._mujoco.mj_kinematics(self.model, scratch)
        return scratch

    def log_geometry(self, stream: rr.RecordingStream | None = None) -> None:
        """Log every geom as static geometry on its body, and the poses of bodies that never move."""
        rr = require("rerun", "rerun", "Logging to Rerun")
        stream = stream if stream is not None else self.recording_stream
        model = self.model
        stream.log(self.root, rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        state = self._kinematics()
        for body in self.static_bodies:
            stream.log(
                self.body_paths[body],
                rr.Transform3D(
                    translation=state.xpos[body].copy(),
                    quaternion=rr.Quaternion(xyzw=_wxyz_to_xyzw(state.xquat[body])),
                ),
                static=True,
            )
        for geom in range(model.ngeom):
            shape = self._shape(geom)
            if shape is None:
                continue
            local_pose = rr.Transform3D(
                translation=model.geom_pos[geom].copy(),
                quaternion=rr.Quaternion(xyzw=_wxyz_to_xyzw(model.geom_quat[geom])),
            )
            stream.log(self.geom_paths[geom], local_pose, shape, static=True)

    def _rgba(self, geom: int) -> np.ndarray:
        """The geom's colour as MuJoCo draws it: its material's, unless ``rgba`` was set."""
        rgba = self.model.geom_rgba[geom]
        material = int(self.model.geom_matid[geom])
        if material >= 0 and np.allclose(rgba, _DEFAULT_RGBA):
            rgba = self.model.mat_rgba[material]
        return np.round(np.clip(rgba, 0.0, 1.0) * 255).astype(np.uint8)

    def _shape(self, geom: int) -> Any | None:
        """The Rerun archetype drawing one geom in its own frame (None for kinds we do not draw)."""
        rr = require("rerun", "rerun", "Logging to Rerun")
        model = self.model
        kind = int(model.geom_type[geom])
        size = model.geom_size[geom].astype(np.float32)
        color = [self._rgba(geom)]
        if kind == PLANE:
            hx, hy = (s if s > 0 else _INFINITE_PLANE_HALF_SIZE for s in size[:2])
            vertices = np.array([[-hx, -hy, 0], [hx, -hy, 0], [hx, hy, 0], [-hx, hy, 0]], np.float32)
            return rr.Mesh3D(
                vertex_positions=vertices,
                triangle_indices=np.array([[0, 1, 2], [0, 2, 3]], np.uint32),
                vertex_normals=np.tile(np.array([0, 0, 1], np.float32), (4, 1)),
                albedo_factor=color[0],
            )
        if kind == SPHERE:
            return rr.Ellipsoids3D(half_sizes=[[size[0]] * 3], colors=color, fill_mode="solid")
        if kind == ELLIPSOID:
            return rr.Ellipsoids3D(half_sizes=[size[:3]], colors=color, fill_mode="solid")
        if kind == CAPSULE:  # MuJoCo: centred on the z axis; Rerun: from z=0 to z=length
            return rr.Capsules3D(
                lengths=[2 * size[1]], radii=[size[0]], translations=[[0, 0, -size[1]]], colors=color
            )
        if kind == CYLINDER:
            return rr.Cylinders3D(lengths=[2 * size[1]], radii=[size[0]], colors=color, fill_mode="solid")
        if kind == BOX:
            return rr.Boxes3D(half_sizes=[size[:3]], colors=color, fill_mode="solid")
        if kind == MESH:
            mesh = int(model.geom_dataid[geom])
            first, count = int(model.mesh_vertadr[mesh]), int(model.mesh_vertnum[mesh])
            face, faces = int(model.mesh_faceadr[mesh]), int(model.mesh_facenum[mesh])
            return rr.Mesh3D(
                vertex_positions=model.mesh_vert[first : first + count].copy(),
                triangle_indices=model.mesh_face[face : face + faces].astype(np.uint32),
                albedo_factor=color[0],
            )
        if kind == HFIELD:
            return self._heightfield(geom, color[0])
        return None

    def _heightfield(self, geom: int, color: np.ndarray) -> Any:
        """A height field as a triangle grid (MuJoCo: size = x, y half sizes, z top, z base)."""
        rr = require("rerun", "rerun", "Logging to Rerun")
        model = self.model
        field = int(model.geom_dataid[geom])
        rows, cols = int(model.hfield_nrow[field]), int(model.hfield_ncol[field])
        first = int(model.hfield_adr[field])
        heights = model.hfield_data[first : first + rows * cols].reshape(rows, cols)
        sx, sy, sz, _ = model.hfield_size[field]
        ys, xs = np.meshgrid(np.linspace(-sy, sy, rows), np.linspace(-sx, sx, cols), indexing="ij")
        vertices = np.stack([xs, ys, heights * sz], axis=-1).reshape(-1, 3).astype(np.float32)
        index = np.arange(rows * cols).reshape(rows, cols)
        a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, 1:], index[1:, :-1]
        triangles = np.concatenate(
            [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
        )
        return rr.Mesh3D(
            vertex_positions=vertices, triangle_indices=triangles.astype(np.uint32), albedo_factor=color
        )

    def record_poses(self) -> None:
        """Buffer the current world pose of every moving body (one row)."""
        state = self._kinematics()
        self._positions.append(state.xpos.copy())  # all bodies: a plain copy beats fancy indexing
        self._quaternions.append(state.xquat.copy())

    @property
    def buffered_rows(self) -> int:
        """Rows recorded since the last flush."""
        return len(self._positions)

    def flush(self, stream: rr.RecordingStream | None = None, time_columns: Sequence[Any] = ()) -> None:
        """Send the buffered poses with ``rr.send_columns`` (one call per moving body), then clear."""
        if not self._positions:
            return
        require("rerun", "rerun", "Logging to Rerun")
        stream = stream if stream is not None else self.recording_stream
        # (bodies, rows, 3|4) float32, so each body's column is contiguous: Rerun converts a
        # contiguous float32 column ~10x faster than a strided float64 one (and stores float32).
        moving = self.moving_bodies
        positions = np.stack(self._positions, axis=1)[moving].astype(np.float32)
        quaternions = _wxyz_to_xyzw(np.stack(self._quaternions, axis=1)[moving].astype(np.float32))
        self._positions.clear()
        self._quaternions.clear()
        send_pose_columns(stream, [self.body_paths[body] for body in moving], positions, quaternions, time_columns)
