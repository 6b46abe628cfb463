"""LogRerun on an Isaac Lab scene: this project beside usd-rerun-logger 0.5.0, each run in its own process.

The env is the Isaac Lab stand-in of the tests (``tests/isaaclab_standin.py``: a real usd-core stage,
Isaac Lab 2.x data: torch tensors, quaternion w,x,y,z, a fresh pose tensor per sim step as on a GPU)
wrapped in a minimal Gymnasium env whose ``unwrapped.scene`` is the scene. 20 bodies per env (19 links
+ one rigid object), laid out as the anchor expects (``{root}/{body_name}``, scene key = prim name)
so that both log the same bodies. 300 steps, one episode.

Modes (the same calls for both: construct, ``reset()``, 300 ``step()``, ``close()``):

- ``wrapped``: ``LogRerun(env, logged_envs, save_path=..., episode_trigger=lambda ep: True)``.
  Overhead per step = (wrapped reset..close) - (bare reset..steps), / 300; the anchor's ``close()``
  does not finish the file, so its ``recording_stream.disconnect()`` is timed with it.
- ``log_scene``: the standalone pattern, ``stream.set_time(...)`` then ``logger.log_scene()`` per step.

Run (the anchor needs its own venv, because it pins gymnasium 1.2.3; its ``isaaclab`` import check is
met by an empty package, and torch / usd-core come from this venv)::

    python -m venv /tmp/anchor-usd && /tmp/anchor-usd/bin/pip install usd-rerun-logger==0.5.0 gymnasium==1.2.3
    PYTHONPATH=src:tests python bench/bench_rerun_isaaclab.py            # the tables
    PYTHONPATH=src:tests python bench/bench_rerun_isaaclab.py one ours wrapped 4 1 /tmp/out.rrd
"""

from __future__ import annotations

import json
import os
import resource
import site
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np

STEPS = 300
LINKS = 19  # + the rigid object = 20 bodies per env
REPEATS = 5
ANCHOR_PYTHON = os.environ.get("ANCHOR_PYTHON", "/tmp/anchor-usd/bin/python")


def make_env(num_envs: int):
    from isaaclab_standin import IsaacLabEnv, make_scene

    scene = make_scene(num_envs=num_envs, num_links=LINKS, version="2", nested_links=False, object_key="Object")
    return IsaacLabEnv(scene, "2", episode_lengths=[10 * STEPS] * num_envs)


def run_steps(env, action) -> float:
    start = time.perf_counter()
    for _ in range(STEPS):
        env.step(action)
    return time.perf_counter() - start


def run_wrapped(who: str, num_envs: int, logged: int, path: str) -> dict:
    import torch

    action = torch.zeros(num_envs, 2)
    envs = list(range(logged))
    bare = make_env(num_envs)
    start = time.perf_counter()
    bare.reset()
    bare_reset = time.perf_counter() - start
    bare_steps = statistics.median(run_steps(bare, action) for _ in range(3))

    import rerun  # noqa: F401  imported before the clock starts (the anchor imports it at import time, we lazily)

    if who == "anchor":
        from usd_rerun_logger import LogRerun
    else:
        from episode_recorder.rerun import LogRerun
    env = make_env(num_envs)
    start = time.perf_counter()
    wrapped = LogRerun(env, logged_envs=envs, save_path=path, episode_trigger=lambda episode: True)
    wrapped.reset()
    first = time.perf_counter() - start
    steps = run_steps(wrapped, action)
    start = time.perf_counter()
    wrapped.close()
    if who == "anchor":
        wrapped.logger.recording_stream.disconnect()  # its close() only flushes: the file has no footer yet
    close = time.perf_counter() - start
    return {
        "overhead_ms": (steps + close - bare_steps) / STEPS * 1e3,
        "bare_step_ms": bare_steps / STEPS * 1e3,
        "close_ms": close * 1e3,
        "first_ms": (first - bare_reset) * 1e3,
    }


def run_log_scene(who: str, num_envs: int, logged: int, path: str) -> dict:
    import rerun as rr
    from isaaclab_standin import step

    env = make_env(num_envs)
    env.reset()
    stream = rr.RecordingStream("bench")
    stream.save(path)
    if who == "anchor":
        from usd_rerun_logger import IsaacLabRerunLogger
    else:
        from episode_recorder.rerun import IsaacLabRerunLogger
    logger = IsaacLabRerunLogger(env.scene, logged_envs=list(range(logged)), recording_stream=stream)
    times = []
    for t in range(STEPS + 1):
        stream.set_time("episode_0_step", sequence=t)
        start = time.perf_counter()
        logger.log_scene()
        times.append(time.perf_counter() - start)
        step(env.scene, t + 1, "2")
    start = time.perf_counter()
    stream.disconnect()
    close = time.perf_counter() - start
    return {"overhead_ms": (sum(times[1:]) + close) / STEPS * 1e3, "first_ms": times[0] * 1e3}


