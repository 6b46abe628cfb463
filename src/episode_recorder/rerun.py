"""``LogRerun``: record episodes of a Gymnasium env to Rerun — 3D scene, scalars and camera frames.

Everything per step is buffered in numpy and sent with ``rr.send_columns`` every ``flush_every``
frames or ``flush_seconds``, when a recording stops, and at interpreter exit; static geometry is
logged once. Camera frames are encoded to H.264 by a background encoder process and logged as
``rr.VideoStream`` samples.
"""

from __future__ import annotations

import atexit
import io
import os
import sys
import time
import traceback
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, SupportsFloat

import numpy as np

from episode_recorder._optional import require
from episode_recorder.frames import EnvRows, flatten_frames
from episode_recorder.recorder import Recorder, Segment
from episode_recorder.rerun_stream import resolve_stream
from episode_recorder.schedule import Schedule, Take
from episode_recorder.scenes import SceneSource
from episode_recorder.scenes.isaaclab import IsaacLabRerunLogger, is_isaaclab_scene
from episode_recorder.scenes.mujoco import MujocoRerunLogger
from episode_recorder.scenes.usd import UsdRerunLogger
from episode_recorder.sinks.rerun import (
    CAMERA_ENTITY,
    SCALARS_ENTITY,
    Layout,
    RerunVideoSink,
    Timelines,
    log_recording_start,
)
from episode_recorder.sinks.video import VideoOptions
from episode_recorder.triggers import capped_cubic_video_schedule

if TYPE_CHECKING:
    import rerun as rr

gym = require("gymnasium", "rerun", "episode_recorder.rerun.LogRerun")

__all__ = ["IsaacLabRerunLogger", "LogRerun", "MujocoRerunLogger", "UsdRerunLogger"]

SCENE_ROOT = "world"
SCALARS_ROOT = SCALARS_ENTITY
FrameFormat = Literal["video", "jpeg"]


def is_mujoco_env(env: gym.Env[Any, Any]) -> bool:
    """Whether ``env.unwrapped`` has ``model`` and ``data`` (every Gymnasium MuJoCo env)."""
    return hasattr(env.unwrapped, "model") and hasattr(env.unwrapped, "data")


def is_isaaclab_env(env: gym.Env[Any, Any]) -> bool:
    """Whether ``env.unwrapped.scene`` is an Isaac Lab ``InteractiveScene``."""
    return is_isaaclab_scene(getattr(env.unwrapped, "scene", None))


def scene_source_for(
    env: gym.Env[Any, Any], logged_envs: list[int], stream: rr.RecordingStream
) -> SceneSource | None:
    """The 3D scene source for ``env`` (MuJoCo ``model``/``data`` or an Isaac Lab ``scene``), or None."""
    unwrapped = env.unwrapped
    if is_mujoco_env(env):
        return MujocoRerunLogger(unwrapped.model, unwrapped.data, recording_stream=stream, root=SCENE_ROOT)
    if is_isaaclab_env(env):
        return IsaacLabRerunLogger(unwrapped.scene, logged_envs=logged_envs, recording_stream=stream)
    return None


def _step_duration(env: gym.Env[Any, Any]) -> float:
    """Seconds per env step: ``step_dt`` (Isaac Lab) or ``dt`` (MuJoCo), else 1 / render_fps."""
    unwrapped = env.unwrapped
    for name in ("step_dt", "dt"):
        value = getattr(unwrapped, name, None)
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    fps = env.metadata.get("render_fps") or 30
    return 1.0 / float(fps)


def _has_video_stream() -> bool:
    """Whether the installed rerun-sdk has ``rr.VideoStream`` (0.24 and later)."""
    return hasattr(require("rerun", "rerun", "Logging to Rerun"), "VideoStream")


def _flat_rows(values: list[np.ndarray], per_env: bool) -> np.ndarray | None:
    """(rows, [envs,] k) float64 from per-frame values, or None if they are not flat numeric arrays."""
    try:
        stacked = np.stack(values)
    except ValueError:  # shapes changed within the recording
        return None
    if stacked.dtype.kind not in "biuf" or stacked.ndim > (3 if per_env else 2):
        return None
    shape = (len(values), stacked.shape[1], -1) if per_env else (len(values), -1)
    return stacked.astype(np.float64, copy=False).reshape(shape)


