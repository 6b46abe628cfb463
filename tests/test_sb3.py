"""episode_recorder.sb3.VecVideoRecorder on real Stable-Baselines3 VecEnvs, videos decoded with PyAV."""

from __future__ import annotations

import gc
import json
import os
import sys

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack, VecNormalize
from stable_baselines3.common.vec_env.base_vec_env import tile_images

from episode_recorder.sb3 import VecVideoRecorder
from episode_recorder.sinks.rerun import read_recordings, read_video_samples
from rrd_read import read_rrd
from support import decode, psnr
from test_gym_vector import PatternEnv, expected_episode
from test_rerun_video import assert_stream_matches, decode_samples


class CountingPatternEnv(PatternEnv):
    """PatternEnv that counts its renders."""

    def __init__(self, index: int = 0) -> None:
        super().__init__(index)
        self.renders = 0

    def render(self) -> np.ndarray:
        self.renders += 1
        return super().render()


def env_fns(n: int) -> list:
    return [lambda i=i: CountingPatternEnv(i) for i in range(n)]


def assert_video(path: str, expected: list[np.ndarray]) -> None:
    frames, pix_fmt, _ = decode(path)
    assert (len(frames), frames[0].shape, pix_fmt) == (len(expected), expected[0].shape, "yuv420p")
    for got, want in zip(frames, expected):
        assert psnr(got, want) > 30


def test_tiled_snippets_as_sb3(tmp_path) -> None:
    base = DummyVecEnv(env_fns(2))
    venv = VecVideoRecorder(base, str(tmp_path), lambda step: step % 10 == 0, video_length=4, name_prefix="tiled")
    expected: dict[str, list[np.ndarray]] = {}  # the tiled frame after each call that captured one
    venv.reset()
    expected[venv.video_name] = [tile_images(base.get_images())]
    for _ in range(22):
        was_recording = venv.recording
        venv.step(np.zeros(2, np.int64))
        if venv.recording or was_recording:
            expected.setdefault(venv.video_name, []).append(tile_images(base.get_images()))
        if venv.recording:
            assert len(venv.recorded_frames) == len(expected[venv.video_name])
        elif venv.step_id == 4:  # the step that ends a recording returns with its file complete
            assert os.listdir(tmp_path) == ["tiled-step-0-to-step-4.mp4"]
    venv.close()  # writes the recording in progress (3 of its 5 frames)
    assert sorted(os.listdir(tmp_path)) == [f"tiled-step-{s}-to-step-{s + 4}.mp4" for s in (0, 10, 20)]
    assert [len(frames) for frames in expected.values()] == [5, 5, 3]
    for name, frames in expected.items():
        assert_video(str(tmp_path / name), frames)


def test_env_indices_dummy_vec_env_under_vec_normalize(tmp_path) -> None:
    base = DummyVecEnv(env_fns(4))
    venv = VecVideoRecorder(
        VecFrameStack(VecNormalize(base), 2),
        str(tmp_path),
        record_video_trigger=lambda step: False,
        env_indices=[0, 3],
        episode_trigger=lambda k: k in (0, 2),
        sidecar=True,
    )
    venv.reset()
    for _ in range(24):
        venv.step(np.zeros(4, np.int64))
    venv.close()
    names = [f"rl-video-env-{i}-episode-{k}" for i in (0, 3) for k in (0, 2)]
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".mp4")) == sorted(f"{n}.mp4" for n in names)
    for i in (0, 3):
        for k in (0, 2):  # reset frame + one frame per step, the terminal one included: T + 1
            assert_video(str(tmp_path / f"rl-video-env-{i}-episode-{k}.mp4"), expected_episode(i, k, AutoresetMode.NEXT_STEP))
            info = json.loads((tmp_path / f"rl-video-env-{i}-episode-{k}.json").read_text())
            assert (info["env_index"], info["episode_id"], info["episode_length"]) == (i, k, 3 + i)
            assert info["frames"] == 4 + i
    renders = [env.unwrapped.renders for env in base.envs]  # only the chosen envs are rendered
    assert renders[1] == renders[2] == 0 and renders[0] > 0 and renders[3] > 0


