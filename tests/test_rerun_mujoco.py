"""LogRerun and MujocoRerunLogger on real Gymnasium MuJoCo envs, read back from the .rrd file."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import rerun as rr
import torch
from rerun.chunk import RrdReader

from episode_recorder.rerun import LogRerun, MujocoRerunLogger
from episode_recorder.scenes.mujoco import GEOM_KINDS
from rrd_read import blueprint_views


class Rows:
    """All rows logged to one entity: time columns and component columns, concatenated over chunks (aligned)."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = defaultdict(list)
        self.static = False

    def __getitem__(self, name: str) -> list[Any]:
        return self.columns[name]

    def __len__(self) -> int:
        return max((len(v) for v in self.columns.values()), default=0)


def read_rrd(path: Path) -> dict[str, Rows]:
    """entity path -> its rows; static and temporal data are kept apart (static under ``static:``)."""
    entities: dict[str, Rows] = defaultdict(Rows)
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        key = ("static:" if chunk.is_static else "") + chunk.entity_path
        rows = entities[key]
        rows.static = chunk.is_static
        before = len(rows)
        names = [name for name in batch.schema.names if name != "rerun.controls.RowId"]
        for name in names:
            column = rows.columns.setdefault(name, [None] * before)  # aligned: None where a chunk lacks it
            column.extend(batch.column(name).to_pylist())
        for name in set(rows.columns) - set(names):
            rows.columns[name].extend([None] * chunk.num_rows)
    return dict(entities)


def by_frame(rows: Rows, timeline: str, component: str) -> dict[int, Any]:
    """{frame index on ``timeline``: value of ``component``} for rows that have that timeline."""
    return {
        int(t): value
        for t, value in zip(rows[timeline], rows[component])
        if t is not None and value is not None
    }


def body_entity(model: Any, body: int) -> str:
    """The entity of a body: its name, or ``body_{id}`` when it has none (Ant's legs have none)."""
    return f"/world/bodies/{model.body(body).name or f'body_{body}'}"


