"""Where a video wrapper's overhead goes on this machine: the step loop's own CPU, the time
its ``write()`` calls take, waiting for the encoder, and time the machine took from the loop.

The synthetic env of ``bench_encoder.py`` (480x640, ``--busy-ms`` of pure-Python CPU per step,
3 x 300 steps), ``none`` (render only) and ``ours`` (``episode_recorder.gym.RecordVideo``, or
with ``--wrapper unienv`` ``episode_recorder.unienv.EpisodeVideoWrapper`` on its UniEnv env)
interleaved ``--repeats`` times, each run in its own process. Per run: wall and loop CPU
(``time.thread_time``); inside ``VideoEncoderProcess.write`` its wall and CPU time and the time
it slept waiting for a free slot; "lost" = steps' wall minus their CPU outside those sleeps
(preempted, or the VM's vCPU descheduled); the machine's steal time over the run (``/proc/stat``,
both vCPUs together). Medians are printed.

    PYTHONPATH=src python bench/bench_overhead.py --content scroll --repeats 5
    PYTHONPATH=src python bench/bench_overhead.py --wrapper unienv
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
# bench/ is this script's folder, so on sys.path
from bench_encoder import Content, encode_cost_line, make_gym_env, make_unienv_env


def steal_seconds() -> float:
    """Steal time of all CPUs so far (seconds), or 0.0 where /proc/stat has none."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def run(variant: str, content: str, busy_ms: float, wrapper: str) -> dict[str, Any]:
    from episode_recorder.sinks import video

    timing = {"write_s": 0.0, "write_cpu_s": 0.0, "slept_s": 0.0}
    write, sleep = video.VideoEncoderProcess.write, video.VideoEncoderProcess._sleep_until_a_frame_is_encoded

    def timed_write(self: Any, *args: Any, **kwargs: Any) -> bool:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return write(self, *args, **kwargs)
        finally:
            timing["write_s"] += time.perf_counter() - wall
            timing["write_cpu_s"] += time.thread_time() - cpu

    def timed_sleep(self: Any) -> None:
        wall = time.perf_counter()
        sleep(self)
        timing["slept_s"] += time.perf_counter() - wall

    video.VideoEncoderProcess.write, video.VideoEncoderProcess._sleep_until_a_frame_is_encoded = timed_write, timed_sleep
    unienv = wrapper == "unienv"
    env = (make_unienv_env if unienv else make_gym_env)(Content(content), busy_ms, 300)
    folder = tempfile.mkdtemp(prefix="bench-overhead-")
    if variant == "ours" and unienv:
        from episode_recorder.unienv import EpisodeVideoWrapper

        env = EpisodeVideoWrapper(env, store_dir=folder, format="mp4")
    elif variant == "ours":
        from episode_recorder.gym import RecordVideo

        env = RecordVideo(env, folder, episode_trigger=lambda e: True)
    action = np.zeros(1, np.float32) if unienv else 0
    lost = 0.0
    steal, start, start_cpu = steal_seconds(), time.perf_counter(), time.thread_time()
    for episode in range(3):
        env.reset() if unienv else env.reset(seed=episode)
        if variant == "none":
            env.render()
        for _ in range(300):
            wall, cpu, slept = time.perf_counter(), time.thread_time(), timing["slept_s"]
            result = env.step(action)
            if variant == "none":
                env.render()
            lost += (time.perf_counter() - wall) - (time.thread_time() - cpu) - (timing["slept_s"] - slept)
            if result[2] or result[3]:
                break
    env.close()
    report = {"wall_s": time.perf_counter() - start, "loop_cpu_s": time.thread_time() - start_cpu, "lost_s": lost}
    report["steal_s"] = steal_seconds() - steal
    return {**report, **timing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--content", default="scroll", choices=["smooth", "scroll"])
    parser.add_argument("--wrapper", default="gym", choices=["gym", "unienv"])
    parser.add_argument("--busy-ms", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run(args.child, args.content, args.busy_ms, args.wrapper)))
        return
    print(encode_cost_line(args.content), flush=True)
    runs: dict[str, list[dict[str, Any]]] = {"none": [], "ours": []}
    for _ in range(args.repeats):
        for variant in runs:
            command = [sys.executable, __file__, "--child", variant, "--content", args.content,
                       "--busy-ms", str(args.busy_ms), "--wrapper", args.wrapper]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs[variant].append(json.loads(output.strip().splitlines()[-1]))
    print(f"{args.wrapper} wrapper, {args.content} content, {args.busy_ms} ms CPU per step, 3 x 300 steps, "
          f"median of {args.repeats} "
          f"(load {os.getloadavg()[0]:.1f}); seconds per run, 903 frames\n")
    columns = ["wall_s", "loop_cpu_s", "write_s", "write_cpu_s", "slept_s", "lost_s", "steal_s"]
    print("| variant | overhead | " + " | ".join(columns) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    base = statistics.median(r["wall_s"] for r in runs["none"])
    for variant, results in runs.items():
        medians = {c: statistics.median(r[c] for r in results) for c in columns}
        cells = " | ".join(f"{medians[c]:.3f}" for c in columns)
        print(f"| {variant} | {100 * (medians['wall_s'] / base - 1):+.1f}% | {cells} |")


if __name__ == "__main__":
    main()