def run_one(who: str, mode: str, num_envs: int, logged: int, path: str) -> dict:
    if os.environ.get("BENCH_EXTRA_SITE"):
        sys.path.append(os.environ["BENCH_EXTRA_SITE"])
    result = (run_wrapped if mode == "wrapped" else run_log_scene)(who, num_envs, logged, path)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["rrd_kb"] = os.path.getsize(path) / 1024
    return result


def _subprocess_env(who: str) -> dict[str, str]:
    """The anchor imports `isaaclab` only to check that it exists: an empty package meets that."""
    env = dict(os.environ)
    if who == "anchor":
        stub = os.path.join(tempfile.gettempdir(), "isaaclab_import_stub")
        os.makedirs(os.path.join(stub, "isaaclab"), exist_ok=True)
        open(os.path.join(stub, "isaaclab", "__init__.py"), "a").close()
        env["PYTHONPATH"] = os.pathsep.join([stub, env.get("PYTHONPATH", "")])
        env["BENCH_EXTRA_SITE"] = site.getsitepackages()[0]  # after the anchor venv's own (its gymnasium wins)
    return env


def body_poses(path: str, timeline: str) -> dict[str, dict[int, tuple[float, ...]]]:
    """Body entity -> {frame: translation + quaternion} (the last row per frame: what the viewer shows)."""
    from rerun.chunk import RrdReader

    poses: dict[str, dict[int, tuple[float, ...]]] = defaultdict(dict)
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        names = batch.schema.names
        if chunk.is_static or timeline not in names or "Transform3D:quaternion" not in names:
            continue
        frames = batch.column(timeline).to_pylist()
        translations = batch.column("Transform3D:translation").to_pylist()
        quaternions = batch.column("Transform3D:quaternion").to_pylist()
        for frame, translation, quaternion in zip(frames, translations, quaternions):
            if translation and quaternion:
                poses[chunk.entity_path][frame] = tuple(translation[0]) + tuple(quaternion[0])
    return {entity: rows for entity, rows in poses.items() if len(rows) > 1}  # moving bodies


def same_poses(ours: str, anchor: str) -> str:
    """'yes (N entities x M rows)' when both files hold the same body poses at the same frames."""
    a, b = body_poses(ours, "episode_0_step"), body_poses(anchor, "episode_0_step")
    if a.keys() != b.keys():
        return f"no: entities differ ({sorted(a.keys() ^ b.keys())[:3]})"
    for entity in a:
        if a[entity].keys() != b[entity].keys():
            return f"no: frames of {entity} differ"
        if not np.allclose([a[entity][f] for f in sorted(a[entity])], [b[entity][f] for f in sorted(b[entity])], atol=1e-6):
            return f"no: poses of {entity} differ"
    rows = {len(r) for r in a.values()}
    return f"yes ({len(a)} x {'/'.join(map(str, rows))})"


def measure(who: str, mode: str, num_envs: int, logged: int, folder: str) -> tuple[dict, str]:
    python = ANCHOR_PYTHON if who == "anchor" else sys.executable
    path = os.path.join(folder, f"{who}_{mode}_{num_envs}_{logged}.rrd")
    runs = []
    for _ in range(REPEATS):
        out = subprocess.run(
            [python, __file__, "one", who, mode, str(num_envs), str(logged), path],
            capture_output=True, text=True, env=_subprocess_env(who),
        )
        if out.returncode != 0:
            raise RuntimeError(f"{who} {mode} failed:\n{out.stderr[-3000:]}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return median, path


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "one":
        _, _, who, mode, num_envs, logged, path = sys.argv
        print(json.dumps(run_one(who, mode, int(num_envs), int(logged), path)))
        return
    if not os.path.exists(ANCHOR_PYTHON):
        sys.exit(f"No anchor venv at {ANCHOR_PYTHON}: create it as the docstring says, or set ANCHOR_PYTHON.")
    folder = tempfile.mkdtemp()
    for mode in ("wrapped", "log_scene"):
        print(f"\n{mode} (median of {REPEATS} processes)\n")
        print("| envs | logged | overhead / step, anchor -> ours (ms) | ratio | first call (ms) | "
              "peak RSS (MB) | .rrd (KB) | same poses read back |")
        print("|---:|---:|---:|---:|---:|---:|---:|---|")
        for num_envs in (4, 16):
            for logged in (1, 4):
                anchor, anchor_path = measure("anchor", mode, num_envs, logged, folder)
                ours, ours_path = measure("ours", mode, num_envs, logged, folder)
                print(
                    f"| {num_envs} | {logged} | {anchor['overhead_ms']:.3f} -> {ours['overhead_ms']:.3f} | "
                    f"{anchor['overhead_ms'] / ours['overhead_ms']:.1f}x | "
                    f"{anchor['first_ms']:.0f} -> {ours['first_ms']:.0f} | "
                    f"{anchor['peak_rss_mb']:.0f} -> {ours['peak_rss_mb']:.0f} | "
                    f"{anchor['rrd_kb']:.0f} -> {ours['rrd_kb']:.0f} | {same_poses(ours_path, anchor_path)} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
