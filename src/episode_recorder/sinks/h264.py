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

import time

import numpy as np

from episode_recorder.sinks.video import (
    AUTO,
    EncoderSetting,
    VideoFileEncoder,
    VideoOptions,
    _configure,
    _crf,
    initial_setting,
    yuv420p_frame,
)

KEYFRAME_SECONDS = 2.0
# Frames of lookahead for clips of samples only (x264's MB-tree rate control, P-frames only): it
# cuts their bytes by a third to a half at -1.5 dB (CartPole 0.15 -> 0.10 kB, InvertedPendulum 0.30 -> 0.16 kB per
# 480x480 frame, PSNR 49 -> 47.5 dB; same encode time). Samples then arrive that many frames
# later; a file's clip keeps no lookahead, so that the call ending it waits for one frame only.
SAMPLE_LOOKAHEAD = 10
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
    """Encodes RGB frames to H.264 samples only (no file): the quality settings of mp4 files, with
    ``SAMPLE_LOOKAHEAD`` frames of lookahead under "auto".

    It offers what the encoder process expects of a clip's encoder (``frames``, ``encode_seconds``,
    ``report()``, ``switch()``, ``close()``, ``salvage()``, ``abort()``); its setting stays fixed.
    """

    def __init__(
        self,
        height: int,
        width: int,
        options: VideoOptions,
        on_sample: SampleCallback,
        setting: EncoderSetting | None = None,
    ) -> None:
        import av
        from av.video.reformatter import VideoReformatter

        # A webm/gif clip's second encode: its preset is VP9's or GIF's, so H.264 starts as "auto" does.
        h264 = options.format == "mp4"
        self.options = replace(options, format="mp4", preset=options.preset if h264 else AUTO)
        self.setting: EncoderSetting = (setting if h264 else None) or initial_setting(self.options)
        self.frames = 0
        self.encode_seconds = 0.0
        self._on_sample = on_sample
        self._size = (height, width)
        self._pad = (height % 2, width % 2)
        rate = Fraction(options.fps).limit_denominator(1001)
        context = av.CodecContext.create("libx264", "w")
        context.width, context.height = width + self._pad[1], height + self._pad[0]
        context.pix_fmt = "yuv420p"
        context.framerate, context.time_base = rate, 1 / rate
        # No file to finish when the recording ends: a short lookahead pays.
        _configure(context, replace(self.options, samples=True), self.setting, lookahead=SAMPLE_LOOKAHEAD)
        self._context = context
        self._reformatter = VideoReformatter()

    def write(self, rgb: np.ndarray, hurry: bool = False) -> None:
        started = time.perf_counter()
        if rgb.shape != (*self._size, 3):
            raise ValueError(f"Frame of shape {rgb.shape} in a clip of size {self._size}.")
        frame = yuv420p_frame(self._reformatter, rgb, self._pad, self.setting, hurry)
        frame.pts = self.frames
        self._send(frame)
        self.frames += 1
        self.encode_seconds += time.perf_counter() - started

    def switch(self, setting: EncoderSetting) -> bool:
        """Samples keep one setting (a new context would restart the stream): always False."""
        return setting == self.setting

    def report(self) -> dict[str, Any]:
        """The settings the samples were encoded with."""
        return {
            "codec": "libx264",
            "preset": self.setting.preset,
            "threads": self.setting.threads,
            "crf": None if self.options.bitrate else _crf(self.options),
            "bitrate": self.options.bitrate,
            "adaptive": False,
            "lookahead": SAMPLE_LOOKAHEAD if self.options.adaptive else None,
            "settings": [{"preset": self.setting.preset, "threads": self.setting.threads, "from_frame": 0}],
            "encode_ms_per_frame": round(1000 * self.encode_seconds / max(1, self.frames), 3),
        }

    def close(self) -> None:
        """Flush the encoder's last samples (there is no file: returns None)."""
        self._send(None)

    def salvage(self) -> None:
        """Flush the last samples: they went out as they were encoded, there is no file."""
        self._send(None)

    def abort(self, keep: bool = False) -> None:
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

    @property
    def encode_seconds(self) -> float:
        return self.file.encode_seconds + self.samples.encode_seconds

    def write(self, rgb: np.ndarray, hurry: bool = False) -> None:
        self.file.write(rgb, hurry)
        self.samples.write(rgb, hurry)

    def switch(self, setting: EncoderSetting) -> bool:
        """The two encodes keep their settings: False (unless nothing changes)."""
        return setting == self.file.setting

    def report(self) -> dict[str, Any]:
        """The file's settings, with the samples' second encode under ``"samples"``."""
        return {**self.file.report(), "samples": self.samples.report()}

    def close(self) -> str:
        self.samples.close()
        return self.file.close()

    def salvage(self) -> str:
        self.samples.salvage()
        return self.file.salvage()

    def abort(self, keep: bool = False) -> None:
        self.file.abort(keep=keep)


def open_clip_encoder(
    path: str | None,
    height: int,
    width: int,
    options: VideoOptions,
    on_sample: SampleCallback | None,
    lock_fd: int | None = None,
    setting: EncoderSetting | None = None,
) -> Any:
    """The encoder of one clip: a file (``path``, locked by ``lock_fd``), H.264 samples (``on_sample``), or both.

    Every kind has ``write(rgb)``, ``close()`` (the final path, or None without a file),
    ``switch(setting)``, ``report()``, ``salvage()``, ``abort(keep)``, ``frames`` and ``encode_seconds``.
    """
    if on_sample is None:
        if path is None:
            raise ValueError("A clip needs a file path, a sample callback, or both.")
        return VideoFileEncoder(path, height, width, options, lock_fd, setting)
    if path is None:
        return H264SampleEncoder(height, width, options, on_sample, setting)
    if options.format == "mp4":
        return VideoFileEncoder(path, height, width, options, lock_fd, setting, on_sample=on_sample)
    file = VideoFileEncoder(path, height, width, options, lock_fd, setting)
    try:
        return _FileAndSamples(file, H264SampleEncoder(height, width, options, on_sample))
    except BaseException:
        file.abort()
        raise
