"""Choosing the Rerun recording stream a logger writes to."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from episode_recorder._optional import require

if TYPE_CHECKING:
    import rerun as rr


def resolve_stream(
    save_path: str | os.PathLike[str] | None,
    recording_stream: rr.RecordingStream | None,
    application_id: str,
) -> rr.RecordingStream:
    """The stream to log to: ``save_path`` wins, then ``recording_stream``, then the global one.

    With ``save_path``, a new ``rr.RecordingStream(application_id)`` saves to that file (parent
    folders created). With none of the three, a ``ValueError`` says how to provide one.

        >>> import os
        >>> stream = resolve_stream("runs/run.rrd", None, "CartPole-v1")
        >>> stream.disconnect(); os.path.exists("runs/run.rrd")
        True
    """
    rr = require("rerun", "rerun", "Logging to Rerun")
    if save_path is not None:
        path = os.path.abspath(os.fspath(save_path))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        stream = rr.RecordingStream(application_id)
        stream.save(path)
        return stream
    if recording_stream is not None:
        return recording_stream
    stream = rr.get_data_recording()
    if stream is None:
        raise ValueError(
            "No Rerun recording stream to log to: pass save_path='run.rrd', pass "
            "recording_stream=rr.RecordingStream(...), or call rr.init(...) with rr.save / "
            "rr.spawn / rr.connect_grpc before creating the logger."
        )
    return stream
