"""episode_recorder.gym.RecordVideo on real CartPole-v1 and on envs whose frames encode the step."""

from __future__ import annotations

import json
import os
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import RenderCollection

from episode_recorder.gym import RecordVideo
from support import decode, encoder_stopped, pattern, psnr


class CountRenders(gym.Wrapper):
    """Counts ``render()`` calls and keeps a copy of every frame rendered."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.renders = 0
        self.frames: list[np.ndarray] = []

    def render(self) -> Any:
        self.renders += 1
        frame = self.env.render()
        self.frames.append(np.array(frame))
        return frame


class PatternEnv(gym.Env):
    """Episodes of ``lengths[i]`` steps (cycling); ``render()`` draws the global step counter."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(self, lengths: tuple[int, ...] = (5, 8, 3), size: tuple[int, int] = (48, 64)) -> None:
        self.render_mode = "rgb_array"
        self.observation_space = gym.spaces.Box(-1, 1, (1,))
        self.action_space = gym.spaces.Discrete(2)
        self.lengths, self.size = lengths, size
        self.episode, self.t, self.steps = -1, 0, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.episode, self.steps, self.t = self.episode + 1, 0, self.t + 1
        return np.zeros(1, np.float32), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self.t += 1
        self.steps += 1
        terminated = self.steps >= self.lengths[self.episode % len(self.lengths)]
        return np.zeros(1, np.float32), 0.5, terminated, False, {}

    def render(self) -> np.ndarray:
        return pattern(self.t, *self.size)


def run_episodes(env: gym.Env, episodes: int, seed: int = 123) -> list[int]:
    """Runs whole episodes; returns each episode's length in steps."""
    lengths = []
    env.action_space.seed(seed)
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        done, steps = False, 0
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done, steps = terminated or truncated, steps + 1
        lengths.append(steps)
    return lengths


def assert_same_frames(path: str, expected: list[np.ndarray], min_psnr: float = 28.0) -> None:
    frames, pix_fmt, _ = decode(path)
    assert len(frames) == len(expected), path
    for index, (decoded, original) in enumerate(zip(frames, expected)):
        assert psnr(decoded, original) > min_psnr, f"{path}: frame {index} differs"
    if path.endswith(".mp4"):
        assert pix_fmt == "yuv420p"


def test_cartpole_episodes_frames_names_sidecar_callback(tmp_path):
    counter = CountRenders(gym.make("CartPole-v1", render_mode="rgb_array"))
    saved: list[tuple[str, dict]] = []
    env = RecordVideo(
        counter, str(tmp_path), episode_trigger=lambda e: e in (1, 3), name_prefix="cp", sidecar=True,
        on_video_saved=lambda path, info: saved.append((path, info)),
    )
    assert env.recorder.clips == []  # the encoder process starts with the wrapper; nothing recorded yet
    lengths = run_episodes(env, 2)
    assert counter.renders == lengths[1] + 1  # episode 0 rendered nothing
    episode_1_frames = list(counter.frames)
    lengths += run_episodes(env, 3, seed=7)
    env.close()

    assert sorted(os.listdir(tmp_path)) == ["cp-episode-1.json", "cp-episode-1.mp4", "cp-episode-3.json", "cp-episode-3.mp4"]
    assert counter.renders == lengths[1] + 1 + lengths[3] + 1
    assert_same_frames(str(tmp_path / "cp-episode-1.mp4"), episode_1_frames)
    assert_same_frames(str(tmp_path / "cp-episode-3.mp4"), counter.frames[len(episode_1_frames):])

    assert [os.path.basename(path) for path, _ in saved] == ["cp-episode-1.mp4", "cp-episode-3.mp4"]
    sidecar = json.loads((tmp_path / "cp-episode-1.json").read_text())
    assert sidecar == saved[0][1]
    start = lengths[0]
    assert sidecar["path"] == str(tmp_path / "cp-episode-1.mp4")
    assert (sidecar["episode_id"], sidecar["env_index"], sidecar["frames"], sidecar["fps"]) == (1, None, lengths[1] + 1, 50)
    assert (sidecar["start_step"], sidecar["end_step"]) == (start, start + lengths[1] - 1)
    assert (sidecar["episode_return"], sidecar["episode_length"]) == (float(lengths[1]), lengths[1])


