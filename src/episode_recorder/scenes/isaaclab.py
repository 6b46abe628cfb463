"""Log an Isaac Lab ``InteractiveScene`` to Rerun: body geometry from the USD stage once, body poses from the physics data.

Each body of each articulation and rigid object in the logged envs is one flat entity carrying
its world pose (``{asset prim}/{body name}`` for articulations, the body prim for rigid objects);
its visual prims hang below it with their static pose relative to the body. Poses come from
``data.body_link_pose_w`` (else ``data.body_pose_w``), sliced to the logged envs on the device
before the one host copy. Isaac Lab 2.x (``torch.Tensor``, quaternion w,x,y,z) and 3.x
(``ProxyArray`` with ``.torch``, quaternion x,y,z,w) are told apart by the type of the data.

    >>> logger = IsaacLabRerunLogger(env.unwrapped.scene, logged_envs=[0, 1], save_path="run.rrd")  # doctest: +SKIP
    >>> for step in range(100):  # doctest: +SKIP
    ...     env.step(actions)
    ...     logger.stream.set_time("step", sequence=step)
    ...     logger.log_scene()
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from episode_recorder.frames import EnvRows
from episode_recorder.rerun_stream import resolve_stream
from episode_recorder.scenes import ArrowBatch, send_pose_columns
from episode_recorder.scenes.usd import _pxr, iter_drawn_prims, log_prim_geometry, stage_axis_and_units

if TYPE_CHECKING:
    import rerun as rr

XYZW_FROM_WXYZ = [0, 1, 2, 4, 5, 6, 3]


@dataclass
class _Asset:
    """One articulation or rigid object: where its bodies are and how to read their poses."""

    key: str
    asset: Any
    entities: list[str]  # logged env-major: env 0's bodies, env 1's bodies, ...
    prims: list[str]


def is_isaaclab_scene(scene: Any) -> bool:
    """Whether ``scene`` looks like an Isaac Lab ``InteractiveScene`` (what ``LogRerun`` checks)."""
    return all(hasattr(scene, name) for name in ("articulations", "rigid_objects", "num_envs", "stage"))


def pose_array(data: Any) -> tuple[Any, bool]:
    """(torch tensor of body poses (envs, bodies, 7), quaternion is x,y,z,w) from an asset's data.

    Isaac Lab 3.x returns ``ProxyArray`` (``.torch``, x,y,z,w); 2.x returns ``torch.Tensor`` (w,x,y,z).
    """
    name, value = "body_link_pose_w", getattr(data, "body_link_pose_w", None)  # one read: it may compute
    if value is None:
        name, value = "body_pose_w", getattr(data, "body_pose_w", None)
    if value is None:
        raise ValueError(
            f"Cannot read body poses from {type(data).__name__}: it has neither body_link_pose_w nor "
            "body_pose_w. IsaacLabRerunLogger supports Isaac Lab 2.x and 3.x articulations and rigid objects."
        )
    if type(value).__module__.split(".")[0] == "torch":
        tensor, xyzw = value, False
    elif hasattr(value, "torch"):
        tensor, xyzw = value.torch, True
    else:
        raise ValueError(
            f"Unknown pose layout for {name}: got {type(value).__module__}.{type(value).__name__}. Expected a "
            "torch.Tensor (Isaac Lab 2.x, quaternion w,x,y,z) or a ProxyArray with .torch (Isaac Lab 3.x, x,y,z,w)."
        )
    if tensor.ndim != 3 or tensor.shape[-1] != 7:
        raise ValueError(f"{name} should have shape (num_envs, num_bodies, 7), got {tuple(tensor.shape)}.")
    return tensor, xyzw


def _physics_view(asset: Any) -> Any:
    return getattr(asset, "root_physx_view", None) or getattr(asset, "root_view", None)


def _env_path(pattern: str, env: int) -> str:
    return re.sub(r"env_\.\*", f"env_{env}", pattern)


def _body_prims(asset: Any, stage: Any, env: int, is_articulation: bool) -> list[str]:
    """Prim paths of the asset's bodies in ``env``, from the physics view (same order as ``body_names``)."""
    view = _physics_view(asset)
    if is_articulation and view is not None and getattr(view, "link_paths", None):
        return list(view.link_paths[env])
    if not is_articulation and view is not None and getattr(view, "prim_paths", None):
        return [view.prim_paths[env]]
    # No view yet: find each body by name below the asset's prim (never guess `{root}/{name}`).
    _, Usd, _, _ = _pxr()
    root = stage.GetPrimAtPath(_env_path(asset.cfg.prim_path, env))
    found = {}
    for prim in Usd.PrimRange(root, Usd.TraverseInstanceProxies(Usd.PrimDefaultPredicate)):
        found.setdefault(prim.GetName(), str(prim.GetPath()))
    missing = [name for name in asset.body_names if name not in found]
    if missing:
        raise ValueError(f"Bodies {missing} not found below {root.GetPath()} on the stage.")
    return [found[name] for name in asset.body_names]


