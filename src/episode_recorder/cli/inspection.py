"""``episode-recorder inspect FILE...``: what a video file holds, and whether it is complete.

Each file is decoded to the end with PyAV. It is complete when it opens (an mp4 needs its
``moov`` index), every packet decodes, and the decoded frames cover what the container declares
(its frame count and duration): a file cut short by a crash or a full disk fails one of these.

    >>> probe_video("missing.mp4")["problem"]
    'no such file'
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["inspect_command", "probe_video"]


def probe_video(path: str) -> dict[str, Any]:
    """frames, fps, width, height, codec, duration (s), complete and problem (None when complete)."""
    import av

    info: dict[str, Any] = {
        "file": path, "frames": 0, "fps": None, "width": None, "height": None,
        "codec": None, "duration": None, "complete": False, "problem": None,
    }
    if not os.path.isfile(path):
        info["problem"] = "no such file"
        return info
    try:
        container = av.open(path)
    except av.FFmpegError as error:
        info["problem"] = f"cannot open: {error}" + (" (no moov index: the writer did not finish)" if path.endswith(".mp4") else "")
        return info
    with container:
        if not container.streams.video:
            info["problem"] = "no video stream"
            return info
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        info.update(
            fps=None if rate is None else round(float(rate), 3),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
        )
        first_pts = end_pts = None
        try:
            for frame in container.decode(stream):
                info["frames"] += 1
                if frame.pts is not None:
                    first_pts = frame.pts if first_pts is None else first_pts
                    end_pts = frame.pts + (frame.duration or 0)
        except av.FFmpegError as error:
            info["problem"] = f"decoding stopped after {info['frames']} frames: {error}"
        if first_pts is not None and end_pts > first_pts:
            info["duration"] = round(float((end_pts - first_pts) * stream.time_base), 3)
        elif info["fps"]:
            info["duration"] = round(info["frames"] / info["fps"], 3)
        declared_frames = stream.frames
        declared_seconds = None if container.duration is None else container.duration / 1_000_000
        if info["problem"] is None:
            if info["frames"] == 0:
                info["problem"] = "no frames"
            elif declared_frames and info["frames"] != declared_frames:
                info["problem"] = f"decoded {info['frames']} of the {declared_frames} frames the file declares"
            elif declared_seconds and info["duration"] is not None and info["fps"] and (
                info["duration"] < declared_seconds - 1.5 / info["fps"]
            ):
                info["problem"] = f"decoded {info['duration']:.2f} s of the {declared_seconds:.2f} s the file declares"
    info["complete"] = info["problem"] is None
    name = os.path.basename(path)
    if name.startswith(".") and name.endswith(".part"):
        info["complete"] = False
        info["problem"] = "a temporary .part file: still being written, or left by a crash"
    return info


def inspect_command(files: Sequence[str], as_json: bool = False) -> int:
    """Print one row (or JSON line) per file; exit status 1 if any file is incomplete."""
    results = [probe_video(path) for path in files]
    if as_json:
        for info in results:
            print(json.dumps(info))
    else:
        rows = [("file", "frames", "fps", "size", "codec", "duration", "complete")]
        for info in results:
            size = "-" if info["width"] is None else f"{info['width']}x{info['height']}"
            rows.append((
                info["file"],
                str(info["frames"]),
                "-" if info["fps"] is None else f"{info['fps']:g}",
                size,
                info["codec"] or "-",
                "-" if info["duration"] is None else f"{info['duration']:.2f} s",
                "yes" if info["complete"] else f"NO: {info['problem']}",
            ))
        widths = [max(len(row[i]) for row in rows) for i in range(6)]
        for row in rows:
            print("  ".join([cell.ljust(w) for cell, w in zip(row, widths)] + [row[6]]))
    return 0 if all(info["complete"] for info in results) else 1
