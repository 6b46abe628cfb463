"""Rerun as a sink: clips' H.264 samples as ``rr.VideoStream``, per-frame scalars, and reading back.

The encoder process encodes each clip once (see :mod:`episode_recorder.sinks.h264`) and sends
its samples back; this module maps each sample to the step recorded for its frame and sends the
samples with ``send_columns`` in batches. It knows nothing about environments.

Two timeline layouts:

- ``"recording"``: every recording has its own pair, ``{name}_step`` (frame index) and
  ``{name}_timestamp`` (step x step duration);
- ``"shared"``: one pair for the whole run, ``env_step`` (the env's global step) and
  ``env_time``; the episode id is logged as a scalar (``.../episode``) so episodes live on one axis.

Either way each recording logs one row to the ``recordings`` entity at its first step (its
``name``, ``episode_id`` and ``env_index``, -1 for none), which :func:`read_recordings` uses.

    >>> import numpy as np, rerun as rr, tempfile, os
    >>> from episode_recorder.recorder import Recorder
    >>> from episode_recorder.sinks.video import VideoOptions
    >>> path = os.path.join(tempfile.mkdtemp(), "run.rrd")
    >>> stream = rr.RecordingStream("doc"); stream.save(path)
    >>> recorder = Recorder(None, VideoOptions(fps=10), rerun=stream)   # Rerun only, no files
    >>> segment = recorder.start("episode_0", episode_id=0)
    >>> for t in range(5):
    ...     segment.add(np.full((32, 48, 3), 40 * t, np.uint8), reward=1.0 if t else None)
    >>> _ = segment.stop(); _ = recorder.close(); stream.disconnect()
    >>> [(r.name, r.episode_id, r.frames) for r in read_recordings(path)]
    [('episode_0', 0, {'/camera': 5})]
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from episode_recorder._optional import require

if TYPE_CHECKING:
    import rerun as rr

Layout = Literal["recording", "shared"]
LAYOUTS = ("recording", "shared")
SHARED_STEP, SHARED_TIME = "env_step", "env_time"
RECORDINGS_ENTITY = "recordings"
CAMERA_ENTITY = "camera"
SCALARS_ENTITY = "scalars"


def _rr() -> Any:
    return require("rerun", "rerun", "Logging to Rerun")


@dataclass(frozen=True)
class Timelines:
    """The step (sequence) and time (duration) timelines of one recording.

    >>> Timelines.of("recording", "episode_3", 0.05).step, Timelines.of("shared", "episode_3", 0.05).time
    ('episode_3_step', 'env_time')
    """

    step: str
    time: str
    step_duration: float
    shared: bool

    @classmethod
    def of(cls, layout: Layout, name: str, step_duration: float) -> Timelines:
        if layout not in LAYOUTS:
            raise ValueError(f"timelines must be one of {LAYOUTS}, received {layout!r}.")
        if layout == "shared":
            return cls(SHARED_STEP, SHARED_TIME, step_duration, True)
        return cls(f"{name}_step", f"{name}_timestamp", step_duration, False)

    def columns(self, steps: Sequence[int] | np.ndarray) -> list[rr.TimeColumn]:
        rr = _rr()
        index = np.asarray(steps, dtype=np.int64)
        return [
            rr.TimeColumn(self.step, sequence=index),
            rr.TimeColumn(self.time, duration=index * self.step_duration),
        ]


def entity_path(root: str, env_index: int | None = None, leaf: str | None = None) -> str:
    """``root[/env_{i}][/leaf]``: ``entity_path("camera", 2, "front") == "camera/env_2/front"``."""
    parts = [root] + ([f"env_{env_index}"] if env_index is not None else []) + ([leaf] if leaf else [])
    return "/".join(parts)


def log_recording_start(
    stream: rr.RecordingStream,
    timelines: Timelines,
    step: int,
    name: str,
    episode_id: int | None,
    env_index: int | None,
) -> None:
    """One row on ``recordings`` at the recording's first step; with shared timelines also its episode id."""
    rr = _rr()
    stream.send_columns(
        RECORDINGS_ENTITY,
        indexes=timelines.columns([step]),
        columns=rr.AnyValues.columns(
            name=[name],
            episode_id=[-1 if episode_id is None else episode_id],
            env_index=[-1 if env_index is None else env_index],
        ),
    )
    if timelines.shared and episode_id is not None:
        stream.send_columns(
            entity_path(SCALARS_ENTITY, env_index, "episode"),
            indexes=timelines.columns([step]),
            columns=rr.Scalars.columns(scalars=np.array([float(episode_id)])),
        )


