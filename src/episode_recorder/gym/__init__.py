"""A drop-in ``gymnasium.wrappers.RecordVideo`` that streams frames to a background encoder.

Same constructor arguments, defaults, triggers, attributes and file names as Gymnasium's wrapper
(``{name_prefix}-episode-{i}.mp4``, ``{name_prefix}-step-{i}.mp4``), but frames go to an encoder
process as they are captured instead of piling up in memory until moviepy encodes them while
training waits, and every captured frame is in the file. Extras are keyword arguments:
``format`` ("mp4", "webm", "gif"), ``crf`` / ``preset`` / ``bitrate``, ``on_video_saved(path, info)``,
``sidecar`` (a ``.json`` next to each video), ``queue_frames`` / ``when_full`` and ``rerun``
(True: the global stream, a path to an ``.rrd``, or an ``rr.RecordingStream``: the same encoded
clips also go to Rerun as ``rr.VideoStream`` samples, with rewards and actions as scalars).

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
import json
import os
from collections.abc import Callable
from typing import Any, SupportsFloat

from episode_recorder._optional import require
from episode_recorder.recorder import Clip, Recorder, Segment
from episode_recorder.sinks.rerun import as_rerun_sink
from episode_recorder.sinks.video import VideoOptions, WhenFull
from episode_recorder.sinks.wandb import log_clip_to_wandb, require_wandb
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
    ``recorded_frames`` is the number of frames of the current recording (not a list of them).

    Extras: ``format`` ("mp4", "webm", "gif"), ``crf``, ``preset``, ``bitrate`` (see
    :class:`~episode_recorder.sinks.video.VideoOptions`), ``on_video_saved(path, info)`` called on
    this thread once per finished file with its metadata (see ``Clip.metadata``), ``sidecar``
    (write that metadata as ``{video name}.json``), ``queue_frames`` and ``when_full`` ("wait":
    never lose a frame; "drop": never wait for the encoder). Files are complete under their
    names a few frames after a recording stops; ``close()`` waits for all of them.

        >>> import gymnasium as gym
        >>> env = gym.make("CartPole-v1", render_mode="rgb_array")
        >>> env = RecordVideo(env, "videos", episode_trigger=lambda e: e % 10 == 0,
        ...                   on_video_saved=lambda path, info: print(path, info["frames"]))  # doctest: +SKIP
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
        gc_trigger: Callable[[int], bool] | None = lambda episode: True,
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
        )
        gym.Wrapper.__init__(self, env)
        check_render_mode(env.render_mode)
        if episode_trigger is None and step_trigger is None:
            episode_trigger = capped_cubic_video_schedule

        self.episode_trigger = episode_trigger
        self.step_trigger = step_trigger
        self.disable_logger = disable_logger
        self.gc_trigger = gc_trigger
        self.video_folder = prepare_folder(video_folder)
        self.frames_per_sec: int = fps if fps is not None else self.metadata.get("render_fps", 30)
        self.name_prefix: str = name_prefix
        self._video_name: str | None = None
        self.video_length: int | float = video_length if video_length != 0 else float("inf")
        self.recording: bool = False
        self.recorded_frames: int = 0
        self.render_history: list[Any] = []
        self.step_id = -1
        self.episode_id = -1

        self.recorder: Recorder = start_recorder(
            self, format, crf, preset, bitrate, on_video_saved, sidecar, wandb_log_key, queue_frames, when_full, rerun
        )
        self._segment: Segment | None = None
        self._step_scalars: dict[str, Any] = {}  # the last step's reward and action, for Rerun
        self._recording_episode: int | None = None  # the episode an episode-triggered recording follows
        self._episode_return = 0.0
        self._episode_length = 0
        self._episode_done = False
        self._stats_episode = -1  # the episode the three above describe

    # --- Gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the environment and start a recording if ``episode_trigger`` says so."""
        obs, info = super().reset(seed=seed, options=options)
        self.episode_id += 1
        if self.recording and self.video_length == float("inf"):
            self.stop_recording()
        self._episode_return, self._episode_length, self._episode_done = 0.0, 0, False
        self._stats_episode = self.episode_id
        self._step_scalars = {}
        if self.episode_trigger and self.episode_trigger(self.episode_id):
            self.start_recording(f"{self.name_prefix}-episode-{self.episode_id}")
            self._recording_episode = self.episode_id
        if self.recording:
            self._capture_frame()
            if self.recorded_frames > self.video_length:
                self.stop_recording()
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the environment, capturing a frame while recording."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.step_id += 1
        self._step_scalars = {"reward": reward, "action": action}
        if self._recording_episode is not None:  # the episode's summary goes into the clip's metadata
            try:
                self._episode_return += float(reward)
                self._episode_done = bool(terminated or truncated)
                self._episode_length += 1
            except (TypeError, ValueError, RuntimeError):  # batched rewards: no single-episode summary
                self._recording_episode = None
        if self.step_trigger and self.step_trigger(self.step_id):
            self.start_recording(f"{self.name_prefix}-step-{self.step_id}")
            self._segment.start_step = self.step_id
        if self.recording:
            self._capture_frame()
            if self.recorded_frames > self.video_length:
                self.stop_recording()
        return obs, reward, terminated, truncated, info

    def render(self) -> Any:
        """The wrapped env's render; with ``rgb_array_list`` also the frames captured since the last call."""
        render_out = super().render()
        if self.recording and isinstance(render_out, list):
            for frame in render_out:
                self._add(frame)
        if self.render_history:
            history, self.render_history = self.render_history, []
            return history + render_out
        return render_out

    def close(self) -> None:
        """Finish the current recording, wait for every file, then close the env."""
        try:
            if self.recording:
                self.stop_recording()
            self.recorder.close()
        finally:
            super().close()

    def start_recording(self, video_name: str) -> None:
        """Start a recording named ``video_name`` (stopping the current one first)."""
        if self.recording:
            self.stop_recording()
        self.recording = True
        self._video_name = video_name
        self._recording_episode = None
        self._segment = self.recorder.start(
            video_name, episode_id=self.episode_id, start_step=self.step_id + 1, fps=self.frames_per_sec or 30
        )

    def stop_recording(self) -> None:
        """Stop the current recording; its file is finished in the background."""
        assert self.recording, "stop_recording was called, but no recording was started"
        segment, self._segment = self._segment, None
        if self.recorded_frames == 0:
            logger.warn("Ignored saving a video as there were zero frames to save.")
        known = self._recording_episode == self._stats_episode and self._episode_done
        segment.stop(
            end_step=self.step_id,
            episode_return=self._episode_return if known else None,
            episode_length=self._episode_length if known else None,
        )
        self.recorded_frames = 0
        self.recording = False
        self._video_name = None
        self._recording_episode = None
        if self.gc_trigger and self.gc_trigger(self.episode_id):
            gc.collect()

    def __del__(self) -> None:
        """Warn the user in case the last video wasn't saved."""
        if getattr(self, "recording", False) and getattr(self, "recorded_frames", 0):
            logger.warn("Unable to save last video! Did you call close()?")

    # --- internals ----------------------------------------------------------------------------
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
        self._add(frame)

    def _add(self, frame: Any) -> None:
        self._segment.add(frame, **self._step_scalars)
        self.recorded_frames += 1


