"""The core every adapter shares: segments of frames become clips, clips become files.

A :class:`Segment` is one recorded stretch (an episode or a snippet) of one env; it holds one
:class:`Clip` per camera, opened at the camera's first frame. Frames stream to the background
encoder as they arrive, so memory does not grow with episode length. Results (a saved file, an
encoder error) surface on the caller's thread at the next call. With ``rerun=`` the same encoded
frames also go to a Rerun stream as ``rr.VideoStream`` samples, with the rewards and actions
given to ``add`` as scalars (see :mod:`episode_recorder.sinks.rerun`); ``folder=None`` writes no
files, Rerun only.

No two clips share a path: a name already taken (by a file, or by a clip another recorder is
writing) gets the next free ``<stem>-1.<format>``, ``<stem>-2.<format>``, ... (see
``episode_recorder.sinks.video.claim_path``); ``Clip.name`` / ``Clip.path`` say which.

    >>> import numpy as np, tempfile
    >>> recorder = Recorder(tempfile.mkdtemp(), VideoOptions(format="mp4", fps=30))
    >>> segment = recorder.start("episode_0", episode_id=0)
    >>> for t in range(8):
    ...     segment.add({"front": np.full((32, 48, 3), t * 30, np.uint8)})
    >>> [clip.name for clip in segment.stop()]
    ['episode_0_key_front.mp4']
    >>> [(clip.status, clip.frames) for clip in recorder.close()]
    [('saved', 8)]
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from episode_recorder.frames import to_rgb
from episode_recorder.keep import KeepPolicy, Retention
from episode_recorder.sinks.video import EncoderProcessDied, VideoEncoderProcess, VideoOptions, WhenFull, claim_path

if TYPE_CHECKING:
    import rerun as rr

    from episode_recorder.sinks.rerun import RerunVideoSink, ScalarTrack, Timelines, VideoTrack

ClipStatus = Literal["recording", "encoding", "saved", "discarded", "failed", "deleted"]  # deleted: by keep=

logger = logging.getLogger("episode_recorder")


@dataclass(eq=False)  # a clip is one file in the making: compared by identity
class Clip:
    """One recorded segment of one camera of one env, and what is known about it."""

    name: str
    path: str | None  # None: a clip sent to Rerun only
    camera: str | None
    fps: float
    format: str
    episode_id: int | None = None
    env_index: int | None = None
    start_step: int = 0
    end_step: int | None = None
    frames: int = 0
    dropped_frames: int = 0
    height: int = 0
    width: int = 0
    episode_return: float | None = None
    episode_length: int | None = None
    status: ClipStatus = "recording"
    extra: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """A JSON-ready summary of the clip (what sidecars and callbacks receive)."""
        return {
            "path": self.path,
            "camera": self.camera,
            "episode_id": self.episode_id,
            "env_index": self.env_index,
            "start_step": self.start_step,
            "end_step": self.end_step,
            "frames": self.frames,
            "dropped_frames": self.dropped_frames,
            "fps": self.fps,
            "format": self.format,
            "height": self.height,
            "width": self.width,
            "episode_return": self.episode_return,
            "episode_length": self.episode_length,
            **self.extra,
        }


class Recorder:
    """Owns the encoder process and the clips of every segment an adapter starts.

    ``when_full="wait"`` (default) makes ``add`` wait for the encoder when ``queue_frames`` frames
    of a clip are pending, so nothing is lost; ``"drop"`` skips the frame instead and counts it in
    ``Clip.dropped_frames``. ``on_saved(clip)`` runs on the caller's thread once a file is complete;
    then ``keep`` (see :mod:`episode_recorder.keep`) deletes the clips it no longer keeps, with
    their ``.json`` sidecars. Each saved file is logged at INFO on the ``episode_recorder`` logger.

    Errors: an encoder error or an exception from ``on_saved`` is raised once, at the next call,
    after every result that arrived has been booked (later calls keep working); an ``OSError``
    names the file. :meth:`close` always stops the encoder process, even after errors.
    In a ``fork()``-ed child the recorder starts its own encoder on first use: clips the parent
    was writing stay the parent's, and a segment open at the fork continues in new files.

    ``rerun`` (an ``rr.RecordingStream`` or a :class:`~episode_recorder.sinks.rerun.RerunVideoSink`):
    every clip also goes to Rerun as the same H.264 samples (mp4 files are encoded once; webm and
    gif files get a second, H.264 encode in the encoder process). ``folder=None``: Rerun only.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str] | None,
        options: VideoOptions,
        *,
        queue_frames: int = 16,
        when_full: WhenFull = "wait",
        on_saved: Callable[[Clip], None] | None = None,
        keep: KeepPolicy | None = None,
        rerun: rr.RecordingStream | RerunVideoSink | None = None,
    ) -> None:
        if folder is None and rerun is None:
            raise ValueError("A Recorder needs a folder for video files, a rerun= stream, or both.")
        self.folder = None if folder is None else os.path.abspath(os.fspath(folder))
        if self.folder is not None:
            os.makedirs(self.folder, exist_ok=True)
            check_writable(self.folder)
        self.rerun: RerunVideoSink | None = None
        if rerun is not None:
            from episode_recorder.sinks.rerun import RerunVideoSink

            self.rerun = rerun if isinstance(rerun, RerunVideoSink) else RerunVideoSink(rerun)
            options = replace(options, samples=True)
        self.options = options
        self.on_saved = on_saved
        self.retention = None if keep is None else Retention(keep)
        self.clips: list[Clip] = []
        self._encoder = VideoEncoderProcess(queue_frames, when_full)
        self._unfinished: dict[int, Clip] = {}  # clips whose result has not arrived yet
        self._tracks: dict[int, VideoTrack] = {}  # clip id -> its Rerun video entity
        self._segments: list[Segment] = []
        self._closed = False

    def start(
        self,
        name: str,
        *,
        episode_id: int | None = None,
        env_index: int | None = None,
        start_step: int = 0,
        fps: float | None = None,
        max_frames: int | None = None,
    ) -> Segment:
        """Begin a segment whose files are ``{name}.{format}`` (``{name}_key_{camera}.{format}``).

        ``max_frames``: the most frames it will hold, when known (a snippet's length): the encoder's
        queue drains over its last frames, so that the call ending it waits for its last frame only.
        """
        if self._closed:
            raise RuntimeError("This recorder is closed; create a new one to record more.")
        self.poll()
        segment = Segment(self, name, episode_id, env_index, start_step, fps or self.options.fps, max_frames)
        self._segments.append(segment)
        return segment

    def poll(self) -> None:
        """Take in finished clips (running ``on_saved``) and raise an encoder error, if any."""
        self._handle(self._own_encoder().results())

    def wait(self, clips: list[Clip] | None = None) -> list[Clip]:
        """Block until ``clips`` (default: every stopped clip) are saved; returns them."""
        targets = clips if clips is not None else [c for c in self._unfinished.values() if c.status == "encoding"]
        wanted = {id(clip) for clip in targets}
        ids = {clip_id for clip_id, clip in self._unfinished.items() if id(clip) in wanted and clip.status == "encoding"}
        self._handle(self._own_encoder().wait(ids))
        return targets

    def close(self) -> list[Clip]:
        """Stop open segments, wait for every file, stop the encoder process; returns all clips.

        The encoder process is stopped whatever happens; the first error met on the way (an
        encoder error, an ``on_saved`` exception) is raised afterwards.
        """
        if self._closed:
            return self.clips
        self._closed = True
        errors: list[BaseException] = []
        try:
            if self._encoder.forked:  # the parent's encoder and clips: nothing of ours to finish
                return self.clips
            for segment in list(self._segments):
                try:
                    segment.stop()
                except Exception as error:
                    errors.append(error)
            while any(clip.status == "encoding" for clip in self._unfinished.values()):
                try:
                    self.wait()
                except EncoderProcessDied as error:
                    errors.append(error)
                    break
                except Exception as error:  # booked: the loop goes on with the clips still pending
                    errors.append(error)
        finally:
            self._encoder.shutdown()
            if self.rerun is not None:
                self.rerun.close()
        if errors:
            raise errors[0]
        return self.clips

    def _own_encoder(self) -> VideoEncoderProcess:
        """The encoder; in a forked child, the inherited one is the parent's: start this process's own."""
        inherited = self._encoder
        if inherited.forked:
            self._encoder = VideoEncoderProcess(inherited.queue_frames, inherited.when_full)
            self._unfinished, self._tracks = {}, {}
            self.clips = [clip for clip in self.clips if clip.status in ("saved", "discarded", "failed")]
            for segment in self._segments:
                segment.clips, segment._clip_ids = {}, {}
        return self._encoder

    def _open(self, segment: Segment, camera: str | None, height: int, width: int) -> tuple[int, Clip]:
        suffix = "" if camera is None else f"_key_{camera.replace(os.sep, '_')}"
        name = f"{segment.name}{suffix}.{self.options.extension}"
        path: str | None = None  # a clip sent to Rerun only: no file, no name to claim
        lock_fd: int | None = None
        if self.folder is not None:
            wanted = os.path.join(self.folder, name)
            dropping = {i for i, clip in self._unfinished.items() if clip.path == wanted and clip.status == "discarded"}
            if dropping:  # a clip of ours being dropped holds the name: it is free once the encoder has removed it
                self._handle(self._encoder.wait(dropping))
            path, lock_fd = claim_path(wanted)
            name = os.path.basename(path)
        clip = Clip(
            name=name,
            path=path,
            camera=camera,
            fps=segment.fps,
            format=self.options.format,
            episode_id=segment.episode_id,
            env_index=segment.env_index,
            start_step=segment.start_step,
            height=height,
            width=width,
        )
        clip_id = self._encoder.open(clip.path, height, width, replace(self.options, fps=segment.fps), lock_fd)
        self.clips.append(clip)
        self._unfinished[clip_id] = clip
        if self.rerun is not None:
            self._tracks[clip_id] = self.rerun.video(segment.timelines, segment.env_index, camera)
        return clip_id, clip

    def _handle(self, results: list[tuple[Any, ...]]) -> None:
        """Book every result first, then run ``on_saved``; raise the first error met, once."""
        errors: list[BaseException] = []
        saved: list[Clip] = []
        died: int | None = None
        for result in results:
            kind = result[0]
            if kind == "died":
                died = result[1]
                continue
            if kind == "samples":
                track = self._tracks[result[1]]
                for sample in result[2]:
                    track.sample(*sample)
                continue
            clip = self._unfinished.pop(result[1])
            track = self._tracks.pop(result[1], None)
            if track is not None and kind != "aborted":  # a discarded clip's samples are dropped
                track.flush()
            if kind == "saved":
                clip.status, clip.path = "saved", result[2]
                if clip.path is not None:
                    clip.name = os.path.basename(clip.path)
                if len(result) > 4:
                    clip.extra["encoder"] = result[4]  # the settings actually used (preset, threads, ...)
                log_saved(clip)
                saved.append(clip)
            elif kind == "aborted":
                clip.status = "discarded"
            elif kind == "failed":
                clip.status = "failed"
                error = result[2]
                if isinstance(error, OSError) and error.filename is None:
                    error.filename = clip.path
                error.add_note(f"while encoding {clip.path}; in the encoder process:\n{result[3]}")
                errors.append(error)
        if died is not None:
            for clip in self._unfinished.values():
                clip.status = "failed"
            errors.insert(
                0,
                EncoderProcessDied(
                    f"The video encoder process exited with code {died}; clips being encoded were lost "
                    f"(what was written is in their temporary .part files in {self.folder}: "
                    "episode_recorder.recover.recover(folder) makes them playable)."
                ),
            )
        for clip in saved:
            try:
                if self.on_saved is not None:
                    self.on_saved(clip)
            except Exception as error:
                error.add_note(f"in on_saved for {clip.path} (the video itself is saved)")
                errors.append(error)
            if self.retention is not None and clip.path is not None:  # keep= is about files
                for old in self.retention.add(clip):
                    delete_clip(old)
        if errors:
            for other in errors[1:]:
                errors[0].add_note(f"also: {type(other).__name__}: {other}")
            raise errors[0]


