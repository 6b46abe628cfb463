"""What crash safety costs: the end-of-clip wait (flush + faststart remux), and what a crash would leave.

    PYTHONPATH=src:tests python bench/bench_reliability.py [--frames 300] [--clips 5]
    PYTHONPATH=<older checkout>/src:tests python bench/bench_reliability.py   # the "before" figures

For each format and size: the time from ``segment.stop()`` until the file is under its final name
(``Recorder.wait``), the faststart remux alone (a stream copy of the fragmented temporary MP4),
and how many of the clip's frames the temporary file decodes to just before the clip ends (what
SIGKILL of the whole job or a power cut would leave).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import av  # noqa: E402
from patterns import pattern  # noqa: E402

from episode_recorder.recorder import Recorder  # noqa: E402
from episode_recorder.sinks.video import VideoOptions  # noqa: E402

try:
    from episode_recorder.sinks.video import remux
except ImportError:  # an older episode-recorder (for the "before" figures): no remux
    remux = None


def decodable(path: str) -> int:
    try:
        with av.open(path) as container:
            return sum(1 for _ in container.decode(video=0))
    except av.error.FFmpegError:
        return 0


def run(fmt: str, height: int, width: int, frames: int, clips: int) -> None:
    folder = tempfile.mkdtemp()
    images = [pattern(t, height, width) for t in range(frames)]
    recorder = Recorder(folder, VideoOptions(format=fmt, fps=30))
    waits, on_disk = [], []
    for index in range(clips):
        segment = recorder.start(f"clip{index}")
        for image in images:
            segment.add(image)
        rings = list(recorder._encoder._rings.values())
        while any(int(ring.taken[0]) < ring.written for ring in rings):
            time.sleep(0.001)
        snapshot = os.path.join(folder, f"snapshot.{fmt}")
        shutil.copy(os.path.join(folder, f".clip{index}.{fmt}.part"), snapshot)
        on_disk.append(decodable(snapshot))
        started = time.perf_counter()
        (clip,) = segment.stop()
        recorder.wait([clip])
        waits.append((time.perf_counter() - started) * 1000)
    recorder.close()
    line = (
        f"{fmt:4} {height}x{width} {frames} frames: end-of-clip wait median {statistics.median(waits):.1f} ms, "
        f"max {max(waits):.1f} ms; decodable while recording {min(on_disk)}-{max(on_disk)} of {frames}"
    )
    if fmt == "mp4" and remux is not None:
        fragmented = os.path.join(folder, "fragmented.mp4")
        with av.open(fragmented, "w", container_options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}) as out:
            stream = out.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.gop_size = 30
            stream.options = {"preset": "veryfast", "crf": "23"}
            for t, image in enumerate(images):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = t
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        remux_ms = []
        for _ in range(5):
            started = time.perf_counter()
            remux(fragmented, os.path.join(folder, "faststart.mp4"), "mp4")
            remux_ms.append((time.perf_counter() - started) * 1000)
        size = os.path.getsize(os.path.join(folder, "clip0.mp4"))
        line += f"; remux alone median {statistics.median(remux_ms):.1f} ms; file {size / 1e3:.0f} kB"
    print(line, flush=True)
    shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--clips", type=int, default=5)
    args = parser.parse_args()
    for fmt in ("mp4", "webm", "gif"):
        for height, width in ((240, 320), (480, 640)):
            if fmt == "gif" and height > 240:
                continue
            run(fmt, height, width, args.frames, args.clips)


if __name__ == "__main__":
    main()
