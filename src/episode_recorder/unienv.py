"""UniEnv's episode video wrappers, with UniEnv's exact public API, on the streaming engine.

``EpisodeRenderStackWrapper`` keeps the current episode's frames (that is its API);
``EpisodeVideoWrapper`` streams every frame to a background encoder and never holds an episode.

    >>> import gymnasium as gym, os
    >>> from unienv_interface.wrapper.gym_compat import FromGymnasiumEnv  # a UniEnv env from a Gymnasium one
    >>> from episode_recorder.unienv import EpisodeVideoWrapper
    >>> env = EpisodeVideoWrapper(FromGymnasiumEnv(gym.make("CartPole-v1", render_mode="rgb_array")),
    ...                           store_dir="videos", format="mp4")
    >>> context, obs, info = env.reset(seed=0)
    >>> for _ in range(30):
    ...     obs, reward, terminated, truncated, info = env.step(env.sample_action())
    ...     if terminated or truncated:
    ...         context, obs, info = env.reset()
    >>> env.close()
    >>> sorted(os.listdir("videos"))[0]
    'episode_0_step_0.mp4'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any, Literal

from episode_recorder._optional import require
from episode_recorder.frames import flatten_frames, select
from episode_recorder.keep import KeepPolicy
from episode_recorder.recorder import Clip, Recorder
from episode_recorder.schedule import Schedule, Take
from episode_recorder.sinks.rerun import as_rerun_sink, rows_of
from episode_recorder.sinks.video import VideoOptions, WhenFull
from episode_recorder.sinks.wandb import clip_caption, log_videos, require_wandb

_unienv_wrapper = require("unienv_interface.env_base.wrapper", "unienv", "episode_recorder.unienv")
Wrapper = _unienv_wrapper.Wrapper
from unienv_interface.env_base.env import Env  # noqa: E402  (unienv is installed: checked above)

__all__ = ["EpisodeRenderStackWrapper", "EpisodeVideoWrapper", "EpisodeWandbVideoWrapper"]


class EpisodeRenderStackWrapper(Wrapper):
    """Renders after ``reset()`` and every ``step()`` and keeps the current episode's frames.

    ``episodic_frames`` is a list, or ``{flattened key: list}`` when ``render()`` returns a
    (nested) mapping. For batched envs, ``rendered_index`` picks the batch entry of batched render
    arrays and ``done_index`` the env whose termination (or ``reset(mask=...)`` entry) ends the
    episode; with ``done_index=None`` any env ends it.

        >>> import gymnasium as gym
        >>> from unienv_interface.wrapper.gym_compat import FromGymnasiumEnv
        >>> env = EpisodeRenderStackWrapper(FromGymnasiumEnv(gym.make("CartPole-v1", render_mode="rgb_array")))
        >>> _ = env.reset(seed=0); _ = env.step(env.sample_action())
        >>> len(env.episodic_frames), env.episodic_frames[0].shape
        (2, (400, 600, 3))
    """

    def __init__(
        self,
        env: Any,
        *,
        done_index: int | None = None,
        rendered_index: int | None = None,
        nested_separator: str = ".",
    ) -> None:
        check_unienv_env(env, type(self).__name__)
        super().__init__(env)
        self.done_index = done_index
        self.rendered_index = rendered_index
        self.nested_separator = nested_separator
        self.episodic_frames: list[Any] | dict[str, list[Any]] = []
        self.video_episode_num = 0
        self.video_step_num = 0
        self.video_episode_start_step = 0
        self._step_frame: Any = None
        self._episode_keys: tuple[str, ...] | None = None  # None: single frames
        self._episode_frames = 0
        self._has_post_episode = False
        self._step_scalars: dict[str, Any] = {}  # the last step's reward and action (subclasses log them)

    # --- UniEnv API -------------------------------------------------------------------------
    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        self._step_frame = None
        self.video_step_num += 1
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._step_scalars = {"reward": reward, "action": action}
        self._capture()
        if not self._has_post_episode and self._is_render_termination(terminated, truncated):
            self._post_episode()
            self._has_post_episode = True
        return obs, reward, terminated, truncated, info

    def reset(self, *args: Any, mask: Any = None, seed: int | None = None, **kwargs: Any) -> tuple[Any, Any, Any]:
        if self._is_render_reset(mask):
            if self._episode_frame_count() > 1:
                if not self._has_post_episode:
                    self._post_episode()
                self.video_episode_num += 1
            self._reset_episode_stack()
            self._has_post_episode = False
            self.video_episode_start_step = self.video_step_num
        result = self.env.reset(*args, mask=mask, seed=seed, **kwargs)
        self._step_frame = None
        self._step_scalars = {}
        self._capture()
        return result

    def render(self) -> Any:
        """The frame of the current step (rendered once per step)."""
        if self._step_frame is None:
            self._step_frame = self._transform(self.env.render())
        return self._step_frame

    def close(self) -> None:
        if not self._has_post_episode:
            self._post_episode()
            self._has_post_episode = True
        self.env.close()

    # --- hooks for subclasses ---------------------------------------------------------------
    def _on_frame(self, frame: Any) -> None:
        """Receives each step's (indexed, flattened) frame; this class keeps it."""
        if isinstance(frame, dict):
            if not self.episodic_frames:
                self.episodic_frames = {key: [] for key in frame}
            for key, value in frame.items():
                self.episodic_frames[key].append(value)
        else:
            self.episodic_frames.append(frame)

    def _post_episode(self) -> None:
        """Called once when the episode ends (termination, a reset or ``close()``)."""

    def _reset_episode_stack(self) -> None:
        self.episodic_frames = []
        self._episode_keys = None
        self._episode_frames = 0

    # --- internals --------------------------------------------------------------------------
    def _episode_frame_count(self) -> int:
        return self._episode_frames

    def _capture(self) -> None:
        self._step_frame = self._transform(self.env.render())
        frame = self._step_frame
        keys = tuple(frame) if isinstance(frame, dict) else None
        if self._episode_frames and _keys_changed(self._episode_keys, keys):
            raise ValueError(_describe_key_change(self._episode_keys, keys))
        self._episode_keys = keys
        self._episode_frames += 1
        self._on_frame(frame)

    def _transform(self, frame: Any) -> Any:
        if isinstance(frame, Mapping):
            return {key: select(value, self.rendered_index) for key, value in flatten_frames(frame, self.nested_separator).items()}
        return select(frame, self.rendered_index)

    def _is_render_termination(self, terminated: Any, truncated: Any) -> bool:
        if self.env.batch_size is None:
            return bool(terminated or truncated)
        if self.done_index is not None:
            terminated, truncated = terminated[self.done_index], truncated[self.done_index]
        backend = self.env.backend
        return bool(backend.any(backend.logical_or(terminated, truncated)))

    def _is_render_reset(self, mask: Any) -> bool:
        if self.env.batch_size is None or mask is None:
            return True
        if self.done_index is None:
            return bool(self.env.backend.any(mask))
        return bool(mask[self.done_index])


