"""H.264 samples for streaming (Rerun's ``VideoStream``): the encoder process's side.

A *sample* is one encoded frame as ``(pts, keyframe, data)``: ``pts`` is the frame's index in
its clip, ``data`` an Annex B access unit (start codes), with SPS/PPS in-band on keyframes so
that decoding can start at any keyframe. Streamed clips have no B-frames (samples arrive in
frame order) and a keyframe at their first frame and at least every ``KEYFRAME_SECONDS``.

A clip of an mp4 file is encoded once: the file's own packets become the samples (libx264 puts
SPS/PPS in the container's extradata then, so it is prepended to keyframes). A webm or gif file
(VP9 / GIF) cannot give H.264 samples: those clips are encoded a second time, to H.264, in the
encoder process. A clip without a file is encoded to samples only.

    >>> import numpy as np
    >>> samples = []
    >>> encoder = open_clip_encoder(None, 48, 64, VideoOptions(fps=10), samples.append)
    >>> for t in range(25):
    ...     encoder.write(np.full((48, 64, 3), 10 * t, np.uint8))
    >>> encoder.close() is None, [pts for pts, keyframe, _ in samples if keyframe]
    (True, [0, 20])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from typing import Any

import numpy as np

from episode_recorder.sinks.video import VideoFileEncoder, VideoOptions, _codec_options, _default_threads, rgb_frame

KEYFRAME_SECONDS = 2.0
Sample = tuple[int, bool, bytes]
SampleCallback = Callable[[Sample], None]


def streaming_codec_options(fps: float) -> dict[str, str]:
    """libx264 options for streamed samples: no B-frames, a keyframe at least every 2 s."""
    return {"bf": "0", "g": str(max(1, round(KEYFRAME_SECONDS * fps)))}


def sample_of(packet: Any, extradata: bytes | None) -> Sample:
    """A packet as a sample; ``extradata`` (global-header SPS/PPS, Annex B) goes before keyframes."""
    data = bytes(packet)
    if packet.is_keyframe and extradata:
        data = bytes(extradata) + data
    return int(packet.pts), bool(packet.is_keyframe), data


class H264SampleEncoder:
    """Encodes RGB frames to H.264 samples only (no file): same quality settings as mp4 files."""

    def __init__(self, height: int, width: int, options: VideoOptions, on_sample: SampleCallback) -> None:
        import av

        self.frames = 0
        self._on_sample = on_sample
        self._size = (height, width)
        self._pad = (height % 2, width % 2)
        rate = Fraction(options.fps).limit_denominator(1001)
        context = av.CodecContext.create("libx264", "w")
        context.width, context.height = width + self._pad[1], height + self._pad[0]
        context.pix_fmt = "yuv420p"
        context.framerate, context.time_base = rate, 1 / rate
        context.options = {**_codec_options(replace(options, format="mp4")), **streaming_codec_options(options.fps)}
        if options.bitrate:
            context.bit_rate = int(options.bitrate)
        context.thread_type = "AUTO"
        context.thread_count = options.threads or _default_threads()
        self._context = context

    def write(self, rgb: np.ndarray) -> None:
        if rgb.shape != (*self._size, 3):
            raise ValueError(f"Frame of shape {rgb.shape} in a clip of size {self._size}.")
        frame = rgb_frame(rgb, self._pad)
        frame.pts = self.frames
        self._send(frame)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder's last samples (there is no file: returns None)."""
        self._send(None)

    def salvage(self) -> None:
        """Nothing to salvage: the samples went out as they were encoded."""

    def abort(self) -> None:
        """Nothing on disk to remove."""

    def _send(self, frame: Any) -> None:
        for packet in self._context.encode(frame):
            self._on_sample(sample_of(packet, None))  # no global header: SPS/PPS are in-band


class _FileAndSamples:
    """A webm/gif file plus a second, H.264 encode of the same frames into samples."""

    def __init__(self, file: VideoFileEncoder, samples: H264SampleEncoder) -> None:
        self.file, self.samples = file, samples

    @property
    def frames(self) -> int:
        return self.file.frames

    def write(self, rgb: np.ndarray) -> None:
        self.file.write(rgb)
        self.samples.write(rgb)

    def close(self) -> str:
        self.samples.close()
        return self.file.close()

    def salvage(self) -> str:
        return self.file.salvage()

    def abort(self) -> None:
        self.file.abort()


def open_clip_encoder(
    path: str | None, height: int, width: int, options: VideoOptions, on_sample: SampleCallback | None
) -> Any:
    """The encoder of one clip: a file (``path``), H.264 samples (``on_sample``), or both.

    Every kind has ``write(rgb)``, ``close()`` (the final path, or None without a file),
    ``salvage()``, ``abort()`` and ``frames``.
    """
    if on_sample is None:
        if path is None:
            raise ValueError("A clip needs a file path, a sample callback, or both.")
        return VideoFileEncoder(path, height, width, options)
    if path is None:
        return H264SampleEncoder(height, width, options, on_sample)
    if options.format == "mp4":
        return VideoFileEncoder(path, height, width, options, on_sample=on_sample)
    file = VideoFileEncoder(path, height, width, options)
    try:
        return _FileAndSamples(file, H264SampleEncoder(height, width, options, on_sample))
    except BaseException:
        file.abort()
        raise
