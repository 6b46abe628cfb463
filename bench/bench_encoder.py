"""Does the encoder keep up? Every benchmark of issue 10 in one command, each variant in its own process.

1. This machine's encode cost per frame at each setting (so figures from two machines compare):
   480x640 smooth and scrolling content, 1 thread, and the rgb24 -> yuv420p conversion alone.
2. Synthetic envs, 480x640, ``--busy-ms`` (5) of pure-Python CPU per step, 3 episodes x 300 steps,
   smooth content (a window sliding over a sine texture) and scrolling content (3 px per frame
   with a moving square): Gymnasium ``RecordVideo`` (ours, gymnasium's) and UniEnv
   ``EpisodeVideoWrapper`` (ours webm/mp4, UniEnv's own) against no recording.
3. Real MuJoCo: ``HalfCheetah-v5`` rendered at 480x480, render-only vs ours vs gymnasium's
   ``RecordVideo`` (and ours on UniEnv through ``FromGymnasiumEnv``).

Each ending call waits until the episode's file is complete under its final name (what
``finish_in_background=False`` promises): that wait is part of the "longest call". Memory is the
peak PSS of the variant's process tree (main + encoder process; the shared ring counted once).
PSNR is against the source frames (every 10th frame of every clip; MuJoCo every 30th). "loop CPU"
is the step loop thread's own CPU time (``time.thread_time``): wall minus it is time the loop spent
waiting (for the encoder, for a file) or preempted.

    PYTHONPATH=src MUJOCO_GL=egl python bench/bench_encoder.py            # everything, ~5 min quiet
    PYTHONPATH=src MUJOCO_GL=egl python bench/bench_encoder.py --parts costs synthetic --repeats 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SYNTHETIC = ["none", "ours", "gymnasium", "unienv-none", "unienv-ours-webm", "unienv-ours-mp4", "unienv-unienv-webm"]
MUJOCO = ["mujoco-none", "mujoco-ours", "mujoco-gymnasium", "mujoco-unienv-none", "mujoco-unienv-ours-mp4"]
PSNR_EVERY = 10
# One PSS sample walks the process's page tables: 0.7 ms for a bare Python process, 10-16 ms of CPU
# for one that imported torch (UniEnv, SB3), measured. Every 0.1 s that took 10-16% of a core
# from the variant being measured; the peaks measured here last seconds.
MEMORY_SAMPLE_SECONDS = 0.5


# ---------------------------------------------------------------- content


class Content:
    """Deterministic 480x640 frames: ``frame(t)``; "smooth" slides over a sine texture, "scroll"
    moves a detailed canvas 3 px per frame with a red square moving over it."""

    def __init__(self, kind: str, height: int = 480, width: int = 640) -> None:
        self.kind, self.height, self.width = kind, height, width
        yy, xx = np.mgrid[0:height, 0 : 3 * width].astype(np.float32)
        if kind == "smooth":
            canvas = np.stack([np.sin(xx / 40.0), np.cos(yy / 30.0), np.sin((xx + yy) / 70.0)], -1)
            self.canvas = ((canvas + 1) * 127.5).astype(np.uint8)
        elif kind == "scroll":
            canvas = np.stack(
                [128 + 90 * np.sin(xx / 23) * np.cos(yy / 31), 128 + 90 * np.cos(xx / 47 + yy / 19),
                 128 + 60 * np.sin((xx - yy) / 13)], -1)
            canvas[(yy.astype(int) // 40 + xx.astype(int) // 40) % 2 == 0] *= 0.7  # a checkerboard of edges
            self.canvas = canvas.astype(np.uint8)
        else:
            raise ValueError(f"content is 'smooth' or 'scroll', received {kind!r}")

    def frame(self, t: int) -> np.ndarray:
        h, w = self.height, self.width
        if self.kind == "smooth":
            shift = (4 * t) % w
            return self.canvas[:, shift : shift + w].copy()
        shift = (3 * t) % (2 * w)
        frame = self.canvas[:, shift : shift + w].copy()
        x, y = int(w / 2 + (w / 2 - 40) * np.sin(t / 20)), int(h / 2 + (h / 2 - 40) * np.cos(t / 27))
        frame[y - 30 : y + 30, x - 30 : x + 30] = (250, 40, 40)
        return frame


def busy(seconds: float) -> None:
    """Pure-Python work holding the GIL, as a Python simulator does: ``seconds`` of this thread's
    CPU time, so that time taken from it by another process (the encoder) makes the step longer."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255.0**2 / error))