def test_pattern_frames_every_frame_in_order(tmp_path):
    env = RecordVideo(PatternEnv(), str(tmp_path), episode_trigger=lambda e: True, fps=10)
    run_episodes(env, 3)
    env.close()
    t = 0
    for episode, length in enumerate((5, 8, 3)):
        t += 1  # reset
        expected = [pattern(t + k, 48, 64) for k in range(length + 1)]
        t += length
        path = str(tmp_path / f"rl-video-episode-{episode}.mp4")
        assert_same_frames(path, expected)
        assert decode(path)[2] == 10


def test_step_trigger_snippets_span_episodes(tmp_path):
    saved: list[dict] = []
    counter = CountRenders(PatternEnv())
    env = RecordVideo(counter, str(tmp_path), step_trigger=lambda s: s == 3, video_length=7,
                      on_video_saved=lambda path, info: saved.append(info))
    run_episodes(env, 3)
    assert not env.recording
    env.close()
    assert os.listdir(tmp_path) == ["rl-video-step-3.mp4"]
    # Gymnasium's semantics: a snippet holds video_length + 1 frames: steps 3..9 and the reset between
    assert counter.renders == 8
    assert_same_frames(str(tmp_path / "rl-video-step-3.mp4"), counter.frames)
    assert (saved[0]["start_step"], saved[0]["frames"], saved[0]["episode_return"]) == (3, 8, None)


def test_step_trigger_without_length_ends_at_reset(tmp_path):
    counter = CountRenders(PatternEnv())
    env = RecordVideo(counter, str(tmp_path), step_trigger=lambda s: s == 1)
    run_episodes(env, 2)
    env.close()
    frames, _, _ = decode(tmp_path / "rl-video-step-1.mp4")
    assert len(frames) == counter.renders == 4  # steps 1..4 of the 5-step episode


@pytest.mark.parametrize("video_format", ["webm", "gif"])
def test_other_formats(tmp_path, video_format):
    env = RecordVideo(PatternEnv(), str(tmp_path), format=video_format)
    run_episodes(env, 2)
    env.close()
    assert sorted(os.listdir(tmp_path)) == [f"rl-video-episode-{i}.{video_format}" for i in (0, 1)]
    assert len(decode(tmp_path / f"rl-video-episode-1.{video_format}")[0]) == 9


def test_render_collection_inside_and_outside(tmp_path):
    # RecordVideo(RenderCollection(env)): frames come back from render() as Gymnasium's do
    env = RecordVideo(RenderCollection(PatternEnv()), str(tmp_path / "a"))
    env.reset()
    for _ in range(4):
        env.step(0)
    assert len(env.render()) == 5 and env.render() == []
    env.close()
    assert len(decode(tmp_path / "a" / "rl-video-episode-0.mp4")[0]) == 5

    env = RenderCollection(RecordVideo(PatternEnv(), str(tmp_path / "b")))
    env.reset()
    for _ in range(4):
        env.step(0)
    assert len(env.render()) == 5
    env.close()
    assert len(decode(tmp_path / "b" / "rl-video-episode-0.mp4")[0]) == 5


def test_render_modes_without_images_are_refused(tmp_path):
    for mode in (None, "human"):
        with pytest.raises(ValueError, match="such as rgb_array"):
            RecordVideo(gym.make("CartPole-v1", render_mode=mode), str(tmp_path))


def test_non_array_frame_stops_recording(tmp_path):
    class NoneRender(PatternEnv):
        def render(self) -> None:
            return None

    env = RecordVideo(NoneRender(), str(tmp_path))
    env.reset()
    assert not env.recording
    env.close()
    assert os.listdir(tmp_path) == []


