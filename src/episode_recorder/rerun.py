"""``LogRerun``: record episodes of a Gymnasium env to Rerun — 3D scene, scalars and camera frames.

Everything per step is buffered in numpy and sent with ``rr.send_columns`` every ``flush_every``
frames and when a recording stops; static geometry is logged once.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, SupportsFloat

import numpy as np

from episode_recorder._optional import require
from episode_recorder.rerun_stream import resolve_stream
from episode_recorder.scenes import SceneSource
from episode_recorder.scenes.isaaclab import IsaacLabRerunLogger
from episode_recorder.scenes.mujoco import MujocoRerunLogger
from episode_recorder.scenes.usd import UsdRerunLogger
from episode_recorder.triggers import capped_cubic_video_schedule

if TYPE_CHECKING:
    import rerun as rr

gym = require("gymnasium", "rerun", "episode_recorder.rerun.LogRerun")

__all__ = ["IsaacLabRerunLogger", "LogRerun", "MujocoRerunLogger", "UsdRerunLogger"]

SCENE_ROOT = "world"
SCALARS_ROOT = "scalars"
CAMERA_ENTITY = "camera"


def is_mujoco_env(env: gym.Env[Any, Any]) -> bool:
    """Whether ``env.unwrapped`` has ``model`` and ``data`` (every Gymnasium MuJoCo env)."""
    return hasattr(env.unwrapped, "model") and hasattr(env.unwrapped, "data")


def scene_source_for(
    env: gym.Env[Any, Any], logged_envs: list[int], stream: rr.RecordingStream
) -> SceneSource | None:
    """The 3D scene source for ``env`` (MuJoCo: ``unwrapped.model`` / ``data``), or None."""
    if is_mujoco_env(env):
        unwrapped = env.unwrapped
        return MujocoRerunLogger(unwrapped.model, unwrapped.data, recording_stream=stream, root=SCENE_ROOT)
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


def _host(value: Any, index: list[int] | None) -> np.ndarray | None:
    """A numpy copy of a per-step value (rows ``index`` of a batched one, taken before the host copy)."""
    if value is None or isinstance(value, (dict, tuple, list, str)):
        return None
    if index is not None:
        value = value[index]
    if hasattr(value, "detach"):  # torch
        return value.detach().cpu().numpy()
    return np.array(value)  # a copy: envs may reuse their buffers


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
    """Records episodes to Rerun: 3D scene, rewards/actions/observations and camera frames.

    The API follows :class:`gymnasium.wrappers.RecordVideo`: ``episode_trigger(episode_id)``
    on ``reset()`` starts recording ``episode_{id}``, ``step_trigger(step_id)`` on the global
    step count starts ``step_{id}``; with neither, Gymnasium's capped-cubic schedule is used.
    ``recording_length=0`` records whole episodes, ``N > 0`` snippets of N frames after the first.
    Each recording has the timelines ``{name}_step`` (frame index) and ``{name}_timestamp``
    (frame index x the env's step duration).

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
    and renders ``rgb_array``; True: always, JPEG-compressed), ``jpeg_quality``,
    ``log_observations``, ``flush_every`` (frames buffered between ``send_columns``), ``blueprint``
    (send the default blueprint: 3D view, time series, camera), ``scene`` (a custom
    :class:`~episode_recorder.scenes.SceneSource`).
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
        jpeg_quality: int = 85,
        log_observations: bool = True,
        flush_every: int = 500,
        blueprint: bool = True,
        scene: SceneSource | None = None,
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
        self.logged_envs = [logged_envs] if isinstance(logged_envs, int) else list(logged_envs)
        # Check the input before resolve_stream creates a file.
        has_scene = scene is not None or is_mujoco_env(env)
        if is_mujoco_env(env) and scene is None and self.logged_envs != [0]:
            raise ValueError(
                f"{type(env.unwrapped).__name__} is a single MuJoCo env: logged_envs must be 0, "
                f"received {logged_envs}."
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
                "Gymnasium MuJoCo envs (env.unwrapped has `model` and `data`), a custom scene= "
                "SceneSource, or any env made with render_mode='rgb_array' (camera frames)."
            )
        application_id = env.spec.id if env.spec is not None else "env"
        self.recording_stream = resolve_stream(save_path, recording_stream, application_id)
        self._owns_stream = save_path is not None
        self.scene = scene if scene is not None else scene_source_for(env, self.logged_envs, self.recording_stream)
        self.jpeg_quality = jpeg_quality
        self.log_observations = log_observations
        self.flush_every = flush_every
        self.step_duration = _step_duration(env)
        self._batched = getattr(env.unwrapped, "num_envs", None) is not None

        if episode_trigger is None and step_trigger is None:
            episode_trigger = capped_cubic_video_schedule
        self.episode_trigger = episode_trigger
        self.step_trigger = step_trigger
        self.recording_length: float = recording_length if recording_length > 0 else float("inf")

        self.step_id = -1
        self.episode_id = -1
        self._timeline_name: str | None = None
        self._recorded_frames = 0
        self._geometry_logged = False
        self._env_index = self.logged_envs if self._batched else None
        self._return: np.ndarray | float = 0.0
        # Rows buffered since the last flush, one per frame: (frame, reward, return, action, obs, jpeg).
        self._rows: list[tuple[int, Any, Any, Any, Any, bytes | None]] = []
        if blueprint:
            self.recording_stream.send_blueprint(self.default_blueprint())

    # -- recording lifecycle -------------------------------------------------------------------

    @property
    def sequence_timeline_name(self) -> str | None:
        """``{name}_step`` of the running recording (None when idle)."""
        return f"{self._timeline_name}_step" if self._timeline_name is not None else None

    @property
    def timestamp_timeline_name(self) -> str | None:
        """``{name}_timestamp`` of the running recording (None when idle)."""
        return f"{self._timeline_name}_timestamp" if self._timeline_name is not None else None

    @property
    def recording(self) -> bool:
        """Whether a recording is running."""
        return self._timeline_name is not None

    def start_recording(self, timeline_name: str) -> None:
        """Start a recording with timelines ``{timeline_name}_step`` / ``_timestamp`` (stops a running one)."""
        if self.recording:
            self.stop_recording()
        if self.scene is not None and not self._geometry_logged:
            self.scene.log_geometry(self.recording_stream)
            self._geometry_logged = True
        self._timeline_name = timeline_name
        self._recorded_frames = 0

    def stop_recording(self) -> None:
        """Send what is buffered and stop the running recording (if any)."""
        if self.recording:
            self._flush()
        self._timeline_name = None
        self._recorded_frames = 0

    def close(self) -> None:
        """Close the env and stop the recording; a ``save_path`` file is complete afterwards.

        A stream made from ``save_path`` is disconnected (which writes the file's footer); a
        stream you passed in is only flushed, and stays yours to disconnect.
        """
        super().close()
        self.stop_recording()
        if self._owns_stream:
            self.recording_stream.disconnect()
        else:
            self.recording_stream.flush()

    # -- env API -------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset; stop a whole-episode recording; maybe start ``episode_{id}``; log the first frame."""
        obs, info = super().reset(seed=seed, options=options)
        self.episode_id += 1
        self._return = 0.0
        if self.recording and self.recording_length == float("inf"):
            self.stop_recording()
        if self.episode_trigger is not None and self.episode_trigger(self.episode_id):
            self.start_recording(f"episode_{self.episode_id}")
        if self.recording:
            self._capture(obs, None, None)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step; maybe start ``step_{id}``; log a frame while recording."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.step_id += 1
        if self.step_trigger is not None and self.step_trigger(self.step_id):
            self.start_recording(f"step_{self.step_id}")
        if self.recording:
            self._capture(obs, reward, action)
            if self._batched:  # batched envs reset inside step(): restart the return of finished envs
                done = np.logical_or(_host(terminated, self._env_index), _host(truncated, self._env_index))
                self._return = np.where(done, 0.0, self._return)
        return obs, reward, terminated, truncated, info

    # -- capture and flush ---------------------------------------------------------------------

    def _capture(self, obs: Any, reward: Any, action: Any) -> None:
        """Buffer one frame: poses (scene), host copies of reward/return/action/obs, the JPEG."""
        if self.scene is not None:
            self.scene.record_poses()
        reward = _host(reward, self._env_index)
        if reward is not None:
            self._return = self._return + reward
        self._rows.append(
            (
                self._recorded_frames,
                reward,
                self._return if reward is not None else None,
                _host(action, self._env_index),
                _host(obs, self._env_index) if self.log_observations else None,
                self._jpeg(self.env.render()) if self.log_frames else None,
            )
        )
        self._recorded_frames += 1
        if len(self._rows) >= self.flush_every:
            self._flush()
        if self._recorded_frames > self.recording_length:
            self.stop_recording()

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

    def _time_columns(self, frames: Sequence[int]) -> list[rr.TimeColumn]:
        rr = require("rerun", "rerun", "Logging to Rerun")
        index = np.asarray(frames, dtype=np.int64)
        return [
            rr.TimeColumn(self.sequence_timeline_name, sequence=index),
            rr.TimeColumn(self.timestamp_timeline_name, duration=index * self.step_duration),
        ]

    def _flush(self) -> None:
        """``send_columns`` every buffer of the running recording, then clear them."""
        rr = require("rerun", "rerun", "Logging to Rerun")
        rows, self._rows = self._rows, []
        if not rows:
            return
        stream = self.recording_stream
        frames = [row[0] for row in rows]
        if self.scene is not None:
            self.scene.flush(stream, self._time_columns(frames))
        for column, name in enumerate(("reward", "return", "action", "observation"), start=1):
            present = [row for row in rows if row[column] is not None]
            values = _flat_rows([row[column] for row in present], per_env=self._batched)
            if values is None:
                continue
            time_columns = self._time_columns([row[0] for row in present])
            for env_row, env in enumerate(self.logged_envs if self._batched else [None]):
                series = values[:, env_row] if self._batched else values
                path = f"{SCALARS_ROOT}/{name}" if env is None else f"{SCALARS_ROOT}/env_{env}/{name}"
                # A (rows, k) array: one row of k scalars per time (Rerun infers the partition).
                stream.send_columns(path, indexes=time_columns, columns=rr.Scalars.columns(scalars=series))
        images = [row for row in rows if row[5] is not None]
        if images:
            stream.send_columns(
                CAMERA_ENTITY,
                indexes=self._time_columns([row[0] for row in images]),
                columns=rr.EncodedImage.columns(
                    blob=[row[5] for row in images], media_type=["image/jpeg"] * len(images)
                ),
            )

    def default_blueprint(self) -> Any:
        """3D view of the scene, time series of the scalars, and the camera (what is logged)."""
        rrb = require("rerun.blueprint", "rerun", "Logging to Rerun")
        views = []
        if self.scene is not None:
            views.append(rrb.Spatial3DView(origin=f"/{SCENE_ROOT}", name="scene"))
        if self.log_frames:
            views.append(rrb.Spatial2DView(origin=f"/{CAMERA_ENTITY}", name="camera"))
        views.append(rrb.TimeSeriesView(origin=f"/{SCALARS_ROOT}", name="scalars"))
        return rrb.Blueprint(rrb.Horizontal(*views), collapse_panels=False)
