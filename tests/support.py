"""Shared test helpers: a real UniEnv env with recognisable frames, and video decoding."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
from unienv_interface.backends.numpy import NumpyComputeBackend
from unienv_interface.env_base.env import Env
from unienv_interface.space.spaces.box import BoxSpace

from patterns import pattern  # noqa: F401  (light, for child processes too)


class PatternEnv(Env):
    """A UniEnv env whose episodes last ``episode_length`` steps and whose frames encode the step.

    ``backend="pytorch"`` returns torch tensors everywhere; ``batch_size=N`` renders N x H x W x 3,
    and env ``i`` terminates after ``episode_length + i`` steps. ``cameras`` renders a nested
    mapping ``{"cam": {"front": ..., "side": ...}}``.
    """

    metadata = {"render_modes": ["rgb_array"]}
    render_mode = "rgb_array"

    def __init__(
        self,
        *,
        height: int = 48,
        width: int = 64,
        episode_length: int = 10,
        batch_size: int | None = None,
        backend: str = "numpy",
        render_fps: int | None = 25,
        cameras: bool = False,
        float_frames: bool = False,
    ) -> None:
        if backend == "pytorch":
            from unienv_interface.backends.pytorch import PyTorchComputeBackend

            self.backend = PyTorchComputeBackend
        else:
            self.backend = NumpyComputeBackend
        self.device = None
        self.batch_size = batch_size
        self.render_fps = render_fps
        self.size = (height, width)
        self.episode_length = episode_length
        self.cameras = cameras
        self.float_frames = float_frames
        shape = (1,) if batch_size is None else (batch_size, 1)
        self.action_space = BoxSpace(self.backend, -1.0, 1.0, self.backend.default_floating_dtype, shape=shape)
        self.observation_space = BoxSpace(self.backend, -1e9, 1e9, self.backend.default_floating_dtype, shape=shape)
        self.rng = self.backend.random.random_number_generator(0)
        count = 1 if batch_size is None else batch_size
        self.t = np.zeros(count, np.int64)  # global frame counter per env (never resets)
        self.steps_in_episode = np.zeros(count, np.int64)
        self.renders = 0
        self.closed = False

    def _array(self, value: np.ndarray) -> Any:
        if self.backend is NumpyComputeBackend:
            return value
        import torch

        return torch.from_numpy(np.ascontiguousarray(value))

    def _pack(self, value: np.ndarray) -> Any:
        return self._array(value[0] if self.batch_size is None else value)

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        self.t += 1
        self.steps_in_episode += 1
        limits = self.episode_length + np.arange(len(self.t))
        terminated = self.steps_in_episode >= limits
        obs = self.steps_in_episode.astype(np.float32)[:, None]
        reward = np.ones(len(self.t), np.float32)
        truncated = np.zeros(len(self.t), bool)
        if self.batch_size is None:
            return self._array(obs[0]), 1.0, bool(terminated[0]), False, {}
        return self._array(obs), self._array(reward), self._array(terminated), self._array(truncated), {}

    def reset(self, *args: Any, mask: Any = None, seed: int | None = None, **kwargs: Any) -> tuple[Any, Any, Any]:
        selected = np.ones(len(self.t), bool) if mask is None else np.asarray(mask).astype(bool)
        self.t[selected] += 1
        self.steps_in_episode[selected] = 0
        obs = np.zeros((int(selected.sum()), 1), np.float32)
        return None, self._pack(obs) if self.batch_size is None else self._array(obs), {}

    def expected_frame(self, t: int, env_index: int = 0, camera: str = "front") -> np.ndarray:
        frame = pattern(t, *self.size, env_index=env_index)
        return frame if camera == "front" else 255 - frame

    def render(self) -> Any:
        self.renders += 1
        frames = np.stack([self.expected_frame(int(t), i) for i, t in enumerate(self.t)])
        if self.float_frames:
            frames = frames.astype(np.float32) / 255.0
        if self.cameras:
            side = np.stack([self.expected_frame(int(t), i, "side") for i, t in enumerate(self.t)])
            if self.float_frames:
                side = side.astype(np.float32) / 255.0
            return {"cam": {"front": self._pack(frames), "side": self._pack(side)}}
        return self._pack(frames)

    def close(self) -> None:
        self.closed = True


def decode(path: str | Path) -> tuple[list[np.ndarray], str, float]:
    """Every frame of a video file as RGB arrays, its stream's pixel format, and its frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pix_fmt = stream.codec_context.pix_fmt
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    return frames, pix_fmt, rate


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else 10 * np.log10(255.0**2 / error)


def x264_settings(path: str | Path) -> str:
    """The settings x264 wrote into an mp4's stream (its SEI message): 'cabac=1 ref=1 ... crf=23.0 ...'."""
    match = re.search(rb"x264 - core .*? options: ([ -~]+)", Path(path).read_bytes())
    assert match, f"no x264 settings in {path}"
    return match.group(1).decode()


def record_clip(folder: str | Path, frames: list[np.ndarray], options: Any = None) -> Any:
    """``frames`` into one clip of a fresh ``Recorder``, as fast as the caller copies them; the saved clip."""
    from episode_recorder.recorder import Recorder
    from episode_recorder.sinks.video import VideoOptions

    recorder = Recorder(folder, options or VideoOptions())
    segment = recorder.start("clip")
    for frame in frames:
        segment.add(frame)
    (clip,) = segment.stop()
    recorder.close()
    assert clip.status == "saved" and clip.frames == len(frames)
    return clip


def default_subme() -> str:
    """x264's ``subme`` of the preset an "auto" clip starts with (``AUTO_START``)."""
    from episode_recorder.sinks.video import VideoOptions, initial_setting

    return {"veryfast": "subme=2", "superfast": "subme=1", "ultrafast": "subme=0"}[initial_setting(VideoOptions()).preset]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    """Wait until ``condition()`` is true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


@contextlib.contextmanager
def encoder_stopped(recorder: Any, timeout: float = 30.0) -> Iterator[None]:
    """A Recorder's encoder process frozen (SIGSTOP): it takes no frame until the block ends.

    A watchdog resumes it after ``timeout`` seconds and fails the test, so that code which waits
    for the encoder fails instead of hanging.
    """
    pid = recorder._encoder._process.pid
    fired = threading.Event()

    def resume() -> None:
        fired.set()
        os.kill(pid, signal.SIGCONT)

    watchdog = threading.Timer(timeout, resume)
    os.kill(pid, signal.SIGSTOP)
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()
        os.kill(pid, signal.SIGCONT)
    assert not fired.is_set(), f"the code under test waited {timeout} s for a frozen encoder"
