"""IsaacLabRerunLogger on a faithful Isaac Lab stand-in (2.x and 3.x conventions), read back from the .rrd."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pxr")
rr = pytest.importorskip("rerun")
torch = pytest.importorskip("torch")

from episode_recorder.scenes.isaaclab import IsaacLabRerunLogger  # noqa: E402
from isaaclab_standin import make_scene, step  # noqa: E402
from rrd_read import component, read_rrd  # noqa: E402

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


@pytest.mark.parametrize("version", ["2", "3"])
def test_log_scene_poses_equal_the_data_fed_in(tmp_path, version):
    scene = make_scene(num_envs=3, num_links=3, version=version)
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
    scene.articulations["robot"].data._buffer = np.zeros((1, 1, 7))  # neither torch nor ProxyArray
    logger = IsaacLabRerunLogger(scene, save_path=tmp_path / "scene.rrd")
    with pytest.raises(ValueError, match="numpy.ndarray.*torch.Tensor.*ProxyArray"):
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
