"""A stand-in for an Isaac Lab ``InteractiveScene`` on a real usd-core stage (Isaac Lab needs Isaac Sim).

Faithful to Isaac Lab's documented data API, in both conventions:

- 2.x: ``asset.data.body_link_pose_w`` / ``body_pose_w`` are ``torch.Tensor`` (num_envs, num_bodies, 7),
  position then quaternion **w, x, y, z**, read from the simulation once per sim step into a fresh
  tensor (``TimestampedBuffer``: ``get_link_transforms().clone()``); the PhysX view is ``asset.root_physx_view``.
- 3.x: the same properties are ``ProxyArray`` (``.torch`` is a cached zero-copy view of the simulation's
  buffer, updated **in place** every step), quaternion **x, y, z, w**; the physics view is ``asset.root_view``.
 Articulation link prims come
from the view's ``link_paths`` (one list per env, in ``body_names`` order); a rigid object's body prim from
``prim_paths``. The rigid object's scene key (``object``) differs from its prim name (``Object``), and the
robot's link prims are nested (``link_1`` under ``link_0``), so ``{root}/{body_name}`` would be wrong.
``IsaacLabEnv`` is a minimal ``ManagerBasedRLEnv`` around a scene: batched tensors, ``step_dt``, finished
envs reset inside ``step()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import gymnasium as gym
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
    """``ArticulationData`` / ``RigidObjectData`` over the simulation's pose buffer (overwritten in place)."""

    def __init__(self, buffer: torch.Tensor, version: str) -> None:
        self._buffer = buffer
        self._version = version
        self.sim_step = 0  # advanced by write_poses()
        self._read: tuple[int, torch.Tensor | None] = (-1, None)

    @property
    def body_link_pose_w(self) -> Any:
        if self._version == "3":
            return ProxyArray(self._buffer)
        if self._read[0] != self.sim_step:  # 2.x: a fresh tensor once per sim step
            self._read = (self.sim_step, self._buffer.clone())
        return self._read[1]

    @property
    def body_pose_w(self) -> Any:
        return self.body_link_pose_w


class BodyPoseOnlyData(AssetData):
    """Data of an Isaac Lab release without ``body_link_pose_w``: the same poses as ``body_pose_w`` only."""

    @property
    def body_link_pose_w(self) -> Any:
        raise AttributeError("body_link_pose_w")

    @property
    def body_pose_w(self) -> Any:
        return AssetData.body_link_pose_w.fget(self)


class ComPoseData(AssetData):
    """Data whose ``body_pose_w`` is another frame (centres of mass, 1 m up): only the link pose is right."""

    @property
    def body_pose_w(self) -> Any:
        com = self._buffer + torch.tensor([0, 0, 1.0, 0, 0, 0, 0])
        return ProxyArray(com) if self._version == "3" else com


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


def make_scene(
    num_envs: int = 2,
    num_links: int = 3,
    version: str = "2",
    physics_dt: float = 0.005,
    nested_links: bool = True,
    object_key: str = "object",
    data_class: type[AssetData] = AssetData,
) -> InteractiveScene:
    """A robot (``num_links`` links, a box visual and a guide collision each) and an object per env.

    ``nested_links=False`` and ``object_key="Object"`` give the layout usd-rerun-logger 0.5 can read
    (``{root}/{body_name}``), for benchmarks against it. ``data_class`` models other releases'
    data (``BodyPoseOnlyData``, ``ComPoseData``).
    """
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
            parent = f"{parent}/{name}" if nested_links else f"/World/envs/env_{env}/Robot/{name}"  # URDF imports nest
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
        "/World/envs/env_.*/Robot", link_names, robot_view, data_class(robot_buffer, version), version
    )
    object_buffer = torch.zeros(num_envs, 1, 7)
    scene.rigid_objects[object_key] = Asset(
        "/World/envs/env_.*/Object", ["Object"], PhysicsView(object_paths), data_class(object_buffer, version), version
    )
    identity = [1.0, 0, 0, 0] if version == "2" else [0, 0, 0, 1.0]
    robot_buffer[..., 3:] = torch.tensor(identity)
    object_buffer[..., 3:] = torch.tensor(identity)
    return scene


