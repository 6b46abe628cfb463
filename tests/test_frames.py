from __future__ import annotations

import numpy as np
import pytest
import torch

from episode_recorder.frames import EnvRows, flatten_frames, select, to_rgb


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