# ---------------------------------------------------------------- 1. encode cost


def encode_costs(content: Content, frames: int = 40) -> list[dict[str, Any]]:
    """ms per frame (best of 2 runs, wall), end-of-clip ms, kB per 300 frames and PSNR per setting."""
    from episode_recorder.sinks.video import AUTO_PRESETS, EncoderSetting, VideoFileEncoder, VideoOptions

    source = [content.frame(t) for t in range(frames)]
    rows = []
    settings = [("mp4", p, "auto") for p in AUTO_PRESETS["mp4"]] + [("webm", p, "auto") for p in AUTO_PRESETS["webm"]]
    settings += [("mp4", "veryfast", "before"), ("gif", "octree", "auto")]
    folder = tempfile.mkdtemp(prefix="bench-cost-")
    for fmt, preset, kind in settings:
        best = None
        for _ in range(2):
            path = os.path.join(folder, f"cost.{fmt}")
            if os.path.exists(path):
                os.remove(path)  # else the encoder would write cost-1.mp4 (names are never reused)
            if kind == "before":  # the previous default: x264 veryfast with its B-frames and lookahead
                result = _encode_before(path, source, content.height, content.width)
            else:
                encoder = VideoFileEncoder(path, content.height, content.width, VideoOptions(format=fmt), setting=EncoderSetting(preset, 1))
                started = time.perf_counter()
                for frame in source:
                    encoder.write(frame)
                per_frame = (time.perf_counter() - started) / frames
                started = time.perf_counter()
                encoder.close()
                result = (per_frame, time.perf_counter() - started)
            if best is None or result[0] < best[0]:
                best = result
        decoded = _decode(path)
        rows.append({
            "setting": f"{fmt} {preset}" + (" (before: B-frames, lookahead)" if kind == "before" else ""),
            "ms_per_frame": 1000 * best[0], "end_ms": 1000 * best[1],
            "kb_per_300": os.path.getsize(path) / frames * 300 / 1000,
            "psnr": float(np.mean([psnr(a, b) for a, b in zip(decoded, source)])),
        })
    return rows


def encode_cost_line(kind: str = "smooth") -> str:
    """This machine's H.264 cost per 480x640 frame at each "auto" step, in one line: printed with
    every table of the other benchmarks, so that figures from two machines compare."""
    rows = [r for r in encode_costs(Content(kind)) if r["setting"].startswith("mp4") and "before" not in r["setting"]]
    return f"Encode cost, 480x640 {kind} content, 1 thread: " + ", ".join(
        f"{r['setting'].split()[1]} {r['ms_per_frame']:.1f}" for r in rows) + " ms per frame"


def _encode_before(path: str, source: list[np.ndarray], height: int, width: int) -> tuple[float, float]:
    import av

    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.pix_fmt, stream.height, stream.width = "yuv420p", height, width
        stream.options = {"preset": "veryfast", "crf": "23"}
        stream.codec_context.thread_count = 1
        started = time.perf_counter()
        for index, frame in enumerate(source):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = index
            container.mux(stream.encode(video_frame))
        per_frame = (time.perf_counter() - started) / len(source)
        started = time.perf_counter()
        container.mux(stream.encode(None))
    return per_frame, time.perf_counter() - started


