from __future__ import annotations

import numpy as np
import pytest
import torch
from support import PatternEnv, decode, psnr
from torch.overrides import TorchFunctionMode

from episode_recorder import frames as frames_module
from episode_recorder.frames import EnvRows, flatten_frames, select, to_rgb
from episode_recorder.unienv import EpisodeVideoWrapper


def run_steps(env, steps: int) -> None:
    env.reset()
    for _ in range(steps):
        env.step(None)


def test_uint8_rgb_is_passed_through_without_a_copy():
    frame = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = to_rgb(frame)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    assert np.shares_memory(out, frame)


def test_rgba_drops_alpha_and_gray_is_repeated():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 17
    assert to_rgb(rgba)[0, 0].tolist() == [200, 0, 0]
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = to_rgb(gray)
    assert out.shape == (3, 4, 3) and (out[..., 0] == gray).all() and (out[..., 2] == gray).all()


def test_float_frames_in_0_1_are_scaled_and_rounding_slack_is_clipped():
    frame = np.array([[[0.0, 0.5, 1.0], [-0.001, 1.001, 0.25]]], np.float32)
    assert to_rgb(frame).tolist() == [[[0, 128, 255], [0, 255, 64]]]
    # out-of-range, NaN and inf floats are errors (tests/test_reliability.py), never clipped silently


def test_torch_frames_convert_on_their_device_then_copy():
    frame = torch.linspace(0, 1, 2 * 3 * 4).reshape(2, 3, 4)
    out = to_rgb(frame)
    expected = (np.clip(frame.numpy()[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - expected).max() <= 1
    batch = torch.arange(2 * 4 * 5 * 3, dtype=torch.uint8).reshape(2, 4, 5, 3)
    assert (to_rgb(select(batch, 1)) == batch[1].numpy()).all()


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        (np.zeros((3, 8, 8), np.uint8), "shape (3, 8, 8)"),
        (np.zeros((2, 8, 8, 3), np.uint8), "rendered_index"),
        (np.zeros((8, 8, 3), np.int32), "dtype int32"),
        (None, "NoneType"),
        ([[1, 2], [3, 4]], "type list"),
    ],
)
def test_bad_frames_say_what_was_received_and_what_is_accepted(frame, fragment):
    with pytest.raises(ValueError) as info:
        to_rgb(frame)
    assert fragment in str(info.value)
    assert "uint8" in str(info.value)


def test_flatten_nested_cameras_and_select_errors():
    frames = {"cam": {"left": 1, "right": 2}, "top": 3}
    assert flatten_frames(frames) == {"cam.left": 1, "cam.right": 2, "top": 3}
    assert flatten_frames(frames, "/") == {"cam/left": 1, "cam/right": 2, "top": 3}
    assert flatten_frames(5) == {None: 5}
    assert select(np.arange(3), None).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="batch entry 5"):
        select(np.zeros((2, 4, 4, 3)), 5)


@pytest.mark.parametrize("make", [np.array, torch.tensor])
def test_env_rows_copy_the_chosen_rows_and_never_alias_the_source(make):
    source = make([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    rows, whole = EnvRows([2, 0]), EnvRows(None)
    on_device = rows.select(source)
    host, everything = rows(source), whole(source)
    source[...] = 0  # the env overwrites its buffer in place
    assert type(on_device) is type(source)
    assert on_device.tolist() == [[5.0, 6.0], [1.0, 2.0]]
    assert isinstance(host, np.ndarray) and host.tolist() == [[5.0, 6.0], [1.0, 2.0]]
    assert everything.tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]


class HostCopies(TorchFunctionMode):
    """Every tensor that crosses to the host while active (``Tensor.cpu()`` / ``.numpy()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[tuple[tuple[int, ...], torch.dtype, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("cpu", "numpy") and args and isinstance(args[0], torch.Tensor):
            self.copies.append((tuple(args[0].shape), args[0].dtype, args[0].device.type))
        return func(*args, **(kwargs or {}))


class DeviceFramesEnv(PatternEnv):
    """A batched PatternEnv whose float render tensors live on ``device``."""

    def __init__(self, device: str, **kwargs) -> None:
        super().__init__(backend="pytorch", batch_size=3, float_frames=True, **kwargs)
        self.render_device = torch.device(device)

    def render(self):
        return super().render().to(self.render_device)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_batched_torch_frames_are_indexed_and_converted_on_their_device_before_the_host_copy(tmp_path, device):
    base = DeviceFramesEnv(device, episode_length=4)
    env = EpisodeVideoWrapper(base, store_dir=tmp_path, format="mp4", done_index=2, rendered_index=2)
    spy = HostCopies()
    with spy:
        env.reset()
        for _ in range(6):
            env.step(None)
    env.close()
    images = [copy for copy in spy.copies if len(copy[0]) >= 3]
    assert images, "no frame was copied to the host"
    # only env 2's frame, already uint8: 48x64x3 bytes per step instead of 3x48x64x3 floats
    assert set(images) == {((48, 64, 3), torch.uint8, device)}
    decoded = decode(tmp_path / "episode_0_step_0.mp4")[0]
    assert len(decoded) == 7
    assert all(psnr(got, base.expected_frame(t, env_index=2)) > 30 for got, t in zip(decoded, range(1, 8)))


def test_jax_frames_are_indexed_before_the_host_copy(tmp_path, monkeypatch):
    jax = pytest.importorskip("jax", reason="jax is optional (pip install 'jax[cpu]')")
    import jax.numpy as jnp

    assert to_rgb(jnp.full((4, 6), 0.5, jnp.float32)).tolist() == [[[128] * 3] * 6] * 4
    assert to_rgb(jnp.zeros((4, 6, 4), jnp.uint8)).shape == (4, 6, 3)

    class JaxFramesEnv(PatternEnv):
        def render(self):
            return jnp.asarray(super().render())

    converted: list[tuple[int, ...]] = []

    class SpyNumpy:  # what episode_recorder.frames hands to numpy
        def __getattr__(self, name):
            return getattr(np, name)

        def asarray(self, value, *args, **kwargs):
            if isinstance(value, jax.Array):
                converted.append(tuple(value.shape))
            return np.asarray(value, *args, **kwargs)

        array = asarray

    monkeypatch.setattr(frames_module, "np", SpyNumpy())
    base = JaxFramesEnv(batch_size=3, episode_length=4)
    env = EpisodeVideoWrapper(base, store_dir=tmp_path, format="mp4", done_index=1, rendered_index=1)
    run_steps(env, 5)
    env.close()
    assert converted and set(converted) == {(48, 64, 3)}  # env 1's frame only, never the 3 x 48 x 64 x 3 batch
    decoded = decode(tmp_path / "episode_0_step_0.mp4")[0]
    assert len(decoded) == 6
    assert all(psnr(got, base.expected_frame(t, env_index=1)) > 30 for got, t in zip(decoded, range(1, 7)))