def _rigid(matrix: np.ndarray) -> np.ndarray:
    """The rotation+translation part of a row-vector 4x4 matrix (scale removed)."""
    out = matrix.copy()
    out[:3, :3] /= np.linalg.norm(out[:3, :3], axis=1, keepdims=True)
    return out


class IsaacLabRerunLogger:
    """Rerun scene source for an Isaac Lab ``InteractiveScene``; also usable on its own with ``log_scene()``.

    Standalone: set the time on the stream, then call ``log_scene()`` (geometry on the first call,
    then the poses that changed). Inside ``LogRerun`` (the :class:`~episode_recorder.scenes.SceneSource`
    methods): ``log_geometry`` once, ``record_poses`` per frame, ``flush`` sends them with ``rr.send_columns``.

        >>> logger = IsaacLabRerunLogger(scene, logged_envs=0, save_path="scene.rrd")  # doctest: +SKIP
        >>> logger.stream.set_time("step", sequence=0)  # doctest: +SKIP
        >>> logger.log_scene()  # doctest: +SKIP
    """

    def __init__(
        self,
        scene: Any,
        logged_envs: int | Sequence[int] = 0,
        recording_stream: rr.RecordingStream | None = None,
        save_path: str | os.PathLike[str] | None = None,
        application_id: str | None = None,
    ) -> None:
        if not is_isaaclab_scene(scene):
            raise ValueError(
                f"IsaacLabRerunLogger needs an Isaac Lab InteractiveScene (articulations, rigid_objects, "
                f"num_envs, stage); got {type(scene).__name__}."
            )
        self.scene = scene
        self.envs = [int(logged_envs)] if isinstance(logged_envs, (int, np.integer)) else [int(e) for e in logged_envs]
        bad = [e for e in self.envs if not 0 <= e < scene.num_envs]
        if bad or not self.envs:
            raise ValueError(f"logged_envs {bad or self.envs} out of range for a scene of {scene.num_envs} envs.")
        self.stream = resolve_stream(save_path, recording_stream, application_id or "isaaclab")
        self.assets = self._find_assets()
        self.entities = [e for a in self.assets for e in a.entities]
        self._env_rows = EnvRows(self.envs)
        self._rows: list[list[tuple[Any, bool]]] = []  # per frame, per asset: (poses on the device, xyzw)
        self._last: np.ndarray | None = None
        self._geometry_logged = False

    @property
    def origin(self) -> str:
        """The top prim above the logged bodies (``/World`` in Isaac Lab): the 3D view's origin."""
        return "/" + self.entities[0].strip("/").split("/")[0] if self.entities else "/"

    def _find_assets(self) -> list[_Asset]:
        assets = []
        groups = ((self.scene.articulations, True), (self.scene.rigid_objects, False))
        for group, is_articulation in groups:
            for key, asset in group.items():
                entities, prims = [], []
                for env in self.envs:
                    body_prims = _body_prims(asset, self.scene.stage, env, is_articulation)
                    prims += body_prims
                    if is_articulation:
                        root = _env_path(asset.cfg.prim_path, env)
                        entities += [f"{root}/{name}" for name in asset.body_names]
                    else:
                        entities += body_prims
                assets.append(_Asset(key, asset, entities, prims))
        return assets

    # ------------------------------------------------------------ poses

    def _select_poses(self) -> list[tuple[Any, bool]]:
        """Per asset: (the logged envs' body poses as a new tensor on the sim's device, quaternion is x,y,z,w)."""
        selected = []
        for item in self.assets:
            tensor, xyzw = pose_array(item.asset.data)
            selected.append((self._env_rows.select(tensor), xyzw))  # index_select: a copy, not a view
        return selected

    def _to_host(self, rows: list[list[tuple[Any, bool]]]) -> np.ndarray:
        """(rows, bodies, 7) float32 x,y,z, qx,qy,qz,qw from selected rows: one host copy per asset."""
        import torch

        parts = []
        for asset in range(len(self.assets)):
            xyzw = rows[0][asset][1]
            host = torch.stack([row[asset][0] for row in rows]).cpu().numpy().reshape(len(rows), -1, 7)
            parts.append(host if xyzw else host[..., XYZW_FROM_WXYZ])
        return np.concatenate(parts, axis=1, dtype=np.float32)

    def read_poses(self) -> np.ndarray:
        """World poses of every logged body, (bodies, 7) as x,y,z, qx,qy,qz,qw: a fresh host copy."""
        return self._to_host([self._select_poses()])[0]

    def record_poses(self) -> None:
        """Buffer one row of poses, selected on the sim's device; the host copy waits for ``flush``."""
        self._rows.append(self._select_poses())

    def flush(self, stream: rr.RecordingStream, time_columns: Sequence[Any]) -> None:
        """``rr.send_columns`` the buffered rows, one call per body, with ``time_columns`` (``rr.TimeColumn``s)."""
        if not self._rows:
            return
        poses = self._to_host(self._rows).transpose(1, 0, 2)  # (bodies, rows, 7)
        self._rows.clear()
        send_pose_columns(stream, self.entities, poses[..., :3], poses[..., 3:], time_columns)

    # ------------------------------------------------------------ geometry

    def log_geometry(self, stream: rr.RecordingStream) -> None:
        """Log every body's visual prims (static), below the body entity with their pose relative to the body."""
        import rerun as rr

        _, Usd, UsdGeom, _ = _pxr()
        stage = self.scene.stage
        up, _ = stage_axis_and_units(stage)
        stream.log("/", rr.ViewCoordinates.RIGHT_HAND_Y_UP if up == "Y" else rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        cache = UsdGeom.XformCache(Usd.TimeCode.EarliestTime())
        all_bodies = {p for a in self.assets for p in a.prims}
        for item in self.assets:
            for entity, body_path in zip(item.entities, item.prims):
                body = stage.GetPrimAtPath(body_path)
                if not body:
                    raise ValueError(f"Body prim {body_path} of scene asset {item.key!r} is not on the stage.")
                body_world = _rigid(np.array(cache.GetLocalToWorldTransform(body), dtype=np.float64).reshape(4, 4))
                inverse = np.linalg.inv(body_world)
                for prim in iter_drawn_prims(body, stop_at=all_bodies - {body_path}):
                    path = str(prim.GetPath())
                    relative = path[len(body_path) + 1 :] if path != body_path else "geometry"
                    child = f"{entity}/{relative}"
                    pose = np.array(cache.GetLocalToWorldTransform(prim), dtype=np.float64).reshape(4, 4) @ inverse
                    stream.log(child, rr.Transform3D(translation=pose[3, :3], mat3x3=pose[:3, :3].T), static=True)
                    log_prim_geometry(stream, child, prim, Usd.TimeCode.EarliestTime())

    # ------------------------------------------------------------ standalone

    def log_scene(self) -> None:
        """Log geometry on the first call, then the bodies whose pose changed, at the stream's current time."""
        import rerun as rr

        if not self._geometry_logged:
            self.log_geometry(self.stream)
            self._geometry_logged = True
        poses = self.read_poses()
        changed = np.ones(len(poses), dtype=bool) if self._last is None else (poses != self._last).any(axis=1)
        self._last = poses
        # Rerun has no multi-entity log at the caller's current time, so this is one log per changed
        # body; its rows are sliced from two Arrow arrays converted once per call, which costs half of
        # building an rr.Transform3D per body. Inside LogRerun, flush() sends each body's rows in one
        # send_columns instead.
        translations = rr.components.Translation3DBatch(poses[:, :3]).as_arrow_array()
        quaternions = rr.components.RotationQuatBatch(poses[:, 3:]).as_arrow_array()
        translation_descriptor = rr.Transform3D.descriptor_translation()
        quaternion_descriptor = rr.Transform3D.descriptor_quaternion()
        for index in np.flatnonzero(changed):
            self.stream.log(
                self.entities[index],
                [
                    rr.DescribedComponentBatch(ArrowBatch(translations.slice(index, 1)), translation_descriptor),
                    rr.DescribedComponentBatch(ArrowBatch(quaternions.slice(index, 1)), quaternion_descriptor),
                ],
            )