def conversion_costs(content: Content, frames: int = 60) -> list[tuple[str, float]]:
    """ms per frame of rgb24 -> yuv420p with one persistent swscale context, by flags and threads."""
    import av
    from av.video.reformatter import Interpolation, VideoReformatter

    source = [content.frame(t) for t in range(frames)]
    rows = [("from_ndarray only (a copy)", _time_each(source, lambda f: av.VideoFrame.from_ndarray(f, format="rgb24")))]
    before = VideoReformatter()
    rows.append(("from_ndarray + bilinear (before 2026-12-02 13:00)", _time_each(source, lambda f: before.reformat(
        av.VideoFrame.from_ndarray(f, format="rgb24"), format="yuv420p"))))
    for name, flags, threads in [("bilinear (used: from_numpy_buffer, no copy)", None, 1), ("bilinear, 2 threads", None, 2),
                                 ("fast_bilinear", Interpolation.FAST_BILINEAR, 1), ("point", Interpolation.POINT, 1),
                                 ("bilinear|accurate_rnd", Interpolation.BILINEAR | Interpolation.ACCURATE_RND, 1)]:
        reformatter = VideoReformatter()
        rows.append((name, _time_each(source, lambda f: reformatter.reformat(
            av.VideoFrame.from_numpy_buffer(f, format="rgb24"), format="yuv420p", interpolation=flags, threads=threads))))
    return rows


def _time_each(source: list[np.ndarray], fn: Any) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for frame in source:
            fn(frame)
        best = min(best, (time.perf_counter() - started) / len(source))
    return 1000 * best


def print_costs(args: argparse.Namespace) -> None:
    print(f"## Encode cost on this machine ({_machine()})\n")
    print(f"{args.height}x{args.width}, 1 thread, best of 2 runs of 40 frames, wall ms per frame; "
          "'end' = flush + close at the end of a clip.\n")
    print("| content | setting | ms / frame | end of clip ms | kB per 300 frames | PSNR dB |")
    print("|---|---|---:|---:|---:|---:|")
    for kind in ("smooth", "scroll"):
        for r in encode_costs(Content(kind, args.height, args.width)):
            print(f"| {kind} | {r['setting']} | {r['ms_per_frame']:.2f} | {r['end_ms']:.1f} | {r['kb_per_300']:.0f} | {r['psnr']:.1f} |")
    print("\nrgb24 -> yuv420p (smooth content), ms per frame:\n")
    print("| conversion | ms / frame |")
    print("|---|---:|")
    for name, ms in conversion_costs(Content("smooth", args.height, args.width)):
        print(f"| {name} | {ms:.2f} |")
    print(flush=True)


def _machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import av

    return (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load {load:.1f}, "
            f"PyAV {av.__version__}, FFmpeg {'.'.join(map(str, av.ffmpeg_version_info)) if isinstance(av.ffmpeg_version_info, tuple) else av.ffmpeg_version_info}")


# ---------------------------------------------------------------- 2./3. one variant (child process)


def make_gym_env(content: Content, busy_ms: float, steps: int) -> Any:
    import gymnasium as gym

    class SyntheticEnv(gym.Env):
        metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

        def __init__(self) -> None:
            self.render_mode = "rgb_array"
            self.observation_space = gym.spaces.Box(-1, 1, (4,))
            self.action_space = gym.spaces.Discrete(2)
            self.t, self.steps, self.episode, self.rendered = 0, 0, -1, []

        def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
            super().reset(seed=seed)
            self.steps, self.episode = 0, self.episode + 1
            return np.zeros(4, np.float32), {}

        def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
            busy(busy_ms / 1000)
            self.t += 1
            self.steps += 1
            return np.zeros(4, np.float32), 1.0, self.steps >= steps, False, {}

        def render(self) -> np.ndarray:
            self.rendered.append((self.episode, self.t))
            return content.frame(self.t)

    return SyntheticEnv()


