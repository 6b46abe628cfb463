"""Settings shared by the test suite (tests/), the docstring examples (src/) and the docs (tests/test_docs.py)."""

from __future__ import annotations

import os
import tempfile

import pytest

# Headless rendering for MuJoCo and classic-control envs.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


@pytest.fixture(autouse=True)
def _isolated_home(request, tmp_path, monkeypatch):
    """Keep every test's caches, W&B runs and outputs under its own tmp_path (never in ~).

    Docstring examples also run inside tmp_path, with their temporary folders under it, so that
    ``RecordVideo(env, "videos")`` or ``tempfile.mkdtemp()`` leave nothing in the repository or /tmp.
    """
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    if type(request.node).__name__ == "DoctestItem":
        temporary = tmp_path / "tmp"
        temporary.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(temporary))
        monkeypatch.chdir(tmp_path)