def check_render_mode(render_mode: str | None) -> None:
    """Gymnasium's error for render modes that give no image."""
    if render_mode in {None, "human", "ansi"}:
        raise ValueError(
            f"Render mode is {render_mode}, which is incompatible with RecordVideo. "
            "Initialize your environment with a render_mode that returns an image, such as rgb_array."
        )


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
    format: str,
    crf: int | None,
    preset: str | None,
    bitrate: int | None,
    on_video_saved: VideoSavedCallback | None,
    sidecar: bool,
    wandb_log_key: str | None,
    queue_frames: int,
    when_full: WhenFull,
    rerun: Any = None,
) -> Recorder:
    """Set a RecordVideo wrapper's encoder attributes and start its recorder.

    Started with the wrapper, not at the first recording, so the process start (~0.2 s) never lands
    in a step. Sidecar, ``on_video_saved`` and W&B logging run as files complete.
    """
    wrapper.video_options = VideoOptions(
        format=format, fps=wrapper.frames_per_sec or 30, crf=crf, preset=preset, bitrate=bitrate
    )
    wrapper.on_video_saved = on_video_saved
    wrapper.sidecar = sidecar
    wrapper.wandb_log_key = wandb_log_key
    if wandb_log_key is not None:
        require_wandb(f"{type(wrapper).__name__}(wandb_log_key=...)")
    wrapper.queue_frames = queue_frames
    wrapper.when_full = when_full

    def saved(clip: Clip) -> None:
        info = clip.metadata()
        if wrapper.sidecar:
            info["sidecar"] = os.path.splitext(clip.path)[0] + ".json"
            with open(info["sidecar"], "w") as file:
                json.dump(info, file, indent=2)
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
        rerun=as_rerun_sink(rerun, spec.id if spec is not None else type(wrapper).__name__),
    )