def make_unienv_env(content: Content, busy_ms: float, steps: int) -> Any:
    from unienv_interface.backends.numpy import NumpyComputeBackend
    from unienv_interface.env_base.env import Env
    from unienv_interface.space.spaces.box import BoxSpace

    class SyntheticUniEnv(Env):
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
            self.t, self.steps, self.episode, self.rendered = 0, 0, -1, []

        def reset(self, *args: Any, mask: Any = None, seed: Any = None, **kwargs: Any) -> Any:
            self.steps, self.episode = 0, self.episode + 1
            return None, np.zeros(1, np.float32), {}

        def step(self, action: Any) -> Any:
            busy(busy_ms / 1000)
            self.t += 1
            self.steps += 1
            return np.zeros(1, np.float32), 1.0, self.steps >= steps, False, {}

        def render(self) -> Any:
            self.rendered.append((self.episode, self.t))
            return content.frame(self.t)

    return SyntheticUniEnv()


class KeepEveryNth:
    """Wraps a MuJoCo env's render() and keeps every n-th frame per episode, for PSNR."""

    def __init__(self, env: Any, every: int) -> None:
        self.env, self.every, self.kept, self.episode, self.index, self.rendered = env, every, {}, -1, 0, []

    def on_reset(self) -> None:
        self.episode, self.index = self.episode + 1, 0

    def render(self) -> Any:
        frame = self.env.render()
        if self.index % self.every == 0:
            self.kept[(self.episode, self.index)] = frame.copy()
        self.rendered.append((self.episode, self.index))
        self.index += 1
        return frame


def make_mujoco_env(size: int) -> tuple[Any, KeepEveryNth]:
    import gymnasium as gym

    env = gym.make("HalfCheetah-v5", render_mode="rgb_array", width=size, height=size)
    keeper = KeepEveryNth(env.unwrapped, 30)

    class Keep(gym.Wrapper):
        def reset(self, **kwargs: Any) -> Any:
            keeper.on_reset()
            return self.env.reset(**kwargs)

        def render(self) -> Any:
            return keeper.render()

    return Keep(env), keeper


def run_variant(args: argparse.Namespace) -> dict[str, Any]:
    logging.getLogger("episode_recorder").setLevel(logging.ERROR)  # adapting is in the table, not on stderr
    variant, out = args.variant, args.out
    mujoco = variant.startswith("mujoco-")
    unienv = "unienv" in variant
    kind = variant.removeprefix("mujoco-").removeprefix("unienv-")
    if mujoco:
        env, source = make_mujoco_env(args.mujoco_size)
        if unienv:
            from unienv_interface.wrapper.gym_compat import FromGymnasiumEnv

            env = FromGymnasiumEnv(env)
        steps = args.mujoco_steps
    else:
        content = Content(args.content, args.height, args.width)
        env = source = (make_unienv_env if unienv else make_gym_env)(content, args.busy_ms, args.steps)
        steps = args.steps
    fmt = variant.rsplit("-", 1)[-1] if variant.endswith(("-webm", "-mp4")) else "mp4"
    if kind.startswith("ours") and unienv:
        from episode_recorder.unienv import EpisodeVideoWrapper

        env = EpisodeVideoWrapper(env, store_dir=out, format=fmt)
    elif kind.startswith("unienv"):
        from unienv_interface.wrapper import EpisodeVideoWrapper

        env = EpisodeVideoWrapper(env, store_dir=out, format=fmt)
    elif kind == "ours":
        from episode_recorder.gym import RecordVideo

        env = RecordVideo(env, out, episode_trigger=lambda e: True)
    elif kind == "gymnasium":
        from gymnasium.wrappers import RecordVideo

        env = RecordVideo(env, out, episode_trigger=lambda e: True)
    else:
        os.makedirs(out, exist_ok=True)
    recording = kind != "none"
    longest, longest_end, longest_step = 0.0, 0.0, 0.0
    rng = np.random.default_rng(0)
    start, start_cpu = time.perf_counter(), time.thread_time()
    for episode in range(args.episodes):
        t0 = time.perf_counter()
        env.reset() if unienv else env.reset(seed=episode)
        if recording and episode > 0:
            _wait_for_files(out, episode)  # the previous episode's file is complete when reset() returns
            longest_end = max(longest_end, time.perf_counter() - t0)
        if not recording:
            env.render()  # render-only: the frames a wrapper would film
        longest = max(longest, time.perf_counter() - t0)
        for _ in range(steps):
            action = rng.uniform(-1, 1, 6).astype(np.float32) if mujoco else (np.zeros(1, np.float32) if unienv else 0)
            t0 = time.perf_counter()
            result = env.step(action)
            if not recording:
                env.render()
            longest = max(longest, time.perf_counter() - t0)
            longest_step = max(longest_step, time.perf_counter() - t0)
            if not mujoco and (result[2] or result[3]):
                break
    t0 = time.perf_counter()
    env.close()
    if recording:
        _wait_for_files(out, args.episodes)
    close_s = time.perf_counter() - t0
    wall = time.perf_counter() - start
    main_cpu = time.thread_time() - start_cpu  # the step loop's own CPU; wall minus it: waiting or preempted
    frames_from = source.rendered
    report: dict[str, Any] = {"wall_s": wall, "main_cpu_s": main_cpu, "close_s": close_s, "longest_call_ms": 1000 * longest,
                              "longest_end_ms": 1000 * longest_end, "longest_step_ms": 1000 * longest_step,
                              "frames_rendered": len(frames_from)}
    report.update(_check_files(out, source, content=None if mujoco else content, args=args))
    if kind.startswith("ours"):
        report["encoder"] = _encoder_settings(env)
    return report