def write_poses(scene: InteractiveScene, poses: dict[str, np.ndarray], version: str) -> None:
    """Write poses (x,y,z, qx,qy,qz,qw per asset key) into the simulation's buffers in place: one sim step."""
    for key, asset in {**scene.articulations, **scene.rigid_objects}.items():
        stored = poses[key] if version == "3" else poses[key][..., [0, 1, 2, 6, 3, 4, 5]]
        asset.data._buffer[...] = torch.from_numpy(np.ascontiguousarray(stored))  # in place, never a new tensor
        asset.data.sim_step += 1


def random_poses(scene: InteractiveScene, t: int) -> dict[str, np.ndarray]:
    """Reproducible random poses for step ``t``, x,y,z, qx,qy,qz,qw (float32) per asset key."""
    poses = {}
    for key, asset in {**scene.articulations, **scene.rigid_objects}.items():
        envs, bodies = asset.data._buffer.shape[:2]
        rng = np.random.default_rng(t * 1000 + len(key))
        position = rng.normal(size=(envs, bodies, 3)).astype(np.float32)
        quat_xyzw = rng.normal(size=(envs, bodies, 4)).astype(np.float32)
        quat_xyzw /= np.linalg.norm(quat_xyzw, axis=-1, keepdims=True)
        poses[key] = np.concatenate([position, quat_xyzw], axis=-1)
    return poses


def step(scene: InteractiveScene, t: int, version: str) -> dict[str, np.ndarray]:
    """One sim step of random poses, written in place; returns them as x,y,z, qx,qy,qz,qw per asset key."""
    poses = random_poses(scene, t)
    write_poses(scene, poses, version)
    return poses


class IsaacLabEnv(gym.Env):
    """A minimal ``ManagerBasedRLEnv``: batched torch tensors, ``scene``, ``step_dt = decimation x physics_dt``.

    Env ``i`` times out after ``episode_lengths[i]`` steps and is reset inside ``step()`` to the home
    pose (the origin, identity rotation), as Isaac Lab does; ``reset()`` is called once. ``poses``
    holds what the scene shows after the last call (x,y,z, qx,qy,qz,qw per asset key).
    """

    metadata = {"render_modes": [None], "is_vector_env": True}

    def __init__(self, scene: InteractiveScene, version: str, episode_lengths: list[int], decimation: int = 4):
        self.scene = scene
        self.version = version
        self.num_envs = scene.num_envs
        self.physics_dt = scene.physics_dt
        self.step_dt = scene.physics_dt * decimation
        self.episode_lengths = torch.tensor(episode_lengths)
        self.episode_length_buf = torch.zeros(self.num_envs, dtype=torch.long)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (2,))
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.num_envs, 2))
        self.observation_space = gym.spaces.Dict({"policy": gym.spaces.Box(-np.inf, np.inf, (self.num_envs, 3))})
        self.t = 0
        self.poses: dict[str, np.ndarray] = {}

    def _home(self, envs: np.ndarray) -> None:
        for pose in self.poses.values():
            pose[envs] = 0.0
            pose[envs, :, 6] = 1.0

    def _observations(self) -> dict[str, torch.Tensor]:
        return {"policy": torch.from_numpy(self.poses["robot"][:, 0, :3].copy())}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self.poses = random_poses(self.scene, 0)
        self._home(np.arange(self.num_envs))
        self.episode_length_buf[:] = 0
        write_poses(self.scene, self.poses, self.version)
        return self._observations(), {}

    def step(self, action: torch.Tensor) -> Any:
        self.t += 1
        self.poses = random_poses(self.scene, self.t)
        self.episode_length_buf += 1
        reward = action.sum(dim=1) + self.episode_length_buf.float()
        time_out = self.episode_length_buf >= self.episode_lengths
        terminated = torch.zeros(self.num_envs, dtype=torch.bool)
        done = time_out.nonzero().flatten()
        self._home(done.numpy())  # reset_idx: finished envs start their next episode now
        self.episode_length_buf[done] = 0
        write_poses(self.scene, self.poses, self.version)
        return self._observations(), reward, terminated, time_out, {}
