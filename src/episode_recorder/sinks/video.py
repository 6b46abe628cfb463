"""Video files encoded with PyAV in a background process.

The step loop copies each RGB frame into a shared-memory ring and sends a few bytes down a pipe;
a separate encoder process (``episode_recorder.sinks._video_worker``) encodes it. A process, not
a thread: a Python-heavy step loop starves an encoder thread of the GIL. A file appears under its
final name only when complete; if the training process dies, the encoder process finishes every
open clip as ``<name>.partial.<format>`` so nothing captured is lost.

    >>> import numpy as np, tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> encoder = VideoEncoderProcess()
    >>> clip = encoder.open(os.path.join(folder, "demo.mp4"), 64, 64, VideoOptions())
    >>> for t in range(10):
    ...     encoder.write(clip, np.full((64, 64, 3), t * 20, np.uint8))
    True
    True
    True
    True
    True
    True
    True
    True
    True
    True
    >>> encoder.close(clip)
    >>> [kind for kind, *_ in encoder.wait({clip})]
    ['saved']
    >>> encoder.shutdown()
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from multiprocessing import shared_memory
from typing import Any, Literal

import numpy as np

FORMATS = ("mp4", "webm", "gif")
WhenFull = Literal["wait", "drop"]
_HEADER_BYTES = 64  # int64 at offset 0: frames the encoder process has taken out of the ring


@dataclass(frozen=True)
class VideoOptions:
    """How clips are encoded; the defaults keep encoding ahead of a typical simulator on 2 cores.

    - ``mp4``: H.264 (libx264), yuv420p (plays in browsers, W&B, QuickTime); ``crf`` 23,
      ``preset`` "veryfast". Odd sizes are padded to even by repeating the last row/column.
    - ``webm``: VP9 (libvpx-vp9), yuv420p; ``crf`` 32, realtime deadline, ``preset`` = cpu-used "8".
    - ``gif``: a 256-colour palette per frame (Pillow FASTOCTREE), loops forever.

    ``bitrate`` (bits per second) replaces ``crf`` when given. ``threads`` defaults to 1 on machines
    with up to 2 cores (the step loop keeps the other one), else ``min(4, cores // 2)``.
    ``samples``: also send the clip's H.264 samples back to the training process (for Rerun's
    ``VideoStream``; see :mod:`episode_recorder.sinks.h264`).

    >>> VideoOptions(format="webm", fps=50).extension
    'webm'
    """

    format: str = "mp4"
    fps: float = 30.0
    crf: int | None = None
    preset: str | None = None
    bitrate: int | None = None
    threads: int | None = None
    samples: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"Unknown video format {self.format!r}: choose one of {', '.join(FORMATS)}.")
        if not self.fps or self.fps <= 0:
            raise ValueError(f"fps must be a positive number, received {self.fps!r}.")

    @property
    def extension(self) -> str:
        return self.format


def partial_path(path: str) -> str:
    """Where a clip interrupted by a crash is saved: ``ep.mp4`` -> ``ep.partial.mp4``."""
    stem, extension = os.path.splitext(path)
    return f"{stem}.partial{extension}"


class VideoFileEncoder:
    """Encodes RGB frames into one file, written under a hidden temporary name until ``close()``.

    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "clip.webm")
    >>> encoder = VideoFileEncoder(path, 48, 64, VideoOptions(format="webm"))
    >>> for t in range(5):
    ...     encoder.write(np.full((48, 64, 3), 40 * t, np.uint8))
    >>> encoder.close() == path, encoder.frames
    (True, 5)
    """

    def __init__(
        self, path: str, height: int, width: int, options: VideoOptions, on_sample: Callable[[Any], None] | None = None
    ) -> None:
        import av

        self.path = path
        self.temp_path = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.part")
        self.frames = 0
        self.options = options
        self._size = (height, width)
        self._pad = (0, 0)
        self._on_sample = on_sample  # mp4 only: each packet also goes out as an H.264 sample
        rate = Fraction(options.fps).limit_denominator(1001)
        container_options = {"movflags": "+faststart"} if options.format == "mp4" else {}
        self._container = av.open(self.temp_path, "w", format=options.format, options=container_options)
        try:
            if options.format == "gif":
                self._stream = self._container.add_stream("gif", rate=rate)
                self._stream.pix_fmt = "pal8"
            else:
                codec = "libx264" if options.format == "mp4" else "libvpx-vp9"
                self._stream = self._container.add_stream(codec, rate=rate)
                self._stream.pix_fmt = "yuv420p"
                self._pad = (height % 2, width % 2)
                self._stream.options = _codec_options(options)
                if on_sample is not None:
                    from episode_recorder.sinks.h264 import streaming_codec_options

                    self._stream.options = {**self._stream.options, **streaming_codec_options(options.fps)}
                if options.bitrate:
                    self._stream.bit_rate = int(options.bitrate)
            self._stream.height = height + self._pad[0]
            self._stream.width = width + self._pad[1]
            self._stream.codec_context.thread_type = "AUTO"
            self._stream.codec_context.thread_count = options.threads or _default_threads()
        except BaseException:
            self.abort()
            raise

    def write(self, rgb: np.ndarray) -> None:
        """Encode one HxWx3 uint8 frame of the size given at construction."""
        import av

        if rgb.shape != (*self._size, 3):
            raise ValueError(f"Frame of shape {rgb.shape} in a clip of size {self._size}.")
        if self.options.format == "gif":
            frame = av.VideoFrame.from_ndarray(_quantize(rgb), format="pal8")
        else:
            frame = rgb_frame(rgb, self._pad)
        frame.pts = self.frames
        frame.time_base = 1 / self._stream.codec_context.framerate
        self._mux(frame)
        self.frames += 1

    def close(self) -> str:
        """Flush, close and move the file to its final name; returns that name."""
        return self._finish(self.path)

    def salvage(self) -> str:
        """Finish an interrupted clip as a complete, playable ``<name>.partial.<format>``."""
        return self._finish(partial_path(self.path))

    def abort(self) -> None:
        """Drop the clip: nothing is left on disk."""
        try:
            self._container.close()
        except Exception:
            pass
        if os.path.exists(self.temp_path):
            os.remove(self.temp_path)

    def _finish(self, final_path: str) -> str:
        self._mux(None)
        self._container.close()
        os.replace(self.temp_path, final_path)
        return final_path

    def _mux(self, frame: Any) -> None:
        for packet in self._stream.encode(frame):
            if self._on_sample is not None:
                from episode_recorder.sinks.h264 import sample_of

                self._on_sample(sample_of(packet, self._stream.codec_context.extradata))
            self._container.mux(packet)


def rgb_frame(rgb: np.ndarray, pad: tuple[int, int]) -> Any:
    """An rgb24 ``av.VideoFrame``, padded by repeating the last ``pad`` = (rows, columns)."""
    import av

    if any(pad):
        rgb = np.pad(rgb, ((0, pad[0]), (0, pad[1]), (0, 0)), mode="edge")
    return av.VideoFrame.from_ndarray(rgb, format="rgb24")


def _codec_options(options: VideoOptions) -> dict[str, str]:
    if options.format == "mp4":
        settings = {"preset": options.preset or "veryfast"}
    else:
        settings = {"deadline": "realtime", "cpu-used": options.preset or "8", "row-mt": "1"}
    if not options.bitrate:
        settings["crf"] = str(options.crf if options.crf is not None else (23 if options.format == "mp4" else 32))
        if options.format == "webm":
            settings["b"] = "0"  # constant quality
    return settings


def _default_threads() -> int:
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(4, cores // 2)


def _quantize(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An (indices, ARGB palette) pair for a pal8 frame, with Pillow's fast octree quantizer."""
    from PIL import Image

    image = Image.fromarray(rgb).quantize(256, method=Image.Quantize.FASTOCTREE)
    palette = np.zeros((256, 4), np.uint8)
    colours = np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)[:256]
    palette[:, 0] = 255
    palette[: len(colours), 1:] = colours
    return np.asarray(image), palette


