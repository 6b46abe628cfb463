"""Camera frames to Rerun: H.264 ``VideoStream`` (background encoder) vs JPEG on the training thread,
and one wrapper writing a video file and Rerun vs the file alone.

Envs render 480x480 frames (CartPole-v1 resized, a MuJoCo env with ``width=height=480``); one
recording of every frame of ``--steps`` steps (resets included). Variants, each run in its own
process, interleaved over ``--repeats``:

- ``bare``: the env's step + ``render()`` every step, nothing recorded (the common cost);
- ``noframes``: ``LogRerun(log_frames=False)`` and ``render()`` every step like ``bare``: a MuJoCo
  env's 3D scene and scalars, which the next two log as well (CartPole has no scene: no such variant);
- ``jpeg`` / ``video``: ``LogRerun(log_frames=True, frames=...)`` to an ``.rrd``;
- ``file`` / ``file+rerun``: ``episode_recorder.gym.RecordVideo`` (mp4), without / with
  ``rerun=path`` (the same encoded samples go to Rerun).

Training-thread cost per frame = CPU time of the training thread inside the recording wrapper
(``time.thread_time`` of the loop minus that spent in the env's ``step`` / ``reset`` / ``render``,
timed by a wrapper under it), minus the same for ``bare``, per frame; the frames' own cost is
that minus ``noframes``'s (what both frame paths log besides the frames: the scalars, and a MuJoCo
env's 3D scene every step). The env's own CPU time per
frame is shown beside ``bare``'s: with the encoder process busy on the other core the env itself
runs slower (the two cores share caches and memory; on this VM a render-bound CartPole step
took +0.2-0.8 ms), which is a cost of the encoder process, not of the training thread's work.
The loop's wall time is shown too (on a loaded machine it also counts waiting for a CPU). ``close`` (waiting for the
encoder's last frames, writing the footer) is reported apart. Sizes: the whole ``.rrd``, its
video samples / JPEG blobs alone (the frames; the rest, scalars and 3D scene, is the same in both), its
chunks (samples and scalars are sent every second: a slower loop makes more chunks, ~1.2 KB each), and
the mp4, all written under ``bench/results/``.

    PYTHONPATH=src MUJOCO_GL=egl SDL_VIDEODRIVER=dummy python bench/bench_rerun_video.py
    PYTHONPATH=src python bench/bench_rerun_video.py --envs CartPole-v1 --steps 300 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym

RESULTS = Path(__file__).parent / "results"
VARIANTS = ("bare", "noframes", "jpeg", "video", "file", "file+rerun")
SIZE = 480


def make_env(env_id: str) -> Any:
    if env_id.startswith("CartPole"):
        env = gym.make(env_id, render_mode="rgb_array")
        env.unwrapped.screen_width = env.unwrapped.screen_height = SIZE
        return env
    return gym.make(env_id, render_mode="rgb_array", width=SIZE, height=SIZE)


class TimedEnv(gym.Wrapper):
    """The env's ``step`` / ``reset`` / ``render`` CPU time on this thread (``cpu``), measured from outside."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.cpu = 0.0

    def _timed(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return call(*args, **kwargs)
        finally:
            self.cpu += time.thread_time() - start

    def step(self, action: Any) -> Any:
        return self._timed(self.env.step, action)

    def reset(self, **kwargs: Any) -> Any:
        return self._timed(self.env.reset, **kwargs)

    def render(self) -> Any:
        return self._timed(self.env.render)


def run_variant(env_id: str, variant: str, steps: int) -> dict[str, Any]:
    """One variant in this process: loop seconds, close seconds, frames and bytes written."""
    env = timed = TimedEnv(make_env(env_id))
    tag = f"{env_id}_{variant.replace('+', '_')}"
    rrd, folder = RESULTS / f"{tag}.rrd", RESULTS / tag
    for stale in [rrd, *folder.glob("*")] if folder.exists() else [rrd]:
        stale.unlink(missing_ok=True)
    if variant in ("noframes", "jpeg", "video"):
        from episode_recorder.rerun import LogRerun

        frames = {"log_frames": False} if variant == "noframes" else {"log_frames": True, "frames": variant}
        env = LogRerun(env, save_path=rrd, step_trigger=lambda s: s == 0, recording_length=steps, **frames)
    elif variant.startswith("file"):
        from episode_recorder.gym import RecordVideo

        env = RecordVideo(
            env,
            str(folder),
            step_trigger=lambda s: s == 0,
            video_length=steps,
            rerun=rrd if variant == "file+rerun" else None,
        )
    loop_renders = variant in ("bare", "noframes")  # nothing else renders: this loop does, every step
    env.action_space.seed(0)
    start, cpu_start = time.perf_counter(), time.thread_time()
    env.reset(seed=0)
    if loop_renders:
        env.render()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if loop_renders:
            env.render()
        if terminated or truncated:
            env.reset()
            if loop_renders:
                env.render()
    loop, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
    env_cpu = timed.cpu
    start = time.perf_counter()
    env.close()
    close = time.perf_counter() - start
    written = {"rrd": rrd.stat().st_size if rrd.exists() else 0, "camera": camera_bytes(rrd), "chunks": chunk_count(rrd)}
    written["files"] = sum(p.stat().st_size for p in folder.glob("*.mp4")) if folder.exists() else 0
    return {"loop": loop, "cpu": cpu, "env_cpu": env_cpu, "close": close, **written}


def camera_bytes(rrd: Path) -> int:
    """Bytes of the frames in the file: every video sample and JPEG blob under ``/camera``."""
    if not rrd.exists():
        return 0
    from rerun.chunk import RrdReader

    total = 0
    for chunk in RrdReader(rrd).stream():
        batch = chunk.to_record_batch()
        for name in ("VideoStream:sample", "EncodedImage:blob"):
            if chunk.entity_path.startswith("/camera") and name in batch.schema.names:
                total += len(batch.column(name).flatten().flatten())  # list<blob<uint8>> -> bytes
    return total


def chunk_count(rrd: Path) -> int:
    """Chunks in the file's recording (each costs ~1.2 KB beyond its data; a slower loop makes more)."""
    if not rrd.exists():
        return 0
    from rerun.chunk import RrdReader

    return sum(1 for _ in RrdReader(rrd).stream())


def in_process(env_id: str, variant: str, steps: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", variant, "--envs", env_id, "--steps", str(steps)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "InvertedPendulum-v5"])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(run_variant(args.envs[0], args.child, args.steps)))
        return
    variants = ["bare", *[v for v in args.variants if v != "bare"]]
    from bench_encoder import encode_cost_line  # bench/ is this script's folder, so on sys.path

    print(encode_cost_line())
    print(f"{args.steps} steps at {SIZE}x{SIZE}, median of {args.repeats} interleaved runs, each in its own process\n")
    print(
        "| env | variant | loop wall s | training-thread CPU ms / frame | env CPU ms / frame | close s "
        "| .rrd MB | of it frames MB | chunks | mp4 MB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for env_id in args.envs:
        # LogRerun without frames needs a 3D scene: CartPole has none (its scalars are in both paths).
        of_env = [v for v in variants if v != "noframes" or not env_id.startswith("CartPole")]
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in of_env}
        for _ in range(args.repeats):
            for variant in of_env:
                runs[variant].append(in_process(env_id, variant, args.steps))
        frames = args.steps + 1
        bare = statistics.median(r["cpu"] - r["env_cpu"] for r in runs["bare"])
        summary = {}
        for variant in of_env:
            loop = statistics.median(r["loop"] for r in runs[variant])
            close = statistics.median(r["close"] for r in runs[variant])
            per_frame = (statistics.median(r["cpu"] - r["env_cpu"] for r in runs[variant]) - bare) / frames * 1e3
            env_per_frame = statistics.median(r["env_cpu"] for r in runs[variant]) / frames * 1e3
            summary[variant] = (loop, per_frame, close)
            last = runs[variant][-1]
            print(
                f"| {env_id} | {variant} | {loop:.2f} | {per_frame:.3f} | {env_per_frame:.3f} | {close:.2f} | {last['rrd'] / 1e6:.2f} "
                f"| {last['camera'] / 1e6:.2f} | {last['chunks']} | {last['files'] / 1e6:.2f} |",
                flush=True,
            )
        if "jpeg" in summary and "video" in summary:
            jpeg, video = runs["jpeg"][-1], runs["video"][-1]
            cost_ratio = summary["video"][1] / summary["jpeg"][1] if summary["jpeg"][1] > 0 else float("nan")
            common = summary["noframes"][1] if "noframes" in summary else 0.0
            frames_jpeg, frames_video = summary["jpeg"][1] - common, summary["video"][1] - common
            frames_ratio = frames_video / frames_jpeg if frames_jpeg > 0 else float("nan")
            # H.264 samples do not compress further: the video file minus its samples is what both
            # files share (scalars, scene), so the JPEG frames take jpeg.rrd minus that on disk.
            shared = max(0, video["rrd"] - video["camera"])
            on_disk = (jpeg["rrd"] - shared) / max(1, video["camera"])
            print(
                f"| {env_id} | video vs jpeg | | cost {cost_ratio:.2f} of JPEG's (frames alone: "
                f"{frames_video:.3f} vs {frames_jpeg:.3f}, {frames_ratio:.2f}) | | | {jpeg['rrd'] / max(1, video['rrd']):.1f}x "
                f"smaller (frames on disk ~{on_disk:.0f}x) | {jpeg['camera'] / max(1, video['camera']):.1f}x smaller | | |"
            )
        if "file" in summary and "file+rerun" in summary:
            extra = (summary["file+rerun"][0] + summary["file+rerun"][2]) / (summary["file"][0] + summary["file"][2]) - 1
            cpu = summary["file+rerun"][1] - summary["file"][1]
            print(f"| {env_id} | file+rerun vs file | loop+close {extra:+.1%} | {cpu:+.3f} | | | | | | |")


if __name__ == "__main__":
    main()
