"""PPO on CartPole-v1 with 2 env runners, recording every 5th episode of each runner and every
evaluation episode; prints the videos of each iteration.

    pip install 'episode-recorder[rllib]' pygame        # or: make test (builds .venv-rllib)
    python examples/rllib_cartpole.py --out videos --iterations 3
"""

from __future__ import annotations

import argparse
from functools import partial

import ray
from ray.rllib.algorithms.ppo import PPOConfig

from episode_recorder.rllib import RecordEpisodes
from episode_recorder.triggers import every


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="videos")
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()

    ray.init(num_cpus=2, include_dashboard=False)
    config = (
        PPOConfig()
        .environment("CartPole-v1", env_config={"render_mode": "rgb_array"})
        .env_runners(num_env_runners=2, num_cpus_per_env_runner=0.5)
        .evaluation(evaluation_interval=1, evaluation_num_env_runners=1, evaluation_duration=1)
        # Training runners: every 5th episode of each sub-env; evaluation: a second callback, every episode.
        .callbacks([
            partial(RecordEpisodes, args.out, evaluation=False, episode_trigger=every(5)),
            partial(RecordEpisodes, args.out, training=False, episode_trigger=every(1)),
        ])
    )
    algo = config.build_algo()
    for _ in range(args.iterations):
        result = algo.train()
        print(f"iteration {result['training_iteration']}:")
        for path in result["env_runners"].get("episode_videos", []):
            print("  train", path)
        for path in result.get("evaluation", {}).get("env_runners", {}).get("episode_videos", []):
            print("  eval ", path)
    algo.stop()
    ray.shutdown()


if __name__ == "__main__":
    main()
