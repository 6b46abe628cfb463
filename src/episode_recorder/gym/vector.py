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
from episode_recorder.gym import (
    VideoSavedCallback,
    check_render_mode,
    prepare_folder,
    start_recorder,
    video_name,
)
from episode_recorder.keep import KeepPolicy
from episode_recorder.recorder import Recorder
from episode_recorder.schedule import Schedule, Take
from episode_recorder.sinks.rerun import rows_of
from episode_recorder.sinks.video import VideoOptions, WhenFull
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
    empty cells so that a prime number of envs does not become a 1 x n strip. ``gc_trigger``
    defaults to None (no frames are kept in memory; see :class:`episode_recorder.gym.RecordVideo`).

    With ``env_indices=[i, ...]`` each chosen sub-env gets its own recordings: ``episode_trigger``
    sees that env's episode counter, each video starts with the frame of the env's reset and ends
    with its last frame before the next one (its terminal frame, except under same-step autoreset,
    where the terminal state is never rendered), and only the chosen envs' frames are converted.
    ``step_trigger`` starts one snippet per chosen env. Episode videos carry the episode's return
    and length in their metadata.

    The other extras match :class:`episode_recorder.gym.RecordVideo`: ``format``, ``crf``,
    ``preset``, ``bitrate``, ``on_video_saved(path, info)``, ``sidecar``, ``queue_frames``,
    ``when_full``, ``wandb_log_key``, ``finish_in_background``, ``keep``, ``rerun`` (the clips also go
    to Rerun, ``camera[/env_{i}]``, with the recorded envs' rewards and actions as scalars). A video
    is complete under its name when the call that ends its recording returns. A wrapper that is not recording never calls
    ``render()``.

        >>> import gymnasium as gym, os
        >>> envs = gym.make_vec("CartPole-v1", num_envs=2, render_mode="rgb_array")
        >>> envs = RecordVideo(envs, "videos", env_indices=[0, 1], sidecar=True, video_length=4,
        ...                    step_trigger=lambda step: step == 0)
        >>> _ = envs.reset(seed=0)
        >>> for _ in range(6):
        ...     _ = envs.step(envs.action_space.sample())
        >>> envs.close()
        >>> [(os.path.basename(clip.path), clip.frames) for clip in envs.recorder.clips]
        [('rl-video-env-0-step-0.mp4', 5), ('rl-video-env-1-step-0.mp4', 5)]
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
        gc_trigger: Callable[[int], bool] | None = None,
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
        finish_in_background: bool = False,
        keep: KeepPolicy | None = None,
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
        self.env_indices = check_env_indices(env_indices, self.num_envs)
        self.frames_per_sec: int = fps if fps is not None else self.metadata.get("render_fps", 30)
        self.video_options = VideoOptions(format, self.frames_per_sec or 30, crf, preset, bitrate)  # checked before mkdir
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
        self.finish_in_background = finish_in_background
        self.video_folder = prepare_folder(video_folder)
        self.name_prefix = name_prefix
        self._video_name: str | None = None
        self.video_length: int | float = video_length if video_length != 0 else float("inf")
        self.render_history: list[Any] = []
        self._grid: np.ndarray | None = None

        self.recorder: Recorder = start_recorder(
            self, on_video_saved, sidecar, wandb_log_key, queue_frames, when_full, keep, rerun
        )
        self._step_scalars: dict[str, Any] = {}  # the last step's rewards and actions, for Rerun
        per_env = self.env_indices is not None
        self.schedule = Schedule(
            self.env_indices if per_env else [None],  # None: the tiled overview, following env 0's episodes
            episode_trigger=episode_trigger,
            step_trigger=step_trigger,
            video_length=video_length or None,
            on_start=self._open_env_take if per_env else self._open_take,
            on_stop=self._close_env_take if per_env else self._close_take,
        )
        self._env = {i: _EnvRecording() for i in self.env_indices or []}
        self._summary: dict[int, tuple[float, int]] = {}  # set while an ended episode's take stops

    @property
    def step_id(self) -> int:
        """Steps taken so far, minus one (Gymnasium's counter)."""
        return self.schedule.step_id

    @property
    def episode_id(self) -> int:
        """Env 0's episodes started so far, minus one (overview recordings)."""
        return self.schedule.episode_ids.get(None, -1)

    @property
    def env_episode_ids(self) -> dict[int, int]:
        """Each chosen env's episode counter (``env_indices``)."""
        return {i: k for i, k in self.schedule.episode_ids.items() if i is not None}

    @property
    def recording(self) -> bool:
        """Whether an overview recording is running."""
        return self.schedule.takes.get(None) is not None

    @property
    def recorded_frames(self) -> int:
        """Frames of the running overview recording."""
        take = self.schedule.takes.get(None)
        return 0 if take is None else take.frames

    # --- Gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset (all envs, or those in ``options["reset_mask"]``), starting recordings as triggered."""
        self._step_scalars = {}
        if self.env_indices is not None:
            return self._reset_per_env(seed, options)
        if options is None or "reset_mask" not in options or options["reset_mask"][0]:
            self.schedule.episode_started()
        obs, info = super().reset(seed=seed, options=options)
        if self.recording:
            self._capture_frame()
        self.has_autoreset = False
        return obs, info

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step the envs, capturing a frame while recording."""
        obs, rewards, terminations, truncations, info = self.env.step(actions)
        self._step_scalars = {"reward": rewards, "action": actions}
        self.schedule.advance()
        if self.env_indices is not None:
            self._step_per_env(rewards, terminations, truncations)
            return obs, rewards, terminations, truncations, info
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            if self.has_autoreset:
                self.schedule.episode_started()
            self.has_autoreset = terminations[0] or truncations[0]
        elif self.autoreset_mode == AutoresetMode.SAME_STEP and (terminations[0] or truncations[0]):
            self.schedule.episode_started()
        self.schedule.check_step_trigger()
        if self.recording:
            if self.recorded_frames == 0:
                self.schedule.take().segment.start_step = self.step_id
            self._capture_frame()
        return obs, rewards, terminations, truncations, info

    def render(self) -> Any:
        """The wrapped env's render; with list renders also the frames captured since the last call."""
        render_out = super().render()
        if self.recording and isinstance(render_out, list):
            take = self.schedule.take()
            for frames in render_out:
                take.segment.add(self._tile(frames))
                take.frames += 1
        if self.render_history:
            history, self.render_history = self.render_history, []
            return history + render_out
        return render_out

    def close(self, **kwargs: Any) -> None:
        """Finish the recordings, wait for every file, stop the encoder, then close the envs."""
        try:
            self.schedule.stop_all()
        finally:
            try:
                self.recorder.close()
            finally:
                super().close(**kwargs)

    def start_recording(self, video_name: str) -> None:
        """Start an overview recording named ``video_name`` (stopping the current one first)."""
        self.schedule.start(kind="manual", name=video_name)

    def stop_recording(self) -> None:
        """Stop the current overview recording; its file is complete when this returns."""
        assert self.recording, "stop_recording was called, but no recording was started"
        self.schedule.stop()

    def __del__(self) -> None:
        """Warn the user in case the last video wasn't saved."""
        takes = getattr(getattr(self, "schedule", None), "takes", {}).values()
        if any(take is not None and take.frames for take in takes):
            logger.warn("Unable to save last video! Did you call close()?")

    # --- overview (Gymnasium's behaviour) -----------------------------------------------------
    def _open_take(self, take: Take) -> None:
        take.name = self._video_name = video_name(self.name_prefix, take)
        take.segment = self.recorder.start(
            take.name,
            episode_id=take.episode_id,
            start_step=take.step_id + 1,
            fps=self.frames_per_sec or 30,
            max_frames=take.max_frames,
        )

    def _close_take(self, take: Take) -> None:
        if take.frames == 0:
            logger.warn("Ignored saving a video as there were zero frames to save.")
        self._video_name = None
        try:  # the schedule has dropped the take already if a sink raises here
            take.segment.stop(end_step=self.step_id, wait=not self.finish_in_background)
        finally:
            if self.gc_trigger and self.gc_trigger(self.episode_id):
                gc.collect()

    def _capture_frame(self) -> None:
        assert self.recording, "Cannot capture a frame, recording wasn't started."
        envs_frame = self.env.render()
        assert isinstance(envs_frame, Sequence), type(envs_frame)
        assert len(envs_frame) == self.num_envs
        self.schedule.take().segment.add(self._tile(envs_frame), **self._step_scalars)
        self.schedule.frame_added()

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
            self.schedule.episode_ended(index)  # interrupted (or already over): no summary
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
            if self.schedule.in_episode[index]:
                env.episode_return += float(rewards[index])
                env.episode_length += 1
            if done and self.autoreset_mode == AutoresetMode.SAME_STEP:
                self._end_episode(index)  # the terminal state was never rendered
                self._start_episode(index)
            elif done:
                ended_after.append(index)
                env.autoreset = self.autoreset_mode == AutoresetMode.NEXT_STEP
        self.schedule.check_step_trigger()
        self._capture_envs(list(self._env), step=self.step_id)
        for index in ended_after:
            self._end_episode(index)

    def _start_episode(self, index: int) -> None:
        env = self._env[index]
        env.episode_return, env.episode_length = 0.0, 0
        self.schedule.episode_started(index)

    def _end_episode(self, index: int) -> None:
        """The episode of env ``index`` is done: its video (if whole-episode) ends with its summary."""
        env = self._env[index]
        self._summary[index] = (env.episode_return, env.episode_length)
        try:
            self.schedule.episode_ended(index)
        finally:
            self._summary.pop(index, None)

    def _capture_envs(self, indices: list[int], step: int) -> None:
        recording = [i for i in indices if self.schedule.take(i) is not None and self.schedule.in_episode[i]]
        if not recording:
            return
        envs_frame = self.env.render()
        for index in recording:
            take = self.schedule.take(index)
            if take.frames == 0:
                take.segment.start_step = step
            take.segment.add(envs_frame[index], **rows_of(self._step_scalars, index))
            self._env[index].last_step = step
            self.schedule.frame_added(index)

    def _open_env_take(self, take: Take) -> None:
        take.segment = self.recorder.start(
            video_name(f"{self.name_prefix}-env-{take.env}", take),
            episode_id=take.episode_id,
            env_index=take.env,
            start_step=take.step_id,
            fps=self.frames_per_sec or 30,
            max_frames=take.max_frames,
        )

    def _close_env_take(self, take: Take) -> None:
        summary = self._summary.get(take.env)
        known = summary is not None and take.kind == "episode" and take.episode_id == self.schedule.episode_ids[take.env]
        take.segment.stop(
            end_step=self._env[take.env].last_step,
            episode_return=summary[0] if known else None,
            episode_length=summary[1] if known else None,
            wait=not self.finish_in_background,
        )


class _EnvRecording:
    """What the wrapper knows about one chosen sub-env beyond the schedule."""

    def __init__(self) -> None:
        self.autoreset = False  # NEXT_STEP: the env resets at the next step
        self.last_step = -1  # the step id of the last frame recorded (a reset's frame: the next step's)
        self.episode_return = 0.0
        self.episode_length = 0


def check_env_indices(env_indices: Any, num_envs: int) -> list[int] | None:
    """``env_indices`` as a list of distinct sub-env indices below ``num_envs`` (or None), else a clear error."""
    if env_indices is None:
        return None
    if isinstance(env_indices, (int, np.integer)) or not isinstance(env_indices, (Sequence, np.ndarray)):
        raise TypeError(
            f"env_indices must be a list of sub-env indices, e.g. env_indices=[{env_indices!r}], "
            f"received {env_indices!r} of type {type(env_indices).__name__}."
        )
    indices = [int(i) for i in env_indices]
    if any(not 0 <= i < num_envs for i in indices) or len(set(indices)) != len(indices):
        raise ValueError(f"env_indices must be distinct indices below num_envs={num_envs}, received {list(env_indices)}.")
    return indices


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
