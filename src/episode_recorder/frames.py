"""Turning whatever a renderer returns into HxWx3 uint8 numpy frames.

Accepted: numpy, torch (CPU or CUDA) or jax arrays; uint8, or float in [0, 1]; shaped HxWx3,
HxWx4 (alpha dropped) or HxW (gray), at least 1x1. Anything else - float frames outside [0, 1]
(e.g. 0-255 floats), NaN or infinity, an empty frame - raises ``ValueError`` at once, at the step
that produced it, rather than being clipped or failing later in the encoder. Batched arrays are indexed *before* the host copy, and
float-to-uint8 conversion of torch tensors happens on their device (4x less to copy).

    >>> import numpy as np
    >>> to_rgb(np.zeros((4, 6), np.float32)).shape
    (4, 6, 3)
    >>> sorted(flatten_frames({"cam": {"left": 1, "right": 2}}))
    ['cam.left', 'cam.right']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

ACCEPTED = (
    "an HxWx3 (RGB), HxWx4 (RGBA) or HxW (gray) array - numpy, torch or jax - "
    "of dtype uint8 (0-255) or float (0.0-1.0)"
)


def flatten_frames(frame: Any, separator: str = ".") -> dict[str | None, Any]:
    """``{key: frame}`` for a (nested) mapping of cameras, ``{None: frame}`` for a single frame.

    >>> flatten_frames({"a": {"b": 1}, "c": 2}, "/")
    {'a/b': 1, 'c': 2}
    """
    if not isinstance(frame, Mapping):
        return {None: frame}
    flat: dict[str | None, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, child in value.items():
                visit(f"{prefix}{separator}{key}" if prefix else str(key), child)
        else:
            flat[prefix] = value

    visit("", frame)
    return flat


class EnvRows:
    """Fresh host (numpy) copies of the rows ``envs`` of batched arrays: numpy, torch or jax.

    The rows are taken on the array's own device, so only they cross to the host; ``envs=None``
    copies whole arrays. The env's buffers may be reused in place: the result never aliases them.

    >>> EnvRows([0, 2])(np.arange(6).reshape(3, 2)).tolist()
    [[0, 1], [4, 5]]
    """

    def __init__(self, envs: Sequence[int] | None) -> None:
        self.envs = None if envs is None else np.asarray(envs, dtype=np.int64)
        self._torch_index: dict[Any, Any] = {}  # device -> index tensor

    def select(self, value: Any) -> Any:
        """The rows as a new array on ``value``'s device (torch, numpy or jax), never a view of it."""
        if hasattr(value, "detach"):  # torch
            if self.envs is None:
                return value.detach().clone()
            index = self._torch_index.get(value.device)
            if index is None:
                import torch

                index = self._torch_index[value.device] = torch.as_tensor(self.envs, device=value.device)
            return value.detach().index_select(0, index)
        return np.array(value) if self.envs is None else value[self.envs]  # fancy indexing copies

    def __call__(self, value: Any) -> np.ndarray:
        if hasattr(value, "detach"):  # torch
            if self.envs is None:
                return value.detach().cpu().numpy().copy()
            return self.select(value).cpu().numpy()
        return np.array(self.select(value))


def select(frame: Any, index: int | None) -> Any:
    """``frame[index]`` on the frame's own device (no host copy); ``frame`` when ``index`` is None.

    >>> select(np.arange(6).reshape(3, 2), 1).tolist()
    [2, 3]
    """
    if index is None:
        return frame
    try:
        return frame[index]
    except (IndexError, TypeError) as error:
        raise ValueError(
            f"Cannot select batch entry {index} of a render output of type {type(frame).__name__} "
            f"and shape {_shape_of(frame)}: pass rendered_index=None for unbatched renders, or an "
            "index smaller than the batch size."
        ) from error


def to_rgb(frame: Any) -> np.ndarray:
    """``frame`` as an HxWx3 uint8 numpy array (a view of ``frame`` when it already is one).

    >>> to_rgb(np.ones((2, 2, 4), np.float32))[0, 0].tolist()
    [255, 255, 255]
    """
    if type(frame) is np.ndarray and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 and frame.size:
        return frame  # the common case, checked in a few microseconds
    shape = _shape_of(frame)
    dtype = str(getattr(frame, "dtype", type(frame).__name__))
    if shape is None or len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (3, 4)):
        raise ValueError(
            f"Cannot record a frame of type {type(frame).__name__}, shape {shape}, dtype {dtype}: "
            f"expected {ACCEPTED}. For batched renders pass rendered_index to pick one env; for "
            "channel-first CxHxW images transpose them first."
        )
    if 0 in shape:
        raise ValueError(
            f"Cannot record an empty frame (shape {shape}, dtype {dtype}): expected {ACCEPTED}, at "
            "least 1x1 pixels. Did the renderer return before its window or camera was set up?"
        )
    if len(shape) == 3 and shape[2] == 4:
        frame = frame[..., :3]
    if _is_torch(frame):
        frame = _torch_to_uint8(frame, dtype)
        array = frame.cpu().numpy()
    else:
        array = np.asarray(frame)
        if array.dtype != np.uint8:
            array = _numpy_to_uint8(array, dtype)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return array


def _shape_of(frame: Any) -> tuple[int, ...] | None:
    shape = getattr(frame, "shape", None)
    return None if shape is None else tuple(int(n) for n in shape)


def _is_torch(frame: Any) -> bool:
    return type(frame).__module__.startswith("torch") and hasattr(frame, "detach")


def _is_float(dtype: str) -> bool:
    return "float" in dtype or "bfloat" in dtype


def _torch_to_uint8(frame: Any, dtype: str) -> Any:
    frame = frame.detach()
    if dtype.endswith("uint8"):
        return frame
    if _is_float(dtype):
        import torch

        frame = frame.float()
        low, high = torch.aminmax(frame)
        _check_range(float(low), float(high), dtype)
        return (frame.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    raise ValueError(_dtype_error(dtype))


def _numpy_to_uint8(array: np.ndarray, dtype: str) -> np.ndarray:
    if not _is_float(dtype):
        raise ValueError(_dtype_error(dtype))
    _check_range(float(array.min()), float(array.max()), dtype)
    return (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


_SLACK = 0.5 / 255  # values this close outside [0, 1] round to 0 or 255 anyway (float error)


def _check_range(low: float, high: float, dtype: str) -> None:
    """Float frames must lie in [0, 1]; NaN or infinity anywhere makes ``low``/``high`` fail too."""
    if -_SLACK <= low and high <= 1.0 + _SLACK:
        return
    if low != low or high != high:  # NaN
        found = "NaN values"
    elif abs(low) == float("inf") or abs(high) == float("inf"):
        found = f"infinite values (range [{low}, {high}])"
    else:
        found = f"values in [{low:g}, {high:g}]"
    hint = " It looks like 0-255 data: divide by 255, or pass frame.astype(np.uint8)." if 1 < high <= 255 else ""
    raise ValueError(
        f"Cannot record a {dtype} frame with {found}: float frames must lie in [0.0, 1.0] "
        f"(or pass uint8 0-255).{hint}"
    )


def _dtype_error(dtype: str) -> str:
    return (
        f"Cannot record a frame of dtype {dtype}: expected uint8 (0-255) or float (0.0-1.0). "
        "Convert it first, e.g. frame.astype(np.uint8) for 0-255 integers."
    )