class _Buffered:
    """A track of ``stream`` on ``timelines`` whose buffer is due once it holds ``flush_every`` rows
    or ``flush_seconds`` have passed since it was last sent."""

    def __init__(
        self, stream: rr.RecordingStream, timelines: Timelines, flush_every: int, flush_seconds: float
    ) -> None:
        self.stream, self.timelines = stream, timelines
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        self._since = time.monotonic()  # when the buffer was last emptied

    def _due(self, rows: int) -> bool:
        return rows >= self.flush_every or time.monotonic() - self._since >= self.flush_seconds

    def _emptied(self) -> None:
        self._since = time.monotonic()


class VideoTrack(_Buffered):
    """One clip as an ``rr.VideoStream`` entity: sample ``pts`` -> the step recorded for that frame."""

    def __init__(
        self, stream: rr.RecordingStream, entity: str, timelines: Timelines, flush_every: int, flush_seconds: float
    ) -> None:
        super().__init__(stream, timelines, flush_every, flush_seconds)
        self.entity = entity
        self.samples_sent = 0
        self._steps: dict[int, int] = {}  # frames queued for encoding whose sample has not arrived
        self._queued = 0
        self._pending: list[tuple[int, bool, bytes]] = []  # (step, keyframe, data) not sent yet

    def frame(self, step: int) -> None:
        """A frame of this clip went to the encoder; its sample will be shown at ``step``."""
        self._steps[self._queued] = step
        self._queued += 1

    def sample(self, pts: int, keyframe: bool, data: bytes) -> None:
        self._pending.append((self._steps.pop(pts), keyframe, data))
        if self._due(len(self._pending)):
            self.flush()

    def flush(self) -> None:
        self._emptied()
        if not self._pending:
            return
        rr = _rr()
        pending, self._pending = self._pending, []
        columns = list(rr.VideoStream.columns(sample=[data for _, _, data in pending]))
        keyframes = [int(keyframe) for _, keyframe, _ in pending]
        if any(keyframes):  # a sparse marker, as Rerun wants it: [True] on keyframes, nothing on the others
            columns += rr.VideoStream.columns(is_keyframe=[True] * sum(keyframes)).partition(keyframes)
        self.stream.send_columns(self.entity, indexes=self.timelines.columns([s for s, _, _ in pending]), columns=columns)
        self.samples_sent += len(pending)


def host_values(value: Any) -> np.ndarray | None:
    """A flat float64 host copy of a numeric scalar/array (numpy, torch, jax), or None for anything else."""
    if value is None or isinstance(value, (str, bytes, dict)):
        return None
    if hasattr(value, "detach"):  # torch
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception:
        return None
    if array.dtype.kind not in "biuf" or array.size == 0:
        return None
    return array.astype(np.float64).reshape(-1)


def row_of(value: Any, index: int) -> Any:
    """Item ``index`` of a per-env list or row of a batched array (rewards, actions); None for values
    without rows (Dict actions)."""
    if isinstance(value, list):
        return value[index]
    return value[index] if getattr(value, "shape", None) else None


def rows_of(values: dict[str, Any], index: int) -> dict[str, Any]:
    """Env ``index``'s row of each per-env value: ``rows_of({"reward": rewards}, 2) == {"reward": rewards[2]}``."""
    return {name: row_of(value, index) for name, value in values.items()}


class ScalarTrack(_Buffered):
    """Per-frame scalars (``reward``, ``action``, ...) of one recording, buffered and sent in columns."""

    def __init__(
        self, stream: rr.RecordingStream, root: str, timelines: Timelines, flush_every: int, flush_seconds: float
    ) -> None:
        super().__init__(stream, timelines, flush_every, flush_seconds)
        self.root = root
        self._rows: dict[str, tuple[list[int], list[np.ndarray]]] = defaultdict(lambda: ([], []))
        self._count = 0  # steps buffered

    def add(self, step: int, **values: Any) -> None:
        for name, value in values.items():
            array = host_values(value)
            if array is None:
                continue
            steps, rows = self._rows[name]
            steps.append(step)
            rows.append(array)
        self._count += 1
        if self._due(self._count):
            self.flush()

    def flush(self) -> None:
        self._emptied()
        rr = _rr()
        for name, (steps, rows) in self._rows.items():
            if not steps:
                continue
            if len({len(row) for row in rows}) != 1:  # sizes changed: send as they come
                for step, row in zip(steps, rows):
                    self._send(rr, name, [step], row[None, :])
            else:
                self._send(rr, name, steps, np.stack(rows))
        self._rows.clear()
        self._count = 0

    def _send(self, rr: Any, name: str, steps: list[int], values: np.ndarray) -> None:
        self.stream.send_columns(
            f"{self.root}/{name}", indexes=self.timelines.columns(steps), columns=rr.Scalars.columns(scalars=values)
        )


