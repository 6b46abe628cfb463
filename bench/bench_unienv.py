"""UniEnv video recording: episode-recorder beside UniEnv's own EpisodeVideoWrapper.

Each variant runs in its own process on one synthetic UniEnv env (480x640 smoothly moving
frames, 3 episodes of 300 steps, a busy pure-Python CPU loop per step). The parent samples the
proportional set size (PSS) of the variant's whole process tree (our encoder process and moviepy's ffmpeg
included) and prints one table row per variant.

    python bench/bench_unienv.py                        # all variants, 5 ms per step
    python bench/bench_unienv.py --busy-ms 5 --steps 3000 --episodes 1 --variants none ours-webm

UniEnv's wrapper needs moviepy (``pip install moviepy``); it is skipped when missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS = ["none", "ours-webm", "ours-mp4", "unienv-webm", "unienv-mp4"]


def make_env(height: int, width: int, episode_length: int) -> Any:
    """A UniEnv env whose render() is a window sliding smoothly over a large textured canvas."""
    import numpy as np
    from unienv_interface.backends.numpy import NumpyComputeBackend
    from unienv_interface.env_base.env import Env
    from unienv_interface.space.spaces.box import BoxSpace

    yy, xx = np.mgrid[0 : height + 200, 0 : width + 400].astype(np.float32)
    canvas = np.stack(
        [128 + 100 * np.sin(xx / 37), 128 + 100 * np.cos(yy / 23), 128 + 60 * np.sin((xx + yy) / 51)], axis=-1
    ).astype(np.uint8)

    class SlidingWindowEnv(Env):
        metadata = {"render_modes": ["rgb_array"]}
        render_mode = "rgb_array"
        render_fps = 30
        backend = NumpyComputeBackend
        device = None
        batch_size = None

        def __init__(self) -> None:
            self.action_space = BoxSpace(self.backend, -1.0, 1.0, np.float32, shape=(1,))
            self.observation_space = BoxSpace(self.backend, -1.0, 1.0, np.float32, shape=(1,))
            self.rng = np.random.default_rng(0)
            self.t = 0
            self.steps = 0

        def reset(self, *args: Any, mask: Any = None, seed: Any = None, **kwargs: Any) -> Any:
            self.steps = 0
            return None, np.zeros(1, np.float32), {}

        def step(self, action: Any) -> Any:
            self.t += 1
            self.steps += 1
            return np.zeros(1, np.float32), 1.0, self.steps >= episode_length, False, {}

        def render(self) -> Any:
            x = int(200 + 199 * np.sin(self.t / 40))
            y = int(100 + 99 * np.cos(self.t / 55))
            return canvas[y : y + height, x : x + width].copy()

    return SlidingWindowEnv()


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def run_variant(args: argparse.Namespace) -> dict[str, Any]:
    """Runs in the child process: the step loop, timed call by call."""
    env = make_env(args.height, args.width, args.steps)
    kind, _, fmt = args.variant.partition("-")
    if kind == "ours":
        from episode_recorder.unienv import EpisodeVideoWrapper

        env = EpisodeVideoWrapper(env, store_dir=args.out, format=fmt)
    elif kind == "unienv":
        from unienv_interface.wrapper import EpisodeVideoWrapper

        env = EpisodeVideoWrapper(env, store_dir=args.out, format=fmt)
    longest = 0.0
    start = time.perf_counter()
    for _ in range(args.episodes):
        t0 = time.perf_counter()
        env.reset()
        longest = max(longest, time.perf_counter() - t0)
        for _ in range(args.steps):
            busy(args.busy_ms / 1000)
            t0 = time.perf_counter()
            env.step(None)
            longest = max(longest, time.perf_counter() - t0)
    loop = time.perf_counter() - start
    t0 = time.perf_counter()
    env.close()
    close = time.perf_counter() - t0
    return {"loop_s": loop, "close_s": close, "longest_call_ms": longest * 1000}


def measure(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """Runs one variant in a fresh process, sampling its process tree's memory."""
    import psutil

    out = tempfile.mkdtemp(prefix=f"bench-{variant}-")
    command = [sys.executable, __file__, "--child", "--variant", variant, "--out", out]
    for name in ("busy_ms", "steps", "episodes", "height", "width"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    process = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            tree = [process, *process.children(recursive=True)]
            # PSS: pages shared between processes (our frame ring) are counted once, not per process
            peak = max(peak, sum(p.memory_full_info().pss for p in tree))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
        time.sleep(0.1)
    stdout = child.stdout.read() if child.stdout else ""
    if child.returncode != 0:
        raise RuntimeError(f"variant {variant} failed with code {child.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    files = [p for p in Path(out).iterdir() if not p.name.startswith(".")]
    result.update(
        variant=variant,
        peak_pss_mb=peak / 2**20,
        bytes_written=sum(p.stat().st_size for p in files),
        files=len(files),
        frames_captured=0 if variant == "none" else args.episodes * (args.steps + 1),
        frames_decoded=sum(count_frames(p) for p in files),
    )
    return result


def count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy-ms", type=float, default=5.0, help="pure-Python CPU time per step")
    parser.add_argument("--steps", type=int, default=300, help="steps per episode")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args)))
        return
    rows = []
    for variant in args.variants:
        if variant.startswith("unienv"):
            try:
                import moviepy  # noqa: F401
            except ImportError:
                print(f"skipping {variant}: UniEnv's wrapper needs moviepy (pip install moviepy)")
                continue
        rows.append(measure(variant, args))
    base = next((r for r in rows if r["variant"] == "none"), None)
    print(
        f"{args.height}x{args.width}, {args.episodes} episodes x {args.steps} steps, {args.busy_ms} ms CPU per step, "
        f"{os.cpu_count()} cores"
    )
    print("| variant | loop wall s | overhead | longest call ms | close s | peak PSS MB | over none MB | bytes | frames decoded / captured |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        overhead = f"{100 * (r['loop_s'] / base['loop_s'] - 1):+.1f}%" if base else "-"
        extra = f"{r['peak_pss_mb'] - base['peak_pss_mb']:+.0f}" if base else "-"
        print(
            f"| {r['variant']} | {r['loop_s']:.2f} | {overhead} | {r['longest_call_ms']:.1f} | {r['close_s']:.2f} | "
            f"{r['peak_pss_mb']:.0f} | {extra} | {r['bytes_written']:,} | {r['frames_decoded']} / {r['frames_captured']} |"
        )


if __name__ == "__main__":
    main()
