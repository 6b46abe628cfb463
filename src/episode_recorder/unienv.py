"""UniEnv's episode video wrappers, with UniEnv's exact public API, on the streaming engine.

``EpisodeRenderStackWrapper`` keeps the current episode's frames (that is its API);
``EpisodeVideoWrapper`` streams every frame to a background encoder and never holds an episode.

    >>> from episode_recorder.unienv import EpisodeVideoWrapper            # doctest: +SKIP
    >>> env = EpisodeVideoWrapper(make_my_unienv_env(), store_dir="videos", format="mp4")  # doctest: +SKIP
    >>> context, obs, info = env.reset()                                    # doctest: +SKIP
    >>> for _ in range(100):                                                # doctest: +SKIP
    ...     obs, reward, terminated, truncated, info = env.step(env.sample_action())
    ...     if terminated or truncated:
    ...         context, obs, info = env.reset()
    >>> env.close()  # videos/episode_0_step_0.mp4, episode_1_step_..., ...  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from typing import Any, Literal

from episode_recorder._optional import require
from episode_recorder.frames import flatten_frames, select
from episode_recorder.recorder import Clip, Recorder, Segment
from episode_recorder.sinks.rerun import as_rerun_sink, row_of
from episode_recorder.sinks.video import VideoOptions, WhenFull
from episode_recorder.sinks.wandb import clip_caption, log_videos, require_wandb

_unienv_wrapper = require("unienv_interface.env_base.wrapper", "unienv", "episode_recorder.unienv")
Wrapper = _unienv_wrapper.Wrapper

__all__ = ["EpisodeRenderStackWrapper", "EpisodeVideoWrapper", "EpisodeWandbVideoWrapper"]


class EpisodeRenderStackWrapper(Wrapper):
    """Renders after ``reset()`` and every ``step()`` and keeps the current episode's frames.

    ``episodic_frames`` is a list, or ``{flattened key: list}`` when ``render()`` returns a
    (nested) mapping. For batched envs, ``rendered_index`` picks the batch entry of batched render
    arrays and ``done_index`` the env whose termination (or ``reset(mask=...)`` entry) ends the
    episode; with ``done_index=None`` any env ends it.

        >>> env = EpisodeRenderStackWrapper(my_env, rendered_index=0)   # doctest: +SKIP
        >>> _ = env.reset(); _ = env.step(env.sample_action())          # doctest: +SKIP
        >>> len(env.episodic_frames)                                     # doctest: +SKIP
        2
    """

    def __init__(
        self,
        env: Any,
        *,
        done_index: int | None = None,
        rendered_index: int | None = None,
        nested_separator: str = ".",
    ) -> None:
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
        if self._episode_frames and keys != self._episode_keys:
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

    Beyond UniEnv's arguments: ``fps`` (default ``env.render_fps or 30``), ``crf`` / ``preset`` /
    ``bitrate`` (see :class:`~episode_recorder.sinks.video.VideoOptions` for the defaults),
    ``queue_frames`` and ``when_full`` (``"wait"``: never lose a frame; ``"drop"``: never wait),
    ``rerun`` (True: the global stream, a path to an ``.rrd``, or an ``rr.RecordingStream``: the
    same encoded clips also go to Rerun, one ``VideoStream`` per camera, with the rendered env's
    rewards and actions as scalars).
    Frames rendered after an episode ended and before the next reset belong to no episode and
    are not written.

        >>> env = EpisodeVideoWrapper(my_env, store_dir="videos", format="mp4")  # doctest: +SKIP
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
        rerun: Any = None,
    ) -> None:
        super().__init__(env, done_index=done_index, rendered_index=rendered_index, nested_separator=nested_separator)
        self.store_dir = os.path.abspath(os.fspath(store_dir))
        self.store_format = format
        self.fps = fps
        options = VideoOptions(format=format, fps=fps or 30.0, crf=crf, preset=preset, bitrate=bitrate)
        self.recorder = Recorder(
            self.store_dir,
            options,
            queue_frames=queue_frames,
            when_full=when_full,
            rerun=as_rerun_sink(rerun, type(env).__name__),
        )
        self._segment: Segment | None = None

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
        if self._segment is None:
            self._segment = self.recorder.start(
                f"episode_{self.video_episode_num}_step_{self.video_episode_start_step}",
                episode_id=self.video_episode_num,
                env_index=self.rendered_index,
                start_step=self.video_episode_start_step,
                fps=self.fps or self.env.render_fps or 30,
            )
        scalars = self._step_scalars
        if self.env.batch_size is not None and self.rendered_index is not None:
            scalars = {name: row_of(value, self.rendered_index) for name, value in scalars.items()}
        self._segment.add(frame, **scalars)

    def _post_episode(self) -> None:
        self._stop_segment()

    def _reset_episode_stack(self) -> None:
        self._stop_segment()  # an episode of a single frame is discarded here
        super()._reset_episode_stack()

    def _stop_segment(self) -> list[Clip]:
        """Finish the current episode's clips; returns those being written (none if under 2 frames)."""
        if self._segment is None:
            return []
        segment, self._segment = self._segment, None
        length = self.video_step_num - self.video_episode_start_step
        return segment.stop(min_frames=2, end_step=self.video_step_num, episode_length=length)

    def close(self) -> None:
        try:
            if not self._has_post_episode:
                self._post_episode()
                self._has_post_episode = True
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
    ``preset``, ``bitrate``, ``queue_frames`` and ``when_full`` are as in :class:`EpisodeVideoWrapper`.

        >>> import wandb                                                           # doctest: +SKIP
        >>> run = wandb.init(project="my-project")                                 # doctest: +SKIP
        >>> env = EpisodeWandbVideoWrapper(my_env, wandb_log_key="rollout/video")  # doctest: +SKIP
        >>> context, obs, info = env.reset()                                        # doctest: +SKIP
        >>> for step in range(1000):                                                # doctest: +SKIP
        ...     obs, reward, terminated, truncated, info = env.step(env.sample_action())
        ...     wandb.log({"reward": float(reward)})  # the episode's video rides on this row
        ...     if terminated or truncated:
        ...         context, obs, info = env.reset()
        >>> env.close(); run.finish()                                               # doctest: +SKIP
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
    ) -> None:
        self.wandb = require_wandb("EpisodeWandbVideoWrapper")
        self._temporary = store_dir is None
        VideoOptions(format=format)  # a bad format fails before a temporary folder is made
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


def _describe_key_change(before: tuple[str, ...] | None, now: tuple[str, ...] | None) -> str:
    if before is None or now is None:
        kind = "a mapping of cameras" if now is not None else "a single frame"
        return f"Render type changed within an episode: this step returned {kind} (keys {now}), earlier steps did not."
    missing = sorted(set(before) - set(now))
    added = sorted(set(now) - set(before))
    return f"Flattened render keys changed within an episode. Missing keys: {missing}. New keys: {added}."
