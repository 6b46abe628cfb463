"""LogRerun on Gymnasium MuJoCo envs beside a per-body ``rr.log`` baseline doing the same work.

Both log, for every frame of one 1000-step recording (resets included): one world pose per moving
body, the reward, the running return, the action and the observation, on two timelines, after
the same static geometry. The baseline is what usd-rerun-logger does per step: ``set_time`` and
one ``rr.log`` per body and per scalar. Logging time = time inside the wrapper minus time inside
the env (measured by a timing wrapper between them), plus ``close()``; the baseline times its
own logging calls. Each run writes an .rrd under ``bench/results/`` and reports its size.

    PYTHONPATH=src MUJOCO_GL=egl python bench/bench_rerun_mujoco.py --steps 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import rerun as rr

from episode_recorder.rerun import LogRerun
from episode_recorder.scenes.mujoco import MujocoRerunLogger

RESULTS = Path(__file__).parent / "results"


class TimedEnv(gym.Wrapper):
    """Accumulates the seconds spent in the wrapped env's ``step`` and ``reset``."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.seconds = 0.0

    def step(self, action: Any) -> Any:
        start = time.perf_counter()
        result = self.env.step(action)
        self.seconds += time.perf_counter() - start
        return result

    def reset(self, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = self.env.reset(**kwargs)
        self.seconds += time.perf_counter() - start
        return result


def actions_for(env_id: str, steps: int) -> list[np.ndarray]:
    space = gym.make(env_id).action_space
    space.seed(0)
    return [space.sample() for _ in range(steps)]


def run_logrerun(env_id: str, actions: list[np.ndarray], path: Path, observations: bool = True) -> float:
    """Seconds LogRerun spent logging (wrapper time minus env time, plus close)."""
    inner = TimedEnv(gym.make(env_id))
    env = LogRerun(
        inner,
        save_path=path,
        step_trigger=lambda step: step == 0,
        recording_length=len(actions),
        log_observations=observations,
    )
    start = time.perf_counter()
    env.reset(seed=0)
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    env.close()
    return time.perf_counter() - start - inner.seconds


def run_baseline(env_id: str, actions: list[np.ndarray], path: Path, observations: bool = True) -> float:
    """Seconds the per-body ``rr.log`` baseline spent logging the same data."""
    env = gym.make(env_id)
    stream = rr.RecordingStream(env_id)
    stream.save(path)
    scene = MujocoRerunLogger(env.unwrapped.model, env.unwrapped.data, recording_stream=stream)
    dt = env.unwrapped.dt
    logging = 0.0
    episode_return = 0.0

    def log_frame(frame: int, obs: np.ndarray, reward: float | None, action: np.ndarray | None) -> None:
        nonlocal episode_return
        stream.set_time("step_0_step", sequence=frame)
        stream.set_time("step_0_timestamp", duration=frame * dt)
        state = scene._kinematics()
        for body in scene.moving_bodies:
            stream.log(
                scene.body_paths[body],
                rr.Transform3D(translation=state.xpos[body], quaternion=rr.Quaternion(xyzw=state.xquat[body][[1, 2, 3, 0]])),
            )
        if reward is not None:
            episode_return += reward
            stream.log("scalars/reward", rr.Scalars(reward))
            stream.log("scalars/return", rr.Scalars(episode_return))
            stream.log("scalars/action", rr.Scalars(np.asarray(action, np.float64)))
        if observations:
            stream.log("scalars/observation", rr.Scalars(np.asarray(obs, np.float64)))

    obs, _ = env.reset(seed=0)
    start = time.perf_counter()
    scene.log_geometry(stream)
    log_frame(0, obs, None, None)
    logging += time.perf_counter() - start
    for frame, action in enumerate(actions, start=1):
        obs, reward, terminated, truncated, _ = env.step(action)
        start = time.perf_counter()
        log_frame(frame, obs, float(reward), action)
        logging += time.perf_counter() - start
        if terminated or truncated:
            obs, _ = env.reset()
            episode_return = 0.0
    start = time.perf_counter()
    env.close()
    stream.disconnect()
    return logging + time.perf_counter() - start


def bare_step_seconds(env_id: str, actions: list[np.ndarray]) -> float:
    env = gym.make(env_id)
    env.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return (time.perf_counter() - start) / len(actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Humanoid-v5", "Ant-v5"])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-observations", action="store_true", help="log_observations=False (both sides)")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    RESULTS.mkdir(parents=True, exist_ok=True)
    observations = not args.no_observations

    print(
        f"{args.steps} steps; logging time per frame in microseconds, best (median) of {args.repeats} "
        "interleaved runs; bare env step for scale\n"
    )
    print("| env | bare env step | LogRerun logging | per-body rr.log logging | speed-up | LogRerun .rrd | baseline .rrd |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for env_id in args.envs:
        actions = actions_for(env_id, args.steps)
        ours, theirs, bare = [], [], []
        for _ in range(args.repeats):
            ours.append(run_logrerun(env_id, actions, RESULTS / f"{env_id}_logrerun.rrd", observations))
            theirs.append(run_baseline(env_id, actions, RESULTS / f"{env_id}_baseline.rrd", observations))
            bare.append(bare_step_seconds(env_id, actions))
        frames = args.steps + 1
        ours_us = [seconds / frames * 1e6 for seconds in ours]
        theirs_us = [seconds / frames * 1e6 for seconds in theirs]
        ours_bytes = (RESULTS / f"{env_id}_logrerun.rrd").stat().st_size
        theirs_bytes = (RESULTS / f"{env_id}_baseline.rrd").stat().st_size
        print(
            f"| {env_id} | {min(bare) * 1e6:.0f} ({statistics.median(bare) * 1e6:.0f}) "
            f"| {min(ours_us):.1f} ({statistics.median(ours_us):.1f}) "
            f"| {min(theirs_us):.1f} ({statistics.median(theirs_us):.1f}) "
            f"| {min(theirs_us) / min(ours_us):.1f}x ({statistics.median(theirs_us) / statistics.median(ours_us):.1f}x) "
            f"| {ours_bytes / 1e6:.2f} MB | {theirs_bytes / 1e6:.2f} MB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