@dataclass
class RerunVideoSink:
    """Where a :class:`~episode_recorder.recorder.Recorder` sends clips' samples and scalars.

    Entities: ``camera[/env_{i}][/{camera key}]`` (one ``VideoStream`` per camera and env),
    ``scalars[/env_{i}]/{reward,action}``. ``timelines``: ``"recording"`` or ``"shared"`` (see the
    module docstring). ``step_duration`` (seconds per step) defaults to ``1 / fps`` of each
    recording. Samples and scalar rows are buffered and sent with ``send_columns`` once
    ``flush_every`` of them are waiting or ``flush_seconds`` after the last send (and when a clip
    ends): few, large chunks make a small ``.rrd`` (each chunk costs about 1 KB on disk).
    ``mark_recordings=False`` leaves the ``recordings`` rows to the caller (``LogRerun`` logs them).
    ``owns_stream``: ``close()`` disconnects the stream (writing an ``.rrd`` file's footer) instead
    of only flushing it.

        >>> sink = RerunVideoSink(rr.RecordingStream("doc"), timelines="shared")   # doctest: +SKIP
    """

    stream: rr.RecordingStream
    _: KW_ONLY
    timelines: Layout = "recording"
    step_duration: float | None = None
    camera_entity: str = CAMERA_ENTITY
    scalars_entity: str = SCALARS_ENTITY
    flush_every: int = 500
    flush_seconds: float = 1.0
    mark_recordings: bool = True
    owns_stream: bool = False
    _codec_logged: set[str] = field(default_factory=set, init=False, repr=False)  # entities with their codec

    def __post_init__(self) -> None:
        if self.timelines not in LAYOUTS:
            raise ValueError(f"timelines must be one of {LAYOUTS}, received {self.timelines!r}.")
        if self.flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, received {self.flush_every}.")
        if not self.flush_seconds > 0:
            raise ValueError(f"flush_seconds must be > 0, received {self.flush_seconds}.")

    def close(self) -> None:
        """Flush the stream (disconnect it when this sink made it)."""
        if self.owns_stream:
            self.stream.disconnect()
        else:
            self.stream.flush()

    def timelines_for(self, name: str, fps: float) -> Timelines:
        return Timelines.of(self.timelines, name, self.step_duration or 1.0 / fps)

    def video(self, timelines: Timelines, env_index: int | None, camera: str | None) -> VideoTrack:
        """A clip's track; its entity's codec is logged (static) once, at its first clip."""
        entity = entity_path(self.camera_entity, env_index, camera)
        if entity not in self._codec_logged:
            rr = _rr()
            self.stream.log(entity, rr.VideoStream(codec=rr.VideoCodec.H264), static=True)
            self._codec_logged.add(entity)
        return VideoTrack(self.stream, entity, timelines, self.flush_every, self.flush_seconds)

    def scalars(self, timelines: Timelines, env_index: int | None) -> ScalarTrack:
        return ScalarTrack(
            self.stream, entity_path(self.scalars_entity, env_index), timelines, self.flush_every, self.flush_seconds
        )


def as_rerun_sink(rerun: Any, application_id: str) -> RerunVideoSink | None:
    """``rerun=`` of the video wrappers: None/False, True (the global stream), a path, a stream or a sink."""
    if rerun is None or rerun is False:
        return None
    if isinstance(rerun, RerunVideoSink):
        return rerun
    from episode_recorder.rerun_stream import resolve_stream

    if rerun is True:
        return RerunVideoSink(resolve_stream(None, None, application_id))
    if isinstance(rerun, (str, os.PathLike)):
        return RerunVideoSink(resolve_stream(rerun, None, application_id), owns_stream=True)
    rr = _rr()
    if isinstance(rerun, rr.RecordingStream):
        return RerunVideoSink(rerun)
    raise TypeError(
        f"rerun= takes True (the global stream from rr.init), a path to an .rrd file, an "
        f"rr.RecordingStream or a RerunVideoSink; received {type(rerun).__name__}."
    )


# -- reading back ----------------------------------------------------------------------------


@dataclass
class RecordingSummary:
    """One recording found in an ``.rrd``: its name, episode, env, timelines and frames per camera entity."""

    application_id: str
    recording_id: str
    name: str
    episode_id: int | None
    env_index: int | None
    step_timeline: str
    first_step: int
    frames: dict[str, int] = field(default_factory=dict)  # camera entity -> frames (video samples or images)


_FRAME_COLUMNS = ("VideoStream:sample", "EncodedImage:blob", "Image:buffer")


