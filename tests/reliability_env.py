"""A small Gymnasium env and waits shared by tests/test_reliability.py and the jobs it runs as child processes."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
from patterns import pattern

H, W = 64, 80


class PatternGymEnv(gym.Env):
    """A Gymnasium env whose ``render()`` is ``pattern(t)``, ``t`` counting every reset and step."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, episode_length: int = 1000) -> None:
        self.render_mode = "rgb_array"
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.episode_length = episode_length
        self.t = 0
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t += 1
        self.steps = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        self.steps += 1
        return np.zeros(1, np.float32), 1.0, self.steps >= self.episode_length, False, {}

    def render(self):
        return pattern(self.t, H, W)


def wait_until(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return result


def encoder_took_every_frame(recorder: Any) -> None:
    """Wait until the encoder process has taken every queued frame out of its rings."""
    rings = list(recorder._encoder._rings.values())
    wait_until(lambda: all(int(ring.taken[0]) >= ring.written for ring in rings), what="the encoder")
