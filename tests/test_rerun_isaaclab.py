"""IsaacLabRerunLogger on a faithful Isaac Lab stand-in (2.x and 3.x conventions), read back from the .rrd."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import rerun as rr
import torch
from pxr import Gf, UsdGeom

from episode_recorder.rerun import LogRerun
from episode_recorder.scenes.isaaclab import IsaacLabRerunLogger
from isaaclab_standin import AssetData, BodyPoseOnlyData, ComPoseData, IsaacLabEnv, make_scene, step, write_poses
from rrd_read import assert_usd_world_bounds, blueprint_views, component, read_rrd

ENVS = [0, 2]


def expected_rows(truth: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Entity -> pose (7,) for the logged envs."""
    out = {}
    for env in ENVS:
        for link in range(truth["robot"].shape[1]):
            out[f"/World/envs/env_{env}/Robot/link_{link}"] = truth["robot"][env, link]
        out[f"/World/envs/env_{env}/Object"] = truth["object"][env, 0]
    return out


def poses_at(rows: list[dict], timeline: str, t: int) -> np.ndarray:
    row = [r for r in rows if r.get(timeline) == t and r.get("Transform3D:translation") is not None]
    assert len(row) == 1, row
    return np.array(row[0]["Transform3D:translation"][0] + row[0]["Transform3D:quaternion"][0])


# Poses come from body_link_pose_w, else (older releases) body_pose_w; with both, from the link frame.
@pytest.mark.parametrize("data_class", [AssetData, BodyPoseOnlyData, ComPoseData])
@pytest.mark.parametrize("version", ["2", "3"])
def test_log_scene_poses_equal_the_data_fed_in(tmp_path, version, data_class):
    scene = make_scene(num_envs=3, num_links=3, version=version, data_class=data_class)
    logger = IsaacLabRerunLogger(scene, logged_envs=ENVS, save_path=tmp_path / "scene.rrd")
    truths = []
    for t in range(3):
        truths.append(step(scene, t, version))
        logger.stream.set_time("step", sequence=t)
        logger.log_scene()
    logger.stream.disconnect()
    rows = read_rrd(tmp_path / "scene.rrd")

    for t, truth in enumerate(truths):
        for entity, pose in expected_rows(truth).items():
            np.testing.assert_allclose(poses_at(rows[entity], "step", t), pose, atol=1e-6)
    assert not any("env_1" in path for path in rows)
    # Geometry below each body with its pose relative to the body; nested links not drawn twice.
    box = rows["/World/envs/env_2/Robot/link_1/visuals/box"]
    assert component(box, "Boxes3D:half_sizes")[0][0] == pytest.approx([0.05] * 3)
    assert component(box, "Transform3D:translation") == [[[0.0, 0.0, 0.25]]]
    assert all(r["static"] for r in box)
    assert "/World/envs/env_2/Robot/link_0/link_1/visuals/box" not in rows
    assert not any("collisions" in path for path in rows)  # guide purpose
    ball = rows["/World/envs/env_0/Object/geometry/ball"]  # key `object`, prim `Object`
    assert component(ball, "Ellipsoids3D:half_sizes")[0][0] == pytest.approx([0.05] * 3)


def test_geometry_under_the_physics_poses_has_usds_world_bounds(tmp_path):
    """Body poses equal to the stage's: every visual is where USD puts it, a turned and scaled body included."""
    scene = make_scene(num_envs=2, num_links=3, version="3")
    stage = scene.stage
    body = UsdGeom.Xformable(stage.GetPrimAtPath("/World/envs/env_1/Object"))
    body.AddRotateXYZOp().Set(Gf.Vec3f(30, 0, 45))
    body.AddScaleOp().Set(Gf.Vec3f(2.0, 1.0, 3.0))  # physics poses are rigid: the scale stays on the visuals
    UsdGeom.Xformable(stage.GetPrimAtPath("/World/envs/env_1/Robot/link_0/link_1")).AddRotateYOp().Set(90.0)
    bodies = {  # per asset, per env: the body prims in body_names order, from the physics views
        "robot": scene.articulations["robot"].root_view.link_paths,
        "object": [[path] for path in scene.rigid_objects["object"].root_view.prim_paths],
    }
    cache = UsdGeom.XformCache()
    poses = {key: np.zeros((2, len(paths[0]), 7), dtype=np.float32) for key, paths in bodies.items()}
    for key, paths in bodies.items():
        for env, index in np.ndindex(poses[key].shape[:2]):
            transform = Gf.Transform(cache.GetLocalToWorldTransform(stage.GetPrimAtPath(paths[env][index])))
            quat = transform.GetRotation().GetQuat()
            poses[key][env, index] = [*transform.GetTranslation(), *quat.GetImaginary(), quat.GetReal()]
    write_poses(scene, poses, "3")
    logger = IsaacLabRerunLogger(scene, logged_envs=[0, 1], save_path=tmp_path / "scene.rrd")
    logger.stream.set_time("step", sequence=0)
    logger.log_scene()
    logger.stream.disconnect()
    rows = read_rrd(tmp_path / "scene.rrd")

    visuals = {}  # entity -> prim
    for env in (0, 1):
        robot = f"/World/envs/env_{env}/Robot"
        for link in range(3):
            nested = "/".join(f"link_{i}" for i in range(link + 1))
            visuals[f"{robot}/link_{link}/visuals/box"] = f"{robot}/{nested}/visuals/box"
        ball = f"/World/envs/env_{env}/Object/geometry/ball"
        visuals[ball] = ball
    for entity, prim_path in visuals.items():
        assert_usd_world_bounds(rows, entity, stage.GetPrimAtPath(prim_path))