def write_sidecar(path: str | os.PathLike[str], info: dict[str, Any]) -> str:
    """Write ``info`` as JSON at ``path`` atomically: a temporary file in the same folder, then a rename.

    ``path`` holds either its previous content or the complete new one, never a partial file; an
    ``OSError`` (a full disk, a read-only folder) names ``path``. Returns ``path``.

        >>> import tempfile, os, json
        >>> path = os.path.join(tempfile.mkdtemp(), "clip.json")
        >>> write_sidecar(path, {"frames": 3}) == path, json.load(open(path))
        (True, {'frames': 3})
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    temp: str | None = None
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w") as file:
            json.dump(info, file, indent=2)
        os.replace(temp, path)
        temp = None
    except OSError as error:
        raise type(error)(error.errno, error.strerror, path) from error
    finally:
        if temp is not None and os.path.exists(temp):
            os.remove(temp)
    return path


def log_saved(clip: Clip) -> None:
    """One INFO line per saved file; a WARNING when frames were dropped (``when_full="drop"``)."""
    where = clip.path or f"{clip.name} (to Rerun only)"
    logger.info("saved %s (%d frames, %.2f s of video)", where, clip.frames, clip.frames / clip.fps)
    if clip.dropped_frames:
        logger.warning(
            "%s: %d frames were dropped because the encoder fell behind (when_full='drop')",
            where,
            clip.dropped_frames,
        )


def delete_clip(clip: Clip) -> None:
    """Delete a saved clip's file and its ``.json`` sidecar (the keep= policy decided against it)."""
    for path in (clip.path, os.path.splitext(clip.path)[0] + ".json"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    clip.status = "deleted"
    logger.info("deleted %s (not kept by keep=)", clip.path)


def check_writable(folder: str) -> None:
    """Raise now, naming ``folder``, if files cannot be created in it (read-only, no permission)."""
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".episode-recorder-probe-", dir=folder)
        os.close(descriptor)
        os.remove(probe)
    except OSError as error:
        raise OSError(
            error.errno, f"Cannot write videos into {folder}: {error.strerror}. Pass a writable folder", folder
        ) from error


