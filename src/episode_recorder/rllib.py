"""Record episodes on the env runners of a Ray RLlib training run (new API stack).

:class:`RecordEpisodes` is an RLlib callback. Set it on the ``AlgorithmConfig`` and every chosen
env runner wraps its vectorized env in :class:`episode_recorder.gym.vector.RecordVideo` (one
encoder process per runner, one episode-aligned video per chosen sub-env), so frames are encoded
in the runner's own machine while it samples. Files are named so that runners never collide,
even across machines and restarts::

    {video_folder}/{name_prefix}-{train|eval}-runner-{i}-{host}-{pid}-env-{j}-episode-{k}.mp4

with a ``.json`` sidecar holding the clip's metadata plus the runner, host, Tune trial and the
training iteration. The paths of the videos finished in an iteration are in the result dict,
``result["env_runners"]["episode_videos"]`` (``result["evaluation"]["env_runners"][...]`` for
evaluation runners). Optionally each finished file goes to a Rerun gRPC server (from each runner)
and/or to the driver's W&B run (from the driver, which must be able to read the files).

    >>> from functools import partial
    >>> from ray.rllib.algorithms.ppo import PPOConfig
    >>> from episode_recorder.rllib import RecordEpisodes
    >>> config = (
    ...     PPOConfig()
    ...     .environment("CartPole-v1", env_config={"render_mode": "rgb_array"})
    ...     .env_runners(num_env_runners=2)
    ...     .callbacks(partial(RecordEpisodes, "videos", episode_trigger=lambda k: k % 5 == 0))
    ... )
    >>> algo = config.build_algo()                                   # doctest: +SKIP
    >>> algo.train()["env_runners"]["episode_videos"]                # doctest: +SKIP
    ['/.../videos/rl-video-train-runner-1-node1-4242-env-0-episode-0.mp4', ...]
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from episode_recorder._optional import require
from episode_recorder.gym import VideoSavedCallback
from episode_recorder.gym.vector import RecordVideo
from episode_recorder.recorder import Clip
from episode_recorder.sinks.video import WhenFull
from episode_recorder.sinks.wandb import active_run, require_wandb

require("ray.rllib", "rllib", "episode_recorder.rllib")
import gymnasium as gym  # noqa: E402
from ray.rllib.callbacks.callbacks import RLlibCallback  # noqa: E402

__all__ = ["RecordEpisodes", "RunnerRecordVideo"]

RESULT_KEY = "episode_videos"


class RunnerRecordVideo(RecordVideo):
    """The vector ``RecordVideo`` of one env runner: knows the runner, tags clips, collects paths.

    ``runner`` (group, index, host, pid, Tune trial) and the current ``training_iteration`` go into
    every clip's metadata (so into sidecars and callbacks); finished paths wait in
    :meth:`take_saved` until the runner reports them. Files are logged to ``rerun_stream`` as they
    finish, when one is given.
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        video_folder: str,
        *,
        runner: dict[str, Any],
        rerun_stream: Any = None,
        on_video_saved: VideoSavedCallback | None = None,
        **record_video_kwargs: Any,
    ) -> None:
        self.runner = runner
        self.training_iteration: int | None = None
        self.rerun_stream = rerun_stream
        self.user_on_video_saved = on_video_saved
        self._saved: list[str] = []
        super().__init__(env, video_folder, on_video_saved=self._video_saved, **record_video_kwargs)
        tag_and_save = self.recorder.on_saved

        def saved(clip: Clip) -> None:  # the tags land before the sidecar is written
            clip.extra.update(self.runner, training_iteration=self.training_iteration)
            tag_and_save(clip)

        self.recorder.on_saved = saved

    def take_saved(self) -> list[str]:
        """Let stopped recordings finish, then return the paths saved since the last call."""
        self.recorder.wait()
        saved, self._saved = self._saved, []
        return saved

    def close(self, **kwargs: Any) -> None:
        """Finish every recording and close the env (and the runner's Rerun stream)."""
        try:
            super().close(**kwargs)
        finally:
            if self.rerun_stream is not None:
                self.rerun_stream.disconnect()

    def _video_saved(self, path: str, info: dict[str, Any]) -> None:
        self._saved.append(path)
        if self.rerun_stream is not None:
            log_video_file_to_rerun(self.rerun_stream, rerun_entity(info), path)
        if self.user_on_video_saved is not None:
            self.user_on_video_saved(path, info)