@pytest.mark.parametrize("version", ["2", "3"])
def test_unchanged_poses_are_not_logged_again(tmp_path, version):
    scene = make_scene(num_envs=1, num_links=2, version=version)
    logger = IsaacLabRerunLogger(scene, save_path=tmp_path / "scene.rrd")
    step(scene, 0, version)
    for t in range(3):
        logger.stream.set_time("step", sequence=t)
        logger.log_scene()
    logger.stream.disconnect()
    rows = read_rrd(tmp_path / "scene.rrd")
    assert len(component(rows["/World/envs/env_0/Robot/link_1"], "Transform3D:translation")) == 1


@pytest.mark.parametrize("version", ["2", "3"])
def test_scene_source_buffers_in_place_updates_and_flushes_columns(tmp_path, version):
    scene = make_scene(num_envs=3, num_links=2, version=version)
    logger = IsaacLabRerunLogger(scene, logged_envs=ENVS, save_path=tmp_path / "scene.rrd")
    logger.log_geometry(logger.stream)
    truths = []
    for t in range(4):
        truths.append(step(scene, t, version))  # the same buffers, overwritten in place
        logger.record_poses()
    logger.flush(logger.stream, [rr.TimeColumn("frame", sequence=[10, 11, 12, 13])])
    logger.stream.disconnect()
    rows = read_rrd(tmp_path / "scene.rrd")

    for t, truth in enumerate(truths):
        for entity, pose in expected_rows(truth).items():
            np.testing.assert_allclose(poses_at(rows[entity], "frame", 10 + t), pose, atol=1e-6)


def test_unknown_pose_layout_is_a_clear_error(tmp_path):
    scene = make_scene(num_envs=1, num_links=1)
    scene.articulations["robot"].data = SimpleNamespace(body_link_pose_w=np.zeros((1, 1, 7)))  # neither torch nor ProxyArray
    logger = IsaacLabRerunLogger(scene, save_path=tmp_path / "scene.rrd")
    with pytest.raises(ValueError, match="numpy.ndarray.*torch.Tensor.*ProxyArray"):
        logger.record_poses()
    scene.articulations["robot"].data = SimpleNamespace(body_state_w=torch.zeros(1, 1, 13))
    with pytest.raises(ValueError, match="SimpleNamespace: it has neither body_link_pose_w nor body_pose_w"):
        logger.record_poses()


def test_bad_arguments_are_clear_errors(tmp_path):
    scene = make_scene(num_envs=2, num_links=1)
    with pytest.raises(ValueError, match="out of range"):
        IsaacLabRerunLogger(scene, logged_envs=[5], save_path=tmp_path / "a.rrd")
    with pytest.raises(ValueError, match="InteractiveScene"):
        IsaacLabRerunLogger(object(), save_path=tmp_path / "a.rrd")
    with pytest.raises(ValueError, match="save_path"):
        IsaacLabRerunLogger(scene)


def test_bodies_found_on_the_stage_without_a_physics_view(tmp_path):
    scene = make_scene(num_envs=1, num_links=3, version="2")
    del scene.articulations["robot"].root_physx_view  # not initialised yet: search by name, not `{root}/{name}`
    logger = IsaacLabRerunLogger(scene, save_path=tmp_path / "scene.rrd")
    assert logger.assets[0].prims[2] == "/World/envs/env_0/Robot/link_0/link_1/link_2"


# -- LogRerun on an Isaac Lab env ---------------------------------------------------------------


def scalars(rows: list[dict], timeline: str) -> dict[int, list[float]]:
    return {r[timeline]: r["Scalars:scalars"] for r in rows if r.get(timeline) is not None}