def _wait_for_files(folder: str, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(_files(folder)) < count and time.monotonic() < deadline:
        time.sleep(0.0005)


def _files(folder: str) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if not p.name.startswith(".") and p.suffix in (".mp4", ".webm", ".gif"))


def _check_files(folder: str, source: Any, content: Content | None, args: argparse.Namespace) -> dict[str, Any]:
    """Frames decoded, and PSNR of every 10th frame (MuJoCo: the kept ones) against its source frame."""
    import av

    files = _files(folder)
    decoded_total, scores = 0, []
    by_episode: dict[int, list[int]] = {}
    for episode, t in source.rendered:
        by_episode.setdefault(episode, []).append(t)
    for episode, path in enumerate(files):
        renders = by_episode.get(episode, [])
        with av.open(str(path)) as container:  # one frame at a time: decoding must not inflate the peak
            for index, frame in enumerate(container.decode(video=0)):
                decoded_total += 1
                if index >= len(renders):
                    continue
                if content is not None and index % PSNR_EVERY == 0:
                    scores.append(psnr(frame.to_ndarray(format="rgb24"), content.frame(renders[index])))
                elif content is None and (episode, renders[index]) in source.kept:
                    scores.append(psnr(frame.to_ndarray(format="rgb24"), source.kept[(episode, renders[index])]))
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files), "frames_decoded": decoded_total,
            "psnr_mean": float(np.mean(scores)) if scores else None, "psnr_min": float(np.min(scores)) if scores else None}


def _decode(path: Any) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _encoder_settings(env: Any) -> list[str]:
    recorder = getattr(env, "recorder", None)
    clips = recorder.clips if recorder is not None else []
    described = []
    for clip in clips:
        encoder = clip.extra.get("encoder", {})
        steps = ">".join(f"{s['preset']}{'' if s['threads'] == 1 else 'x' + str(s['threads'])}" for s in encoder.get("settings", []))
        described.append(f"{steps} {encoder.get('encode_ms_per_frame', 0):.1f}ms")
    return described


# ---------------------------------------------------------------- parent: run, sample memory, print