class EpisodeVideoWrapper(EpisodeRenderStackWrapper):
    """Writes each finished episode of more than one frame to a video file, streaming as it goes.

    Files: ``store_dir/episode_{video_episode_num}_step_{video_episode_start_step}.{format}``, or
    for mapping frames one per camera, ``..._key_{key}.{format}``. A file appears under its name
    only once complete (usually a few frames after the episode ends; ``close()`` waits for all).

    As with UniEnv, a video is complete under its name when the ``step()`` or ``reset()`` that
    ends its episode returns.

    Beyond UniEnv's arguments: ``fps`` (default ``env.render_fps or 30``), ``crf`` / ``preset`` /
    ``bitrate`` (see :class:`~episode_recorder.sinks.video.VideoOptions` for the defaults),
    ``queue_frames`` and ``when_full`` (``"wait"``: never lose a frame; ``"drop"``: never wait),
    ``episode_trigger(episode_num)`` (default: every episode) and ``finish_in_background`` (True:
    that call returns at once and the file completes a few frames later; ``close()`` waits),
    ``keep`` (which finished clips stay on disk, e.g. ``Keep(last=5)``; see :mod:`episode_recorder.keep`),
    and ``rerun`` (True: the global stream, a path to an ``.rrd``, or an ``rr.RecordingStream``: the
    same encoded clips also go to Rerun, one ``VideoStream`` per camera, with the rendered env's
    rewards and actions as scalars).
    Frames rendered after an episode ended and before the next reset belong to no episode and
    are not written.

        >>> import gymnasium as gym
        >>> from unienv_interface.wrapper.gym_compat import FromGymnasiumEnv
        >>> env = EpisodeVideoWrapper(FromGymnasiumEnv(gym.make("CartPole-v1", render_mode="rgb_array")),
        ...                           store_dir="videos", format="gif", fps=10)
        >>> _ = env.reset(seed=0)
        >>> for _ in range(3):
        ...     _ = env.step(env.sample_action())
        >>> env.close()
        >>> [(clip.name, clip.frames) for clip in env.saved_clips]
        [('episode_0_step_0.gif', 4)]
    """

    def __init__(
        self,
        env: Any,
        *,
        store_dir: str | os.PathLike[str],
        format: Literal["mp4", "gif", "webm"] = "webm",
        done_index: int | None = None,
        rendered_index: int | None = None,
        nested_separator: str = ".",
        fps: float | None = None,
        crf: int | None = None,
        preset: str | None = None,
        bitrate: int | None = None,
        queue_frames: int = 16,
        when_full: WhenFull = "wait",
        episode_trigger: Callable[[int], bool] | None = None,
        finish_in_background: bool = False,
        keep: KeepPolicy | None = None,
        rerun: Any = None,
    ) -> None:
        options = VideoOptions(format, fps or 30.0, crf, preset, bitrate)  # checked before anything is created
        super().__init__(env, done_index=done_index, rendered_index=rendered_index, nested_separator=nested_separator)
        self.store_dir = os.path.abspath(os.fspath(store_dir))
        self.store_format = format
        self.fps = fps
        self.episode_trigger = episode_trigger
        self.finish_in_background = finish_in_background
        self.recorder = Recorder(
            self.store_dir,
            options,
            queue_frames=queue_frames,
            when_full=when_full,
            keep=keep,
            rerun=as_rerun_sink(rerun, type(env).__name__),
        )
        self.schedule = Schedule(
            episode_trigger=episode_trigger or (lambda episode: True), on_start=self._open_take, on_stop=self._close_take
        )
        self._stopped: list[Clip] = []  # the clips of the take stopped last

    @property
    def saved_clips(self) -> list[Any]:
        """Every clip written so far (see :class:`~episode_recorder.recorder.Clip`)."""
        self.recorder.poll()
        return [clip for clip in self.recorder.clips if clip.status == "saved"]

    def _on_frame(self, frame: Any) -> None:
        if self._has_post_episode:
            return  # the episode ended; frames before the next reset belong to no episode
        if frame is None:
            raise ValueError(
                "env.render() returned None, so there is nothing to record: create the env with "
                "render_mode='rgb_array' (or a mode whose render() returns images)."
            )
        if not self.schedule.in_episode[None]:  # the episode's first frame
            self.schedule.episode_started(episode_id=self.video_episode_num)
        take = self.schedule.take()
        if take is not None:
            scalars = self._step_scalars
            if self.env.batch_size is not None and self.rendered_index is not None:
                scalars = rows_of(scalars, self.rendered_index)
            take.segment.add(frame, **scalars)
            self.schedule.frame_added()

    def _open_take(self, take: Take) -> None:
        take.segment = self.recorder.start(
            f"episode_{self.video_episode_num}_step_{self.video_episode_start_step}",
            episode_id=self.video_episode_num,
            env_index=self.rendered_index,
            start_step=self.video_episode_start_step,
            fps=self.fps or self.env.render_fps or 30,
            max_frames=take.max_frames,
        )

    def _close_take(self, take: Take) -> None:
        length = self.video_step_num - self.video_episode_start_step
        self._stopped = take.segment.stop(
            min_frames=2, end_step=self.video_step_num, episode_length=length, wait=not self.finish_in_background
        )

    def _post_episode(self) -> None:
        self._stop_segment()

    def _reset_episode_stack(self) -> None:
        self._stop_segment()  # an episode of a single frame is discarded here
        super()._reset_episode_stack()

    def _stop_segment(self) -> list[Clip]:
        """End the current episode and its clips; returns those written (none if under 2 frames)."""
        self._stopped = []
        self.schedule.episode_ended()
        return self._stopped

    def close(self) -> None:
        try:
            if not self._has_post_episode:
                self._has_post_episode = True
                self._post_episode()
        finally:
            try:
                self.recorder.close()
            finally:
                self.env.close()