def reference_poses(model: Any, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World poses of every body for ``qpos``, from a full mj_forward on a separate MjData."""
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_forward(model, data)
    return data.xpos.copy(), data.xquat.copy()


def test_ant_poses_scalars_and_timelines_match_the_env(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "ant.rrd"
    env = LogRerun(gym.make("Ant-v5"), save_path=path, episode_trigger=lambda episode: episode == 0)
    model = env.unwrapped.model
    obs, _ = env.reset(seed=3)
    assert env.sequence_timeline_name == "episode_0_step"
    assert env.timestamp_timeline_name == "episode_0_timestamp"
    qpos = [env.unwrapped.data.qpos.copy()]
    rewards, actions, observations = [], [], [obs]
    env.action_space.seed(0)
    for _ in range(25):
        action = env.action_space.sample()
        obs, reward, terminated, truncated, _ = env.step(action)
        assert not (terminated or truncated)
        qpos.append(env.unwrapped.data.qpos.copy())
        rewards.append(reward)
        actions.append(action)
        observations.append(obs)
    env.close()
    assert env.sequence_timeline_name is None and env.timestamp_timeline_name is None

    RrdReader(path).store()  # close() completed the file: it has its footer (manifest)
    entities = read_rrd(path)
    moving = [i for i in range(model.nbody) if model.body_weldid[i] != 0]
    assert len(moving) == 13
    for frame in (0, 1, 12, 25):
        xpos, xquat = reference_poses(model, qpos[frame])
        for body in moving:
            rows = entities[body_entity(model, body)]
            translation = by_frame(rows, "episode_0_step", "Transform3D:translation")[frame][0]
            quaternion = by_frame(rows, "episode_0_step", "Transform3D:quaternion")[frame][0]
            np.testing.assert_allclose(translation, xpos[body], atol=1e-5)
            np.testing.assert_allclose(quaternion, xquat[body][[1, 2, 3, 0]], atol=1e-5)  # x,y,z,w

    torso = entities["/world/bodies/torso"]
    assert sorted(torso["episode_0_step"]) == list(range(26))  # the reset frame + 25 steps
    steps = np.array(torso["episode_0_step"])
    stamps = np.array(torso["episode_0_timestamp"], dtype="timedelta64[ns]").astype(np.int64) / 1e9
    np.testing.assert_allclose(stamps, steps * env.unwrapped.dt, atol=1e-9)

    logged_rewards = by_frame(entities["/scalars/reward"], "episode_0_step", "Scalars:scalars")
    assert sorted(logged_rewards) == list(range(1, 26))  # rewards exist from the first step on
    np.testing.assert_allclose([logged_rewards[f][0] for f in range(1, 26)], rewards, rtol=1e-12)
    logged_returns = by_frame(entities["/scalars/return"], "episode_0_step", "Scalars:scalars")
    np.testing.assert_allclose([logged_returns[f][0] for f in range(1, 26)], np.cumsum(rewards))
    logged_actions = by_frame(entities["/scalars/action"], "episode_0_step", "Scalars:scalars")
    np.testing.assert_allclose([logged_actions[f] for f in range(1, 26)], actions, rtol=1e-6)
    logged_obs = by_frame(entities["/scalars/observation"], "episode_0_step", "Scalars:scalars")
    np.testing.assert_allclose([logged_obs[f] for f in range(26)], observations, rtol=1e-12)


def test_wrapper_does_not_change_the_simulation(tmp_path: Path) -> None:
    """Gymnasium's Ant reward reads ``xpos`` around ``mj_step``: LogRerun must not refresh it."""
    bare = gym.make("Ant-v5")
    wrapped = LogRerun(gym.make("Ant-v5"), save_path=tmp_path / "ant.rrd", episode_trigger=lambda _: True)
    for env in (bare, wrapped):
        env.reset(seed=7)
        env.action_space.seed(7)
    for _ in range(20):
        action = bare.action_space.sample()
        wrapped.action_space.sample()
        expected = bare.step(action)
        received = wrapped.step(action)
        np.testing.assert_array_equal(received[0], expected[0])
        assert received[1] == expected[1]
    bare.close()
    wrapped.close()


def test_one_static_geometry_entity_per_geom_with_kind_and_size(tmp_path: Path) -> None:
    path = tmp_path / "humanoid.rrd"
    env = LogRerun(gym.make("Humanoid-v5"), save_path=path)
    model = env.unwrapped.model
    env.reset(seed=0)
    env.step(env.action_space.sample())
    env.close()

    entities = read_rrd(path)
    static_geoms = [
        key for key in entities if key.startswith("static:/world/bodies/") and key.count("/") == 4
    ]
    assert len(static_geoms) == model.ngeom == 18
    for geom in range(model.ngeom):
        body = model.body(int(model.geom_bodyid[geom])).name
        rows = entities[f"static:/world/bodies/{body}/{model.geom(geom).name}"]
        size = model.geom_size[geom]
        kind = GEOM_KINDS[int(model.geom_type[geom])]
        np.testing.assert_allclose(rows["Transform3D:translation"][0][0], model.geom_pos[geom], atol=1e-6)
        np.testing.assert_allclose(
            rows["Transform3D:quaternion"][0][0], model.geom_quat[geom][[1, 2, 3, 0]], atol=1e-6
        )
        if kind == "capsule":
            np.testing.assert_allclose(rows["Capsules3D:radii"][0], [size[0]], rtol=1e-6)
            np.testing.assert_allclose(rows["Capsules3D:lengths"][0], [2 * size[1]], rtol=1e-6)
            rgba = np.round(model.geom_rgba[geom] * 255).astype(np.uint8)
            assert rows["Capsules3D:colors"][0] == [int.from_bytes(rgba.tobytes(), "big")]
        elif kind == "sphere":
            np.testing.assert_allclose(rows["Ellipsoids3D:half_sizes"][0], [[size[0]] * 3], rtol=1e-6)
        else:
            assert kind == "plane"
            vertices = np.array(rows["Mesh3D:vertex_positions"][0])
            np.testing.assert_allclose(vertices.max(axis=0), [size[0], size[1], 0], rtol=1e-6)
    # The world body never moves: one static pose, no temporal rows.
    assert "/world/bodies/world" not in entities and "static:/world/bodies/world" in entities
    assert blueprint_views(path) == {("3D", "/world"), ("TimeSeries", "/scalars")}


ALL_KINDS_XML = """
<mujoco>
  <asset>
    <material name="red" rgba="1 0 0 1"/>
    <mesh name="tetra" vertex="0 0 0  1 0 0  0 1 0  0 0 1"/>
    <hfield name="bumps" nrow="3" ncol="4" size="2 1 0.5 0.1"/>
  </asset>
  <worldbody>
    <geom name="ground" type="plane" size="3 4 0.1"/>
    <geom name="terrain" type="hfield" hfield="bumps" pos="0 0 -1"/>
    <body name="thing" pos="0 0 1">
      <freejoint/>
      <geom name="ball" type="sphere" size="0.1" material="red"/>
      <geom name="pill" type="capsule" size="0.05 0.2" pos="0.3 0 0"/>
      <geom name="egg" type="ellipsoid" size="0.1 0.2 0.3" rgba="0 1 0 1"/>
      <geom name="can" type="cylinder" size="0.1 0.4" euler="90 0 0"/>
      <geom name="crate" type="box" size="0.1 0.2 0.3"/>
      <geom name="spike" type="mesh" mesh="tetra"/>
    </body>
    <body name="mover" mocap="true" pos="1 1 1"><geom type="box" size="0.1 0.1 0.1"/></body>
  </worldbody>
</mujoco>
"""


def test_every_geom_kind_standalone(tmp_path: Path) -> None:
    model = mujoco.MjModel.from_xml_string(ALL_KINDS_XML)
    data = mujoco.MjData(model)
    path = tmp_path / "kinds.rrd"
    scene = MujocoRerunLogger(model, data, save_path=path)
    scene.log_geometry()
    data.mocap_pos[0] = [2.0, 3.0, 4.0]
    for _ in range(5):
        mujoco.mj_step(model, data)
        scene.record_poses()
    scene.flush(time_columns=[rr.TimeColumn("tick", sequence=np.arange(5))])
    scene.recording_stream.disconnect()

    entities = read_rrd(path)
    assert entities["static:/world/bodies/world/ground"]["Mesh3D:vertex_positions"][0][2] == [3, 4, 0]
    terrain = entities["static:/world/bodies/world/terrain"]
    assert len(terrain["Mesh3D:vertex_positions"][0]) == 12  # 3 x 4 grid
    assert len(terrain["Mesh3D:triangle_indices"][0]) == 2 * 2 * 3
    ball = entities["static:/world/bodies/thing/ball"]
    assert np.allclose(ball["Ellipsoids3D:half_sizes"][0], [[0.1] * 3])
    assert ball["Ellipsoids3D:colors"][0] == [0xFF0000FF]  # the material's colour
    egg = entities["static:/world/bodies/thing/egg"]
    assert np.allclose(egg["Ellipsoids3D:half_sizes"][0], [[0.1, 0.2, 0.3]])
    assert egg["Ellipsoids3D:colors"][0] == [0x00FF00FF]
    pill = entities["static:/world/bodies/thing/pill"]
    assert np.allclose(pill["Capsules3D:translations"][0], [[0, 0, -0.2]])
    can = entities["static:/world/bodies/thing/can"]
    assert np.allclose(can["Cylinders3D:lengths"][0], [0.8]) and np.allclose(can["Cylinders3D:radii"][0], [0.1])
    assert np.allclose(can["Transform3D:quaternion"][0], model.geom("can").quat[[1, 2, 3, 0]], atol=1e-6)
    assert np.allclose(entities["static:/world/bodies/thing/crate"]["Boxes3D:half_sizes"][0], [[0.1, 0.2, 0.3]])
    spike = entities["static:/world/bodies/thing/spike"]
    mesh = model.mesh("tetra")
    vertices = model.mesh_vert[mesh.vertadr[0] : mesh.vertadr[0] + mesh.vertnum[0]]
    np.testing.assert_allclose(spike["Mesh3D:vertex_positions"][0], vertices, atol=1e-6)
    assert len(spike["Mesh3D:triangle_indices"][0]) == 4
    # The unnamed mocap body moves when its mocap pose does; the free body fell under gravity.
    mover = entities["/world/bodies/mover"]
    np.testing.assert_allclose(mover["Transform3D:translation"][-1][0], [2, 3, 4], atol=1e-6)
    thing = entities["/world/bodies/thing"]
    assert len(thing) == 5 and thing["Transform3D:translation"][-1][0][2] < 1.0
    np.testing.assert_allclose(thing["Transform3D:translation"][-1][0], data.qpos[:3], atol=1e-5)


def timelines_of(path: Path) -> dict[str, int]:
    """{recording name: frames logged for the torso/pole/any moving body} from the file."""
    counts: dict[str, int] = defaultdict(int)
    for chunk in RrdReader(path).stream():
        if chunk.entity_path == "/world/bodies/pole":
            for name in chunk.timeline_names:
                if name.endswith("_step"):
                    counts[name[: -len("_step")]] += chunk.num_rows
    return dict(counts)


def run_pendulum(env: gym.Env, episodes: int) -> None:
    env.action_space.seed(0)
    for episode in range(episodes):
        env.reset(seed=episode)
        for _ in range(6):
            env.step(env.action_space.sample())
    env.close()


def test_default_trigger_is_capped_cubic_and_records_whole_episodes(tmp_path: Path) -> None:
    path = tmp_path / "default.rrd"
    run_pendulum(LogRerun(gym.make("InvertedPendulum-v5"), save_path=path), episodes=10)
    # Each recorded episode: its reset frame and 6 steps.
    assert timelines_of(path) == {"episode_0": 7, "episode_1": 7, "episode_8": 7}


def pole_batches_on_disk(env: LogRerun, path: Path) -> dict[str, list[int]]:
    """{recording: rows of each pole chunk} in the file as it is now: the stream flushed to disk, no footer yet."""
    env.recording_stream.flush()
    batches: dict[str, list[int]] = defaultdict(list)
    for chunk in RrdReader(path).stream():
        if chunk.entity_path == "/world/bodies/pole":
            for name in chunk.timeline_names:
                if name.endswith("_step"):
                    batches[name[: -len("_step")]].append(chunk.num_rows)
    return dict(batches)


@pytest.mark.filterwarnings("ignore:RRD file has no footer")  # read while it is being written
def test_step_trigger_records_snippets(tmp_path: Path) -> None:
    path = tmp_path / "steps.rrd"
    env = LogRerun(
        gym.make("InvertedPendulum-v5"),
        save_path=path,
        step_trigger=lambda step: step % 10 == 0,
        recording_length=3,
        flush_every=2,
    )
    on_disk_while_recording = {}
    env.action_space.seed(0)
    for episode in range(4):  # 24 steps: snippets start at steps 0, 10, 20
        env.reset(seed=episode)
        for _ in range(6):
            env.step(env.action_space.sample())
            if env.recording:
                name = env.sequence_timeline_name.removesuffix("_step")
                on_disk_while_recording[env.step_id] = pole_batches_on_disk(env, path).get(name, [])
    # Every 2 frames the buffer is sent, while the snippet is still running. Snippet 10 spans a reset
    # (frames: steps 10, 11, the reset, step 12), so only steps 10 and 11 are seen mid-recording.
    assert on_disk_while_recording == {0: [], 1: [2], 2: [2], 10: [], 11: [2], 20: [], 21: [2], 22: [2]}
    env.close()
    # A snippet of length N has N + 1 frames, as Gymnasium's RecordVideo; sent as 2 batches of 2.
    assert pole_batches_on_disk(env, path) == {"step_0": [2, 2], "step_10": [2, 2], "step_20": [2, 2]}
    entities = read_rrd(path)
    assert sorted(by_frame(entities["/world/bodies/pole"], "step_10_step", "Transform3D:translation")) == [0, 1, 2, 3]


def test_manual_recording_and_user_stream(tmp_path: Path) -> None:
    path = tmp_path / "manual.rrd"
    stream = rr.RecordingStream("manual-test")
    stream.save(path)
    env = LogRerun(gym.make("InvertedPendulum-v5"), recording_stream=stream, episode_trigger=lambda _: False)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.sequence_timeline_name is None
    env.start_recording("mine")
    assert env.sequence_timeline_name == "mine_step"
    for _ in range(4):
        env.step(env.action_space.sample())
    env.start_recording("again")  # stops "mine" first
    env.step(env.action_space.sample())
    env.stop_recording()
    env.close()
    stream.disconnect()
    assert timelines_of(path) == {"mine": 4, "again": 1}
    assert [s.application_id for s in RrdReader(path).recordings()] == ["manual-test"]
    assert len(RrdReader(path).blueprints()) == 1


def test_observations_and_blueprint_can_be_left_out(tmp_path: Path) -> None:
    path = tmp_path / "lean.rrd"
    env = LogRerun(gym.make("InvertedPendulum-v5"), save_path=path, log_observations=False, blueprint=False)
    run_pendulum(env, episodes=1)
    entities = read_rrd(path)
    assert "/scalars/observation" not in entities
    assert sorted(entities["/scalars/reward"]["episode_0_step"]) == [1, 2, 3, 4, 5, 6]  # the rest is logged
    assert len(entities["/world/bodies/pole"]) == 7
    assert RrdReader(path).blueprints() == []


class CartScene:
    """A custom SceneSource: CartPole's cart as a box, its pose from the env's state; records what LogRerun asks."""

    origin = "/cartpole"

    def __init__(self, env: gym.Env) -> None:
        self.env = env
        self.geometry_calls = 0
        self.buffered: list[float] = []
        self.flushed: list[tuple[list[float], dict[str, list[int]]]] = []

    def log_geometry(self, stream: rr.RecordingStream) -> None:
        self.geometry_calls += 1
        stream.log("cartpole/cart", rr.Boxes3D(half_sizes=[[0.25, 0.125, 0.5]]), static=True)

    def record_poses(self) -> None:
        self.buffered.append(float(self.env.unwrapped.state[0]))

    def flush(self, stream: rr.RecordingStream, time_columns: Any) -> None:
        times = {column.timeline_name(): column.as_arrow_array().to_pylist() for column in time_columns}
        self.flushed.append((self.buffered, times))
        translations = [[x, 0.0, 0.0] for x in self.buffered]
        stream.send_columns(
            "cartpole/cart", indexes=time_columns, columns=rr.Transform3D.columns(translation=translations)
        )
        self.buffered = []


def test_custom_scene_source(tmp_path: Path) -> None:
    """A ``scene=`` is driven like the built-in ones, even for an env with neither a 3D scene nor frames."""
    path = tmp_path / "cartpole.rrd"
    base = gym.make("CartPole-v1")
    scene = CartScene(base)
    env = LogRerun(base, save_path=path, scene=scene, episode_trigger=lambda _: True, flush_every=3)
    carts = []
    for episode in range(2):
        env.reset(seed=episode)
        carts.append([float(base.unwrapped.state[0])])
        for action in (0, 1, 1, 0):
            env.step(action)
            carts[-1].append(float(base.unwrapped.state[0]))
    env.close()

    assert scene.geometry_calls == 1  # static geometry: once per stream
    # Flushed every 3 frames and when each episode stops, with one time value per buffered row.
    timelines = [[f"episode_{e}_step", f"episode_{e}_timestamp"] for e in (0, 0, 1, 1)]
    assert [sorted(times) for _, times in scene.flushed] == timelines
    assert [(len(poses), times[f"episode_{i // 2}_step"]) for i, (poses, times) in enumerate(scene.flushed)] == [
        (3, [0, 1, 2]), (2, [3, 4]), (3, [0, 1, 2]), (2, [3, 4])
    ]
    entities = read_rrd(path)
    assert entities["static:/cartpole/cart"]["Boxes3D:half_sizes"] == [[[0.25, 0.125, 0.5]]]
    cart = entities["/cartpole/cart"]
    for episode in range(2):
        logged = by_frame(cart, f"episode_{episode}_step", "Transform3D:translation")
        assert [logged[f][0][0] for f in range(5)] == pytest.approx(carts[episode])
    assert blueprint_views(path) == {("3D", "/cartpole"), ("TimeSeries", "/scalars")}


def test_custom_scene_replaces_the_mujoco_scene(tmp_path: Path) -> None:
    path = tmp_path / "pendulum.rrd"
    base = gym.make("InvertedPendulum-v5")
    base.unwrapped.state = np.zeros(1)  # CartScene reads state[0]
    env = LogRerun(base, save_path=path, scene=CartScene(base))
    run_pendulum(env, episodes=1)
    entities = read_rrd(path)
    assert "/cartpole/cart" in entities and not any(key.startswith(("/world", "static:/world")) for key in entities)


def test_global_rr_init_stream(tmp_path: Path) -> None:
    """With neither save_path nor recording_stream, LogRerun logs to the stream of ``rr.init``."""
    path = tmp_path / "global.rrd"
    assert rr.get_global_data_recording() is None
    rr.init("global-app", recording_id="global-run")
    try:
        rr.save(path)
        env = LogRerun(gym.make("InvertedPendulum-v5"), episode_trigger=lambda _: True)
        run_pendulum(env, episodes=2)  # close() flushes the stream; it is not LogRerun's to disconnect
        assert rr.get_global_data_recording() is not None
        rr.disconnect()
    finally:
        rr.set_global_data_recording(None)
    (store,) = RrdReader(path).recordings()
    assert (store.application_id, store.recording_id) == ("global-app", "global-run")
    assert timelines_of(path) == {"episode_0": 7, "episode_1": 7}
    assert blueprint_views(path) == {("3D", "/world"), ("TimeSeries", "/scalars")}


def test_camera_frames_are_jpeg(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "frames.rrd"
    base = gym.make("InvertedPendulum-v5", render_mode="rgb_array", width=64, height=48)
    env = LogRerun(base, save_path=path, log_frames=True, frames="jpeg")
    env.reset(seed=0)
    for _ in range(3):
        env.step(env.action_space.sample())
    env.close()
    camera = read_rrd(path)["/camera"]
    assert sorted(camera["episode_0_step"]) == [0, 1, 2, 3]
    assert camera["EncodedImage:media_type"] == [["image/jpeg"]] * 4
    blob = bytes(camera["EncodedImage:blob"][0][0])
    assert Image.open(io.BytesIO(blob)).format == "JPEG"
    assert Image.open(io.BytesIO(blob)).size == (64, 48)
    assert len(blob) < 64 * 48 * 3  # compressed, not raw
    assert blueprint_views(path) == {("3D", "/world"), ("2D", "/camera"), ("TimeSeries", "/scalars")}


def test_env_without_scene_logs_frames_or_refuses(tmp_path: Path) -> None:
    path = tmp_path / "cartpole.rrd"
    env = LogRerun(gym.make("CartPole-v1", render_mode="rgb_array"), save_path=path)
    env.reset(seed=0)
    env.step(0)
    env.close()
    entities = read_rrd(path)
    assert len(entities["/camera"]) == 2
    assert not any(key.startswith("/world") for key in entities)

    with pytest.raises(ValueError, match="nothing to log.*CartPoleEnv.*render_mode=None.*MuJoCo"):
        LogRerun(gym.make("CartPole-v1"), save_path=tmp_path / "x.rrd")
    with pytest.raises(ValueError, match="log_frames=True needs .*rgb_array.*received render_mode=None"):
        LogRerun(gym.make("InvertedPendulum-v5"), save_path=tmp_path / "y.rrd", log_frames=True)
    with pytest.raises(ValueError, match="logged_envs must be 0, received 1"):
        LogRerun(gym.make("InvertedPendulum-v5"), save_path=tmp_path / "z.rrd", logged_envs=1)
    assert sorted(p.name for p in tmp_path.glob("*.rrd")) == ["cartpole.rrd"]  # refused: no file made


def test_no_stream_is_a_clear_error() -> None:
    assert rr.get_data_recording() is None  # no test leaves a global recording behind
    with pytest.raises(ValueError, match="save_path=.*recording_stream="):
        LogRerun(gym.make("InvertedPendulum-v5"))


class BatchedEnv(gym.Env):
    """A stand-in for a batched (Isaac Lab style) env: torch tensors, resets inside step()."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self) -> None:
        self.num_envs = 3
        self.render_mode = "rgb_array"
        self.observation_space = gym.spaces.Box(-10, 10, (3, 2))
        self.action_space = gym.spaces.Box(-1, 1, (3, 1))
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self.t = 0
        return torch.zeros(3, 2), {}

    def step(self, action: Any) -> Any:
        self.t += 1
        obs = torch.arange(6, dtype=torch.float32).reshape(3, 2) + self.t
        reward = torch.tensor([1.0, 2.0, 3.0]) * self.t
        terminated = torch.tensor([False, False, self.t == 2])
        return obs, reward, terminated, torch.zeros(3, dtype=torch.bool), {}

    def render(self) -> np.ndarray:
        return np.full((8, 8, 3), 10 * self.t, np.uint8)


def test_batched_env_logs_the_chosen_envs(tmp_path: Path) -> None:
    path = tmp_path / "batched.rrd"
    env = LogRerun(BatchedEnv(), logged_envs=[0, 2], save_path=path)
    env.reset()
    for _ in range(3):
        env.step(torch.zeros(3, 1))
    env.close()
    entities = read_rrd(path)
    assert not any("env_1" in key for key in entities)
    for env_index, scale in ((0, 1.0), (2, 3.0)):
        rewards = by_frame(entities[f"/scalars/env_{env_index}/reward"], "episode_0_step", "Scalars:scalars")
        assert {frame: value[0] for frame, value in rewards.items()} == {1: scale, 2: 2 * scale, 3: 3 * scale}
        obs = by_frame(entities[f"/scalars/env_{env_index}/observation"], "episode_0_step", "Scalars:scalars")
        assert obs[3] == [2 * env_index + 3, 2 * env_index + 4]
    returns = by_frame(entities["/scalars/env_2/return"], "episode_0_step", "Scalars:scalars")
    assert [returns[f][0] for f in (1, 2, 3)] == [3.0, 9.0, 9.0]  # env 2 finished at step 2
    returns = by_frame(entities["/scalars/env_0/return"], "episode_0_step", "Scalars:scalars")
    assert [returns[f][0] for f in (1, 2, 3)] == [1.0, 3.0, 6.0]
    camera = entities["/camera"]
    timestamps = np.array(camera["episode_0_timestamp"], dtype="timedelta64[ns]").astype(np.int64) / 1e9
    np.testing.assert_allclose(timestamps, np.array(camera["episode_0_step"]) / 20)  # 1 / render_fps
