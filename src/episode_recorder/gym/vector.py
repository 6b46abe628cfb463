"""A drop-in ``gymnasium.wrappers.vector.RecordVideo`` on the streaming engine.

By default it behaves as Gymnasium's wrapper: one tiled overview of all sub-envs per recording,
episodes counted on env 0. With ``env_indices=[...]`` it instead writes one episode-aligned video
per chosen sub-env, each following that env's own episodes (its terminations, truncations and
``reset_mask`` resets) in every autoreset mode; files are named
``{name_prefix}-env-{i}-episode-{k}.mp4`` (``-env-{i}-step-{s}`` for step triggers).

    >>> import gymnasium as gym, tempfile, os
    >>> from episode_recorder.gym.vector import RecordVideo
    >>> folder = tempfile.mkdtemp()
    >>> envs = gym.make_vec("CartPole-v1", num_envs=3, render_mode="rgb_array")
    >>> envs = RecordVideo(envs, folder, env_indices=[0, 2], episode_trigger=lambda k: k == 0)
    >>> _ = envs.reset(seed=0)
    >>> for _ in range(60):
    ...     _ = envs.step(envs.action_space.sample())
    >>> envs.close()
    >>> sorted(os.listdir(folder))
    ['rl-video-env-0-episode-0.mp4', 'rl-video-env-2-episode-0.mp4']
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from episode_recorder.frames import to_rgb
from episode_recorder.gym import VideoSavedCallback, check_render_mode, prepare_folder, start_recorder
from episode_recorder.recorder import Recorder, Segment
from episode_recorder.sinks.rerun import row_of
from episode_recorder.sinks.video import WhenFull
from episode_recorder.triggers import capped_cubic_video_schedule

import gymnasium as gym  # noqa: E402  (episode_recorder.gym checked that it is installed)
from gymnasium import logger  # noqa: E402
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper  # noqa: E402

__all__ = ["RecordVideo", "grid_shape"]


class RecordVideo(VectorWrapper, gym.utils.RecordConstructorArgs):
    """Records videos of a vector env's sub-envs using ``env.render()``.

    Without ``env_indices`` this is ``gymnasium.wrappers.vector.RecordVideo``: each recording is
    one video of all sub-envs tiled in a grid close to ``video_aspect_ratio`` (only env 0 with
    ``record_first_only``), episode triggers count env 0's episodes, and a recording ends at env
    0's next episode (or after ``video_length`` + 1 frames). ``pad_grid=True`` lets the grid have
    empty cells so that a prime number of envs does not become a 1 x n strip.

    With ``env_indices=[i, ...]`` each chosen sub-env gets its own recordings: ``episode_trigger``
    sees that env's episode counter, each video starts with the frame of the env's reset and ends
    with its last frame before the next one (its terminal frame, except under same-step autoreset,
    where the terminal state is never rendered), and only the chosen envs' frames are converted.
    ``step_trigger`` starts one snippet per chosen env. Episode videos carry the episode's return
    and length in their metadata.

    The other extras match :class:`episode_recorder.gym.RecordVideo`: ``format``, ``crf``,
    ``preset``, ``bitrate``, ``on_video_saved(path, info)``, ``sidecar``, ``queue_frames``,
    ``when_full``, ``rerun`` (the clips also go to Rerun, ``camera[/env_{i}]``, with the recorded
    envs' rewards and actions as scalars). A wrapper that is not recording never calls ``render()``.

        >>> envs = RecordVideo(envs, "videos", env_indices=[0, 1], sidecar=True)   # doctest: +SKIP
    """

    def __init__(
        self,
        env: VectorEnv,
        video_folder: str,
        video_aspect_ratio: tuple[int, int] = (1, 1),
        record_first_only: bool = False,
        episode_trigger: Callable[[int], bool] | None = None,
        step_trigger: Callable[[int], bool] | None = None,
        video_length: int = 0,
        name_prefix: str = "rl-video",
        fps: int | None = None,
        disable_logger: bool = True,
        gc_trigger: Callable[[int], bool] | None = lambda episode: True,
        *,
        env_indices: Sequence[int] | None = None,
        pad_grid: bool = False,
        format: str = "mp4",
        crf: int | None = None,
        preset: str | None = None,
        bitrate: int | None = None,
        on_video_saved: VideoSavedCallback | None = None,
        sidecar: bool = False,
        queue_frames: int = 16,
        when_full: WhenFull = "wait",
        wandb_log_key: str | None = None,
        rerun: Any = None,
    ) -> None:
        VectorWrapper.__init__(self, env)
        gym.utils.RecordConstructorArgs.__init__(
            self,
            video_folder=video_folder,
            episode_trigger=episode_trigger,
            step_trigger=step_trigger,
            video_length=video_length,
            name_prefix=name_prefix,
            disable_logger=disable_logger,
        )
        check_render_mode(env.render_mode)
        if episode_trigger is None and step_trigger is None:
            episode_trigger = capped_cubic_video_schedule
        autoreset_mode = env.metadata.get("autoreset_mode", None)
        if autoreset_mode is not None:
            self.autoreset_mode = autoreset_mode
        else:
            logger.warn(
                f"{env} metadata doesn't specify its autoreset mode ({env.metadata!r}), therefore, defaulting to next step."
            )
            self.autoreset_mode = AutoresetMode.NEXT_STEP
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            logger.warn(
                "Vector environment's autoreset mode is same-step (https://farama.org/Vector-Autoreset-Mode). "
                "Recorded episodes will not contain the last frame of the episode."
            )
        self.has_autoreset = False
        self.episode_trigger = episode_trigger
        self.step_trigger = step_trigger
        self.disable_logger = disable_logger
        self.gc_trigger = gc_trigger
        self.record_first_only = record_first_only
        self.video_aspect_ratio = video_aspect_ratio
        self.pad_grid = pad_grid
        self.frame_cols = -1
        self.frame_rows = -1
        self.video_folder = prepare_folder(video_folder)
        self.frames_per_sec: int = fps if fps is not None else self.metadata.get("render_fps", 30)
        self.name_prefix = name_prefix
        self._video_name: str | None = None
        self.video_length: int | float = video_length if video_length != 0 else float("inf")
        self.recording = False
        self.recorded_frames = 0
        self.render_history: list[Any] = []
        self.step_id = -1
        self.episode_id = -1

        self.recorder: Recorder = start_recorder(
            self, format, crf, preset, bitrate, on_video_saved, sidecar, wandb_log_key, queue_frames, when_full, rerun
        )
        self._step_scalars: dict[str, Any] = {}  # the last step's rewards and actions, for Rerun
        self._segment: Segment | None = None
        self._grid: np.ndarray | None = None

        self.env_indices = None if env_indices is None else [int(i) for i in env_indices]
        if self.env_indices is not None:
            bad = [i for i in self.env_indices if not 0 <= i < self.num_envs]
            if bad or len(set(self.env_indices)) != len(self.env_indices):
                raise ValueError(f"env_indices must be distinct indices below num_envs={self.num_envs}, received {env_indices}.")
        chosen = self.env_indices or []
        self.env_episode_ids = {i: -1 for i in chosen}  # each chosen env's episode counter
        self._env = {i: _EnvRecording() for i in chosen}

    # --- Gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset (all envs, or those in ``options["reset_mask"]``), starting recordings as triggered."""
        self._step_scalars = {}
        if self.env_indices is not None:
            return self._reset_per_env(seed, options)
        if options is None or "reset_mask" not in options or options["reset_mask"][0]:
            self.episode_id += 1
            if self.recording and self.video_length == float("inf"):
                self.stop_recording()
            if self.episode_trigger and self.episode_trigger(self.episode_id):
                self.start_recording(f"{self.name_prefix}-episode-{self.episode_id}")
        obs, info = super().reset(seed=seed, options=options)
        if self.recording:
            self._capture_frame()
            if self.recorded_frames > self.video_length:
                self.stop_recording()
        self.has_autoreset = False
        return obs, info

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step the envs, capturing a frame while recording."""
        obs, rewards, terminations, truncations, info = self.env.step(actions)
        self.step_id += 1
        self._step_scalars = {"reward": rewards, "action": actions}
        if self.env_indices is not None:
            self._step_per_env(rewards, terminations, truncations)
            return obs, rewards, terminations, truncations, info
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            if self.has_autoreset:
                self._env0_episode()
            self.has_autoreset = terminations[0] or truncations[0]
        elif self.autoreset_mode == AutoresetMode.SAME_STEP and (terminations[0] or truncations[0]):
            self._env0_episode()
        if self.step_trigger and self.step_trigger(self.step_id):
            self.start_recording(f"{self.name_prefix}-step-{self.step_id}")
        if self.recording:
            if self.recorded_frames == 0:
                self._segment.start_step = self.step_id
            self._capture_frame()
            if self.recorded_frames > self.video_length:
                self.stop_recording()
        return obs, rewards, terminations, truncations, info

    def render(self) -> Any:
        """The wrapped env's render; with list renders also the frames captured since the last call."""
        render_out = super().render()
        if self.recording and isinstance(render_out, list):
            for frames in render_out:
                self._segment.add(self._tile(frames))
                self.recorded_frames += 1
        if self.render_history:
            history, self.render_history = self.render_history, []
            return history + render_out
        return render_out

    def close(self, **kwargs: Any) -> None:
        """Finish the recordings, wait for every file, then close the envs."""
        try:
            if self.recording:
                self.stop_recording()
            for index in self._env:
                self._stop_env(index)
            self.recorder.close()
        finally:
            super().close(**kwargs)

    def start_recording(self, video_name: str) -> None:
        """Start an overview recording named ``video_name`` (stopping the current one first)."""
        if self.recording:
            self.stop_recording()
        self.recording = True
        self._video_name = video_name
        self._segment = self.recorder.start(
            video_name, episode_id=self.episode_id, start_step=self.step_id + 1, fps=self.frames_per_sec or 30
        )

    def stop_recording(self) -> None:
        """Stop the current overview recording; its file is finished in the background."""
        assert self.recording, "stop_recording was called, but no recording was started"
        if self.recorded_frames == 0:
            logger.warn("Ignored saving a video as there were zero frames to save.")
        segment, self._segment = self._segment, None
        segment.stop(end_step=self.step_id)
        self.recorded_frames = 0
        self.recording = False
        self._video_name = None
        if self.gc_trigger and self.gc_trigger(self.episode_id):
            gc.collect()

    def __del__(self) -> None:
        """Warn the user in case the last video wasn't saved."""
        if getattr(self, "recorded_frames", 0) or any(e.frames for e in getattr(self, "_env", {}).values()):
            logger.warn("Unable to save last video! Did you call close()?")

    # --- overview (Gymnasium's behaviour) -----------------------------------------------------
    def _env0_episode(self) -> None:
        self.episode_id += 1
        if self.recording and self.video_length == float("inf"):
            self.stop_recording()
        if self.episode_trigger and self.episode_trigger(self.episode_id):
            self.start_recording(f"{self.name_prefix}-episode-{self.episode_id}")

    def _capture_frame(self) -> None:
        assert self.recording, "Cannot capture a frame, recording wasn't started."
        envs_frame = self.env.render()
        assert isinstance(envs_frame, Sequence), type(envs_frame)
        assert len(envs_frame) == self.num_envs
        self._segment.add(self._tile(envs_frame), **self._step_scalars)
        self.recorded_frames += 1

    def _tile(self, envs_frame: Sequence[Any]) -> np.ndarray:
        frames = [to_rgb(envs_frame[0])] if self.record_first_only else [to_rgb(frame) for frame in envs_frame]
        h, w = frames[0].shape[:2]
        if self.frame_cols == -1 or self.frame_rows == -1:
            self.frame_rows, self.frame_cols = grid_shape(len(frames), h, w, self.video_aspect_ratio, self.pad_grid)
        shape = (self.frame_rows * h, self.frame_cols * w, 3)
        if self._grid is None or self._grid.shape != shape:
            self._grid = np.zeros(shape, np.uint8)  # reused: the encoder copies each frame at once
        for index, frame in enumerate(frames):
            row, col = divmod(index, self.frame_cols)
            self._grid[row * h : (row + 1) * h, col * w : (col + 1) * w] = frame
        return self._grid

    # --- one video per chosen env (env_indices) -----------------------------------------------
    def _reset_per_env(self, seed: Any, options: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
        mask = None if options is None else options.get("reset_mask")  # read first: SyncVectorEnv pops it
        obs, info = super().reset(seed=seed, options=options)
        started = [i for i in self._env if mask is None or bool(mask[i])]
        for index in started:
            self._end_episode(index, done=False)
            self._start_episode(index)
        self._capture_envs(started, step=self.step_id + 1)
        return obs, info

    def _step_per_env(self, rewards: Any, terminations: Any, truncations: Any) -> None:
        dones = np.logical_or(np.asarray(terminations), np.asarray(truncations))
        rewards = np.asarray(rewards)
        ended_after: list[int] = []
        for index, env in self._env.items():
            done = bool(dones[index])
            if self.autoreset_mode == AutoresetMode.NEXT_STEP and env.autoreset:
                env.autoreset = False
                self._start_episode(index)  # this step's frame shows the env's reset
                continue
            if env.in_episode:
                env.episode_return += float(rewards[index])
                env.episode_length += 1
            if done and self.autoreset_mode == AutoresetMode.SAME_STEP:
                self._end_episode(index, done=True)  # the terminal state was never rendered
                self._start_episode(index)
            elif done:
                ended_after.append(index)
                env.autoreset = self.autoreset_mode == AutoresetMode.NEXT_STEP
        if self.step_trigger and self.step_trigger(self.step_id):
            for index, env in self._env.items():
                self._stop_env(index)
                env.segment = self.recorder.start(
                    f"{self.name_prefix}-env-{index}-step-{self.step_id}",
                    episode_id=self.env_episode_ids[index],
                    env_index=index,
                    start_step=self.step_id,
                    fps=self.frames_per_sec or 30,
                )
        self._capture_envs(list(self._env), step=self.step_id)
        for index in ended_after:
            self._end_episode(index, done=True)

    def _start_episode(self, index: int) -> None:
        env = self._env[index]
        self.env_episode_ids[index] += 1
        episode = self.env_episode_ids[index]
        env.in_episode, env.episode_return, env.episode_length = True, 0.0, 0
        if self.episode_trigger and self.episode_trigger(episode):
            self._stop_env(index)
            env.segment = self.recorder.start(
                f"{self.name_prefix}-env-{index}-episode-{episode}",
                episode_id=episode,
                env_index=index,
                fps=self.frames_per_sec or 30,
            )
            env.segment_episode = episode

    def _end_episode(self, index: int, done: bool) -> None:
        env = self._env[index]
        if env.in_episode and env.segment is not None and self.video_length == float("inf"):
            known = done and env.segment_episode == self.env_episode_ids[index]
            self._stop_env(index, (env.episode_return, env.episode_length) if known else None)
        env.in_episode = False

    def _capture_envs(self, indices: list[int], step: int) -> None:
        recording = [i for i in indices if self._env[i].segment is not None and self._env[i].in_episode]
        if not recording:
            return
        envs_frame = self.env.render()
        for index in recording:
            env = self._env[index]
            if env.frames == 0:
                env.segment.start_step = step
            env.segment.add(envs_frame[index], **{k: row_of(v, index) for k, v in self._step_scalars.items()})
            env.frames, env.last_step = env.frames + 1, step
            if env.frames > self.video_length:
                self._stop_env(index)

    def _stop_env(self, index: int, summary: tuple[float, int] | None = None) -> None:
        env = self._env[index]
        if env.segment is None:
            return
        segment, env.segment, env.segment_episode, env.frames = env.segment, None, None, 0
        segment.stop(
            end_step=env.last_step,
            episode_return=None if summary is None else summary[0],
            episode_length=None if summary is None else summary[1],
        )


class _EnvRecording:
    """What the wrapper knows about one chosen sub-env."""

    def __init__(self) -> None:
        self.in_episode = False  # False between a termination and the env's reset (DISABLED mode)
        self.autoreset = False  # NEXT_STEP: the env resets at the next step
        self.segment: Segment | None = None
        self.segment_episode: int | None = None  # the episode an episode-triggered segment began with
        self.frames = 0
        self.last_step = -1  # the step id of the last frame recorded (a reset's frame: the next step's)
        self.episode_return = 0.0
        self.episode_length = 0


def grid_shape(n: int, height: int, width: int, aspect: tuple[int, int] = (1, 1), pad: bool = False) -> tuple[int, int]:
    """(rows, cols) for tiling ``n`` frames closest to ``aspect``; Gymnasium's choice unless ``pad``.

    Gymnasium only uses exact divisors of ``n``, so a prime ``n`` becomes a 1 x n strip;
    ``pad=True`` allows empty cells in the last row.

    >>> grid_shape(7, 400, 600), grid_shape(7, 400, 600, pad=True), grid_shape(10, 400, 600)
    ((1, 7), (4, 2), (2, 5))
    """
    target = aspect[0] / aspect[1]
    if pad:
        shapes = [(math.ceil(n / cols), cols) for cols in range(1, n + 1)]
    else:  # Gymnasium's search
        shapes = [(rows, n // rows) for rows in range(1, int(n**0.5) + 1) if n % rows == 0]
    best, best_diff = (1, n), math.inf
    for rows, cols in shapes:
        diff = abs(cols * width / (rows * height) - target)
        if diff < best_diff:
            best, best_diff = (rows, cols), diff
    return best