def test_env_indices_subproc_vec_env_step_trigger_arms_next_episode(tmp_path) -> None:
    venv = VecVideoRecorder(
        SubprocVecEnv(env_fns(2), start_method="fork"), str(tmp_path), record_video_trigger=lambda step: step in (0, 10), env_indices=[1]
    )
    venv.reset()
    for _ in range(20):
        venv.step(np.zeros(2, np.int64))
    venv.close()
    # env 1's episodes (4 steps) start at steps 0, 4, 8, 12, 16: the trigger at step 10 arms the one at 12
    assert sorted(os.listdir(tmp_path)) == ["rl-video-env-1-episode-0.mp4", "rl-video-env-1-episode-3.mp4"]
    for k in (0, 3):  # the worker resets before answering: the terminal state is never rendered, T frames
        assert_video(str(tmp_path / f"rl-video-env-1-episode-{k}.mp4"), expected_episode(1, k, AutoresetMode.SAME_STEP))


def test_bad_env_indices() -> None:
    with pytest.raises(ValueError, match="num_envs=2, received \\[0, 2\\]"):
        VecVideoRecorder(DummyVecEnv(env_fns(2)), "unused", lambda step: False, env_indices=[0, 2])


def test_a_wrong_keyword_is_a_type_error_and_nothing_else(tmp_path) -> None:
    """__del__ after an __init__ that never ran must not recurse through VecEnvWrapper.__getattr__."""
    unraisable: list = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with pytest.raises(TypeError, match="threads"):
            VecVideoRecorder(DummyVecEnv(env_fns(1)), str(tmp_path), lambda step: False, threads=2)
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert [u.exc_type for u in unraisable] == []


def test_make_vec_env_with_gym_record_video_writes_every_episode(tmp_path) -> None:
    from stable_baselines3.common.env_util import make_vec_env

    from episode_recorder.gym import RecordVideo

    venv = make_vec_env(
        PatternEnv, n_envs=2, wrapper_class=RecordVideo,
        wrapper_kwargs={"video_folder": str(tmp_path), "episode_trigger": lambda e: e < 2},
    )  # fmt: skip
    venv.reset()
    for _ in range(10):  # episodes of 3 steps: episodes 0 and 1 of both ranks are complete
        venv.step(np.zeros(2, np.int64))
    venv.close()
    videos = sorted(f for f in os.listdir(tmp_path) if f.endswith(".mp4"))
    # SB3 never tells a wrapper its rank: the second recorder to claim a name gets "-1"
    assert videos == ["rl-video-episode-0-1.mp4", "rl-video-episode-0.mp4", "rl-video-episode-1-1.mp4", "rl-video-episode-1.mp4"]
    for name in videos:
        assert len(decode(tmp_path / name)[0]) == 4  # reset frame + 3 steps