class EpisodeWandbVideoWrapper(EpisodeVideoWrapper):
    """Logs each finished episode of more than one frame to the active W&B run as a ``wandb.Video``.

    As UniEnv's: the video is logged under ``wandb_log_key`` (mapping frames: one video per
    camera under ``f"{wandb_log_key}/{key}"``), plus ``f"{wandb_log_key}_episode_id"`` when
    ``log_wandb_episode_id``; with ``control_wandb_step`` at ``step=video_episode_start_step``,
    otherwise with ``commit=False`` so it rides on your next ``wandb.log``. fps is
    ``env.render_fps or 30``.

    Beyond UniEnv: frames stream to a background encoder during the episode and W&B receives the
    finished file (no moviepy, no re-encoding); at the episode's end only the last few queued
    frames are waited for. Each video carries a caption (``"episode 3, env 0"``). A W&B step
    lower than the run's current one (which W&B silently drops) is logged at the run's next row
    instead, with a warning. Videos wait in ``store_dir``: by default a fresh temporary folder
    whose files are deleted once logged (W&B keeps its copy in the run's ``files/media/videos``)
    and which ``close()`` removes; a ``store_dir`` you pass keeps every file. ``fps``, ``crf``,
    ``preset``, ``bitrate``, ``queue_frames`` and ``when_full`` are as in :class:`EpisodeVideoWrapper`;
    ``episode_trigger(episode_num)`` (default: every episode, as UniEnv) limits what is uploaded,
    e.g. ``lambda n: n % 10 == 0``.

        >>> import gymnasium as gym, wandb
        >>> from unienv_interface.wrapper.gym_compat import FromGymnasiumEnv
        >>> run = wandb.init(project="my-project", mode="offline")
        >>> env = EpisodeWandbVideoWrapper(FromGymnasiumEnv(gym.make("CartPole-v1", render_mode="rgb_array")),
        ...                                wandb_log_key="rollout/video")
        >>> context, obs, info = env.reset(seed=0)
        >>> for step in range(50):
        ...     obs, reward, terminated, truncated, info = env.step(env.sample_action())
        ...     wandb.log({"reward": float(reward)})  # the episode's video rides on this row
        ...     if terminated or truncated:
        ...         context, obs, info = env.reset()
        >>> env.close(); run.finish()
    """

    def __init__(
        self,
        env: Any,
        *,
        wandb_log_key: str,
        format: Literal["mp4", "gif", "webm"] = "webm",
        control_wandb_step: bool = False,
        log_wandb_episode_id: bool = True,
        done_index: int | None = None,
        rendered_index: int | None = None,
        nested_separator: str = ".",
        store_dir: str | os.PathLike[str] | None = None,
        fps: float | None = None,
        crf: int | None = None,
        preset: str | None = None,
        bitrate: int | None = None,
        queue_frames: int = 16,
        when_full: WhenFull = "wait",
        episode_trigger: Callable[[int], bool] | None = None,
    ) -> None:
        self.wandb = require_wandb("EpisodeWandbVideoWrapper")
        self._temporary = store_dir is None
        VideoOptions(format, fps or 30.0, crf, preset, bitrate)  # bad arguments fail before a temporary folder is made
        check_unienv_env(env, type(self).__name__)
        super().__init__(
            env,
            store_dir=tempfile.mkdtemp(prefix="episode-recorder-wandb-") if store_dir is None else store_dir,
            format=format,
            done_index=done_index,
            rendered_index=rendered_index,
            nested_separator=nested_separator,
            fps=fps,
            crf=crf,
            preset=preset,
            bitrate=bitrate,
            queue_frames=queue_frames,
            when_full=when_full,
            episode_trigger=episode_trigger,
        )
        self.wandb_log_key = wandb_log_key
        self.log_wandb_episode_id = log_wandb_episode_id
        self.control_wandb_step = control_wandb_step

    def _post_episode(self) -> None:
        clips = self._stop_segment()
        if not clips:
            return
        self.recorder.wait(clips)
        key = self.wandb_log_key
        names = [key if clip.camera is None else f"{key}/{clip.camera}" for clip in clips]
        log_videos(
            {name: clip.path for name, clip in zip(names, clips)},
            extra={f"{key}_episode_id": self.video_episode_num} if self.log_wandb_episode_id else None,
            step=self.video_episode_start_step if self.control_wandb_step else None,
            captions={name: clip_caption(clip) for name, clip in zip(names, clips)},
        )
        if self._temporary:
            for clip in clips:
                os.remove(clip.path)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._temporary:
                with contextlib.suppress(OSError):
                    os.rmdir(self.store_dir)  # left in place if a video could not be logged


