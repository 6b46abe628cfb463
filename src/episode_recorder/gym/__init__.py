"""A drop-in ``gymnasium.wrappers.RecordVideo`` that streams frames to a background encoder.

Same constructor arguments, defaults, triggers, attributes and file names as Gymnasium's wrapper
(``{name_prefix}-episode-{i}.mp4``, ``{name_prefix}-step-{i}.mp4``), but frames go to an encoder
process as they are captured instead of piling up in memory until moviepy encodes them while
training waits, and every captured frame is in the file. Extras are keyword arguments:
``format`` ("mp4", "webm", "gif"), ``crf`` / ``preset`` / ``bitrate``, ``on_video_saved(path, info)``,
``sidecar`` (a ``.json`` next to each video), ``queue_frames`` / ``when_full``,
``finish_in_background`` and ``rerun`` (True: the global stream, a path to an ``.rrd``, or an
``rr.RecordingStream``: the same encoded clips also go to Rerun as ``rr.VideoStream`` samples,
with rewards and actions as scalars).

    >>> import gymnasium as gym, tempfile, os
    >>> from episode_recorder.gym import RecordVideo
    >>> folder = tempfile.mkdtemp()
    >>> env = RecordVideo(gym.make("CartPole-v1", render_mode="rgb_array"), folder, sidecar=True)
    >>> _ = env.reset(seed=0)
    >>> for _ in range(20):
    ...     _, _, terminated, truncated, _ = env.step(env.action_space.sample())
    ...     if terminated or truncated:
    ...         _ = env.reset()
    >>> env.close()
    >>> sorted(os.listdir(folder))[:2]
    ['rl-video-episode-0.json', 'rl-video-episode-0.mp4']
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from typing import Any, SupportsFloat

from episode_recorder._optional import require
from episode_recorder.keep import KeepPolicy
from episode_recorder.recorder import Clip, Recorder, write_sidecar
from episode_recorder.schedule import Schedule, Take
from episode_recorder.sinks.rerun import as_rerun_sink
from episode_recorder.sinks.video import VideoOptions, WhenFull
from episode_recorder.sinks.wandb import active_run, log_clip_to_wandb
from episode_recorder.triggers import capped_cubic_video_schedule

gym = require("gymnasium", "gym", "episode_recorder.gym")
from gymnasium import logger  # noqa: E402

__all__ = ["RecordVideo"]

VideoSavedCallback = Callable[[str, dict[str, Any]], None]


class RecordVideo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Records videos of episodes (or step-triggered snippets) using ``env.render()``.

    Behaves as ``gymnasium.wrappers.RecordVideo``: ``episode_trigger(episode_id)`` starts a
    recording at a reset, ``step_trigger(step_id)`` after a step (default: the capped-cubic episode
    schedule); a recording ends at the next reset, or after ``video_length`` + 1 frames when
    ``video_length > 0`` (snippets may span episodes). A wrapper that is not recording never
    calls ``render()``. Differences: frames are encoded in a background process as they arrive,
    every captured frame is in the file, mp4 is yuv420p (plays in browsers), and
    ``recorded_frames`` is the number of frames of the current recording (not a list of them),
    and ``gc_trigger`` defaults to None: no frames are kept in memory, so there is nothing for
    Gymnasium's default (``gc.collect()`` after every episode, 10-100 ms in a process that has
    imported torch) to free; a trigger given is honoured. As with Gymnasium, a video is complete
    under its name when the call that ends its recording (``stop_recording()``, the ``reset()`` or
    ``step()`` that ends it, ``close()``) returns.

    Extras: ``format`` ("mp4", "webm", "gif"), ``crf``, ``preset``, ``bitrate`` (see
    :class:`~episode_recorder.sinks.video.VideoOptions`), ``on_video_saved(path, info)`` called on
    this thread once per finished file with its metadata (see ``Clip.metadata``), ``sidecar``
    (write that metadata as ``{video name}.json``), ``queue_frames`` and ``when_full`` ("wait":
    never lose a frame; "drop": never wait for the encoder), ``keep`` (which finished clips stay
    on disk, e.g. ``Keep(best=3, worst=3)``, see :mod:`episode_recorder.keep`; callbacks, sidecars
    and W&B see every clip first), ``finish_in_background`` (True:
    the call that ends a recording returns at once and the file completes a few frames later;
    ``close()`` still waits for every file).

        >>> import gymnasium as gym
        >>> env = gym.make("CartPole-v1", render_mode="rgb_array")
        >>> env = RecordVideo(env, "videos", episode_trigger=lambda e: e % 10 == 0,
        ...                   on_video_saved=lambda path, info: print(os.path.basename(path), info["frames"]))
        >>> _ = env.reset(seed=0)
        >>> for _ in range(5):
        ...     _ = env.step(0)
        >>> env.close()
        rl-video-episode-0.mp4 6
    """

    def __init__(
        self,
        env: gym.Env,
        video_folder: str,
        episode_trigger: Callable[[int], bool] | None = None,
        step_trigger: Callable[[int], bool] | None = None,
        video_length: int = 0,
        name_prefix: str = "rl-video",
        fps: int | None = None,
        disable_logger: bool = True,
        gc_trigger: Callable[[int], bool] | None = None,
        *,
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
        gym.utils.RecordConstructorArgs.__init__(
            self,
            video_folder=video_folder,
            episode_trigger=episode_trigger,
            step_trigger=step_trigger,
            video_length=video_length,
            name_prefix=name_prefix,
            fps=fps,
            disable_logger=disable_logger,
            gc_trigger=gc_trigger,
            format=format,
            crf=crf,
            preset=preset,
            bitrate=bitrate,
            sidecar=sidecar,
            queue_frames=queue_frames,
            when_full=when_full,
            wandb_log_key=wandb_log_key,
            finish_in_background=finish_in_background,
            keep=keep,
        )
        gym.Wrapper.__init__(self, env)
        check_render_mode(env.render_mode)
        self.frames_per_sec: int = fps if fps is not None else self.metadata.get("render_fps", 30)
        self.video_options = VideoOptions(format, self.frames_per_sec or 30, crf, preset, bitrate)  # checked before mkdir
        if episode_trigger is None and step_trigger is None:
            episode_trigger = capped_cubic_video_schedule

        self.episode_trigger = episode_trigger
        self.step_trigger = step_trigger
        self.disable_logger = disable_logger
        self.gc_trigger = gc_trigger
        self.finish_in_background = finish_in_background
        self.video_folder = prepare_folder(video_folder)
        self.name_prefix: str = name_prefix
        self._video_name: str | None = None
        self.video_length: int | float = video_length if video_length != 0 else float("inf")
        self.render_history: list[Any] = []

        self.recorder: Recorder = start_recorder(
            self, on_video_saved, sidecar, wandb_log_key, queue_frames, when_full, keep, rerun
        )
        self._step_scalars: dict[str, Any] = {}  # the last step's reward and action, for Rerun
        self.schedule = Schedule(
            episode_trigger=episode_trigger,
            step_trigger=step_trigger,
            video_length=video_length or None,
            on_start=self._open_take,
            on_stop=self._close_take,
        )
        self._episode_return = 0.0  # the summary of episode _stats_episode, for its video's metadata
        self._episode_length = 0
        self._episode_done = False
        self._stats_episode = -1
        self._summable = True  # False once a reward is not a scalar (batched envs): no summary

    @property
    def step_id(self) -> int:
        """Steps taken so far, minus one (Gymnasium's counter)."""
        return self.schedule.step_id

    @property
    def episode_id(self) -> int:
        """Episodes started so far, minus one."""
        return self.schedule.episode_ids[None]

    @property
    def recording(self) -> bool:
        """Whether a recording is running."""
        return self.schedule.take() is not None

    @property
    def recorded_frames(self) -> int:
        """Frames of the running recording."""
        take = self.schedule.take()
        return 0 if take is None else take.frames

    # --- Gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the environment and start a recording if ``episode_trigger`` says so."""
        obs, info = super().reset(seed=seed, options=options)
        self.schedule.episode_started()
        self._episode_return, self._episode_length, self._episode_done = 0.0, 0, False
        self._stats_episode = self.episode_id
        self._step_scalars = {}
        if self.recording:
            self._capture_frame()
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the environment, capturing a frame while recording."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._step_scalars = {"reward": reward, "action": action}
        self.schedule.advance()
        if self._summable and self.recording:  # the episode's summary goes into the clip's metadata
            try:
                self._episode_return += float(reward)
                self._episode_done = bool(terminated or truncated)
                self._episode_length += 1
            except (TypeError, ValueError, RuntimeError):  # batched rewards: no single-episode summary
                self._summable = False
        self.schedule.check_step_trigger()
        if self.recording:
            self._capture_frame()
        return obs, reward, terminated, truncated, info

    def render(self) -> Any:
        """The wrapped env's render; with ``rgb_array_list`` also the frames captured since the last call."""
        render_out = super().render()
        if self.recording and isinstance(render_out, list):
            take = self.schedule.take()
            for frame in render_out:
                take.segment.add(frame)
                take.frames += 1
        if self.render_history:
            history, self.render_history = self.render_history, []
            return history + render_out
        return render_out

    def close(self) -> None:
        """Finish the current recording, wait for every file, stop the encoder, then close the env."""
        try:
            self.schedule.stop_all()
        finally:
            try:
                self.recorder.close()
            finally:
                super().close()

    def start_recording(self, video_name: str) -> None:
        """Start a recording named ``video_name`` (stopping the current one first)."""
        self.schedule.start(kind="manual", name=video_name)

    def stop_recording(self) -> None:
        """Stop the current recording; its file is complete when this returns (see ``finish_in_background``)."""
        assert self.recording, "stop_recording was called, but no recording was started"
        self.schedule.stop()

    def __del__(self) -> None:
        """Warn the user in case the last video wasn't saved."""
        if getattr(self, "recording", False) and getattr(self, "recorded_frames", 0):
            logger.warn("Unable to save last video! Did you call close()?")

    # --- internals ----------------------------------------------------------------------------
    def _open_take(self, take: Take) -> None:
        take.name = self._video_name = video_name(self.name_prefix, take)
        start_step = take.step_id if take.kind == "step" else take.step_id + 1
        take.segment = self.recorder.start(
            take.name,
            episode_id=take.episode_id,
            start_step=start_step,
            fps=self.frames_per_sec or 30,
            max_frames=take.max_frames,
        )

    def _close_take(self, take: Take) -> None:
        if take.frames == 0:
            logger.warn("Ignored saving a video as there were zero frames to save.")
        self._video_name = None
        known = take.kind == "episode" and take.episode_id == self._stats_episode and self._episode_done and self._summable
        try:  # the schedule has dropped the take already if a sink (sidecar, callback, W&B) raises here
            take.segment.stop(
                end_step=self.step_id,
                episode_return=self._episode_return if known else None,
                episode_length=self._episode_length if known else None,
                wait=not self.finish_in_background,
            )
        finally:
            if self.gc_trigger and self.gc_trigger(self.episode_id):
                gc.collect()

    def _capture_frame(self) -> None:
        assert self.recording, "Cannot capture a frame, recording wasn't started."
        frame = self.env.render()
        if isinstance(frame, list):
            if len(frame) == 0:
                logger.warn(
                    "Trying to capture render frame but 'env.render()' has just been called. The frame cannot be captured."
                )
                return
            self.render_history += frame
            frame = frame[-1]
        if getattr(frame, "shape", None) is None:
            self.stop_recording()
            logger.warn(
                f"Recording stopped: expected type of frame returned by render to be a numpy array, got instead {type(frame)}."
            )
            return
        self.schedule.take().segment.add(frame, **self._step_scalars)
        self.schedule.frame_added()


def check_render_mode(render_mode: str | None) -> None:
    """Gymnasium's error for render modes that give no image."""
    if render_mode in {None, "human", "ansi"}:
        raise ValueError(
            f"Render mode is {render_mode}, which is incompatible with RecordVideo. "
            "Initialize your environment with a render_mode that returns an image, such as rgb_array."
        )


def video_name(name_prefix: str, take: Take) -> str:
    """Gymnasium's names: ``{prefix}-episode-{k}``, ``{prefix}-step-{s}``; a manual take keeps its own."""
    if take.name is not None:
        return take.name
    return f"{name_prefix}-episode-{take.episode_id}" if take.kind == "episode" else f"{name_prefix}-step-{take.step_id}"


def prepare_folder(video_folder: str) -> str:
    """Gymnasium's folder handling: absolute path, a warning when it exists, created."""
    folder = os.path.abspath(video_folder)
    if os.path.isdir(folder):
        logger.warn(
            f"Overwriting existing videos at {folder} folder "
            f"(try specifying a different `video_folder` for the `RecordVideo` wrapper if this is not desired)"
        )
    os.makedirs(folder, exist_ok=True)
    return folder


def start_recorder(
    wrapper: Any,
    on_video_saved: VideoSavedCallback | None,
    sidecar: bool,
    wandb_log_key: str | None,
    queue_frames: int,
    when_full: WhenFull,
    keep: KeepPolicy | None = None,
    rerun: Any = None,
) -> Recorder:
    """Set a RecordVideo wrapper's encoder attributes and start its recorder.

    Started with the wrapper, not at the first recording, so the process start (~0.2 s) never lands
    in a step. Sidecar, ``on_video_saved`` and W&B logging run as files complete.
    """
    wrapper.on_video_saved = on_video_saved
    wrapper.sidecar = sidecar
    wrapper.wandb_log_key = wandb_log_key
    if wandb_log_key is not None:  # fail now, not when the first video is done
        active_run(purpose=f"{type(wrapper).__name__}(wandb_log_key={wandb_log_key!r})")
    wrapper.queue_frames = queue_frames
    wrapper.when_full = when_full

    def saved(clip: Clip) -> None:
        info = clip.metadata()
        if wrapper.sidecar:
            info["sidecar"] = os.path.splitext(clip.path)[0] + ".json"
            write_sidecar(info["sidecar"], info)
        if wrapper.on_video_saved is not None:
            wrapper.on_video_saved(clip.path, info)
        if wrapper.wandb_log_key is not None:
            # one key per sub-env, so clips finishing between two wandb.log calls don't replace each other
            key = wrapper.wandb_log_key if clip.env_index is None else f"{wrapper.wandb_log_key}/env_{clip.env_index}"
            log_clip_to_wandb(clip, key=key)

    spec = getattr(wrapper.env, "spec", None)
    return Recorder(
        wrapper.video_folder,
        wrapper.video_options,
        queue_frames=wrapper.queue_frames,
        when_full=wrapper.when_full,
        on_saved=saved,
        keep=keep,
        rerun=as_rerun_sink(rerun, spec.id if spec is not None else type(wrapper).__name__),
    )