class Segment:
    """One recorded stretch of one env: one clip per camera, streamed to the encoder."""

    def __init__(
        self,
        recorder: Recorder,
        name: str,
        episode_id: int | None,
        env_index: int | None,
        start_step: int,
        fps: float,
        max_frames: int | None = None,
    ) -> None:
        self.recorder = recorder
        self.max_frames = max_frames
        self.name = name
        self.episode_id = episode_id
        self.env_index = env_index
        self.start_step = start_step
        self.fps = fps
        self.clips: dict[str | None, Clip] = {}
        self._clip_ids: dict[str | None, int] = {}
        self.frames = 0
        sink = recorder.rerun
        self.timelines: Timelines | None = None if sink is None else sink.timelines_for(name, fps)
        self._scalars: ScalarTrack | None = None if sink is None else sink.scalars(self.timelines, env_index)

    def add(self, frames: Any, *, step: int | None = None, reward: Any = None, action: Any = None) -> None:
        """Record one step: a frame, or a flat ``{camera: frame}`` mapping (see ``flatten_frames``).

        With Rerun: the frame is shown at ``step`` on the recording's step timeline (default: the
        frame's index, or ``start_step`` + index with shared timelines), and ``reward`` / ``action``
        (the step's, when numeric) are logged there as scalars.
        """
        self.recorder.poll()
        flat = frames if isinstance(frames, dict) else {None: frames}
        if self.clips and flat.keys() != self.clips.keys():
            raise ValueError(
                f"Cameras changed within recording {self.name!r}: it started with "
                f"{sorted(map(str, self.clips))}, this step has {sorted(map(str, flat))}."
            )
        converted = {camera: to_rgb(frame) for camera, frame in flat.items()}
        for camera, rgb in converted.items():
            clip = self.clips.get(camera)
            if clip is not None and rgb.shape != (clip.height, clip.width, 3):
                raise ValueError(
                    f"Frame size changed within recording {clip.name!r}: it started at "
                    f"{clip.height}x{clip.width}, this frame is {rgb.shape[0]}x{rgb.shape[1]}. "
                    "Render every step of an episode at one size."
                )
        if self.timelines is not None and step is None:
            step = self.frames + (self.start_step if self.timelines.shared else 0)
        if self.timelines is not None and not self.frames and self.recorder.rerun.mark_recordings:
            from episode_recorder.sinks.rerun import log_recording_start

            log_recording_start(
                self.recorder.rerun.stream, self.timelines, step, self.name, self.episode_id, self.env_index
            )
        frames_left = None if self.max_frames is None else self.max_frames - self.frames  # this one included
        for camera, rgb in converted.items():
            if camera not in self.clips:
                self._clip_ids[camera], self.clips[camera] = self.recorder._open(self, camera, *rgb.shape[:2])
            clip = self.clips[camera]
            if clip.status == "failed":
                continue  # its error was raised already
            clip_id = self._clip_ids[camera]
            if self.recorder._encoder.write(clip_id, rgb, frames_left=frames_left):
                clip.frames += 1
                if clip_id in self.recorder._tracks:
                    self.recorder._tracks[clip_id].frame(step)
            else:
                clip.dropped_frames += 1
        if self._scalars is not None and (reward is not None or action is not None):
            self._scalars.add(step, reward=reward, action=action)
        self.frames += 1

    def stop(
        self,
        *,
        min_frames: int = 1,
        end_step: int | None = None,
        episode_return: float | None = None,
        episode_length: int | None = None,
        wait: bool = False,
    ) -> list[Clip]:
        """Finish the segment's clips (discarding those with fewer than ``min_frames`` frames).

        With ``wait`` it returns once every file is complete under its final name (the encoder
        only has the frames still queued to finish); otherwise the files complete in the background.
        """
        recorder = self.recorder
        recorder._own_encoder()
        if self in recorder._segments:
            recorder._segments.remove(self)
        for camera, clip_id in self._clip_ids.items():
            clip = self.clips[camera]
            if clip.status != "recording":
                continue
            clip.end_step = end_step
            clip.episode_return = episode_return
            clip.episode_length = episode_length
            if clip.frames >= min_frames:
                recorder._encoder.close(clip_id)
                clip.status = "encoding"
            else:
                recorder._encoder.abort(clip_id)
                clip.status = "discarded"
        self._clip_ids = {}
        if self._scalars is not None:
            self._scalars.flush()
        finishing = [clip for clip in self.clips.values() if clip.status == "encoding"]
        if wait and finishing:
            recorder.wait(finishing)
        else:
            recorder.poll()
        return [clip for clip in self.clips.values() if clip.status in ("encoding", "saved")]
