"""A stand-in for an Isaac Lab ``InteractiveScene`` on a real usd-core stage (Isaac Lab needs Isaac Sim).

Faithful to Isaac Lab's documented data API, in both conventions:

- 2.x: ``asset.data.body_link_pose_w`` / ``body_pose_w`` are ``torch.Tensor`` (num_envs, num_bodies, 7),
  position then quaternion **w, x, y, z**; the PhysX view is ``asset.root_physx_view``.
- 3.x: the same properties are ``ProxyArray`` (``.torch`` is a cached zero-copy tensor view), quaternion
  **x, y, z, w**; the physics view is ``asset.root_view``.

Both update their pose buffers **in place** every step, as Isaac Lab does. Articulation link prims come
from the view's ``link_paths`` (one list per env, in ``body_names`` order); a rigid object's body prim from
``prim_paths``. The rigid object's scene key (``object``) differs from its prim name (``Object``), and the
robot's link prims are nested (``link_1`` under ``link_0``), so ``{root}/{body_name}`` would be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pxr import Gf, Usd, UsdGeom


class ProxyArray:
    """Isaac Lab 3.x's warp-first array wrapper, reduced to what a reader uses: ``.torch`` and shape/dtype/device."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self._tensor = tensor

    @property
    def torch(self) -> torch.Tensor:
        return self._tensor  # zero-copy view of the live buffer, like Isaac Lab's cached wp.to_torch

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._tensor.shape)

    @property
    def dtype(self) -> Any:
        return self._tensor.dtype

    @property
    def device(self) -> Any:
        return self._tensor.device


@dataclass
class AssetCfg:
    prim_path: str


@dataclass
class PhysicsView:
    prim_paths: list[str]
    link_paths: list[list[str]] = field(default_factory=list)


class AssetData:
    """``ArticulationData`` / ``RigidObjectData``: pose buffers owned by the sim, overwritten in place."""

    def __init__(self, buffer: torch.Tensor, version: str) -> None:
        self._buffer = buffer
        self._version = version

    @property
    def body_link_pose_w(self) -> Any:
        return self._buffer if self._version == "2" else ProxyArray(self._buffer)

    @property
    def body_pose_w(self) -> Any:
        return self.body_link_pose_w


class Asset:
    """``Articulation`` / ``RigidObject``: ``cfg.prim_path`` with ``env_.*``, ``body_names``, ``data``, physics view."""

    def __init__(self, prim_path: str, body_names: list[str], view: PhysicsView, data: AssetData, version: str) -> None:
        self.cfg = AssetCfg(prim_path)
        self.body_names = body_names
        self.data = data
        self.num_bodies = len(body_names)
        if version == "2":
            self.root_physx_view = view
        else:
            self.root_view = view


class InteractiveScene:
    def __init__(self, stage: Usd.Stage, num_envs: int, physics_dt: float) -> None:
        self.stage = stage
        self.num_envs = num_envs
        self.physics_dt = physics_dt
        self.env_ns = "/World/envs"
        self.articulations: dict[str, Asset] = {}
        self.rigid_objects: dict[str, Asset] = {}

    def __getitem__(self, key: str) -> Asset:
        return {**self.articulations, **self.rigid_objects}[key]


def make_scene(num_envs: int = 2, num_links: int = 3, version: str = "2", physics_dt: float = 0.005) -> InteractiveScene:
    """A robot (``num_links`` nested links, a box visual and a guide collision each) and an object per env."""
    stage = Usd.Stage.CreateInMemory()
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    link_names = [f"link_{i}" for i in range(num_links)]
    link_paths, object_paths = [], []
    for env in range(num_envs):
        UsdGeom.Xform.Define(stage, f"/World/envs/env_{env}").AddTranslateOp().Set(Gf.Vec3d(3.0 * env, 0, 0))
        parent = f"/World/envs/env_{env}/Robot"
        UsdGeom.Xform.Define(stage, parent)
        paths = []
        for name in link_names:
            parent = f"{parent}/{name}"  # nested links, as URDF imports produce
            link = UsdGeom.Xform.Define(stage, parent)
            link.AddTranslateOp().Set(Gf.Vec3d(0, 0, 0.5))
            visual = UsdGeom.Cube.Define(stage, f"{parent}/visuals/box")
            visual.CreateSizeAttr(0.1)
            visual.AddTranslateOp().Set(Gf.Vec3d(0, 0, 0.25))
            collision = UsdGeom.Cube.Define(stage, f"{parent}/collisions/box")
            collision.CreatePurposeAttr(UsdGeom.Tokens.guide)
            paths.append(parent)
        link_paths.append(paths)
        obj = UsdGeom.Xform.Define(stage, f"/World/envs/env_{env}/Object")
        UsdGeom.Sphere.Define(stage, f"/World/envs/env_{env}/Object/geometry/ball").CreateRadiusAttr(0.05)
        object_paths.append(str(obj.GetPath()))
    scene = InteractiveScene(stage, num_envs, physics_dt)
    robot_view = PhysicsView([p[0] for p in link_paths], link_paths)
    robot_buffer = torch.zeros(num_envs, num_links, 7)
    scene.articulations["robot"] = Asset(
        "/World/envs/env_.*/Robot", link_names, robot_view, AssetData(robot_buffer, version), version
    )
    object_buffer = torch.zeros(num_envs, 1, 7)
    scene.rigid_objects["object"] = Asset(
        "/World/envs/env_.*/Object", ["Object"], PhysicsView(object_paths), AssetData(object_buffer, version), version
    )
    identity = [1.0, 0, 0, 0] if version == "2" else [0, 0, 0, 1.0]
    robot_buffer[..., 3:] = torch.tensor(identity)
    object_buffer[..., 3:] = torch.tensor(identity)
    return scene


def step(scene: InteractiveScene, t: int, version: str) -> dict[str, np.ndarray]:
    """Write new poses into the scene's buffers in place; return them as x,y,z, qx,qy,qz,qw (float32) per asset."""
    truth = {}
    for key, asset in {**scene.articulations, **scene.rigid_objects}.items():
        buffer = asset.data._buffer
        envs, bodies = buffer.shape[:2]
        rng = np.random.default_rng(t * 1000 + len(key))
        position = rng.normal(size=(envs, bodies, 3)).astype(np.float32)
        quat_xyzw = rng.normal(size=(envs, bodies, 4)).astype(np.float32)
        quat_xyzw /= np.linalg.norm(quat_xyzw, axis=-1, keepdims=True)
        stored = quat_xyzw if version == "3" else quat_xyzw[..., [3, 0, 1, 2]]
        buffer[..., :3] = torch.from_numpy(position)  # in place, never a new tensor
        buffer[..., 3:] = torch.from_numpy(np.ascontiguousarray(stored))
        truth[key] = np.concatenate([position, quat_xyzw], axis=-1)
    return truth
