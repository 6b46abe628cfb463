"""Gymnasium's suites write their videos into the working directory: run each test in tmp_path."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
