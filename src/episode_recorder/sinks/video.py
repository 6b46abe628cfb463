"""Video files encoded with PyAV in a background process.

The step loop copies each RGB frame into a shared-memory ring and sends a few bytes down a pipe;
a separate encoder process (``episode_recorder.sinks._video_worker``) encodes it. A process, not
a thread: a Python-heavy step loop starves an encoder thread of the GIL. A file appears under its
final name only when complete; if the training process dies, the encoder process finishes every
open clip as ``<name>.partial.<format>`` so nothing captured is lost.

Crash safety (see docs/reliability.md): the temporary ``.<name>.part`` is created exclusively and
locked while it is written (a taken name becomes ``<stem>-1.<format>``); it is playable at every
moment (fragmented MP4 with a fragment per second, WebM clusters and GIF frames flushed); beside
a fragmented MP4 the same packets go into an ordinary faststart one (``.<name>.part.tmp``), which
is what the finished clip becomes. The encoder runs in its own session and
ignores SIGINT/SIGTERM/SIGHUP: its life is tied to its parent's, whose exit it notices at once.
Rings are anonymous memory (``memfd``) handed over a Unix socket: nothing is left in /dev/shm.

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
import fcntl
import heapq
import logging
import mmap
import os
import pickle
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np

FORMATS = ("mp4", "webm", "gif")
AUTO = "auto"
WhenFull = Literal["wait", "drop"]
_HEADER_BYTES = 64  # int64s: frames the encoder process has taken out of the ring; its encode time per frame (us)
QUEUED_WORK_SECONDS = 0.030  # "wait": at most this much encoding queued, so ending a clip waits little


@dataclass(frozen=True)
class VideoOptions:
    """How clips are encoded.

    - ``mp4``: H.264 (libx264), yuv420p (plays in browsers, W&B, QuickTime), no B-frames; ``crf``
      23. Odd sizes are padded to even by repeating the last row/column.
    - ``webm``: VP9 (libvpx-vp9), yuv420p; ``crf`` 32, realtime deadline, row multithreading.
    - ``gif``: a 256-colour palette (Pillow FASTOCTREE), loops forever.

    ``preset="auto"`` (the default) lets the encoder process choose its speed by measurement: it
    starts at H.264 "veryfast" / VP9 cpu-used "8" and moves to a faster setting as soon as it
    would fall behind the frames arriving, inside the clip (H.264's last step, ``ULTRAFAST_CAVLC``,
    from the next clip; see :mod:`episode_recorder.sinks.speed`).
    An explicit preset (x264's ``"ultrafast"`` ... ``"veryslow"``, VP9's cpu-used ``"0"`` ... ``"8"``)
    is used as given; GIF has one setting. ``bitrate`` (bits per second) replaces ``crf`` when
    given. ``threads`` defaults to 1 on machines with up to 2 cores (the step loop keeps the other
    one), else ``min(4, cores // 2)``; "auto" adds threads only while the caller is blocked at the
    fastest preset. Each clip's metadata records the settings used (``"encoder"``).
    ``samples``: also send the clip's H.264 samples back to the training process (for Rerun's
    ``VideoStream``; see :mod:`episode_recorder.sinks.h264`): no B-frames and a keyframe at least
    every 2 s then.

    >>> VideoOptions(format="webm", fps=50).extension
    'webm'
    """

    format: str = "mp4"
    fps: float = 30.0
    crf: int | None = None
    preset: str | None = AUTO
    bitrate: int | None = None
    threads: int | None = None
    samples: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.format, str):
            raise TypeError(f"format must be one of {', '.join(FORMATS)}, received {self.format!r}.")
        object.__setattr__(self, "format", self.format.lower())  # "MP4" is "mp4"
        if self.format not in FORMATS:
            raise ValueError(f"Unknown video format {self.format!r}: choose one of {', '.join(FORMATS)}.")
        if not self.fps or self.fps <= 0:
            raise ValueError(f"fps must be a positive number, received {self.fps!r}.")
        if self.preset is None:
            object.__setattr__(self, "preset", AUTO)

    @property
    def extension(self) -> str:
        return self.format

    @property
    def adaptive(self) -> bool:
        return self.preset == AUTO


@dataclass(frozen=True)
class EncoderSetting:
    """What the encoder actually runs with: a concrete preset and a thread count."""

    preset: str
    threads: int


# "auto" chooses among these, best quality first. The H.264 steps but the last share one set of
# stream headers (SPS/PPS: no B-frames, no lookahead, 1 reference, CABAC, 8x8 transform), so the
# encoder switches between them inside a clip; the last, x264's own "ultrafast" (CAVLC, no 8x8
# transform, no weighted prediction: 15-40% cheaper than "ultrafast" with the shared headers, 1.5x
# the bytes), has other headers and starts with the next clip. VP9 steps switch at a key frame.
ULTRAFAST_CAVLC = "ultrafast-cavlc"
AUTO_PRESETS = {
    "mp4": ("veryfast", "superfast", "ultrafast", ULTRAFAST_CAVLC),  # with the shared headers "faster" costs 1.4x for the same PSNR and size
    "webm": ("6", "7", "8"),
    "gif": ("octree",),  # measured: other palettes cost as much (GIF's LZW is half the cost) or look worse
}
AUTO_START = {"mp4": "veryfast", "webm": "8", "gif": "octree"}  # the first clip's setting
_X264_AUTO_HEADERS = "bframes=0:ref=1:weightp=1:8x8dct=1:cabac=1:stitchable=1:force-cfr=1"
_X264_OWN_ULTRAFAST = "bframes=0:force-cfr=1"
# force-cfr: our frames come at a constant rate; without it x264 holds every frame until the next
# one arrives (to learn its duration), so ending a clip encoded two frames instead of one.


def partial_path(path: str) -> str:
    """Where a clip interrupted by a crash is saved: ``ep.mp4`` -> ``ep.partial.mp4``."""
    stem, extension = os.path.splitext(path)
    return f"{stem}.partial{extension}"


def temp_path_of(path: str) -> str:
    """The hidden name a clip is written under until it is complete: ``ep.mp4`` -> ``.ep.mp4.part``."""
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.part")


def numbered(path: str) -> Iterator[str]:
    """``path``, then ``<stem>-1<ext>``, ``<stem>-2<ext>``, ...: the names tried when one is taken."""
    yield path
    stem, extension = os.path.splitext(path)
    index = 1
    while True:
        yield f"{stem}-{index}{extension}"
        index += 1


def claim_path(path: str) -> tuple[str, int]:
    """Reserve the first free name among :func:`numbered` ``(path)``; returns it and a lock on its file.

    A name is free when neither it nor its temporary ``.<name>.part`` exists. The temporary file is
    created exclusively (``O_EXCL``) before the final name is checked, so two recorders (threads,
    processes) can never get the same name. The returned descriptor holds an ``flock`` on the
    temporary file for as long as it is open: :func:`episode_recorder.recover.recover` skips locked
    files. Close it (or hand it to the encoder) when the clip ends.

        >>> import tempfile, os
        >>> folder = tempfile.mkdtemp()
        >>> first, lock = claim_path(os.path.join(folder, "ep.mp4"))
        >>> second, lock_2 = claim_path(os.path.join(folder, "ep.mp4"))
        >>> os.path.basename(first), os.path.basename(second)
        ('ep.mp4', 'ep-1.mp4')
    """
    for candidate in numbered(path):
        temp = temp_path_of(candidate)
        try:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            continue
        if not os.path.lexists(candidate):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a file we just created: never blocks
            return candidate, fd
        os.close(fd)
        os.remove(temp)
    raise AssertionError("unreachable")


def publish(temp: str, final: str) -> str:
    """Move the complete file ``temp`` to the first free name among :func:`numbered` ``(final)``.

    Never replaces an existing file (a hard link fails if the name is taken); returns the name used.
    """
    for candidate in numbered(final):
        try:
            os.link(temp, candidate)
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links
            if os.path.lexists(candidate):
                continue
            os.replace(temp, candidate)
            return candidate
        os.remove(temp)
        return candidate
    raise AssertionError("unreachable")


def remux(source: str, target: str, format: str, complete: bool = True) -> int:
    """Copy the video packets of ``source`` into a new ``target`` file (no re-encoding); returns how many.

    ``complete=False``: ``source`` may have been cut short by a crash. It is read as far as it is
    readable (an MP4 cut inside a fragment is first truncated to its last whole fragment), and
    the copy ends at a frame that every frame shown before it is there: the last B-frames of a
    cut-off MP4 and a cut-off GIF's last frame, which may be incomplete, are left out. MP4
    targets are written "faststart" (index first) so browsers play them at once.
    """
    import av

    if not complete and format == "mp4":
        try:
            av.open(source).close()
        except av.error.FFmpegError:
            if not _truncate_to_whole_boxes(source):
                raise
    options = {"movflags": "+faststart"} if format == "mp4" else {}
    packets = 0
    with av.open(source) as reader, av.open(target, "w", format=format, container_options=options) as writer:
        (stream,) = reader.streams.video[:1] or [None]
        if stream is None:
            return 0
        output = writer.add_stream_from_template(stream)
        held: list[Any] = []  # read, not muxed yet: a frame shown before them may still be missing
        shown = _ShownWithoutGaps()
        try:
            for packet in reader.demux(stream):
                if packet.is_corrupt:
                    break
                if packet.dts is None or packet.size == 0:
                    continue
                packet.stream = output
                held.append(packet)
                if format == "gif" or shown.add(packet.pts, packet.duration):
                    ready = held[:-1] if format == "gif" else held  # a GIF's newest frame may be cut short
                    for item in ready:
                        writer.mux(item)
                    packets += len(ready)
                    del held[: len(ready)]
        except (av.error.FFmpegError, EOFError):
            pass  # the rest of the file was cut off
        if complete or (format == "gif" and _ends_with_gif_trailer(source)):  # else the tail may be cut
            for item in held:
                writer.mux(item)
            packets += len(held)
    return packets


class _ShownWithoutGaps:
    """Whether the frames read so far are all the frames shown up to the latest of them.

    Packets come in decode order; with B-frames a frame is read before frames shown earlier, so
    a stream cut there lacks frames in the middle. ``add`` says when there is no such gap.
    """

    def __init__(self) -> None:
        self.complete_until: float | None = None  # every frame shown up to this time has been read
        self.ahead: list[int] = []  # times read beyond it (a heap)
        self.step = 0

    def add(self, pts: int | None, duration: int | None) -> bool:
        if pts is None:
            return True
        self.step = self.step or duration or 0
        if self.complete_until is None:
            self.complete_until = pts - self.step
        heapq.heappush(self.ahead, pts)
        while self.ahead and self.ahead[0] <= self.complete_until + 1.5 * self.step:
            self.complete_until = max(self.complete_until, heapq.heappop(self.ahead))
        return not self.ahead or not self.step


def _truncate_to_whole_boxes(path: str) -> bool:
    """Cut an MP4 after its last complete top-level box; False if nothing was cut."""
    size = os.path.getsize(path)
    end = 0
    with open(path, "rb") as file:
        while end + 8 <= size:
            file.seek(end)
            header = file.read(16)
            (length,) = struct.unpack(">I", header[:4])
            if length == 1 and len(header) == 16:
                (length,) = struct.unpack(">Q", header[8:16])
            if length < 8 or end + length > size:
                break
            end += length
    if end in (0, size):
        return False
    os.truncate(path, end)
    return True


def _ends_with_gif_trailer(path: str) -> bool:
    with open(path, "rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b";"


class VideoFileEncoder:
    """Encodes RGB frames into one file, written under a hidden temporary name until ``close()``.

    ``setting`` (default: the options' preset, or the "auto" start) can be changed inside the clip
    with :meth:`switch`. ``encode_seconds`` is the time spent in :meth:`write` (colour conversion
    and encoding). ``on_sample`` (mp4 only): each encoded packet also goes out as an H.264
    sample (see :mod:`episode_recorder.sinks.h264`).

    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "clip.webm")
    >>> encoder = VideoFileEncoder(path, 48, 64, VideoOptions(format="webm"))
    >>> for t in range(5):
    ...     encoder.write(np.full((48, 64, 3), 40 * t, np.uint8))
    >>> encoder.close() == path, encoder.frames, encoder.setting.preset
    (True, 5, '8')
    """

    def __init__(
        self,
        path: str,
        height: int,
        width: int,
        options: VideoOptions,
        lock_fd: int | None = None,
        setting: EncoderSetting | None = None,
        on_sample: Callable[[Any], None] | None = None,
    ) -> None:
        import av
        from av.video.reformatter import VideoReformatter

        if lock_fd is None:  # not claimed yet: take the first free name (see claim_path)
            path, lock_fd = claim_path(path)
        self.path = path
        self.temp_path = temp_path_of(path)
        self._lock_fd: int | None = lock_fd
        self.frames = 0
        self.encode_seconds = 0.0
        self.options = options
        self.setting = setting or initial_setting(options)
        self.settings_used: list[tuple[EncoderSetting, int]] = [(self.setting, 0)]  # (setting, first frame)
        self._size = (height, width)
        self._pad = (0, 0)
        self._on_sample = on_sample
        self._reformatter = VideoReformatter()
        self._copy: _FaststartCopy | None = None  # mp4: the ordinary file written beside the fragmented one
        self._copy_wanted = options.format == "mp4"
        rate = Fraction(options.fps).limit_denominator(1001)
        self._time_base = 1 / rate
        try:
            self._container = av.open(
                self.temp_path, "w", format=options.format, container_options=_playable_while_written(options)
            )
        except BaseException:
            self._unlock()
            os.remove(self.temp_path)
            raise
        try:
            if options.format == "gif":
                self._stream = self._container.add_stream("gif", rate=rate)
                self._stream.pix_fmt = "pal8"
            else:
                self._stream = self._container.add_stream(_CODECS[options.format], rate=rate)
                self._stream.pix_fmt = "yuv420p"
                self._pad = (height % 2, width % 2)
                _configure(self._stream.codec_context, options, self.setting)
            self._stream.height = height + self._pad[0]
            self._stream.width = width + self._pad[1]
            self._context = self._stream.codec_context
        except BaseException:
            self.abort()
            raise

    def write(self, rgb: np.ndarray, hurry: bool = False) -> None:
        """Encode one HxWx3 uint8 frame of the size given at construction.

        ``hurry``: a caller is waiting for this frame (the clip's last): convert it on every core.
        """
        started = time.perf_counter()
        if rgb.shape != (*self._size, 3):
            raise ValueError(f"Frame of shape {rgb.shape} in a clip of size {self._size}.")
        if self.options.format == "gif":
            frame = self._gif_frame(rgb)
        else:
            frame = yuv420p_frame(self._reformatter, rgb, self._pad, self.setting, hurry)
        frame.pts = self.frames
        frame.time_base = self._time_base
        self._mux(frame)
        self.frames += 1
        self.encode_seconds += time.perf_counter() - started

    def switch(self, setting: EncoderSetting) -> bool:
        """Use ``setting`` from the next frame on; False if this codec cannot change it inside a clip.

        H.264 and VP9 restart with a key frame from a fresh codec context, accepted only when its
        stream headers equal the file's (a player then decodes the clip as one stream).
        """
        if setting == self.setting:
            return True
        if self.options.format != "gif":
            import av

            context = av.CodecContext.create(_CODECS[self.options.format], "w")
            for name in ("width", "height", "pix_fmt", "framerate", "flags"):
                setattr(context, name, getattr(self._context, name))
            context.time_base = self._time_base
            _configure(context, self.options, setting)
            context.open()
            if bytes(context.extradata or b"") != bytes(self._stream.codec_context.extradata or b""):
                return False
            self._mux(None)  # the old context's delayed frames
            self._context = context
        self.setting = setting
        self.settings_used.append((setting, self.frames))
        return True

    def report(self) -> dict[str, Any]:
        """The settings this clip was encoded with, for its metadata."""
        return {
            "codec": _CODECS.get(self.options.format, "gif"),
            "preset": self.setting.preset,
            "threads": self.setting.threads,
            "crf": None if self.options.bitrate or self.options.format == "gif" else _crf(self.options),
            "bitrate": self.options.bitrate,
            "adaptive": self.options.adaptive,
            "settings": [{"preset": s.preset, "threads": s.threads, "from_frame": first} for s, first in self.settings_used],
            "encode_ms_per_frame": round(1000 * self.encode_seconds / max(1, self.frames), 3),
        }

    def close(self) -> str:
        """Flush, close and move the file to its final name; returns that name."""
        return self._finish(self.path, complete=True)

    def salvage(self) -> str:
        """Finish an interrupted clip as a complete, playable ``<name>.partial.<format>``."""
        return self._finish(partial_path(self.path), complete=False)

    def abort(self, keep: bool = False) -> None:
        """Drop the clip: nothing is left on disk (``keep``: leave the temporary file for ``recover``)."""
        self._drop_copy()
        try:
            self._container.close()
        except Exception:
            pass
        if not keep and os.path.exists(self.temp_path):
            os.remove(self.temp_path)
        self._unlock()

    def _finish(self, final_path: str, complete: bool) -> str:
        self._mux(None)
        self._container.close()
        if complete and self._copy is not None:
            self._use_copy()
        else:  # a partial clip: the fragmented file, cut where the run stopped
            self._drop_copy()
        path = publish(self.temp_path, final_path)
        self._unlock()
        return path

    def _use_copy(self) -> None:
        """Put the ordinary faststart MP4 in place of the fragmented temporary file."""
        copy, self._copy = self._copy, None
        try:
            copy.close()
            os.replace(copy.path, self.temp_path)
        except Exception:  # e.g. a full disk: the fragmented file is complete and plays as well
            copy.drop()
            return
        self._unlock()
        self._lock_fd = copy.lock_fd  # now the lock on the file at temp_path

    def _drop_copy(self) -> None:
        if self._copy is not None:
            self._copy.drop()
            self._copy = None

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _gif_frame(self, rgb: np.ndarray) -> Any:
        import av

        return av.VideoFrame.from_ndarray(_quantize(rgb), format="pal8")

    def _mux(self, frame: Any) -> None:
        for packet in self._context.encode(frame):
            if self._on_sample is not None:  # before muxing, which rescales the timestamps
                from episode_recorder.sinks.h264 import sample_of

                self._on_sample(sample_of(packet, self._context.extradata))
            copy = _copy_of(packet) if self._copy_wanted else None
            packet.stream = self._stream
            self._container.mux(packet)  # muxing takes the packet's data
            if copy is not None:
                self._mux_copy(copy)

    def _mux_copy(self, packet: Any) -> None:
        try:
            if self._copy is None:  # after the first packet: the stream's parameters are known
                self._copy = _FaststartCopy(self.temp_path + ".tmp", self._stream)
            self._copy.mux(packet)
        except OSError:  # e.g. a full disk: the fragmented file alone becomes the clip
            self._copy_wanted = False
            self._drop_copy()


class _FaststartCopy:
    """An ordinary MP4 (index first) muxed beside the fragmented temporary file, packet for packet.

    The fragmented file is what survives a crash; this one is what a finished clip becomes. Its
    index is written when it closes (about 1 ms), where remuxing the fragmented file after the
    clip would make the call that ends a recording wait 8-14 ms per 300 frames at 480x640.
    """

    def __init__(self, path: str, template: Any) -> None:
        import av

        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # recover() leaves a locked .part.tmp alone
        self.lock_fd: int | None = fd
        self.container: Any = None
        try:
            self.container = av.open(path, "w", format="mp4", container_options={"movflags": "+faststart"})
            self.stream = self.container.add_stream_from_template(template)
        except BaseException:
            self.drop()
            raise

    def mux(self, packet: Any) -> None:
        packet.stream = self.stream
        self.container.mux(packet)

    def close(self) -> None:
        self.container.close()

    def drop(self) -> None:
        try:
            if self.container is not None:
                self.container.close()
        except Exception:
            pass
        if os.path.exists(self.path):
            os.remove(self.path)
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def _copy_of(packet: Any) -> Any:
    import av

    copy = av.Packet(bytes(packet))
    copy.pts, copy.dts, copy.duration, copy.time_base = packet.pts, packet.dts, packet.duration, packet.time_base
    copy.is_keyframe = packet.is_keyframe
    return copy


def rgb_frame(rgb: np.ndarray, pad: tuple[int, int]) -> Any:
    """An rgb24 ``av.VideoFrame`` over ``rgb``'s own memory, padded by repeating the last ``pad`` =
    (rows, columns). No copy (``from_ndarray`` copied: 0.3-0.5 ms of a 480x640 frame's ~2 ms
    conversion): the frame is valid while ``rgb`` is, so convert or encode it before the buffer
    (a ring slot) is handed back."""
    import av

    if any(pad):
        rgb = np.pad(rgb, ((0, pad[0]), (0, pad[1]), (0, 0)), mode="edge")
    return av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(rgb), format="rgb24")


def yuv420p_frame(
    reformatter: Any, rgb: np.ndarray, pad: tuple[int, int], setting: EncoderSetting, hurry: bool = False
) -> Any:
    """``rgb`` (see :func:`rgb_frame`) converted for H.264 / VP9 with the setting's threads, or with
    every core for a frame a caller waits for (``hurry``: a clip's last), whose cores are idle meanwhile."""
    threads = max(1, min(8, os.cpu_count() or 1)) if hurry else setting.threads
    # swscale bilinear: "point" converts 20-35% faster but loses 0.7-1.9 dB, "fast_bilinear" is no faster.
    return reformatter.reformat(rgb_frame(rgb, pad), format="yuv420p", threads=threads)


def _playable_while_written(options: VideoOptions) -> dict[str, str]:
    """Muxer options that keep the file being written decodable up to about its last second."""
    flushed = {"flush_packets": "1"}  # each finished fragment / cluster / frame goes to the OS at once
    if options.format == "mp4":  # a fragment a second, whatever the keyframe interval (kept as it is)
        return {**flushed, "movflags": "empty_moov+default_base_moof", "frag_duration": "1000000"}
    if options.format == "webm":
        return {**flushed, "cluster_time_limit": "1000"}
    return flushed


_CODECS = {"mp4": "libx264", "webm": "libvpx-vp9"}


def initial_setting(options: VideoOptions) -> EncoderSetting:
    """The setting a clip starts with when nothing has been measured yet ("auto": ``AUTO_START``)."""
    preset = AUTO_START[options.format] if options.adaptive or options.format == "gif" else str(options.preset)
    return EncoderSetting(preset, options.threads or _default_threads())


def _crf(options: VideoOptions) -> int:
    return options.crf if options.crf is not None else (23 if options.format == "mp4" else 32)


def _configure(context: Any, options: VideoOptions, setting: EncoderSetting, lookahead: int = 0) -> None:
    """Codec options, rate control and threads of an H.264 / VP9 codec context (before it opens).

    ``lookahead``: frames of x264 lookahead under "auto" (none by default: ending a clip then
    encodes its last frame only); an explicit preset keeps its own.
    """
    if options.format == "mp4":
        if setting.preset == ULTRAFAST_CAVLC:  # x264's own ultrafast: its own stream headers
            preset, params = "ultrafast", f"{_X264_OWN_ULTRAFAST}:rc-lookahead={lookahead}"
        elif options.adaptive:
            preset, params = setting.preset, f"{_X264_AUTO_HEADERS}:rc-lookahead={lookahead}"
        else:
            preset, params = setting.preset, "bframes=0:force-cfr=1"
        settings = {"preset": preset, "x264-params": params}
        if options.samples:  # streamed samples: in frame order, decodable from a keyframe every 2 s
            from episode_recorder.sinks.h264 import streaming_codec_options

            settings.update(streaming_codec_options(options.fps))
    else:
        # No frame lag: the end of a clip costs one frame, not lag-in-frames (25) frames.
        settings = {"deadline": "realtime", "cpu-used": setting.preset, "row-mt": "1", "lag-in-frames": "0"}
    if options.bitrate:
        context.bit_rate = int(options.bitrate)
    else:
        settings["crf"] = str(_crf(options))
        if options.format == "webm":
            settings["b"] = "0"  # constant quality
    context.options = settings
    # Slices rather than frames when "auto" adds threads: no extra frames to flush at the end.
    context.thread_type = "SLICE" if options.adaptive and options.format == "mp4" and setting.threads > 1 else "AUTO"
    context.thread_count = setting.threads


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
    """A clip's frames in anonymous shared memory: ``slots`` frame buffers, a 'taken' counter and
    the encoder's recent cost per frame (``encode_us``, an average the encoder process keeps).

    The memory is a ``memfd`` (no name in /dev/shm, so nothing can outlive both processes); the
    parent creates it and sends its descriptor to the encoder process, which maps it with ``fd``.
    """

    def __init__(self, slots: int, height: int, width: int, fd: int | None = None) -> None:
        size = _HEADER_BYTES + slots * height * width * 3
        self.fd = _anonymous_memory(size) if fd is None else fd
        self.memory = mmap.mmap(self.fd, size)
        self.taken = np.ndarray((1,), np.int64, self.memory, 0)
        self.encode_us = np.ndarray((1,), np.int64, self.memory, 8)
        self.frames = np.ndarray((slots, height, width, 3), np.uint8, self.memory, _HEADER_BYTES)
        self.slots = slots
        self.written = 0
        self.in_flight: collections.deque[int] = collections.deque()  # slots of frames not taken yet, oldest first

    def free_slot(self) -> int:
        """The lowest slot whose frame the encoder has taken: only as many slots as frames are ever
        queued at once are touched, so a ring of big frames costs the memory of its queue, not of
        ``slots`` frames."""
        while len(self.in_flight) > self.written - int(self.taken[0]):
            self.in_flight.popleft()
        used = set(self.in_flight)
        return next(slot for slot in range(self.slots) if slot not in used)

    def close_fd(self) -> None:
        """Close the descriptor (the mapping stays): once the other side has its own copy."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def release(self) -> None:
        del self.taken, self.encode_us, self.frames
        self.memory.close()
        self.close_fd()


def _anonymous_memory(size: int) -> int:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("episode-recorder-ring", os.MFD_CLOEXEC)
    else:  # no memfd (macOS): an already-unlinked temporary file
        with tempfile.TemporaryFile(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as file:
            fd = os.dup(file.fileno())
    os.ftruncate(fd, size)
    return fd


def encode_message(message: tuple[Any, ...]) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return struct.pack("<I", len(payload)) + payload


def send_message(fd: int, message: tuple[Any, ...]) -> None:
    data = memoryview(encode_message(message))
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


class EncoderInheritedByFork(RuntimeError):
    """This handle was inherited through ``fork()``: its encoder process belongs to the parent."""


_handles: weakref.WeakSet[VideoEncoderProcess] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for handle in list(_handles):
        handle._detach_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class VideoEncoderProcess:
    """Parent-side handle of the encoder process; each clip gets a ring of ``queue_frames`` frames.

    ``write`` copies one frame into the ring and returns at once; when the ring is full it waits
    for the encoder (``when_full="wait"``, nothing lost; then at most ``QUEUED_WORK_SECONDS`` of
    encoding, at the encoder's recent cost per frame, is queued, and fewer over the last frames of
    a clip of known length, so that finishing a clip waits little) or skips the frame and returns False (``when_full="drop"``). Results arrive as tuples from :meth:`results` / :meth:`wait`:
    ``("saved", clip, path, frames, encoder_report)``, ``("aborted", clip)``, ``("failed", clip, error)``,
    and for clips opened with ``VideoOptions(samples=True)`` ``("samples", clip, [(pts, keyframe, data), ...])``
    for its encoded frames (a batch at a time), before the clip's ``saved``. ``path=None`` opens a clip of samples only.

    The process runs in its own session (signals sent to the job's process group do not reach it)
    and ignores SIGINT/SIGTERM/SIGHUP; it ends when told to (:meth:`shutdown`) or when this process
    goes away, after finishing open clips as ``<name>.partial.<format>``. In a ``fork()``-ed child
    the handle lets go of the process at once (the parent keeps it) and every call raises
    :class:`EncoderInheritedByFork`; ``Recorder`` then starts the child's own encoder.
    """

    def __init__(self, queue_frames: int = 16, when_full: WhenFull = "wait") -> None:
        if when_full not in ("wait", "drop"):
            raise ValueError(f"when_full must be 'wait' or 'drop', received {when_full!r}.")
        if queue_frames < 1:
            raise ValueError(f"queue_frames must be at least 1, received {queue_frames}.")
        self.queue_frames = queue_frames
        self.when_full = when_full
        self._rings: dict[int, _Ring] = {}
        self._cost_us: dict[tuple[int, int], int] = {}  # (height, width) -> the last clip's cost per frame
        self._next_clip = 0
        self._results: collections.deque[tuple[Any, ...]] = collections.deque()
        self._arrived = threading.Condition()
        self.forked = False
        self._owner_pid = os.getpid()
        self._commands, command_read = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._command_fd = self._commands.fileno()
        result_read, result_write = os.pipe()
        self._result_fd = [result_read]  # emptied by the reader thread just before it closes it
        # The encoder writes a byte here for every frame it finishes: a write() waiting for a free
        # slot sleeps on it instead of polling the ring.
        self._wake_fd, wake_write = os.pipe()
        os.set_blocking(self._wake_fd, False)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        # No BLAS thread pool: the encoder does no linear algebra, and numpy's OpenBLAS threads
        # spin for ~50 ms after start, taking a core from the first steps (measured: 12 ms of a step).
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self._process = subprocess.Popen(
            [
                sys.executable, "-m", "episode_recorder.sinks._video_worker",
                str(command_read.fileno()), str(result_write), str(self._owner_pid), str(wake_write),
            ],
            pass_fds=(command_read.fileno(), result_write, wake_write),
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # killpg / a terminal hangup of the job do not reach it
        )
        command_read.close()
        os.close(result_write)
        os.close(wake_write)
        ready = threading.Event()
        self._reader = threading.Thread(
            target=_read_results,
            args=(self._result_fd, self._results, self._arrived, self._process, ready),
            name="episode-recorder-results",
            daemon=True,
        )
        self._reader.start()
        self._finalizer = weakref.finalize(self, self._commands.close)
        _handles.add(self)
        # Wait for the process to finish its imports here, so that no step() waits for it later.
        while not ready.wait(0.05):
            self._check_alive()

    def open(
        self, path: str | None, height: int, width: int, options: VideoOptions, lock_fd: int | None = None
    ) -> int:
        """Start a clip saved at ``path`` (or the first free name after it, see :func:`claim_path`).

        ``lock_fd``: ``path`` was claimed already with :func:`claim_path`, which returned this
        descriptor; it is handed to the encoder process (and closed here). ``path=None``: a clip of
        H.264 samples only (``options.samples`` must be set; no file, no name to claim). Returns
        the clip's id.
        """
        self._check_alive()
        if path is None and not options.samples:
            raise ValueError("A clip without a path must send samples: pass VideoOptions(samples=True) or a path.")
        if path is not None and lock_fd is None:
            path, lock_fd = claim_path(path)
        fds = () if lock_fd is None else (lock_fd,)
        clip = self._next_clip
        self._next_clip += 1
        try:
            ring = _Ring(self.queue_frames, height, width)
        except BaseException:
            if path is not None and lock_fd is not None:
                os.close(lock_fd)
                os.remove(temp_path_of(path))
            raise
        ring.encode_us[0] = self._cost_us.get((height, width), 0)  # until the encoder measures this clip
        self._rings[clip] = ring
        try:
            self._send(("open", clip, ring.slots, height, width, path, asdict(options)), fds=(ring.fd, *fds))
        finally:
            ring.close_fd()
            for fd in fds:
                os.close(fd)
        return clip

    def write(self, clip: int, rgb: np.ndarray, frames_left: int | None = None) -> bool:
        """Copy ``rgb`` into the clip's ring and queue it; False if dropped because the ring was full.

        ``frames_left``: the clip ends after this many frames (this one included), when known: with
        "wait" no more frames than that are queued, so the queue drains over the clip's last frames
        and the call ending it waits for its last frame only.
        """
        ring = self._rings[clip]
        if rgb.shape != ring.frames.shape[1:]:
            raise ValueError(f"Frame of shape {rgb.shape} in a clip of shape {ring.frames.shape[1:]}.")
        room = self._room(ring, frames_left)
        waited = False
        while ring.written - int(ring.taken[0]) >= room:
            if self.when_full == "drop":
                return False
            waited = True
            self._sleep_until_a_frame_is_encoded()
        slot = ring.free_slot()
        np.copyto(ring.frames[slot], rgb)
        ring.written += 1
        ring.in_flight.append(slot)
        # The encoder's speed control wants to know it waited; the clip's last frame is converted on every core.
        self._send(("frame", clip, slot, waited, frames_left == 1))
        return True

    def _sleep_until_a_frame_is_encoded(self) -> None:
        """Block (no CPU) until the encoder finishes a frame, at most 0.1 s; a stale byte makes the
        caller look at the ring once more and come back."""
        self._check_alive()
        select.select([self._wake_fd], [], [], 0.1)
        try:
            os.read(self._wake_fd, 1 << 16)
        except BlockingIOError:
            pass

    def _room(self, ring: _Ring, frames_left: int | None = None) -> int:
        """Frames that may be queued: all slots, but with "wait" no more than the encoder finishes
        in ``QUEUED_WORK_SECONDS`` (at least 3: a stall of the machine is absorbed) and no more than
        the clip's ``frames_left``, so that the call ending a clip never waits for a long backlog."""
        if self.when_full == "drop":
            return ring.slots
        cost_us = int(ring.encode_us[0])
        room = ring.slots  # nothing measured at this size yet (the codec's start-up frames are not a measure)
        if cost_us > 0:
            room = min(room, max(3, int(QUEUED_WORK_SECONDS * 1e6) // cost_us))
        return room if frames_left is None else min(room, max(1, frames_left))

    def close(self, clip: int) -> None:
        """Finish the clip; its ``saved`` result arrives once the file is under its final name."""
        self._send(("close", clip))

    def abort(self, clip: int) -> None:
        """Drop the clip and its temporary file."""
        self._send(("abort", clip))

    def results(self) -> list[tuple[Any, ...]]:
        """Results that have arrived since the last call (never blocks)."""
        if self.forked:
            raise self._inherited()
        found = []
        while self._results:
            result = self._results.popleft()
            if result[0] not in ("died", "samples"):
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
                if result[0] != "samples":
                    pending.discard(result[1])
        return found

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop the process once it has finished the clips it was given."""
        if self.forked:  # the parent's process: not ours to stop
            for clip in list(self._rings):
                self._release(clip)
            return
        if self._finalizer.alive:
            try:
                self._send(("quit",))
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
        self._close_wake_fd()

    def _close_wake_fd(self) -> None:
        if self._wake_fd >= 0:
            os.close(self._wake_fd)
            self._wake_fd = -1

    def _send(self, message: tuple[Any, ...], fds: tuple[int, ...] = ()) -> None:
        if self.forked:
            raise self._inherited()
        data = memoryview(encode_message(message))
        try:
            if fds:
                data = data[socket.send_fds(self._commands, [data], list(fds)) :]
            self._commands.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self._process.wait()
            self._check_alive()
            raise

    def _inherited(self) -> EncoderInheritedByFork:
        return EncoderInheritedByFork(
            f"This video encoder was created by process {self._owner_pid}, before it forked this "
            f"process ({os.getpid()}); its clips belong to that process. Create the wrapper in the "
            "child (or use a Recorder, which starts the child's own encoder on first use)."
        )

    def _detach_after_fork(self) -> None:
        """In a forked child: let go of the parent's encoder without touching it."""
        self.forked = True
        if self._finalizer.detach() is not None:  # still open (a closed one's number may be reused)
            self._commands.close()
        self._close_wake_fd()
        for fd in self._result_fd:  # its owner (the parent's reader thread) is not in this process
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, fd, inheritable=False)
            os.close(devnull)

    def _check_alive(self) -> None:
        if self.forked:
            raise self._inherited()
        code = self._process.poll()
        if code is not None:
            raise EncoderProcessDied(
                f"The video encoder process exited with code {code}; clips in progress are lost "
                "(their temporary .part files are left in the output folder)."
            )

    def _release(self, clip: int) -> None:
        ring = self._rings.pop(clip, None)
        if ring is not None:
            if int(ring.encode_us[0]) > 0:
                self._cost_us[ring.frames.shape[1:3]] = int(ring.encode_us[0])
            # Unmapping frees the frames' pages (~1 ms per 3.7 MB slot touched): not on the path of
            # the call that waits for the clip (munmap runs without the GIL).
            try:
                threading.Thread(target=ring.release, name="episode-recorder-unmap", daemon=True).start()
            except RuntimeError:  # no new threads at interpreter shutdown
                ring.release()


def _read_results(
    fds: list[int], results: collections.deque, arrived: threading.Condition, process: Any, ready: threading.Event
) -> None:
    stream = os.fdopen(fds[0], "rb")
    try:
        if read_message(stream) == ("ready",):
            ready.set()
        while (message := read_message(stream)) is not None:
            if message[0] == "log":  # ("log", level, text): e.g. the encoder adapting its speed
                logging.getLogger("episode_recorder").log(message[1], message[2])
                continue
            with arrived:
                results.append(message)
                arrived.notify_all()
    finally:
        fds.clear()  # first: a fork from now on must not touch the number
        stream.close()
    process.wait()
    with arrived:
        if process.returncode != 0:
            results.append(("died", process.returncode))
        arrived.notify_all()