class _Ring:
    """A clip's frames in shared memory: ``slots`` frame buffers plus a 'taken' counter."""

    def __init__(self, slots: int, height: int, width: int, name: str | None = None) -> None:
        frame_bytes = height * width * 3
        if name is None:
            self.memory = shared_memory.SharedMemory(create=True, size=_HEADER_BYTES + slots * frame_bytes)
        else:
            self.memory = _attach_untracked(name)
        self.taken = np.ndarray((1,), np.int64, self.memory.buf, 0)
        self.frames = np.ndarray((slots, height, width, 3), np.uint8, self.memory.buf, _HEADER_BYTES)
        self.slots = slots
        self.written = 0

    def release(self, unlink: bool) -> None:
        del self.taken, self.frames
        self.memory.close()
        if unlink:
            self.memory.unlink()


def _attach_untracked(name: str) -> shared_memory.SharedMemory:
    """Attach to the parent's segment without this process's resource tracker unlinking it on exit."""
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)
    from multiprocessing import resource_tracker

    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return shared_memory.SharedMemory(name=name)
    finally:
        resource_tracker.register = register


def send_message(fd: int, message: tuple[Any, ...]) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    data = memoryview(struct.pack("<I", len(payload)) + payload)
    while data:
        data = data[os.write(fd, data) :]


