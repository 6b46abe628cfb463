"""Record a few episodes of a small UniEnv env as mp4, webm and gif, then list what was written.

    python examples/demo.py --out recordings/unienv

Each video gets a JSON sidecar with its clip's metadata (as ``RecordVideo(sidecar=True)`` writes),
so ``episode-recorder gallery recordings`` can show them. ``balance`` is a CartPole policy for
``episode-recorder record CartPole-v1 --policy examples/demo.py:balance`` (see ``make demo``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import av
import numpy as np
from unienv_interface.backends.numpy import NumpyComputeBackend
from unienv_interface.env_base.env import Env
from unienv_interface.space.spaces.box import BoxSpace

from episode_recorder.unienv import EpisodeVideoWrapper


class BouncingBallEnv(Env):
    """A ball bouncing in a box; an episode ends after ``episode_length`` steps."""

    metadata = {"render_modes": ["rgb_array"]}
    render_mode = "rgb_array"
    render_fps = 30
    backend = NumpyComputeBackend
    device = None
    batch_size = None

    def __init__(self, episode_length: int = 90, size: tuple[int, int] = (240, 320)) -> None:
        self.action_space = BoxSpace(self.backend, -1.0, 1.0, np.float32, shape=(2,))
        self.observation_space = BoxSpace(self.backend, 0.0, 1.0, np.float32, shape=(4,))
        self.rng = np.random.default_rng(0)
        self.episode_length = episode_length
        self.height, self.width = size
        self.steps = 0
        self.state = np.zeros(4, np.float32)

    def reset(self, *args: Any, mask: Any = None, seed: int | None = None, **kwargs: Any) -> tuple[None, np.ndarray, dict]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.steps = 0
        self.state = np.concatenate([self.rng.uniform(0.2, 0.8, 2), self.rng.uniform(-0.03, 0.03, 2)]).astype(np.float32)
        return None, self.state.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.steps += 1
        self.state[2:] += 0.002 * np.asarray(action, np.float32)
        self.state[:2] += self.state[2:]
        for axis in (0, 1):
            if not 0.05 <= self.state[axis] <= 0.95:
                self.state[2 + axis] *= -1
                self.state[axis] = np.clip(self.state[axis], 0.05, 0.95)
        return self.state.copy(), float(-abs(self.state[0] - 0.5)), False, self.steps >= self.episode_length, {}

    def render(self) -> np.ndarray:
        yy, xx = np.ogrid[: self.height, : self.width]
        frame = np.empty((self.height, self.width, 3), np.uint8)
        frame[...] = (30, 34, 48)
        cy, cx = self.state[1] * self.height, self.state[0] * self.width
        ball = (yy - cy) ** 2 + (xx - cx) ** 2 <= (0.06 * self.height) ** 2
        frame[ball] = (250, 180, 60)
        return frame


def balance(obs: np.ndarray) -> int:
    """CartPole: push the cart towards where the pole is falling (angle plus angular velocity)."""
    return int(obs[2] + 0.5 * obs[3] > 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="recordings", help="folder for the videos")
    parser.add_argument("--episodes", type=int, default=2)
    args = parser.parse_args()
    for fmt in ("mp4", "webm", "gif"):
        env = EpisodeVideoWrapper(BouncingBallEnv(), store_dir=Path(args.out) / fmt, format=fmt)
        env.reset(seed=1)
        for _ in range(args.episodes):
            truncated = False
            while not truncated:
                _, _, _, truncated, _ = env.step(env.sample_action())
            env.reset()
        env.close()
        for clip in env.saved_clips:
            sidecar = {**clip.metadata(), "env_id": "BouncingBall"}
            Path(clip.path).with_suffix(".json").write_text(json.dumps(sidecar, indent=2))
            with av.open(clip.path) as container:
                frames = sum(1 for _ in container.decode(video=0))
            size = Path(clip.path).stat().st_size
            print(f"wrote {clip.path}  ({frames} frames, {clip.width}x{clip.height}, {size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
