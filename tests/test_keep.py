"""keep=: which finished clips stay on disk, on the real wrappers with real files."""

from __future__ import annotations

import logging
import os
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from episode_recorder.gym import RecordVideo
from episode_recorder.gym.vector import RecordVideo as VectorRecordVideo
from episode_recorder.keep import Keep
from episode_recorder.unienv import EpisodeVideoWrapper
from support import PatternEnv, decode, pattern

RETURNS = [5.0, 9.0, 1.0, 3.0, 7.0, 2.0]  # episode i earns RETURNS[i] (over 3 steps)


class ScoredEnv(gym.Env):
    """Episodes of 3 steps; episode ``i`` pays ``RETURNS[i] / 3`` per step; frames encode the step."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(self) -> None:
        self.render_mode = "rgb_array"
        self.observation_space = gym.spaces.Box(-1, 1, (1,))
        self.action_space = gym.spaces.Discrete(2)
        self.episode, self.steps, self.t = -1, 0, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.episode, self.steps, self.t = self.episode + 1, 0, self.t + 1
        return np.zeros(1, np.float32), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self.steps, self.t = self.steps + 1, self.t + 1
        return np.zeros(1, np.float32), RETURNS[self.episode % len(RETURNS)] / 3, self.steps >= 3, False, {}

    def render(self) -> np.ndarray:
        return pattern(self.t, 32, 48)


def play(env: gym.Env, episodes: int) -> None:
    for _ in range(episodes):
        env.reset()
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(0)
            done = terminated or truncated
    env.close()


def test_best_worst_last_keep_exactly_those_files_and_sidecars(tmp_path, caplog) -> None:
    saved: list[dict[str, Any]] = []
    folder = tmp_path / "videos"
    env = RecordVideo(
        ScoredEnv(), str(folder), episode_trigger=lambda e: True, sidecar=True,
        keep=Keep(best=2, worst=1, last=1), on_video_saved=lambda path, info: saved.append(info),
    )
    with caplog.at_level(logging.INFO, logger="episode_recorder"):
        play(env, len(RETURNS))
    assert [round(info["episode_return"], 6) for info in saved] == RETURNS  # every clip was seen first
    # best 2: episodes 1 (9) and 4 (7); worst 1: episode 2 (1); last 1: episode 5
    kept = [1, 2, 4, 5]
    expected = sorted(f"rl-video-episode-{e}.{ext}" for e in kept for ext in ("json", "mp4"))
    assert sorted(os.listdir(folder)) == expected
    for episode in kept:
        frames, _, _ = decode(folder / f"rl-video-episode-{episode}.mp4")
        assert len(frames) == 4  # the reset frame and 3 steps: the kept files are whole
    deleted = [c.path for c in env.recorder.clips if c.status == "deleted"]
    assert sorted(os.path.basename(p) for p in deleted) == [f"rl-video-episode-{e}.mp4" for e in (0, 3)]
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("saved ") for m in messages) == len(RETURNS)
    assert any(m.startswith("deleted ") and "episode-0.mp4" in m for m in messages)


def test_callable_over_metadata_on_unienv_and_vector(tmp_path) -> None:
    env = EpisodeVideoWrapper(PatternEnv(episode_length=4), store_dir=tmp_path / "u", format="mp4",
                              keep=lambda meta: meta["episode_id"] % 2 == 1)
    env.reset()
    for _ in range(4 * 4 + 3):
        _, _, terminated, _, _ = env.step(env.sample_action())
        if terminated:
            env.reset()
    env.close()
    assert sorted(os.listdir(tmp_path / "u")) == ["episode_1_step_4.mp4", "episode_3_step_12.mp4"]
    assert [c.episode_id for c in env.saved_clips] == [1, 3]

    envs = VectorRecordVideo(
        gym.vector.SyncVectorEnv([ScoredEnv, ScoredEnv]), str(tmp_path / "v"), env_indices=[0, 1],
        episode_trigger=lambda e: True, keep=Keep(last=2),
    )
    envs.reset(seed=0)
    for _ in range(13):
        envs.step(np.zeros(2, np.int64))
    envs.close()
    # 3 finished episodes per env plus the open one cut by close(); the 2 saved last stay
    assert sorted(os.listdir(tmp_path / "v")) == ["rl-video-env-0-episode-3.mp4", "rl-video-env-1-episode-3.mp4"]


def test_clear_errors_and_a_warning_for_clips_without_a_return(tmp_path, caplog) -> None:
    with pytest.raises(ValueError, match="would delete every clip"):
        Keep()
    with pytest.raises(ValueError, match=r"Keep\(best=\.\.\.\) must be a whole number >= 0, received -1"):
        Keep(best=-1)
    with pytest.raises(ValueError, match="Cannot read keep policy 'top=3'"):
        Keep.parse("top=3")
    with pytest.raises(TypeError, match="keep= takes Keep.*received 3"):
        RecordVideo(ScoredEnv(), str(tmp_path / "bad"), keep=3)
    env = RecordVideo(ScoredEnv(), str(tmp_path / "s"), step_trigger=lambda s: s % 4 == 0, video_length=2,
                      keep=Keep(best=5))
    with caplog.at_level(logging.WARNING, logger="episode_recorder"):
        play(env, 3)
    assert os.listdir(tmp_path / "s") == []  # snippets have no return: best=5 keeps none of them, and says so
    assert sum("has no episode return" in r.getMessage() for r in caplog.records) == 1