def read_message(stream: Any) -> tuple[Any, ...] | None:
    """The next message from a binary stream, or None at end of file."""
    header = stream.read(4)
    if len(header) < 4:
        return None
    (size,) = struct.unpack("<I", header)
    payload = stream.read(size)
    return None if len(payload) < size else pickle.loads(payload)


class EncoderProcessDied(RuntimeError):
    """The background encoder process exited while clips were being recorded."""


class VideoEncoderProcess:
    """Parent-side handle of the encoder process; each clip gets a ring of ``queue_frames`` frames.

    ``write`` copies one frame into the ring and returns at once; when the ring is full it waits
    for the encoder (``when_full="wait"``, nothing lost) or skips the frame and returns False
    (``when_full="drop"``). Results arrive as tuples from :meth:`results` / :meth:`wait`:
    ``("saved", clip, path, frames)``, ``("aborted", clip)``, ``("failed", clip, error)``, and
    for clips opened with ``VideoOptions(samples=True)`` ``("sample", clip, (pts, keyframe, data))``
    for each encoded frame, before the clip's ``saved``. ``path=None`` opens a clip of samples only.
    """

    def __init__(self, queue_frames: int = 16, when_full: WhenFull = "wait") -> None:
        if when_full not in ("wait", "drop"):
            raise ValueError(f"when_full must be 'wait' or 'drop', received {when_full!r}.")
        if queue_frames < 1:
            raise ValueError(f"queue_frames must be at least 1, received {queue_frames}.")
        self.queue_frames = queue_frames
        self.when_full = when_full
        self._rings: dict[int, _Ring] = {}
        self._next_clip = 0
        self._results: collections.deque[tuple[Any, ...]] = collections.deque()
        self._arrived = threading.Condition()
        command_read, self._command_fd = os.pipe()
        result_read, result_write = os.pipe()
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "episode_recorder.sinks._video_worker", str(command_read), str(result_write)],
            pass_fds=(command_read, result_write),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        os.close(command_read)
        os.close(result_write)
        ready = threading.Event()
        self._reader = threading.Thread(
            target=_read_results,
            args=(result_read, self._results, self._arrived, self._process, ready),
            name="episode-recorder-results",
            daemon=True,
        )
        self._reader.start()
        self._finalizer = weakref.finalize(self, os.close, self._command_fd)
        # Wait for the process to finish its imports here, so that no step() waits for it later.
        while not ready.wait(0.05):
            self._check_alive()

    def open(self, path: str | None, height: int, width: int, options: VideoOptions) -> int:
        """Start a clip that will be saved at ``path`` (None: samples only); returns its id."""
        self._check_alive()
        clip = self._next_clip
        self._next_clip += 1
        ring = _Ring(self.queue_frames, height, width)
        self._rings[clip] = ring
        self._send(("open", clip, ring.memory.name, ring.slots, height, width, path, asdict(options)))
        return clip

    def write(self, clip: int, rgb: np.ndarray) -> bool:
        """Copy ``rgb`` into the clip's ring and queue it; False if dropped because the ring was full."""
        ring = self._rings[clip]
        if rgb.shape != ring.frames.shape[1:]:
            raise ValueError(f"Frame of shape {rgb.shape} in a clip of shape {ring.frames.shape[1:]}.")
        while ring.written - int(ring.taken[0]) >= ring.slots:
            if self.when_full == "drop":
                return False
            self._check_alive()
            time.sleep(0.0005)
        slot = ring.written % ring.slots
        np.copyto(ring.frames[slot], rgb)
        ring.written += 1
        self._send(("frame", clip, slot))
        return True

    def close(self, clip: int) -> None:
        """Finish the clip; its ``saved`` result arrives once the file is under its final name."""
        self._send(("close", clip))

    def abort(self, clip: int) -> None:
        """Drop the clip and its temporary file."""
        self._send(("abort", clip))

    def results(self) -> list[tuple[Any, ...]]:
        """Results that have arrived since the last call (never blocks)."""
        found = []
        while self._results:
            result = self._results.popleft()
            if result[0] not in ("died", "sample"):
                self._release(result[1])
            found.append(result)
        return found

    def wait(self, clips: set[int], timeout: float | None = None) -> list[tuple[Any, ...]]:
        """Block until every clip in ``clips`` has a result; returns all results that arrived."""
        pending = set(clips)
        found: list[tuple[Any, ...]] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            with self._arrived:
                if not self._results and not self._reader.is_alive():
                    raise EncoderProcessDied(f"The video encoder process exited before finishing clips {sorted(pending)}.")
                if not self._results:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(f"Video clips {sorted(pending)} not finished after {timeout} s.")
                    self._arrived.wait(remaining)
            for result in self.results():
                found.append(result)
                if result[0] == "died":
                    return found
                if result[0] != "sample":
                    pending.discard(result[1])
        return found

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop the process once it has finished the clips it was given."""
        if self._finalizer.alive:
            try:
                send_message(self._command_fd, ("quit",))
            except OSError:
                pass
            self._finalizer()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout)
        for clip in list(self._rings):
            self._release(clip)

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            send_message(self._command_fd, message)
        except BrokenPipeError:
            self._process.wait()
            self._check_alive()
            raise

    def _check_alive(self) -> None:
        code = self._process.poll()
        if code is not None:
            raise EncoderProcessDied(
                f"The video encoder process exited with code {code}; clips in progress are lost "
                "(their temporary .part files are left in the output folder)."
            )

    def _release(self, clip: int) -> None:
        ring = self._rings.pop(clip, None)
        if ring is not None:
            ring.release(unlink=True)


def _read_results(
    fd: int, results: collections.deque, arrived: threading.Condition, process: Any, ready: threading.Event
) -> None:
    with os.fdopen(fd, "rb") as stream:
        if read_message(stream) == ("ready",):
            ready.set()
        while (message := read_message(stream)) is not None:
            with arrived:
                results.append(message)
                arrived.notify_all()
    process.wait()
    with arrived:
        if process.returncode != 0:
            results.append(("died", process.returncode))
        arrived.notify_all()