@pytest.mark.parametrize("version", ["2", "3"])
def test_log_rerun_on_isaaclab_env_splits_episodes_inside_step(tmp_path, version):
    scene = make_scene(num_envs=3, num_links=2, version=version)
    base = IsaacLabEnv(scene, version, episode_lengths=[3, 5, 2], decimation=4)  # step_dt 0.02 s
    env = LogRerun(base, logged_envs=ENVS, save_path=tmp_path / "run.rrd", episode_trigger=lambda ep: True)
    assert isinstance(env.scene, IsaacLabRerunLogger)
    env.reset()
    shown = [{k: v.copy() for k, v in base.poses.items()}]  # what the scene shows after each call
    for _ in range(7):
        env.step(torch.ones(3, 2))
        shown.append({k: v.copy() for k, v in base.poses.items()})
    env.close()
    rows = read_rrd(tmp_path / "run.rrd")

    # Env 0 (the first logged env) finishes at steps 3 and 6: reset() was called once, yet three episodes.
    # The step that finishes an episode gives it its reward; the state it returns starts the next one.
    frames_of = {"episode_0": [0, 1, 2], "episode_1": [3, 4, 5], "episode_2": [6, 7]}
    for episode, calls in frames_of.items():
        for frame, call in enumerate(calls):
            for entity, pose in expected_rows(shown[call]).items():
                np.testing.assert_allclose(poses_at(rows[entity], f"{episode}_step", frame), pose, atol=1e-6)
        link = rows["/World/envs/env_0/Robot/link_1"]
        assert sorted(r[f"{episode}_step"] for r in link if r.get(f"{episode}_step") is not None) == list(
            range(len(calls))
        )
    rewards = rows["/scalars/env_0/reward"]
    assert scalars(rewards, "episode_0_step") == {1: [3.0], 2: [4.0], 3: [5.0]}  # 2 (action) + steps so far
    assert scalars(rewards, "episode_1_step") == {1: [3.0], 2: [4.0], 3: [5.0]}
    # Env 2 finishes every 2 steps: its own return and episode count, on env 0's timeline.
    assert scalars(rows["/scalars/env_2/return"], "episode_0_step") == {1: [3.0], 2: [7.0], 3: [3.0]}
    # Its episode index, logged when it changes, goes with its reward: the step that finishes episode k
    # still counts as k.
    assert scalars(rows["/scalars/env_2/episode"], "episode_1_step") == {0: [1.0], 2: [2.0]}
    assert scalars(rows["/scalars/env_0/action"], "episode_2_step") == {1: [1.0, 1.0]}
    # Time from step_dt (decimation x physics_dt), not physics_dt.
    link = [r for r in rows["/World/envs/env_2/Object"] if r.get("episode_1_step") is not None]
    seconds = [r["episode_1_timestamp"].total_seconds() for r in link]
    np.testing.assert_allclose(seconds, [0.02 * r["episode_1_step"] for r in link])
    assert not any("env_1" in path for path in rows)
    assert component(rows["/World/envs/env_2/Object/geometry/ball"], "Ellipsoids3D:half_sizes")
    assert ("3D", "/World") in blueprint_views(tmp_path / "run.rrd")


def test_log_rerun_snippets_run_across_episode_boundaries(tmp_path):
    scene = make_scene(num_envs=2, num_links=1, version="3")
    base = IsaacLabEnv(scene, "3", episode_lengths=[2, 2])
    env = LogRerun(base, save_path=tmp_path / "run.rrd", step_trigger=lambda t: t == 0, recording_length=4)
    env.reset()
    shown = []
    for _ in range(6):
        env.step(torch.zeros(2, 2))
        shown.append({k: v.copy() for k, v in base.poses.items()})
    env.close()
    rows = read_rrd(tmp_path / "run.rrd")
    link = rows["/World/envs/env_0/Robot/link_0"]
    assert sorted(r["step_0_step"] for r in link if r.get("step_0_step") is not None) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(poses_at(link, "step_0_step", 1), shown[1]["robot"][0, 0], atol=1e-6)  # home pose
    assert scalars(rows["/scalars/env_0/return"], "step_0_step") == {0: [1.0], 1: [3.0], 2: [1.0], 3: [3.0], 4: [1.0]}


def test_log_rerun_refuses_logged_envs_out_of_range_before_creating_a_file(tmp_path):
    base = IsaacLabEnv(make_scene(num_envs=2, num_links=1), "2", episode_lengths=[2, 2])
    with pytest.raises(ValueError, match=r"logged_envs \[0, 2\] out of range for IsaacLabEnv of 2 envs"):
        LogRerun(base, logged_envs=[0, 2], save_path=tmp_path / "run.rrd")
    assert not (tmp_path / "run.rrd").exists()


def test_close_completes_the_file_before_closing_the_env(tmp_path):
    class FailingClose(IsaacLabEnv):
        def close(self) -> None:
            raise RuntimeError("simulation app already gone")

    base = FailingClose(make_scene(num_envs=1, num_links=1), "3", episode_lengths=[100])
    env = LogRerun(base, save_path=tmp_path / "run.rrd", episode_trigger=lambda ep: True)
    env.reset()
    for _ in range(3):
        env.step(torch.zeros(1, 2))
    with pytest.raises(RuntimeError, match="already gone"):
        env.close()
    rows = read_rrd(tmp_path / "run.rrd")
    link = rows["/World/envs/env_0/Robot/link_0"]
    assert sorted(r["episode_0_step"] for r in link if r.get("episode_0_step") is not None) == [0, 1, 2, 3]