def check_unienv_env(env: Any, wrapper: str) -> None:
    """A clear error (instead of UniEnv's bare AssertionError) when ``env`` is not a UniEnv ``Env``."""
    if isinstance(env, Env):
        return
    hint = ""
    if type(env).__module__.startswith("gymnasium") or hasattr(env, "unwrapped") and hasattr(env, "spec"):
        hint = (
            " For a Gymnasium env, wrap it first: "
            "`from unienv_interface.wrapper.gym_compat import FromGymnasiumEnv; env = FromGymnasiumEnv(env)`, "
            "or use episode_recorder.gym.RecordVideo."
        )
    raise TypeError(f"{wrapper} wraps a UniEnv env (unienv_interface Env), received {type(env).__name__}.{hint}")


def _keys_changed(before: tuple[str, ...] | None, now: tuple[str, ...] | None) -> bool:
    """Whether a render switched between single frames and mappings, or a mapping's keys changed."""
    if before is None or now is None:
        return (before is None) != (now is None)
    return set(before) != set(now)


def _describe_key_change(before: tuple[str, ...] | None, now: tuple[str, ...] | None) -> str:
    """UniEnv's own messages for a render whose type or keys change within an episode."""
    if before is None:
        return "Render frame type changed within an episode: expected non-mapping render frames, got mapping render frame."
    if now is None:
        return "Render frame type changed within an episode: expected mapping render frames, got non-mapping render frame."
    missing = sorted(set(before) - set(now))
    added = sorted(set(now) - set(before))
    return f"Flattened render keys changed within an episode. Missing keys: {missing}. New keys: {added}."
