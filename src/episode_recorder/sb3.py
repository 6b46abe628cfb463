"""A drop-in Stable-Baselines3 ``VecVideoRecorder`` that streams frames to a background encoder.

Without extras it is SB3's wrapper: same arguments and attributes, ``record_video_trigger`` on
SB3's step counter, ``video_length + 1`` frames of the tiled ``venv.render()`` per clip, files
``{name_prefix}-step-{start}-to-step-{start + video_length}.mp4``. Frames go to an encoder process
as they are captured instead of piling up in memory for moviepy, and when the step that ends a
recording returns, its file is complete. ``env_indices=[i, ...]`` records one episode-aligned
video per chosen sub-env instead (``{name_prefix}-env-{i}-episode-{k}.mp4``).

    >>> import gymnasium as gym, tempfile, os
    >>> from stable_baselines3.common.vec_env import DummyVecEnv
    >>> from episode_recorder.sb3 import VecVideoRecorder
    >>> folder = tempfile.mkdtemp()
    >>> venv = DummyVecEnv([lambda: gym.make("CartPole-v1", render_mode="rgb_array")] * 2)
    >>> venv = VecVideoRecorder(venv, folder, record_video_trigger=lambda step: step == 0, video_length=20)
    >>> _ = venv.reset()
    >>> for _ in range(30):
    ...     _ = venv.step([venv.action_space.sample() for _ in range(2)])  # doctest: +ELLIPSIS
    Saving video to ...
    >>> venv.close()
    >>> os.listdir(folder)
    ['rl-video-step-0-to-step-20.mp4']
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from episode_recorder._optional import require
from episode_recorder.gym import VideoSavedCallback, start_recorder
from episode_recorder.gym.vector import check_env_indices
from episode_recorder.keep import KeepPolicy
from episode_recorder.recorder import Recorder
from episode_recorder.schedule import Schedule, Take
from episode_recorder.sinks.rerun import rows_of
from episode_recorder.sinks.video import VideoOptions, WhenFull

_vec_env = require("stable_baselines3.common.vec_env", "sb3", "episode_recorder.sb3")
import gymnasium as gym  # noqa: E402  (a dependency of stable-baselines3)
from gymnasium import logger  # noqa: E402

VecEnv = _vec_env.VecEnv
VecEnvWrapper = _vec_env.VecEnvWrapper
DummyVecEnv = _vec_env.DummyVecEnv
SubprocVecEnv = _vec_env.SubprocVecEnv

__all__ = ["VecVideoRecorder"]


class VecVideoRecorder(VecEnvWrapper):
    """Records videos of a VecEnv: SB3's tiled snippets, or one episode video per chosen sub-env.

    As ``stable_baselines3.common.vec_env.VecVideoRecorder``: ``record_video_trigger(step_id)`` is
    asked at ``reset()`` and after each step while not recording; a recording holds
    ``video_length + 1`` frames of ``venv.render()`` (all sub-envs tiled); ``close()`` writes a
    recording in progress. ``recorded_frames`` is sized like SB3's list (``len()`` is the number of
    frames of the running recording) but holds no frames.

    ``env_indices=[i, ...]``: each chosen sub-env gets its own episode videos,
    ``{name_prefix}-env-{i}-episode-{k}.mp4``, ``k`` counting that env's episodes. Which episodes:
    ``episode_trigger(k)`` when given; otherwise (default) ``record_video_trigger(step_id)`` is asked
    at every step and, when it fires, each chosen env records its next whole episode (the one that
    starts at or after that step). ``video_length`` does not cut episode videos. Only the chosen
    envs are rendered (``env_method("render", indices=...)``). A video starts with the frame of the
    episode's reset; on a ``DummyVecEnv`` it ends with the terminal frame (rendered just before
    SB3's auto-reset: ``T + 1`` frames for ``T`` steps); on a ``SubprocVecEnv`` the worker resets
    before it answers, so the terminal state is never rendered and the video holds ``T`` frames.
    Episode videos carry the episode's return and length in their metadata (Monitor's
    ``info["episode"]`` when there is one, else the rewards this wrapper sees).

    Extras as in :class:`episode_recorder.gym.RecordVideo`: ``fps`` (default: the env's
    ``render_fps`` or 30), ``format`` ("mp4", "webm", "gif"), ``crf`` / ``preset`` / ``bitrate``,
    ``on_video_saved(path, info)``, ``sidecar``, ``wandb_log_key`` (per-env videos under
    ``{key}/env_{i}``), ``queue_frames`` / ``when_full``, ``keep`` (which finished clips stay on disk,
    see :mod:`episode_recorder.keep`); ``finish_in_background=True`` lets the step that ends a
    recording return before its file is complete (``close()`` still waits for all); ``rerun`` (True:
    the global stream, a path to an ``.rrd``, or an ``rr.RecordingStream``): the same encoded clips
    also go to Rerun as ``rr.VideoStream`` samples (``camera``, or ``camera/env_{i}`` with
    ``env_indices``), with the recorded steps' rewards and (numeric) actions as scalars
    (``scalars[/env_{i}]/{reward,action}``; tiled: one value per sub-env) on the clip's timelines.

        >>> venv = VecVideoRecorder(venv, "videos", lambda step: step % 2000 == 0,
        ...                         env_indices=[0, 3], wandb_log_key="videos")  # doctest: +SKIP
    """

    video_name: str
    video_path: str

    def __init__(
        self,
        venv: VecEnv,
        video_folder: str,
        record_video_trigger: Callable[[int], bool],
        video_length: int = 200,
        name_prefix: str = "rl-video",
        *,
        env_indices: Sequence[int] | None = None,
        episode_trigger: Callable[[int], bool] | None = None,
        fps: int | None = None,
        format: str = "mp4",
        crf: int | None = None,
        preset: str | None = None,
        bitrate: int | None = None,
        on_video_saved: VideoSavedCallback | None = None,
        sidecar: bool = False,
        wandb_log_key: str | None = None,
        queue_frames: int = 16,
        when_full: WhenFull = "wait",
        finish_in_background: bool = False,
        keep: KeepPolicy | None = None,
        rerun: Any = None,
    ) -> None:
        VecEnvWrapper.__init__(self, venv)
        self.env = venv
        base = unwrap_vec_env(venv)
        # SB3's metadata lookup, so that render_fps comes from the sub-envs
        metadata = base.get_attr("metadata")[0] if isinstance(base, (DummyVecEnv, SubprocVecEnv)) else base.metadata
        self.env.metadata = metadata
        assert self.env.render_mode == "rgb_array", f"The render_mode must be 'rgb_array', not {self.env.render_mode}"
        env_indices = check_env_indices(env_indices, self.num_envs)
        if video_length < 0:
            raise ValueError(f"video_length must be >= 0, received {video_length}")

        self.frames_per_sec = fps if fps is not None else self.env.metadata.get("render_fps", 30)
        self.video_options = VideoOptions(format, self.frames_per_sec or 30, crf, preset, bitrate)  # checked before mkdir
        self.record_video_trigger = record_video_trigger
        self.episode_trigger = episode_trigger
        self.video_folder = os.path.abspath(video_folder)
        os.makedirs(self.video_folder, exist_ok=True)
        self.name_prefix = name_prefix
        self.video_length = video_length
        self.env_indices = env_indices
        self.finish_in_background = finish_in_background
        self.recorder: Recorder = start_recorder(
            self, on_video_saved, sidecar, wandb_log_key, queue_frames, when_full, keep, rerun
        )
        self._actions: Any = None  # the actions of the step in flight (step_async), for Rerun
        self._step_scalars: dict[str, Any] = {}  # the last step's rewards and actions, for Rerun
        if env_indices is None:
            self.schedule = Schedule(
                step_trigger=record_video_trigger, video_length=video_length, step_id=0,
                on_start=self._start_snippet, on_stop=self._stop_take,
            )  # fmt: skip
        else:
            self.schedule = Schedule(
                env_indices,
                episode_trigger=episode_trigger,
                step_trigger=None if episode_trigger is not None else record_video_trigger,
                step_trigger_arms_episode=True,
                step_id=0,
                on_start=self._start_episode_video,
                on_stop=self._stop_take,
            )
        # DummyVecEnv: sub-envs live here, so their terminal frame can be rendered before auto-reset
        self._taps = insert_terminal_frame_taps(base, env_indices) if env_indices is not None else {}
        self._returns = {i: 0.0 for i in env_indices or []}
        self._lengths = {i: 0 for i in env_indices or []}
        self._summary: dict[int, tuple[float, int]] = {}  # set while an ended episode's take stops

    # --- SB3's attributes -----------------------------------------------------------------
    @property
    def step_id(self) -> int:
        """SB3's step counter: 0 at the first reset, +1 per ``step_wait``."""
        return self.schedule.step_id

    @property
    def recording(self) -> bool:
        """Whether a recording (of any chosen env) is running."""
        return any(take is not None for take in self.schedule.takes.values())

    @property
    def recorded_frames(self) -> FrameCount:
        """Sized like SB3's list of frames: ``len()`` frames of the running recording(s); no frames kept."""
        return FrameCount(sum(take.frames for take in self.schedule.takes.values() if take is not None))

    # --- VecEnv API -----------------------------------------------------------------------
    def reset(self) -> Any:
        """Reset the envs; start a recording if ``record_video_trigger(step_id)`` says so."""
        obs = self.venv.reset()
        self._step_scalars = {}
        if self.env_indices is None:
            if self.schedule.check_step_trigger():
                self._capture_tiled()
            return obs
        self.schedule.check_step_trigger()
        for index in self.env_indices:
            if self.schedule.in_episode[index]:
                self.schedule.episode_ended(index)  # interrupted: no episode summary
            self._start_env_episode(index)
        self._capture_envs()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Send the actions to the envs (kept for Rerun's ``action`` scalars)."""
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        """Step the envs, capturing a frame while recording."""
        for index, tap in self._taps.items():
            tap.armed = self.schedule.take(index) is not None
        try:
            obs, rewards, dones, infos = self.venv.step_wait()
        finally:
            for tap in self._taps.values():
                tap.armed = False
        self._step_scalars = {"reward": rewards, "action": self._actions}
        self.schedule.advance()
        if self.env_indices is None:
            if self.schedule.take() is not None:
                self._capture_tiled()
                if self.schedule.take() is None:
                    print(f"Saving video to {self.video_path}")
            elif self.schedule.check_step_trigger():
                self._capture_tiled()
        else:
            self._step_envs(rewards, dones, infos)
        return obs, rewards, dones, infos

    def close(self) -> None:
        """Finish the recordings in progress, wait for every file, then close the envs."""
        try:
            self.schedule.stop_all()
            self.recorder.close()
        finally:
            VecEnvWrapper.close(self)

    def __del__(self) -> None:
        """Warn the user in case the last video wasn't saved."""
        # __dict__, not getattr: after a failed __init__, VecEnvWrapper.__getattr__ would recurse.
        if self.__dict__.get("schedule") is not None and len(self.recorded_frames) > 0:
            logger.warn("Unable to save last video! Did you call close()?")

    # --- SB3's tiled snippets -------------------------------------------------------------
    def _start_snippet(self, take: Take) -> None:
        name = f"{self.name_prefix}-step-{take.step_id}-to-step-{take.step_id + self.video_length}"
        self.video_name = f"{name}.{self.video_options.extension}"
        self.video_path = os.path.join(self.video_folder, self.video_name)
        take.segment = self.recorder.start(
            name, start_step=take.step_id, fps=self.frames_per_sec or 30, max_frames=take.max_frames
        )

    def _capture_tiled(self) -> None:
        frame = self.env.render()
        if not isinstance(frame, np.ndarray):
            self.schedule.stop()
            logger.warn(
                f"Recording stopped: expected type of frame returned by render to be a numpy array, got instead {type(frame)}."
            )
            return
        self.schedule.take().segment.add(frame, **self._step_scalars)
        self.schedule.frame_added()

    # --- one video per chosen env ---------------------------------------------------------
    def _start_episode_video(self, take: Take) -> None:
        take.segment = self.recorder.start(
            f"{self.name_prefix}-env-{take.env}-episode-{take.episode_id}",
            episode_id=take.episode_id,
            env_index=take.env,
            start_step=take.step_id,
            fps=self.frames_per_sec or 30,
            max_frames=take.max_frames,
        )

    def _start_env_episode(self, index: int) -> None:
        self._returns[index], self._lengths[index] = 0.0, 0
        self.schedule.episode_started(index)

    def _step_envs(self, rewards: np.ndarray, dones: np.ndarray, infos: list[dict[str, Any]]) -> None:
        self.schedule.check_step_trigger()  # arms each chosen env's next episode
        for index in self.env_indices:
            self._returns[index] += float(rewards[index])
            self._lengths[index] += 1
            if not dones[index]:
                continue
            tap = self._taps.get(index)
            if tap is not None and tap.frame is not None and self.schedule.take(index) is not None:  # the terminal frame
                self.schedule.take(index).segment.add(tap.frame, **rows_of(self._step_scalars, index))
                self.schedule.frame_added(index)
            if tap is not None:
                tap.frame = None
            episode = infos[index].get("episode") if isinstance(infos[index], dict) else None
            if isinstance(episode, dict) and "r" in episode and "l" in episode:  # Monitor's summary
                self._summary[index] = (float(episode["r"]), int(episode["l"]))
            else:
                self._summary[index] = (self._returns[index], self._lengths[index])
            try:
                self.schedule.episode_ended(index)
            finally:
                self._summary.pop(index, None)
            self._start_env_episode(index)  # SB3 auto-reset: the returned obs is the next episode's
        self._capture_envs(reset=np.asarray(dones, dtype=bool))

    def _capture_envs(self, reset: np.ndarray | None = None) -> None:
        """Render the chosen envs that are recording (only those) and add their frames.

        ``reset[i]``: env ``i``'s frame is its new episode's first (the step's scalars were its last episode's).
        """
        recording = [i for i in self.env_indices if self.schedule.take(i) is not None]
        if not recording:
            return
        frames = self.venv.env_method("render", indices=recording)
        for index, frame in zip(recording, frames):
            scalars = {} if reset is None or reset[index] else rows_of(self._step_scalars, index)
            self.schedule.take(index).segment.add(frame, **scalars)
            self.schedule.frame_added(index)

    def _stop_take(self, take: Take) -> None:
        if take.frames == 0:
            logger.warn("Ignored saving a video as there were zero frames to save.")
        summary = self._summary.get(take.env) if take.kind == "episode" else None
        if summary is not None and take.episode_id != self.schedule.episode_ids[take.env]:
            summary = None
        take.segment.stop(  # as SB3's, the file is complete when the recording ends (unless finish_in_background)
            end_step=self.schedule.step_id,
            episode_return=None if summary is None else summary[0],
            episode_length=None if summary is None else summary[1],
            wait=not self.finish_in_background,
        )


class FrameCount:
    """Stands in for SB3's ``recorded_frames`` list: ``len()`` works; the frames went to the encoder."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"FrameCount({self.count})"


class TerminalFrameTap(gym.Wrapper):
    """Sits on a DummyVecEnv sub-env and, when armed, renders its last frame before SB3's auto-reset."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.armed = False
        self.frame: Any = None

    def reset(self, **kwargs: Any) -> Any:
        if self.armed:
            self.frame = self.env.render()
        return self.env.reset(**kwargs)


def unwrap_vec_env(venv: VecEnv) -> VecEnv:
    """The VecEnv under every ``VecEnvWrapper`` (VecNormalize, VecFrameStack, ...)."""
    while isinstance(venv, VecEnvWrapper):
        venv = venv.venv
    return venv


def insert_terminal_frame_taps(base: VecEnv, env_indices: list[int]) -> dict[int, TerminalFrameTap]:
    """Wrap the chosen sub-envs of a DummyVecEnv in a :class:`TerminalFrameTap`; {} for other VecEnvs."""
    if not isinstance(base, DummyVecEnv):
        return {}
    taps = {}
    for index in env_indices:
        env = base.envs[index]
        if not isinstance(env, TerminalFrameTap):
            env = base.envs[index] = TerminalFrameTap(env)
        taps[index] = env
    return taps
