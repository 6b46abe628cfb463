"""episode_recorder.gym.vector.RecordVideo: sync and async vector envs in every autoreset mode."""

from __future__ import annotations

import json
import os
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorWrapper

from episode_recorder.gym.vector import RecordVideo, grid_shape
from support import decode, pattern, psnr

H, W = 48, 64


class PatternEnv(gym.Env):
    """Sub-env ``index``: episodes of ``3 + index`` steps, reward 1 per step; ``render()`` draws
    this env's own counter ``t`` (+1 at every reset and step), so frame ``t`` is known exactly."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, index: int = 0) -> None:
        self.render_mode = "rgb_array"
        self.index, self.length = index, 3 + index
        self.observation_space = gym.spaces.Box(-1, 1, (1,))
        self.action_space = gym.spaces.Discrete(2)
        self.t, self.steps = 0, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.t, self.steps = self.t + 1, 0
        return np.zeros(1, np.float32), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self.t, self.steps = self.t + 1, self.steps + 1
        return np.zeros(1, np.float32), 1.0, self.steps >= self.length, False, {}

    def render(self) -> np.ndarray:
        return pattern(self.t, H, W, env_index=self.index)


class CountRenders(VectorWrapper):
    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.renders = 0

    def render(self) -> Any:
        self.renders += 1
        return self.env.render()


def make_envs(mode: AutoresetMode, num_envs: int = 3, asynchronous: bool = False) -> CountRenders:
    fns = [lambda i=i: PatternEnv(i) for i in range(num_envs)]
    vector = AsyncVectorEnv(fns, autoreset_mode=mode) if asynchronous else SyncVectorEnv(fns, autoreset_mode=mode)
    return CountRenders(vector)


def run(envs: Any, steps: int, mode: AutoresetMode) -> None:
    envs.reset(seed=1)
    for _ in range(steps):
        _, _, terminations, truncations, _ = envs.step(envs.action_space.sample())
        dones = np.logical_or(terminations, truncations)
        if mode == AutoresetMode.DISABLED and dones.any():
            envs.reset(options={"reset_mask": dones})


def expected_episode(env_index: int, episode: int, mode: AutoresetMode) -> list[np.ndarray]:
    """Frames of one episode of sub-env ``env_index``: from its reset to its terminal frame
    (same-step autoreset never renders the terminal state)."""
    length = 3 + env_index
    first = episode * (length + 1) + 1  # t of the episode's reset frame
    last = first + length - (1 if mode == AutoresetMode.SAME_STEP else 0)
    return [pattern(t, H, W, env_index=env_index) for t in range(first, last + 1)]


def assert_frames(path: str, expected: list[np.ndarray]) -> None:
    frames, pix_fmt, rate = decode(path)
    assert len(frames) == len(expected), path
    for index, (decoded, original) in enumerate(zip(frames, expected)):
        assert psnr(decoded, original) > 28, f"{path}: frame {index} differs"
    assert (pix_fmt, rate) == ("yuv420p", 20)


MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("mode", MODES, ids=[m.name for m in MODES])
def test_one_video_per_chosen_env_aligned_with_its_episodes(tmp_path, mode, asynchronous):
    saved: list[tuple[str, dict]] = []
    counter = make_envs(mode, asynchronous=asynchronous)
    envs = RecordVideo(
        counter, str(tmp_path), env_indices=[0, 2], episode_trigger=lambda k: k in (0, 2), sidecar=True,
        on_video_saved=lambda path, info: saved.append((path, info)),
    )
    run(envs, 30, mode)
    envs.close()

    names = [f"rl-video-env-{i}-episode-{k}" for i in (0, 2) for k in (0, 2)]
    assert sorted(os.listdir(tmp_path)) == sorted([n + ".mp4" for n in names] + [n + ".json" for n in names])
    assert sorted(os.path.basename(path) for path, _ in saved) == sorted(n + ".mp4" for n in names)
    for env_index in (0, 2):
        length = 3 + env_index
        for episode in (0, 2):
            name = f"rl-video-env-{env_index}-episode-{episode}"
            expected = expected_episode(env_index, episode, mode)
            assert_frames(str(tmp_path / f"{name}.mp4"), expected)
            info = json.loads((tmp_path / f"{name}.json").read_text())
            assert info == next(i for p, i in saved if p.endswith(f"{name}.mp4"))
            assert (info["env_index"], info["episode_id"], info["frames"]) == (env_index, episode, len(expected))
            assert (info["episode_return"], info["episode_length"]) == (float(length), length)
    # step ids of the first and last frame of env 0's episode 2 (a reset()'s frame counts as the next step's)
    info = json.loads((tmp_path / "rl-video-env-0-episode-2.json").read_text())
    steps = {AutoresetMode.NEXT_STEP: (7, 10), AutoresetMode.SAME_STEP: (5, 7), AutoresetMode.DISABLED: (6, 8)}[mode]
    assert (info["start_step"], info["end_step"]) == steps
    # env 1 is never recorded; frames are rendered only on steps where a chosen env records
    assert counter.renders < 30


@pytest.mark.parametrize("mode", MODES, ids=[m.name for m in MODES])
def test_no_render_while_not_recording(tmp_path, mode):
    counter = make_envs(mode)
    envs = RecordVideo(counter, str(tmp_path), env_indices=[1], episode_trigger=lambda k: k == 1)
    run(envs, 40, mode)
    envs.close()
    expected = expected_episode(1, 1, mode)
    assert_frames(str(tmp_path / "rl-video-env-1-episode-1.mp4"), expected)
    assert counter.renders == len(expected)


@pytest.mark.parametrize("mode", MODES, ids=[m.name for m in MODES])
def test_overview_follows_env_0_and_keeps_every_frame(tmp_path, mode):
    saved: list[dict] = []
    counter = make_envs(mode, num_envs=4)
    envs = RecordVideo(counter, str(tmp_path), episode_trigger=lambda k: k == 1,
                       on_video_saved=lambda path, info: saved.append(info))
    run(envs, 20, mode)
    envs.close()
    assert os.listdir(tmp_path) == ["rl-video-episode-1.mp4"]
    frames, _, _ = decode(tmp_path / "rl-video-episode-1.mp4")
    assert len(frames) == counter.renders == saved[0]["frames"]
    assert frames[0].shape == (2 * H, 2 * W, 3)  # 4 envs: 2 x 2
    # top-left tile is env 0, whose episode 1 the video follows (as Gymnasium's wrapper does)
    env0 = expected_episode(0, 1, mode)
    if mode == AutoresetMode.DISABLED:  # Gymnasium also captures a frame at each masked reset
        assert len(frames) == len(env0) + 2 and psnr(frames[0][:H, :W], env0[0]) > 28
        return
    assert len(frames) == len(env0)
    for decoded, original in zip(frames, env0):
        assert psnr(decoded[:H, :W], original) > 28


def test_step_trigger_per_env_snippets(tmp_path):
    counter = make_envs(AutoresetMode.NEXT_STEP)
    envs = RecordVideo(counter, str(tmp_path), env_indices=[0, 1], step_trigger=lambda s: s == 2, video_length=5)
    run(envs, 12, AutoresetMode.NEXT_STEP)
    envs.close()
    assert sorted(os.listdir(tmp_path)) == ["rl-video-env-0-step-2.mp4", "rl-video-env-1-step-2.mp4"]
    for index in (0, 1):  # steps 2..7 (after step s, env t is s + 2 ... including autoreset steps)
        assert_frames(str(tmp_path / f"rl-video-env-{index}-step-2.mp4"), [pattern(t, H, W, index) for t in range(4, 10)])
    assert counter.renders == 6


def test_pad_grid_prime_and_record_first_only(tmp_path):
    envs = RecordVideo(make_envs(AutoresetMode.NEXT_STEP, num_envs=5), str(tmp_path / "pad"), pad_grid=True, format="webm")
    run(envs, 3, AutoresetMode.NEXT_STEP)
    envs.close()
    assert decode(tmp_path / "pad" / "rl-video-episode-0.webm")[0][0].shape == (3 * H, 2 * W, 3)  # not 1 x 5

    envs = RecordVideo(make_envs(AutoresetMode.NEXT_STEP, num_envs=5), str(tmp_path / "strip"))
    run(envs, 3, AutoresetMode.NEXT_STEP)
    envs.close()
    assert decode(tmp_path / "strip" / "rl-video-episode-0.mp4")[0][0].shape == (H, 5 * W, 3)  # Gymnasium's

    envs = RecordVideo(make_envs(AutoresetMode.NEXT_STEP), str(tmp_path / "first"), record_first_only=True)
    run(envs, 3, AutoresetMode.NEXT_STEP)
    envs.close()
    frames = decode(tmp_path / "first" / "rl-video-episode-0.mp4")[0]
    assert len(frames) == 4 and frames[0].shape == (H, W, 3)
    assert [psnr(f, pattern(t, H, W)) > 28 for f, t in zip(frames, range(1, 5))] == [True] * 4


def test_grid_shape():
    assert grid_shape(7, 400, 600) == (1, 7)
    assert grid_shape(7, 400, 600, pad=True) == (4, 2)
    assert grid_shape(13, 64, 64, pad=True) == (4, 4)
    assert grid_shape(12, 64, 64) == (3, 4)


def test_cartpole_per_env_and_errors(tmp_path):
    envs = gym.make_vec("CartPole-v1", num_envs=3, render_mode="rgb_array", vectorization_mode="sync")
    with pytest.raises(ValueError, match="env_indices"):
        RecordVideo(envs, str(tmp_path), env_indices=[3])
    envs = RecordVideo(envs, str(tmp_path), env_indices=[2], episode_trigger=lambda k: k == 0, sidecar=True)
    envs.reset(seed=3)
    envs.action_space.seed(3)
    length = None
    for step in range(200):
        _, _, terminations, truncations, _ = envs.step(envs.action_space.sample())
        if length is None and (terminations[2] or truncations[2]):
            length = step + 1
    envs.close()
    info = json.loads((tmp_path / "rl-video-env-2-episode-0.json").read_text())
    assert len(decode(tmp_path / "rl-video-env-2-episode-0.mp4")[0]) == info["frames"] == length + 1
    assert info["episode_length"] == length
    with pytest.raises(ValueError, match="such as rgb_array"):
        RecordVideo(gym.make_vec("CartPole-v1", num_envs=2), str(tmp_path))
