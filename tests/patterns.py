"""Recognisable frames, importable without heavy dependencies (child processes use it)."""

from __future__ import annotations

import numpy as np


def pattern(t: int, height: int, width: int, env_index: int = 0) -> np.ndarray:
    """A smooth frame that differs clearly from step to step (and from env to env)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 128 + 100 * np.sin(xx / 9.0 + t / 3.0)
    green = 128 + 100 * np.cos(yy / 7.0 - t / 4.0 + env_index)
    blue = np.full_like(xx, (37 * t + 80 * env_index) % 256)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)
