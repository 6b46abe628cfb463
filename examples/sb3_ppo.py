"""PPO on CartPole-v1 with Stable-Baselines3, recording one video per episode of sub-envs 0 and 3.

    python examples/sb3_ppo.py --out recordings/sb3            # videos + sidecars in the folder
    python examples/sb3_ppo.py --out recordings/sb3 --wandb    # the same, also logged to W&B offline

Every 250 VecEnv steps (1000 env steps with 4 envs), envs 0 and 3 each record their next whole
episode: ``rl-video-env-0-episode-{k}.mp4``, ``rl-video-env-3-episode-{k}.mp4``.
"""

from __future__ import annotations

import argparse
import os

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from episode_recorder.sb3 import VecVideoRecorder


class LogRolloutToWandb(BaseCallback):
    """One W&B row per rollout: the videos finished since the last row ride on it."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        import wandb

        wandb.log({"time/total_timesteps": self.num_timesteps})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="recordings/sb3", help="folder for the videos")
    parser.add_argument("--steps", type=int, default=4096, help="PPO timesteps (all envs together)")
    parser.add_argument("--wandb", action="store_true", help="also log each video to a W&B run in offline mode")
    args = parser.parse_args()

    run = None
    if args.wandb:
        import wandb

        os.makedirs(args.out, exist_ok=True)
        run = wandb.init(project="episode-recorder-sb3", mode="offline", dir=args.out)

    venv = make_vec_env("CartPole-v1", n_envs=4, seed=0)  # render_mode="rgb_array" by default
    venv = VecVideoRecorder(
        venv,
        args.out,
        record_video_trigger=lambda step: step % 250 == 0,
        env_indices=[0, 3],
        sidecar=True,
        wandb_log_key="videos" if run is not None else None,
        on_video_saved=lambda path, info: print(f"saved {os.path.basename(path)}: {info['frames']} frames, "
                                                f"return {info['episode_return']}"),
    )  # fmt: skip
    try:
        model = PPO("MlpPolicy", venv, n_steps=256, batch_size=256, n_epochs=4, seed=0, verbose=0)
        model.learn(args.steps, callback=LogRolloutToWandb() if run is not None else None)
    finally:
        venv.close()  # writes the episodes still being recorded
        if run is not None:
            run.finish()
    print(sorted(name for name in os.listdir(args.out) if name.endswith(".mp4")))


if __name__ == "__main__":
    main()