def measure(variant: str, args: argparse.Namespace, content: str) -> dict[str, Any]:
    import psutil

    out = tempfile.mkdtemp(prefix=f"bench-{variant}-")
    command = [sys.executable, __file__, "--child", "--variant", variant, "--out", os.path.join(out, "videos"),
               "--content", content]
    for name in ("busy_ms", "steps", "episodes", "height", "width", "mujoco_steps", "mujoco_size"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    process = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            tree = [process, *process.children(recursive=True)]
            peak = max(peak, sum(p.memory_full_info().pss for p in tree))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
        time.sleep(MEMORY_SAMPLE_SECONDS)
    stdout = child.stdout.read() if child.stdout else ""
    if child.returncode != 0:
        raise RuntimeError(f"variant {variant} failed with code {child.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(variant=variant, peak_pss_mb=peak / 2**20)
    return result


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"### {title}\n")
    print("| variant | wall s | overhead | loop CPU s | longest call ms | longest step ms | longest ending call ms | close s | peak PSS MB | over none MB "
          "| frames decoded / rendered | kB per clip | PSNR mean / min dB | encoder settings per clip (ms/frame) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|")
    base: dict[str, Any] | None = None
    for r in rows:
        if r["variant"].endswith("none"):
            base = r
        overhead = f"{100 * (r['wall_s'] / base['wall_s'] - 1):+.1f}%" if base else "-"
        extra = f"{r['peak_pss_mb'] - base['peak_pss_mb']:+.0f}" if base else "-"
        quality = "-" if r["psnr_mean"] is None else f"{r['psnr_mean']:.1f} / {r['psnr_min']:.1f}"
        per_clip = r["bytes"] / r["files"] / 1000 if r["files"] else 0
        print(f"| {r['variant']} | {r['wall_s']:.2f} | {overhead} | {r['main_cpu_s']:.2f} | {r['longest_call_ms']:.1f} | {r['longest_step_ms']:.1f} | {r['longest_end_ms']:.1f} | "
              f"{r['close_s']:.2f} | {r['peak_pss_mb']:.0f} | {extra} | {r['frames_decoded']} / {r['frames_rendered']} | "
              f"{per_clip:.0f} | {quality} | {', '.join(r.get('encoder', [])) or '-'} |")
    print(flush=True)


def median_runs(variants: list[str], args: argparse.Namespace, content: str) -> list[dict[str, Any]]:
    """Each variant's run of median wall time; the repeats go round the variants (A B A B), so that
    a machine that drifts during the benchmark moves every variant alike."""
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in variants}
    for _ in range(args.repeats):
        for variant in variants:
            runs[variant].append(measure(variant, args, content))
    return [sorted(each, key=lambda r: r["wall_s"])[len(each) // 2] for each in runs.values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["costs", "synthetic", "mujoco"], choices=["costs", "synthetic", "mujoco"])
    parser.add_argument("--contents", nargs="+", default=["smooth", "scroll"], choices=["smooth", "scroll"])
    parser.add_argument("--variants", nargs="+", help="only these variants (names as printed)")
    parser.add_argument("--busy-ms", type=float, default=5.0, help="pure-Python CPU per step")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--mujoco-steps", type=int, default=300)
    parser.add_argument("--mujoco-size", type=int, default=480)
    parser.add_argument("--repeats", type=int, default=1, help="runs per variant; the median wall time is shown")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--content", default="smooth", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args)))
        return
    print(f"# bench_encoder.py — {_machine()}\n", flush=True)
    if "costs" in args.parts:
        print_costs(args)
    wanted = set(args.variants or SYNTHETIC + MUJOCO)
    try:
        import moviepy  # noqa: F401
    except ImportError:
        anchors = {v for v in wanted if v.endswith("gymnasium") or "unienv-unienv" in v}
        print(f"skipping {sorted(anchors)}: the anchors need moviepy (pip install -e '.[bench]')\n")
        wanted -= anchors
    if "synthetic" in args.parts:
        for content in args.contents:
            rows = median_runs([v for v in SYNTHETIC if v in wanted], args, content)
            print_table(f"Synthetic {args.height}x{args.width}, {content} content, {args.episodes} x {args.steps} steps, "
                        f"{args.busy_ms:g} ms CPU per step", rows)
    if "mujoco" in args.parts:
        rows = median_runs([v for v in MUJOCO if v in wanted], args, "smooth")
        print_table(f"MuJoCo HalfCheetah-v5, {args.mujoco_size}x{args.mujoco_size}, {args.episodes} x {args.mujoco_steps} steps", rows)


if __name__ == "__main__":
    main()