def read_recordings(path: str | os.PathLike[str]) -> list[RecordingSummary]:
    """Every recording in an ``.rrd`` written by this package, with its frame count per camera entity.

    Works for both timeline layouts; reads with ``rerun.chunk.RrdReader`` (the file needs its
    footer: disconnect the stream first). Frames of a shared-timeline recording are those of its
    env's camera entities from its first step to the next recording of the same env (a reset takes
    no env step, so a recording's last frame may share its step with the next one's first).

        >>> for r in read_recordings("runs/ant.rrd"):                          # doctest: +SKIP
        ...     print(r.name, r.episode_id, r.env_index, r.frames)
        episode_0 0 None {'/camera': 27}
    """
    from rerun.chunk import RrdReader

    reader = RrdReader(os.fspath(path))
    summaries: list[RecordingSummary] = []
    for store in reader.recordings():
        markers: list[RecordingSummary] = []
        frame_steps: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))  # entity -> timeline -> steps
        for chunk in reader.stream(store=store):
            if chunk.is_static:
                continue
            batch = chunk.to_record_batch()
            names = batch.schema.names
            timelines = [n for n in names if n.endswith("_step") or n == SHARED_STEP]
            if chunk.entity_path == f"/{RECORDINGS_ENTITY}":
                columns = {n: batch.column(n).to_pylist() for n in ("name", "episode_id", "env_index", *timelines)}
                for row in range(chunk.num_rows):
                    timeline = next(t for t in timelines if columns[t][row] is not None)
                    episode, env = columns["episode_id"][row][0], columns["env_index"][row][0]
                    markers.append(
                        RecordingSummary(
                            store.application_id,
                            store.recording_id,
                            columns["name"][row][0],
                            None if episode < 0 else int(episode),
                            None if env < 0 else int(env),
                            timeline,
                            int(columns[timeline][row]),
                        )
                    )
            elif any(c in names for c in _FRAME_COLUMNS):
                for timeline in timelines:
                    steps = [s for s in batch.column(timeline).to_pylist() if s is not None]
                    frame_steps[chunk.entity_path][timeline].extend(steps)
        summaries.extend(_count_frames(markers, frame_steps))
    return summaries


def _count_frames(
    markers: list[RecordingSummary], frame_steps: dict[str, dict[str, list[int]]]
) -> list[RecordingSummary]:
    shared = sorted((m for m in markers if m.step_timeline == SHARED_STEP), key=lambda m: m.first_step)
    for marker in markers:
        for entity, timelines in frame_steps.items():
            steps = np.asarray(timelines.get(marker.step_timeline, []), dtype=np.int64)
            if marker.step_timeline == SHARED_STEP:
                env = _env_of(entity)
                if marker.env_index is not None and env is not None and env != marker.env_index:
                    continue
                later = [m.first_step for m in shared if m.first_step > marker.first_step and _same_env(m, marker)]
                end = later[0] if later else np.iinfo(np.int64).max
                # A reset takes no step: a recording's first frame can share its step with the
                # previous one's last frame. A recording has one frame at its first step.
                count = int(np.count_nonzero((steps > marker.first_step) & (steps < end)))
                count += min(1, int(np.count_nonzero(steps == marker.first_step)))
                count += max(0, int(np.count_nonzero(steps == end)) - 1)
            else:
                count = len(steps)
            if count:
                marker.frames[entity] = count
    return markers


def _env_of(entity: str) -> int | None:
    for part in entity.split("/"):
        if part.startswith("env_") and part[4:].isdigit():
            return int(part[4:])
    return None


def _same_env(a: RecordingSummary, b: RecordingSummary) -> bool:
    return a.env_index is None or b.env_index is None or a.env_index == b.env_index


def read_video_samples(path: str | os.PathLike[str], entity: str, timeline: str) -> list[tuple[int, bool, bytes]]:
    """``(step, keyframe, sample)`` of a ``VideoStream`` entity on ``timeline``, in step order.

    Decode them with PyAV: ``av.CodecContext.create("h264", "r").decode(av.Packet(sample))``.
    """
    from rerun.chunk import RrdReader

    found: list[tuple[int, bool, bytes]] = []
    for chunk in RrdReader(os.fspath(path)).stream():
        if chunk.entity_path != entity or chunk.is_static:
            continue
        batch = chunk.to_record_batch()
        if "VideoStream:sample" not in batch.schema.names or timeline not in batch.schema.names:
            continue
        steps = batch.column(timeline).to_pylist()
        names = batch.schema.names  # is_keyframe: [True] on keyframes, absent (or [False], older files) elsewhere
        keyframes = batch.column("VideoStream:is_keyframe").to_pylist() if "VideoStream:is_keyframe" in names else []
        blobs = batch.column("VideoStream:sample")
        for row, step in enumerate(steps):
            if step is None or not blobs[row].is_valid:
                continue
            data = blobs[row].values.flatten().to_numpy(zero_copy_only=False).tobytes()
            keyframe = row < len(keyframes) and bool(keyframes[row] and keyframes[row][0])
            found.append((int(step), keyframe, data))
    return sorted(found, key=lambda sample: sample[0])
