"""VecVideoRecorder side by side: no recording, episode_recorder.sb3's (tiled, env_indices=[0]), SB3's own.

A PPO-style loop (a small numpy policy picks the actions, ``venv.step()`` every step, a short
"training" burst of CPU work after each rollout of ``--rollout`` steps) on a DummyVecEnv of 4
synthetic 480x640 envs, each spending ``--cpu-ms`` (default 5 ms) of pure-Python CPU per step, with
episodes of 200 steps. Recording: a 200-step clip of the tiled view every 1000 steps (ours and
SB3's), or with ``env_indices=[0]`` env 0's next whole episode every 1000 steps. Each variant runs
in its own process; the parent prints a table: wall time, overhead, longest ``step()``/``reset()``
call, peak RSS of the main process, peak PSS of the main process and its children (our encoder; moviepy's ffmpeg),
frames decoded vs frames captured.

    python bench/bench_sb3.py                   # every variant (about 5 minutes on 2 quiet cores)
    python bench/bench_sb3.py --steps 1200      # shorter
    python bench/bench_sb3.py --variant ours    # one variant, prints JSON (what the parent runs)
    python bench/bench_sb3.py --variants none,ours --preset ultrafast --finish-in-background
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np
from bench_encoder import MEMORY_SAMPLE_SECONDS, busy, encode_cost_line  # bench/ is this script's folder, so on sys.path

VARIANTS = ("none", "ours", "ours_env0", "sb3")
N_ENVS, HEIGHT, WIDTH, EPISODE_STEPS = 4, 480, 640, 200


def make_env_fn(index: int, cpu_ms: float) -> Any:
    import gymnasium as gym

    class SyntheticEnv(gym.Env):
        metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

        def __init__(self) -> None:
            self.render_mode = "rgb_array"
            self.observation_space = gym.spaces.Box(-1, 1, (4,))
            self.action_space = gym.spaces.Discrete(2)
            yy, xx = np.mgrid[0:HEIGHT, 0 : 2 * WIDTH].astype(np.float32)
            wide = np.stack([np.sin(xx / 40.0 + index), np.cos(yy / 30.0), np.sin((xx + yy) / 70.0)], -1)
            self.wide = ((wide + 1) * 127.5).astype(np.uint8)  # frames are moving windows of it
            self.t = 0
            self.steps = 0
            self.renders = 0

        def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
            super().reset(seed=seed)
            self.steps = 0
            return np.zeros(4, np.float32), {}

        def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
            busy(cpu_ms / 1000.0)  # bench_encoder's: this thread's CPU time, so preemption makes it longer
            self.t += 1
            self.steps += 1
            return np.full(4, self.steps / EPISODE_STEPS, np.float32), 1.0, self.steps >= EPISODE_STEPS, False, {}

        def render(self) -> np.ndarray:
            self.renders += 1
            shift = (self.t * 4) % WIDTH
            return self.wide[:, shift : shift + WIDTH]  # a cheap renderer: what is measured is the recorder

    return SyntheticEnv


def wrap(variant: str, venv: Any, folder: str, options: dict[str, Any]) -> Any:
    trigger = lambda step: step % 1000 == 0  # noqa: E731
    if variant == "none":
        os.makedirs(folder)
        return venv
    if variant == "sb3":
        from stable_baselines3.common.vec_env import VecVideoRecorder

        return VecVideoRecorder(venv, folder, trigger, video_length=200)
    from episode_recorder.sb3 import VecVideoRecorder

    if variant == "ours":
        return VecVideoRecorder(venv, folder, trigger, video_length=200, **options)
    return VecVideoRecorder(venv, folder, trigger, env_indices=[0], **options)


class MemorySampler(threading.Thread):
    """Peak PSS of this process plus all its descendants (encoder process, moviepy's ffmpeg), every MEMORY_SAMPLE_SECONDS:
    memory shared between them (the encoder's frame ring) is counted once."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process()
        self.peak_mb = 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stopped.wait(MEMORY_SAMPLE_SECONDS):
            total = self.process.memory_full_info().pss
            for child in self.process.children(recursive=True):
                try:
                    total += child.memory_full_info().pss
                except psutil.Error:  # exited meanwhile
                    pass
            self.peak_mb = max(self.peak_mb, total / 2**20)


def run_variant(variant: str, steps: int, rollout: int, cpu_ms: float, folder: str, options: dict[str, Any]) -> dict[str, Any]:
    from stable_baselines3.common.vec_env import DummyVecEnv

    base = DummyVecEnv([make_env_fn(i, cpu_ms) for i in range(N_ENVS)])
    venv = wrap(variant, base, folder, options)
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(4, 2)).astype(np.float32)
    sampler = MemorySampler()
    sampler.start()
    longest, slowest = 0.0, []  # slowest: (ms, step) of the three longest calls
    start = time.perf_counter()
    t0 = time.perf_counter()
    obs = venv.reset()
    longest = max(longest, time.perf_counter() - t0)
    for step in range(1, steps + 1):
        actions = np.argmax(obs @ weights + rng.normal(size=(N_ENVS, 2)), axis=1)  # the "policy"
        t0 = time.perf_counter()
        obs, _, _, _ = venv.step(actions)
        longest = max(longest, time.perf_counter() - t0)
        slowest = sorted([*slowest, (round(1000 * (time.perf_counter() - t0), 1), step)], reverse=True)[:3]
        if step % rollout == 0:  # the "training" phase between rollouts
            deadline = time.perf_counter() + 0.1
            while time.perf_counter() < deadline:
                pass
    t0 = time.perf_counter()
    venv.close()
    close_s = time.perf_counter() - t0
    wall = time.perf_counter() - start
    sampler.stopped.set()
    sampler.join()
    files = sorted(f for f in os.listdir(folder) if not f.startswith("."))
    captured = base.envs[0].unwrapped.renders if variant != "none" else 0  # one render of env 0 per frame
    return {
        "variant": variant,
        "wall_s": wall,
        "close_s": close_s,
        "longest_call_ms": longest * 1000,
        "slowest_steps": slowest,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_total_mb": sampler.peak_mb,  # main + encoder process (ours) / ffmpeg (moviepy)
        "files": len(files),
        "bytes_written": sum(os.path.getsize(os.path.join(folder, f)) for f in files),
        "frames_captured": captured,
        "frames_decoded": sum(count_frames(os.path.join(folder, f)) for f in files),
    }


def count_frames(path: str) -> int:
    import av

    with av.open(path) as container:
        return sum(1 for _ in container.decode(video=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=3000, help="VecEnv steps (each steps all 4 envs)")
    parser.add_argument("--rollout", type=int, default=256, help="steps between 'training' phases")
    parser.add_argument("--cpu-ms", type=float, default=5.0)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, for the table")
    parser.add_argument("--preset", help="x264 preset for ours (default: the library's)")
    parser.add_argument("--finish-in-background", action="store_true", help="ours: do not wait for a file at a clip's end")
    args = parser.parse_args()
    options: dict[str, Any] = {"finish_in_background": True} if args.finish_in_background else {}
    if args.preset:
        options["preset"] = args.preset
    if args.variant:
        with tempfile.TemporaryDirectory() as folder:
            result = run_variant(args.variant, args.steps, args.rollout, args.cpu_ms, os.path.join(folder, "videos"), options)
        print(json.dumps(result))
        return
    results = []
    for variant in args.variants.split(","):
        command = [sys.executable, __file__, "--variant", variant, "--steps", str(args.steps),
                   "--rollout", str(args.rollout), "--cpu-ms", str(args.cpu_ms)]  # fmt: skip
        command += ["--preset", args.preset] if args.preset else []
        command += ["--finish-in-background"] if args.finish_in_background else []
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    base = results[0]
    print(encode_cost_line())
    print(f"DummyVecEnv of {N_ENVS} x {HEIGHT}x{WIDTH}, {args.steps} steps, {args.cpu_ms:g} ms CPU per env step, "
          f"clip every 1000 steps, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, ours: {options or 'defaults'}")  # fmt: skip
    print("| variant | wall s | overhead | longest call ms | three slowest steps: ms (step) | peak RSS MB main | peak PSS MB main + children (vs none) | files | frames decoded / captured |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        overhead = 100 * (r["wall_s"] / base["wall_s"] - 1)
        extra = r["peak_total_mb"] - base["peak_total_mb"]
        slowest = ", ".join(f"{ms:.0f} ({step})" for ms, step in r["slowest_steps"])
        print(f"| {r['variant']} | {r['wall_s']:.1f} | {overhead:+.0f}% | {r['longest_call_ms']:.0f} | {slowest} | {r['peak_rss_mb']:.0f} | "
              f"{r['peak_total_mb']:.0f} ({extra:+.0f}) | {r['files']} | {r['frames_decoded']} / {r['frames_captured']} |")  # fmt: skip


if __name__ == "__main__":
    main()