def test_tiled_snippets_to_file_and_rerun(tmp_path) -> None:
    base = DummyVecEnv(env_fns(2))
    path = tmp_path / "tiled.rrd"
    venv = VecVideoRecorder(base, str(tmp_path), lambda step: step in (0, 6), video_length=3, rerun=path)
    expected: dict[str, list[np.ndarray]] = {}
    actions = [np.array([t % 2, 1 - t % 2]) for t in range(10)]
    venv.reset()
    expected[venv.video_name] = [tile_images(base.get_images())]
    for action in actions:
        was_recording = venv.recording
        venv.step(action)
        if venv.recording or was_recording:
            expected.setdefault(venv.video_name, []).append(tile_images(base.get_images()))
    venv.close()
    assert path.exists()  # a path given: close() disconnected the stream (the file has its footer)
    rows = read_rrd(path)
    for name, first_step in (("rl-video-step-0-to-step-3", 0), ("rl-video-step-6-to-step-9", 6)):
        samples = read_video_samples(path, "/camera", f"{name}_step")
        assert_stream_matches(samples, expected[f"{name}.mp4"], list(range(4)))
        file_frames = decode(tmp_path / f"{name}.mp4")[0]  # encoded once: the file's very pixels
        assert all(np.array_equal(a, b) for a, b in zip(decode_samples(samples), file_frames, strict=True))
        # frame t shows step first_step + t (actions[first_step + t - 1]); the reset frame has no scalars
        steps = range(1, 4) if first_step == 0 else range(4)
        scalars = {
            key: {r[f"{name}_step"]: r["Scalars:scalars"] for r in rows[f"/scalars/{key}"] if r.get(f"{name}_step") is not None}
            for key in ("reward", "action")
        }  # fmt: skip
        assert scalars["reward"] == {t: [1.0, 1.0] for t in steps}  # one value per sub-env
        assert scalars["action"] == {t: list(map(float, actions[first_step + t - 1])) for t in steps}
    assert [(r.name, r.frames) for r in read_recordings(path)] == [
        ("rl-video-step-0-to-step-3", {"/camera": 4}),
        ("rl-video-step-6-to-step-9", {"/camera": 4}),
    ]


def test_env_indices_to_file_and_rerun_on_shared_timelines(tmp_path) -> None:
    import rerun as rr

    from episode_recorder.sinks.rerun import RerunVideoSink

    base = DummyVecEnv(env_fns(3))
    path = tmp_path / "per-env.rrd"
    stream = rr.RecordingStream("sb3-test")
    stream.save(str(path))
    venv = VecVideoRecorder(
        base, str(tmp_path), lambda step: False, env_indices=[0, 2], episode_trigger=lambda k: k < 2,
        rerun=RerunVideoSink(stream, timelines="shared"),
    )  # fmt: skip
    actions = [np.array([t % 2, 0, 1 - t % 2]) for t in range(12)]
    venv.reset()
    for action in actions:
        venv.step(action)
    venv.close()
    stream.disconnect()  # a stream passed in stays ours: close() only flushed it
    rows = read_rrd(path)
    for index in (0, 2):
        length = 3 + index
        samples = read_video_samples(path, f"/camera/env_{index}", "env_step")
        # DummyVecEnv: T + 1 frames per episode; the terminal frame and the next reset share a step
        steps = list(range(0, length + 1)) + list(range(length, 2 * length + 1))
        assert_stream_matches(
            samples, expected_episode(index, 0, AutoresetMode.NEXT_STEP) + expected_episode(index, 1, AutoresetMode.NEXT_STEP), steps
        )
        for k in (0, 1):
            file_frames = decode(tmp_path / f"rl-video-env-{index}-episode-{k}.mp4")[0]
            assert len(file_frames) == length + 1
        # each step's reward and action on its frame (reset frames have none); episode 2 is not recorded
        rewards = [(r["env_step"], r["Scalars:scalars"]) for r in rows[f"/scalars/env_{index}/reward"]]
        assert sorted(rewards) == [(t, [1.0]) for t in range(1, 2 * length + 1)]
        logged = {r["env_step"]: r["Scalars:scalars"] for r in rows[f"/scalars/env_{index}/action"]}
        assert logged == {t: [float(actions[t - 1][index])] for t in range(1, 2 * length + 1)}
        episodes = {r["env_step"]: r["Scalars:scalars"] for r in rows[f"/scalars/env_{index}/episode"]}
        assert episodes == {0: [0.0], length: [1.0]}
    assert [(r.name, r.env_index, r.first_step, r.frames) for r in read_recordings(path)] == [
        ("rl-video-env-0-episode-0", 0, 0, {"/camera/env_0": 4}),
        ("rl-video-env-2-episode-0", 2, 0, {"/camera/env_2": 6}),
        ("rl-video-env-0-episode-1", 0, 3, {"/camera/env_0": 4}),
        ("rl-video-env-2-episode-1", 2, 5, {"/camera/env_2": 6}),
    ]
