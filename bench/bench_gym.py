"""RecordVideo side by side: no recording, episode_recorder.gym.RecordVideo, gymnasium's RecordVideo.

Synthetic gym.Env: 480x640 smooth moving frames, episodes of 300 steps, ``--cpu-ms`` of busy
pure-Python work per step (default 5 ms). Every episode is recorded. Each variant runs in its own
process; the parent prints a table (wall time, overhead, longest step/reset call, peak RSS, bytes
written, frames decoded vs captured).

    python bench/bench_gym.py                 # all three variants
    python bench/bench_gym.py --variant ours  # one variant, prints JSON (what the parent runs)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

VARIANTS = ("none", "ours", "gymnasium")


def make_env(cpu_ms: float, steps: int, height: int = 480, width: int = 640) -> Any:
    import gymnasium as gym

    class SyntheticEnv(gym.Env):
        metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

        def __init__(self) -> None:
            self.render_mode = "rgb_array"
            self.observation_space = gym.spaces.Box(-1, 1, (4,))
            self.action_space = gym.spaces.Discrete(2)
            yy, xx = np.mgrid[0:height, 0 : 2 * width].astype(np.float32)
            wide = np.stack([np.sin(xx / 40.0), np.cos(yy / 30.0), np.sin((xx + yy) / 70.0)], -1)
            self.wide = ((wide + 1) * 127.5).astype(np.uint8)  # frames are moving windows of it
            self.t = 0
            self.steps = 0
            self.renders = 0

        def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
            super().reset(seed=seed)
            self.steps = 0
            return np.zeros(4, np.float32), {}

        def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
            deadline = time.perf_counter() + cpu_ms / 1000.0
            x = 0
            while time.perf_counter() < deadline:  # busy pure-Python work, holding the GIL
                x += 1
            self.t += 1
            self.steps += 1
            return np.zeros(4, np.float32), 1.0, self.steps >= steps, False, {}

        def render(self) -> np.ndarray:
            self.renders += 1
            shift = (self.t * 4) % width
            return self.wide[:, shift : shift + width]  # a cheap renderer: what is measured is the recorder

    return SyntheticEnv()


def run_variant(variant: str, episodes: int, steps: int, cpu_ms: float, folder: str) -> dict[str, Any]:
    env = base = make_env(cpu_ms, steps)
    if variant == "none":
        os.makedirs(folder)  # the wrappers create it (and warn when it exists)
    elif variant == "ours":
        from episode_recorder.gym import RecordVideo

        env = RecordVideo(env, folder, episode_trigger=lambda e: True)
    elif variant == "gymnasium":
        from gymnasium.wrappers import RecordVideo

        env = RecordVideo(env, folder, episode_trigger=lambda e: True)
    longest = 0.0
    start = time.perf_counter()
    for episode in range(episodes):
        t0 = time.perf_counter()
        env.reset(seed=episode)
        longest = max(longest, time.perf_counter() - t0)
        done = False
        while not done:
            t0 = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(0)
            longest = max(longest, time.perf_counter() - t0)
            done = terminated or truncated
    t0 = time.perf_counter()
    env.close()
    close_s = time.perf_counter() - t0
    wall = time.perf_counter() - start
    files = sorted(f for f in os.listdir(folder) if not f.startswith("."))
    decoded = sum(count_frames(os.path.join(folder, f)) for f in files)
    return {
        "variant": variant,
        "wall_s": wall,
        "close_s": close_s,
        "longest_call_ms": longest * 1000,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,  # encoder / ffmpeg
        "bytes_written": sum(os.path.getsize(os.path.join(folder, f)) for f in files),
        "files": len(files),
        "frames_captured": base.renders,
        "frames_decoded": decoded,
    }


def count_frames(path: str) -> int:
    import av

    with av.open(path) as container:
        return sum(1 for _ in container.decode(video=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--cpu-ms", type=float, default=5.0)
    args = parser.parse_args()
    if args.variant:
        with tempfile.TemporaryDirectory() as folder:
            print(json.dumps(run_variant(args.variant, args.episodes, args.steps, args.cpu_ms, os.path.join(folder, "videos"))))
        return
    results = []
    for variant in VARIANTS:
        command = [sys.executable, __file__, "--variant", variant, "--episodes", str(args.episodes),
                   "--steps", str(args.steps), "--cpu-ms", str(args.cpu_ms)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    base = results[0]
    print(f"{args.episodes} episodes x {args.steps} steps, 480x640, {args.cpu_ms:g} ms CPU per step, {os.cpu_count()} cores")
    print("| variant | wall s | overhead | longest call ms | peak RSS MB (+ largest child) | MB written | frames decoded / captured |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        overhead = 100 * (r["wall_s"] / base["wall_s"] - 1)
        print(f"| {r['variant']} | {r['wall_s']:.2f} | {overhead:+.0f}% | {r['longest_call_ms']:.1f} | "
              f"{r['peak_rss_mb']:.0f} (+{r['child_rss_mb']:.0f}) | {r['bytes_written'] / 1e6:.2f} | {r['frames_decoded']} / {r['frames_captured']} |")


if __name__ == "__main__":
    main()