class IsaacStyleEnv(gym.Env):
    """One env that simulates ``num_envs`` sub-envs: ``render()`` shows them all in one image and
    ``step()`` resets the sub-envs that finished (as Isaac Lab's ManagerBasedRLEnv does)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, num_envs: int = 4) -> None:
        self.render_mode = "rgb_array"
        self.num_envs = num_envs
        self.observation_space = gym.spaces.Box(-1, 1, (num_envs, 1))
        self.action_space = gym.spaces.Box(-1, 1, (num_envs, 1))
        self.t = 0
        self.episode_steps = np.zeros(num_envs, np.int64)
        self.renders = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.episode_steps[:] = 0
        return np.zeros((self.num_envs, 1), np.float32), {}

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict]:
        self.t += 1
        self.episode_steps += 1
        terminated = self.episode_steps >= 5 + np.arange(self.num_envs)
        self.episode_steps[terminated] = 0  # reset inside step
        return np.zeros((self.num_envs, 1), np.float32), np.ones(self.num_envs), terminated, np.zeros(self.num_envs, bool), {}

    def render(self) -> np.ndarray:
        self.renders += 1
        tiles = [pattern(self.t, 32, 32, env_index=i) for i in range(self.num_envs)]
        return np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)


def test_isaac_lab_style_env_with_step_trigger(tmp_path):
    env = IsaacStyleEnv()
    wrapped = RecordVideo(env, str(tmp_path), step_trigger=lambda step: step % 20 == 0, video_length=10, disable_logger=True)
    wrapped.reset()
    for _ in range(50):
        wrapped.step(wrapped.action_space.sample())  # never reset from outside
    wrapped.close()
    assert sorted(os.listdir(tmp_path)) == ["rl-video-step-0.mp4", "rl-video-step-20.mp4", "rl-video-step-40.mp4"]
    assert env.renders == 11 + 11 + 10  # the last snippet is cut short by close()
    assert_same_frames(
        str(tmp_path / "rl-video-step-20.mp4"),
        [IsaacStyleEnv.render(_at(env, t)) for t in range(21, 32)],
    )


def _at(env: IsaacStyleEnv, t: int) -> IsaacStyleEnv:
    env.t = t
    return env


@pytest.mark.parametrize("vector", [False, True], ids=["RecordVideo", "vector.RecordVideo"])
def test_dropped_frames_are_counted_in_sidecars_and_callbacks(tmp_path, vector):
    """when_full="drop" against a frozen encoder: the ring's frames are kept, the rest counted as dropped."""
    from episode_recorder.gym import vector as gym_vector

    infos: list[dict[str, Any]] = []
    options = dict(
        episode_trigger=lambda episode: episode == 0, queue_frames=2, when_full="drop", sidecar=True,
        finish_in_background=True,  # the vector envs end their episodes while the encoder is frozen
        on_video_saved=lambda path, info: infos.append(info),
    )
    if vector:
        envs = gym.vector.SyncVectorEnv([lambda: PatternEnv(lengths=(4,)) for _ in range(2)])
        env = gym_vector.RecordVideo(envs, str(tmp_path), env_indices=[0, 1], **options)
    else:
        env = RecordVideo(PatternEnv(lengths=(4,)), str(tmp_path), **options)
    with encoder_stopped(env.recorder):
        env.reset(seed=0)
        for _ in range(4):  # the reset frame and 4 steps: 5 frames per episode
            env.step(env.action_space.sample())
    env.close()
    names = ["rl-video-env-0-episode-0", "rl-video-env-1-episode-0"] if vector else ["rl-video-episode-0"]
    assert sorted(info["sidecar"] for info in infos) == [str(tmp_path / f"{name}.json") for name in names]
    for name, info in zip(names, sorted(infos, key=lambda info: info["path"])):
        sidecar = json.loads((tmp_path / f"{name}.json").read_text())
        assert (sidecar["frames"], sidecar["dropped_frames"]) == (info["frames"], info["dropped_frames"]) == (2, 3)
        decoded = decode(tmp_path / f"{name}.mp4")[0]
        assert len(decoded) == 2 and all(psnr(got, pattern(t, 48, 64)) > 30 for got, t in zip(decoded, (1, 2)))