class LogRerun(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Records episodes to Rerun: 3D scene (MuJoCo, Isaac Lab), rewards/actions/observations, camera frames.

    The API follows :class:`gymnasium.wrappers.RecordVideo`: ``episode_trigger(episode_id)``
    on ``reset()`` starts recording ``episode_{id}``, ``step_trigger(step_id)`` on the global
    step count starts ``step_{id}``; with neither, Gymnasium's capped-cubic schedule is used.
    ``recording_length=0`` records whole episodes, ``N > 0`` snippets of N frames after the first.
    Timelines (``timelines=``): ``"recording"`` (default) gives each recording its own pair,
    ``{name}_step`` (frame index) and ``{name}_timestamp`` (frame index x the env's step
    duration); ``"shared"`` puts every recording on one pair, ``env_step`` (the env steps taken so
    far) and ``env_time``, with the episode id as the scalar ``scalars[/env_{i}]/episode``. Each
    recording's name, episode and env are logged once to ``recordings`` (see
    :func:`~episode_recorder.sinks.rerun.read_recordings`).

    Batched envs (``env.unwrapped.num_envs``, Isaac Lab) log the ``logged_envs`` only. They reset
    finished envs inside ``step()`` and call ``reset()`` once, so episodes are counted on the first
    logged env's ``terminated | truncated``; every logged env has its own ``return`` and ``episode``
    scalars (the step that finishes an episode still counts for it). Time is ``step_dt`` (Isaac
    Lab), else ``dt`` (MuJoCo), else ``1 / render_fps``.

    Stream: ``save_path`` (a new stream saved to that file), else ``recording_stream``, else
    ``rr.get_data_recording()``. Call ``close()`` to complete the file.

        >>> import gymnasium as gym
        >>> from episode_recorder.rerun import LogRerun
        >>> env = LogRerun(gym.make("Ant-v5"), save_path="/tmp/er_doc/ant.rrd")
        >>> _ = env.reset(seed=0)
        >>> env.sequence_timeline_name
        'episode_0_step'
        >>> for _ in range(100):
        ...     _ = env.step(env.action_space.sample())
        >>> env.close()

    Keyword-only extras: ``log_frames`` (None: camera frames only when the env has no 3D scene
    and renders ``rgb_array``; True: always), ``frames`` ("video": H.264 ``rr.VideoStream``
    samples encoded in a background process, keyframes at least every 2 s; "jpeg": one
    ``EncodedImage`` per frame, compressed on this thread with ``jpeg_quality``), ``timelines``,
    ``log_observations``, ``flush_every`` (frames buffered between ``send_columns``), ``blueprint``
    (send the default blueprint: 3D view, camera, time series), ``scene`` (a custom
    :class:`~episode_recorder.scenes.SceneSource`), ``flush_seconds`` (buffered frames are also
    sent once they are this old). ``render()`` may return a frame, a (nested) mapping of cameras
    (one video entity ``camera/{key}`` each) or, on batched envs, an ``(num_envs, H, W, 3)``
    batch (``camera/env_{i}`` for each logged env).

    Nothing buffered is lost when ``close()`` is forgotten: an uncaught exception or the end of
    the script sends it at interpreter exit (and completes a ``save_path`` file). A SIGTERM or
    SIGKILL leaves everything sent up to ``flush_seconds`` before it (the file has no footer;
    Rerun's viewer and ``RrdReader`` still read it).
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        logged_envs: int | list[int] = 0,
        recording_stream: rr.RecordingStream | None = None,
        save_path: str | os.PathLike[str] | None = None,
        episode_trigger: Callable[[int], bool] | None = None,
        step_trigger: Callable[[int], bool] | None = None,
        recording_length: int = 0,
        *,
        log_frames: bool | None = None,
        frames: FrameFormat = "video",
        timelines: Layout = "recording",
        jpeg_quality: int = 85,
        log_observations: bool = True,
        flush_every: int = 500,
        blueprint: bool = True,
        scene: SceneSource | None = None,
        flush_seconds: float = 1.0,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self,
            logged_envs=logged_envs,
            episode_trigger=episode_trigger,
            step_trigger=step_trigger,
            recording_length=recording_length,
        )
        gym.Wrapper.__init__(self, env)
        if recording_length < 0:
            raise ValueError(f"recording_length must be >= 0 (0 = whole episodes), received {recording_length}")
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, received {flush_every}")
        if not flush_seconds > 0:
            raise ValueError(f"flush_seconds must be > 0, received {flush_seconds}")
        if frames not in ("video", "jpeg"):
            raise ValueError(f"frames must be 'video' or 'jpeg', received {frames!r}")
        Timelines.of(timelines, "", 1.0)  # checks the layout
        self.logged_envs = [logged_envs] if isinstance(logged_envs, int) else list(logged_envs)
        # Check the input before resolve_stream creates a file.
        has_scene = scene is not None or is_mujoco_env(env) or is_isaaclab_env(env)
        if is_mujoco_env(env) and scene is None and self.logged_envs != [0]:
            raise ValueError(
                f"{type(env.unwrapped).__name__} is a single MuJoCo env: logged_envs must be 0, "
                f"received {logged_envs}."
            )
        num_envs = getattr(env.unwrapped, "num_envs", None)
        if num_envs is not None and not all(0 <= e < num_envs for e in self.logged_envs):
            raise ValueError(
                f"logged_envs {logged_envs} out of range for {type(env.unwrapped).__name__} of {num_envs} envs."
            )
        renders_rgb = env.render_mode == "rgb_array"
        if log_frames and not renders_rgb:
            raise ValueError(
                f"log_frames=True needs an env made with render_mode='rgb_array', received "
                f"render_mode={env.render_mode!r}."
            )
        self.log_frames = bool(log_frames) if log_frames is not None else (not has_scene and renders_rgb)
        if not has_scene and not self.log_frames:
            raise ValueError(
                f"LogRerun has nothing to log for {type(env.unwrapped).__name__} "
                f"(render_mode={env.render_mode!r}): it needs a 3D scene or camera frames. Supported: "
                "Gymnasium MuJoCo envs (env.unwrapped has `model` and `data`), Isaac Lab envs "
                "(env.unwrapped.scene is an InteractiveScene), a custom scene= SceneSource, or any env "
                "made with render_mode='rgb_array' (camera frames)."
            )
        application_id = env.spec.id if env.spec is not None else "env"
        self.recording_stream = resolve_stream(save_path, recording_stream, application_id)
        self._owns_stream = save_path is not None
        self.scene = scene if scene is not None else scene_source_for(env, self.logged_envs, self.recording_stream)
        self.frames = frames if _has_video_stream() else "jpeg"  # how camera frames are (or would be) logged
        self.timelines: Layout = timelines
        self.jpeg_quality = jpeg_quality
        self.log_observations = log_observations
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self._last_flush = time.monotonic()
        self.step_duration = _step_duration(env)
        self._batched = num_envs is not None

        if episode_trigger is None and step_trigger is None:
            episode_trigger = capped_cubic_video_schedule
        self.episode_trigger = episode_trigger
        self.step_trigger = step_trigger
        self.recording_length: float = recording_length if recording_length > 0 else float("inf")

        self.schedule = Schedule(
            episode_trigger=episode_trigger,
            step_trigger=step_trigger,
            video_length=recording_length or None,
            on_start=self._open_take,
            on_stop=self._close_take,
        )
        self._timeline_name: str | None = None  # the running take's, kept for its last flush
        self._geometry_logged = False
        self._env_rows = EnvRows(self.logged_envs if self._batched else None)
        self._num_envs = num_envs
        self._timelines: Timelines | None = None
        self._video: Segment | None = None
        self._cameras: list[str] | None = None  # camera entities the blueprint shows
        self._recorder: Recorder | None = None
        if self.log_frames and self.frames == "video":  # started now, so no step waits for it
            sink = RerunVideoSink(
                self.recording_stream,
                timelines=timelines,
                step_duration=self.step_duration,
                flush_every=flush_every,
                flush_seconds=flush_seconds,
                mark_recordings=False,
            )
            self._recorder = Recorder(None, VideoOptions(fps=1.0 / self.step_duration), rerun=sink)
        self._return: np.ndarray | float = 0.0
        self._env_episodes = np.zeros(len(self.logged_envs), dtype=np.int64)  # batched: per logged env
        self._episodes_changed = False
        # Rows buffered since the last flush, one per frame: {"step": timeline step, column name: host value}.
        self._rows: list[dict[str, Any]] = []
        self._scene_steps: list[int] = []  # timeline steps whose scene poses are buffered in self.scene
        # With video frames the blueprint waits for the first frame: it has one view per camera.
        self._blueprint_pending = blueprint and self._recorder is not None
        if blueprint and self._recorder is None:
            self.recording_stream.send_blueprint(self.default_blueprint())
        _finish_at_exit(self)

    # -- recording lifecycle -------------------------------------------------------------------

    @property
    def sequence_timeline_name(self) -> str | None:
        """``{name}_step`` (shared timelines: ``env_step``) of the running recording (None when idle)."""
        return self._timelines.step if self._timelines is not None else None

    @property
    def timestamp_timeline_name(self) -> str | None:
        """``{name}_timestamp`` (shared timelines: ``env_time``) of the running recording (None when idle)."""
        return self._timelines.time if self._timelines is not None else None

    @property
    def recording(self) -> bool:
        """Whether a recording is running."""
        return self.schedule.take() is not None

    @property
    def step_id(self) -> int:
        """Steps taken so far, minus one."""
        return self.schedule.step_id

    @property
    def episode_id(self) -> int:
        """Episodes started so far, minus one (batched envs: those of the first logged env)."""
        return self.schedule.episode_ids[None]

    def start_recording(self, timeline_name: str) -> None:
        """Start a recording with timelines ``{timeline_name}_step`` / ``_timestamp`` (stops a running one)."""
        self.schedule.start(kind="manual", name=timeline_name)

    def stop_recording(self) -> None:
        """Send what is buffered and stop the running recording (if any)."""
        self.schedule.stop()

    def _open_take(self, take: Take) -> None:
        if take.kind == "episode":
            take.name = f"episode_{take.episode_id}"
        elif take.kind == "step":
            take.name = f"step_{take.step_id}"
        if self.scene is not None and not self._geometry_logged:
            self.scene.log_geometry(self.recording_stream)
            self._geometry_logged = True
        self._timeline_name = take.name
        self._timelines = Timelines.of(self.timelines, take.name, self.step_duration)
        log_recording_start(  # a recording covers every logged env: no env index
            self.recording_stream, self._timelines, self._step(take), take.name, take.episode_id, None
        )
        if self._recorder is not None:
            self._video = self._recorder.start(
                take.name,
                episode_id=take.episode_id,
                start_step=self.step_id + 1,
                fps=1.0 / self.step_duration,
                max_frames=take.max_frames,
            )

    def _close_take(self, take: Take) -> None:
        try:
            self._flush()
            if self._video is not None:
                video, self._video = self._video, None
                video.stop()
        finally:
            self._timeline_name = None
            self._timelines = None

    def close(self) -> None:
        """Stop the recording, then close the env; a ``save_path`` file is complete afterwards.

        The recording goes first: buffered poses may live on the simulation's device, and an
        error while closing the env must not lose them. A stream made from ``save_path`` is
        disconnected (which writes the file's footer); a stream you passed in is only flushed,
        and stays yours to disconnect.
        """
        try:
            self._finish()
        finally:
            super().close()

    def _finish(self) -> None:
        """Send what is buffered and complete (own stream) or flush (a stream passed in) the recording."""
        _unfinished.discard(self)
        try:
            self.stop_recording()
        finally:
            if self._recorder is not None:
                self._recorder.close()  # every sample is sent
        if self._owns_stream:
            self.recording_stream.disconnect()
        else:
            self.recording_stream.flush()

    # -- env API -------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset; stop a whole-episode recording; maybe start ``episode_{id}``; log the first frame."""
        obs, info = super().reset(seed=seed, options=options)
        self._return = 0.0
        if self.episode_id >= 0:  # every env starts a new episode
            self._env_episodes += 1
            self._episodes_changed = True
        self.schedule.episode_started()
        if self.recording:
            self._capture(obs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step; maybe start ``step_{id}``; log a frame while recording.

        Batched envs (Isaac Lab) reset finished envs inside ``step()`` and return the new episode's
        first state: when the first logged env finishes, ``episode_{id}`` ends with this step's
        reward and action, and the state is the first frame of the next episode.
        """
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.schedule.advance()
        self.schedule.check_step_trigger()
        done = self._logged_done(terminated, truncated) if self._batched else None
        episode_ends = done is not None and bool(done[0])
        if self.recording:
            if episode_ends and self.recording_length == float("inf"):
                self._capture(obs, reward, action, state=False)  # the state belongs to the next episode
            else:
                self._capture(obs, reward, action)
        if done is not None and done.any():  # restart the return, count the episode of finished logged envs
            self._return = np.where(done, 0.0, self._return)
            self._env_episodes += done
            self._episodes_changed = True
        if episode_ends:
            running = self.schedule.take()
            if self.schedule.episode_started() not in (None, running):  # a recording of the new episode
                self._capture(obs)
        return obs, reward, terminated, truncated, info

    def _logged_done(self, terminated: Any, truncated: Any) -> np.ndarray:
        """terminated | truncated of the logged envs, (logged envs,) bool on the host."""
        return self._env_rows(terminated | truncated).astype(bool).reshape(len(self.logged_envs))

    def _host(self, value: Any) -> np.ndarray | None:
        """A host copy of a per-step array (the logged envs' rows of a batched one); None for other values."""
        if value is None or isinstance(value, (dict, tuple, list, str)):
            return None
        return self._env_rows(value)

    # -- capture and flush ---------------------------------------------------------------------

    def _step(self, take: Take) -> int:
        """The step of the next frame: its index in the recording, or the env steps taken (shared timelines)."""
        return self.step_id + 1 if self.timelines == "shared" else take.frames

    def _capture(self, obs: Any, reward: Any = None, action: Any = None, state: bool = True) -> None:
        """Buffer one frame: host copies of reward/return/action and, with ``state``, of the scene, obs and camera."""
        take = self.schedule.take()
        step = self._step(take)
        row: dict[str, Any] = {"step": step}
        reward = self._host(reward)
        if reward is not None:
            self._return = self._return + reward
            row["reward"], row["return"] = reward, self._return
        row["action"] = self._host(action)
        if state:
            if self.scene is not None:
                self.scene.record_poses()
                self._scene_steps.append(step)
            if self.log_observations:
                row["observation"] = self._host(obs)
            if self.log_frames and self._video is not None:
                self._add_video_frame(self.env.render(), step)
            elif self.log_frames:
                row["jpeg"] = self._jpeg(self.env.render())
        if self._batched and (self._episodes_changed or not take.frames):  # sparse: on change
            row["episode"] = self._env_episodes.copy()
            self._episodes_changed = False
        self._rows.append(row)
        if len(self._rows) >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_seconds:
            self._flush()
        self.schedule.frame_added()  # ends a snippet after recording_length + 1 frames

    def _add_video_frame(self, render: Any, step: int) -> None:
        """Queue the render for the encoder: a frame, a mapping of cameras, or the logged envs' rows of a batch."""
        if isinstance(render, list):
            render = render[-1]
        if isinstance(render, Mapping):
            frames: Any = flatten_frames(render, "/")
        elif self._batched and len(getattr(render, "shape", ())) == 4 and render.shape[0] == self._num_envs:
            rows = self._env_rows.select(render)
            frames = {f"env_{env}": rows[i] for i, env in enumerate(self.logged_envs)}
        else:
            frames = render
        self._video.add(frames, step=step)
        if self._blueprint_pending:
            self._cameras = sorted(frames) if isinstance(frames, dict) else None
            self.recording_stream.send_blueprint(self.default_blueprint())
            self._blueprint_pending = False

    def _jpeg(self, frame: Any) -> bytes:
        image_module = require("PIL.Image", "core", "Logging camera frames to Rerun")
        if isinstance(frame, list):
            frame = frame[-1]
        array = np.asarray(frame)
        if array.ndim != 3 or array.shape[-1] not in (3, 4):
            raise ValueError(f"Camera frames must be HxWx3 or HxWx4 arrays, render() returned shape {array.shape}.")
        buffer = io.BytesIO()
        image_module.fromarray(np.ascontiguousarray(array[..., :3]).astype(np.uint8)).save(
            buffer, format="JPEG", quality=self.jpeg_quality
        )
        return buffer.getvalue()

    def _time_columns(self, steps: Sequence[int]) -> list[rr.TimeColumn]:
        return self._timelines.columns(steps)

    def _flush(self) -> None:
        """``send_columns`` every buffer of the running recording, then clear them."""
        rr = require("rerun", "rerun", "Logging to Rerun")
        self._last_flush = time.monotonic()
        rows, self._rows = self._rows, []
        scene_steps, self._scene_steps = self._scene_steps, []
        stream = self.recording_stream
        if self.scene is not None and scene_steps:
            self.scene.flush(stream, self._time_columns(scene_steps))
        for name in ("reward", "return", "action", "observation", "episode"):
            present = [row for row in rows if row.get(name) is not None]
            values = _flat_rows([row[name] for row in present], per_env=self._batched)
            if values is None:
                continue
            time_columns = self._time_columns([row["step"] for row in present])
            for env_row, env in enumerate(self.logged_envs if self._batched else [None]):
                series = values[:, env_row] if self._batched else values
                path = f"{SCALARS_ROOT}/{name}" if env is None else f"{SCALARS_ROOT}/env_{env}/{name}"
                # A (rows, k) array: one row of k scalars per time (Rerun infers the partition).
                stream.send_columns(path, indexes=time_columns, columns=rr.Scalars.columns(scalars=series))
        images = [row for row in rows if "jpeg" in row]
        if images:
            stream.send_columns(
                CAMERA_ENTITY,
                indexes=self._time_columns([row["step"] for row in images]),
                columns=rr.EncodedImage.columns(
                    blob=[row["jpeg"] for row in images], media_type=["image/jpeg"] * len(images)
                ),
            )

    def default_blueprint(self) -> Any:
        """3D view of the scene, the camera(s) (one 2D view each), and time series of the scalars."""
        rrb = require("rerun.blueprint", "rerun", "Logging to Rerun")
        views = []
        if self.scene is not None:
            views.append(rrb.Spatial3DView(origin=getattr(self.scene, "origin", "/"), name="scene"))
        if self.log_frames:
            for camera in self._cameras or [None]:
                origin = f"/{CAMERA_ENTITY}" + ("" if camera is None else f"/{camera}")
                views.append(rrb.Spatial2DView(origin=origin, name=camera or "camera"))
        views.append(rrb.TimeSeriesView(origin=f"/{SCALARS_ROOT}", name="scalars"))
        return rrb.Blueprint(rrb.Horizontal(*views), collapse_panels=False)


_unfinished: weakref.WeakSet[LogRerun] = weakref.WeakSet()  # loggers whose close() has not run yet
_exit_hook_registered = False


def _finish_at_exit(logger: LogRerun) -> None:
    """Send ``logger``'s buffer at interpreter exit if ``close()`` never ran.

    Registered after ``rerun`` is imported, so it runs before rerun's own exit hook (atexit runs
    hooks last-in, first-out) while the stream can still write.
    """
    global _exit_hook_registered
    _unfinished.add(logger)
    if not _exit_hook_registered:
        atexit.register(_finish_unfinished)
        _exit_hook_registered = True


def _finish_unfinished() -> None:
    for logger in list(_unfinished):
        try:
            logger._finish()
        except Exception:  # at exit no caller is left to raise to: say so, and finish the others
            print(f"episode-recorder: could not finish the Rerun recording of {logger}:", file=sys.stderr)
            traceback.print_exc()