class RecordEpisodes(RLlibCallback):
    """An RLlib callback that records episodes on the chosen env runners, in each runner process.

    Set it with ``config.callbacks(functools.partial(RecordEpisodes, "videos", ...))`` (RLlib calls
    the class without arguments). The env must render images: ``env_config={"render_mode":
    "rgb_array"}`` (passed to ``gym.make`` for a registered Gymnasium id, to your env creator
    otherwise).

    Which runners: ``training`` / ``evaluation`` choose the runner groups, ``runner_indices`` the
    runners by RLlib's ``worker_index`` (remote runners count from 1; 0 is the local runner, which
    samples only with ``num_env_runners=0``), ``env_indices`` the sub-envs (default: all) of each.
    When: ``episode_trigger`` / ``step_trigger`` / ``video_length`` as in Gymnasium's
    ``RecordVideo``, counted per sub-env (default: the capped-cubic episode schedule).
    How: ``format``, ``fps``, ``crf``, ``preset``, ``bitrate``, ``queue_frames``, ``when_full`` (see
    :class:`episode_recorder.gym.vector.RecordVideo`), ``sidecar`` (default on) and
    ``on_video_saved(path, info)``, run in the runner process.

    Where else: ``rerun_url`` (e.g. ``"rerun+http://head-node:9876/proxy"``): each runner streams its
    finished mp4 files to that Rerun server, one recording per runner under ``rerun_application_id``.
    ``wandb_log_key``: the driver logs the iteration's videos to its active W&B run, as lists of
    ``wandb.Video`` under ``{key}/train`` and ``{key}/eval`` (the driver must be able to read the
    files: one machine, or a shared filesystem).

    ``result_key`` names the list of finished paths in ``result["env_runners"]`` (and in
    ``result["evaluation"]["env_runners"]``). A runner waits for its stopped recordings at the end
    of each ``sample()`` (the encoder is at most ``queue_frames`` frames behind), so an iteration's
    result lists every episode that ended in it.
    """

    def __init__(
        self,
        video_folder: str = "videos",
        *,
        training: bool = True,
        evaluation: bool = True,
        runner_indices: Sequence[int] | None = None,
        env_indices: Sequence[int] | None = None,
        episode_trigger: Callable[[int], bool] | None = None,
        step_trigger: Callable[[int], bool] | None = None,
        video_length: int = 0,
        name_prefix: str = "rl-video",
        fps: int | None = None,
        format: str = "mp4",
        crf: int | None = None,
        preset: str | None = None,
        bitrate: int | None = None,
        sidecar: bool = True,
        queue_frames: int = 16,
        when_full: WhenFull = "wait",
        on_video_saved: VideoSavedCallback | None = None,
        rerun_url: str | None = None,
        rerun_application_id: str = "episode-recorder",
        wandb_log_key: str | None = None,
        result_key: str = RESULT_KEY,
    ) -> None:
        super().__init__()
        if rerun_url is not None and format != "mp4":
            raise ValueError(
                f"rerun_url needs format='mp4' (Rerun plays H.264 mp4 files), received format={format!r}."
            )
        self.video_folder = video_folder
        self.training = training
        self.evaluation = evaluation
        self.runner_indices = None if runner_indices is None else {int(i) for i in runner_indices}
        self.env_indices = None if env_indices is None else [int(i) for i in env_indices]
        self.record_video_kwargs: dict[str, Any] = dict(
            episode_trigger=episode_trigger,
            step_trigger=step_trigger,
            video_length=video_length,
            fps=fps,
            format=format,
            crf=crf,
            preset=preset,
            bitrate=bitrate,
            sidecar=sidecar,
            queue_frames=queue_frames,
            when_full=when_full,
            on_video_saved=on_video_saved,
        )
        self.name_prefix = name_prefix
        self.rerun_url = rerun_url
        self.rerun_application_id = rerun_application_id
        self.wandb_log_key = wandb_log_key
        self.result_key = result_key
        if wandb_log_key is not None:
            require_wandb("RecordEpisodes(wandb_log_key=...)")

    # --- in each env runner -------------------------------------------------------------------
    def on_environment_created(self, *, env_runner: Any, env: Any, env_context: Any, **kwargs: Any) -> None:
        """Wrap the runner's vectorized env in a :class:`RunnerRecordVideo`, if this runner is chosen."""
        group = "eval" if env_runner.config.in_evaluation else "train"
        index = int(env_runner.worker_index or 0)
        if not (self.evaluation if group == "eval" else self.training):
            return
        if self.runner_indices is not None and index not in self.runner_indices:
            return
        vector_env = getattr(env_runner, "env", None)
        if not isinstance(vector_env, gym.vector.VectorEnv):
            raise TypeError(
                f"RecordEpisodes records single-agent env runners, whose env is a gymnasium VectorEnv; "
                f"{type(env_runner).__name__} has {type(vector_env).__name__}. Use SingleAgentEnvRunner "
                "(the default for single-agent envs)."
            )
        if isinstance(vector_env, RunnerRecordVideo):
            raise ValueError(
                f"Two RecordEpisodes callbacks chose {group} runner {index}: each would write the same files. "
                "Give them disjoint runners (training/evaluation/runner_indices)."
            )
        if vector_env.render_mode not in ("rgb_array", "rgb_array_list"):
            raise ValueError(
                f"RecordEpisodes needs envs that render images, and this env's render_mode is "
                f"{vector_env.render_mode!r}. Create it with render_mode='rgb_array', e.g. "
                "config.environment('CartPole-v1', env_config={'render_mode': 'rgb_array'})."
            )
        host = socket.gethostname().replace(os.sep, "_") or "host"
        runner = {
            "runner_group": group,
            "runner_index": index,
            "host": host,
            "pid": os.getpid(),
            "tune_trial_id": getattr(env_runner, "tune_trial_id", None),
        }
        label = f"{group}-runner-{index}-{host}-{os.getpid()}"
        stream = None
        if self.rerun_url is not None:
            rr = require("rerun", "rerun", "RecordEpisodes(rerun_url=...)")
            stream = rr.RecordingStream(self.rerun_application_id, recording_id=label)
            stream.connect_grpc(self.rerun_url)
        env_indices = self.env_indices if self.env_indices is not None else list(range(vector_env.num_envs))
        with warnings.catch_warnings():  # the folder is shared by design; the names never collide
            warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
            env_runner.env = RunnerRecordVideo(
                vector_env,
                self.video_folder,
                runner=runner,
                rerun_stream=stream,
                env_indices=env_indices,
                name_prefix=f"{self.name_prefix}-{label}",
                **self.record_video_kwargs,
            )

    def on_sample_end(self, *, env_runner: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
        """Report the paths of the videos finished during this ``sample()`` in the runner's metrics."""
        wrapper = getattr(env_runner, "env", None)
        if not isinstance(wrapper, RunnerRecordVideo) or metrics_logger is None:
            return
        for path in wrapper.take_saved():
            metrics_logger.log_value(self.result_key, path, reduce="item_series")

    # --- on the driver ------------------------------------------------------------------------
    def on_algorithm_init(self, *, algorithm: Any, **kwargs: Any) -> None:
        """Tell every runner the training iteration in progress."""
        broadcast_iteration(algorithm)

    def on_checkpoint_loaded(self, *, algorithm: Any, **kwargs: Any) -> None:
        """Tell every runner the iteration restored from the checkpoint."""
        broadcast_iteration(algorithm)

    def on_env_runners_recreated(
        self, *, algorithm: Any, env_runner_group: Any, env_runner_indices: list[int], **kwargs: Any
    ) -> None:
        """Tell recreated runners the training iteration in progress."""
        set_iteration_on(env_runner_group, algorithm.iteration + 1, env_runner_indices)

    def on_train_result(self, *, algorithm: Any, result: dict[str, Any], **kwargs: Any) -> None:
        """Log the iteration's videos to W&B (``wandb_log_key``), then announce the next iteration."""
        broadcast_iteration(algorithm)
        if self.wandb_log_key is not None:
            videos = {
                "train": result.get("env_runners", {}).get(self.result_key, []),
                "eval": result.get("evaluation", {}).get("env_runners", {}).get(self.result_key, []),
            }
            log_iteration_to_wandb(videos, self.wandb_log_key, int(result.get("training_iteration", algorithm.iteration)))


def broadcast_iteration(algorithm: Any) -> None:
    """Send ``algorithm.iteration + 1`` (the iteration in progress) to all its env runners, without waiting."""
    for group in (getattr(algorithm, "env_runner_group", None), getattr(algorithm, "eval_env_runner_group", None)):
        if group is not None:
            set_iteration_on(group, algorithm.iteration + 1)


def set_iteration_on(group: Any, iteration: int, remote_ids: list[int] | None = None) -> None:
    """Fire-and-forget: Ray runs actor calls in order, so runners see it before their next ``sample()``."""
    group.foreach_env_runner(
        partial(_set_iteration, iteration=iteration),
        local_env_runner=True,
        remote_worker_ids=remote_ids,
        timeout_seconds=0.0,
    )


def _set_iteration(env_runner: Any, iteration: int) -> None:
    wrapper = getattr(env_runner, "env", None)
    if isinstance(wrapper, RunnerRecordVideo):
        wrapper.training_iteration = iteration


def rerun_entity(info: dict[str, Any]) -> str:
    """``env_0/episode_3`` (``env_0/step_12`` for step triggers) for a saved clip's metadata."""
    name = os.path.splitext(os.path.basename(info["path"]))[0]
    index = info["env_index"]
    return f"env_{index}/" + name.split(f"-env-{index}-")[-1].replace("-", "_")


def log_video_file_to_rerun(stream: Any, entity: str, path: str) -> None:
    """Log a finished mp4 file as a Rerun ``AssetVideo`` with one frame reference per frame."""
    rr = require("rerun", "rerun", "Logging videos to Rerun")
    asset = rr.AssetVideo(path=path)
    stream.log(entity, asset, static=True)
    timestamps = asset.read_frame_timestamps_nanos()
    stream.send_columns(
        entity,
        indexes=[rr.TimeColumn("video_time", duration=timestamps * 1e-9)],
        columns=rr.VideoFrameReference.columns_nanos(timestamps),
    )


def log_iteration_to_wandb(videos: dict[str, list[str]], key: str, iteration: int, run: Any = None) -> None:
    """Log each group's videos as one list of ``wandb.Video`` under ``{key}/{group}`` (one row).

    Captions come from the sidecars when they are there (episode, env, return, runner).
    """
    videos = {group: paths for group, paths in videos.items() if paths}
    if not videos:
        return
    run = active_run(run, f"RecordEpisodes(wandb_log_key={key!r})")
    wandb = require_wandb()
    data: dict[str, Any] = {
        f"{key}/{group}": [wandb.Video(path, caption=caption(path)) for path in paths] for group, paths in videos.items()
    }
    data[f"{key}/training_iteration"] = iteration
    run.log(data)


def caption(path: str) -> str:
    """``"train runner 1, env 0, episode 3, return 12"`` from a video's sidecar, else its file name."""
    try:
        with open(os.path.splitext(path)[0] + ".json") as file:
            info = json.load(file)
    except (OSError, ValueError):
        return os.path.basename(path)
    parts = [f"{info.get('runner_group')} runner {info.get('runner_index')}", f"env {info.get('env_index')}"]
    parts.append(f"episode {info.get('episode_id')}")
    if info.get("episode_return") is not None:
        parts.append(f"return {info['episode_return']:.4g}")
    return ", ".join(parts)
