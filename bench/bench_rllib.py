"""What recording costs an RLlib training run: PPO on CartPole-v1, with and without RecordEpisodes.

Each variant runs in its own process with its own local Ray cluster (``ray.init(num_cpus=...)``),
``--runners`` env runners of ``--envs`` sub-envs each, ``--iterations`` training iterations of
``--batch`` env steps (default: 2 runners x 1 sub-env, 5 iterations of 1000 steps). Variants:

- ``none``: no callback (the env is still created with ``render_mode="rgb_array"``; nothing renders);
- ``ours``: ``RecordEpisodes`` recording every episode of every sub-env of every runner (mp4).

The parent prints per-iteration wall time (median of the iterations after the first), the
runners' ``sample()`` time (RLlib's ``env_runners/sample`` timer), the env steps per second, the
CPU time per env step of the runner processes and of their encoder processes (psutil; these
hold on a loaded machine, where wall times do not), the videos written per iteration and their
bytes. Needs the ``rllib`` extra (run it
with the interpreter of ``.venv-rllib``, which ``make test`` builds)::

    .venv-rllib/bin/python bench/bench_rllib.py                        # both variants
    .venv-rllib/bin/python bench/bench_rllib.py --variant ours --json  # one variant (what the parent runs)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from typing import Any

VARIANTS = ("none", "ours")


def run_variant(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import psutil
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig

    from episode_recorder.rllib import RecordEpisodes
    from episode_recorder.triggers import every

    folder = tempfile.mkdtemp(prefix="bench-rllib-")
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        config = (
            PPOConfig()
            .environment("CartPole-v1", env_config={"render_mode": "rgb_array"})
            .env_runners(
                num_env_runners=args.runners,
                num_envs_per_env_runner=args.envs,
                num_cpus_per_env_runner=args.cpus / (args.runners + 1),
                sample_timeout_s=600,  # a loaded machine samples slowly; don't let RLlib give up
            )
            .training(train_batch_size_per_learner=args.batch, minibatch_size=min(128, args.batch), num_epochs=1)
        )
        if args.variant == "ours":
            config = config.callbacks(partial(RecordEpisodes, folder, episode_trigger=every(1)))
        start = time.perf_counter()
        algo = config.build_algo()
        build_s = time.perf_counter() - start
        runner_processes = [
            psutil.Process(pid)
            for pid in algo.env_runner_group.foreach_env_runner(lambda runner: os.getpid(), local_env_runner=False)
        ]
        iteration_s, sample_s, steps, videos = [], [], [], 0
        runner_cpu, encoder_cpu = cpu_seconds(runner_processes)
        for iteration in range(args.iterations):
            if iteration == 1:  # CPU time of the runners and of their encoders, after the first iteration
                runner_cpu, encoder_cpu = cpu_seconds(runner_processes)
            start = time.perf_counter()
            result = algo.train()
            iteration_s.append(time.perf_counter() - start)
            runners = result["env_runners"]
            sample_s.append(float(runners.get("sample", float("nan"))))
            steps.append(int(runners.get("num_env_steps_sampled", 0)))
            videos += len(runners.get("episode_videos", []))
        runner_cpu_end, encoder_cpu_end = cpu_seconds(runner_processes)
        algo.stop()
    finally:
        ray.shutdown()
    written = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder) if name.endswith(".mp4"))
    later = iteration_s[1:] or iteration_s
    later_steps = sum(steps[1:] or steps)
    return {
        "runner_cpu_ms_per_step": 1000 * (runner_cpu_end - runner_cpu) / later_steps,
        "encoder_cpu_ms_per_step": 1000 * (encoder_cpu_end - encoder_cpu) / later_steps,
        "variant": args.variant,
        "build_s": build_s,
        "iteration_s": statistics.median(later),
        "sample_s": statistics.median(sample_s[1:] or sample_s),
        "env_steps_per_s": later_steps / sum(later),
        "videos_per_iteration": videos / args.iterations,
        "mp4_bytes": written,
    }


def cpu_seconds(runners: list[Any]) -> tuple[float, float]:
    """User + system CPU seconds of the runner processes, and of their child (encoder) processes."""

    def used(process: Any) -> float:
        times = process.cpu_times()
        return times.user + times.system

    children = [child for runner in runners for child in runner.children(recursive=True)]
    return sum(map(used, runners)), sum(map(used, children))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--json", action="store_true", help="print one variant's figures as JSON")
    parser.add_argument("--runners", type=int, default=2)
    parser.add_argument("--envs", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    if args.variant is not None:
        print(json.dumps(run_variant(args)))
        return
    rows = []
    for variant in VARIANTS:
        command = [sys.executable, __file__, "--variant", variant, "--json"]
        for name in ("runners", "envs", "iterations", "batch", "cpus"):
            command += [f"--{name}", str(getattr(args, name))]
        output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    base = rows[0]["iteration_s"]
    print(f"PPO CartPole-v1, {args.runners} runners x {args.envs} sub-envs, {args.batch} steps/iteration, "
          f"{args.iterations} iterations, ray.init(num_cpus={args.cpus})")
    print("| variant | iteration (median) | overhead | sample() per call | env steps/s | runner CPU/step "
          "| encoder CPU/step | videos/iter | mp4 bytes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['variant']} | {row['iteration_s']:.2f} s | {100 * (row['iteration_s'] / base - 1):+.0f}% | "
            f"{row['sample_s']:.2f} s | {row['env_steps_per_s']:.0f} | {row['runner_cpu_ms_per_step']:.2f} ms "
            f"| {row['encoder_cpu_ms_per_step']:.2f} ms | {row['videos_per_iteration']:.1f} | {row['mp4_bytes']} |"
        )


if __name__ == "__main__":
    main()
