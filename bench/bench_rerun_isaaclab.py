"""Bare ``log_scene()`` pattern on the Isaac Lab stand-in: ours vs a per-body ``rr.log`` re-implementation of the anchor.

Each configuration runs in its own process (peak RSS is per process):

    PYTHONPATH=src:tests python bench/bench_rerun_isaaclab.py            # the whole table
    PYTHONPATH=src:tests python bench/bench_rerun_isaaclab.py one ours 4 1

Modes: ``ours`` (IsaacLabRerunLogger.log_scene each step), ``ours_columns`` (record_poses each step,
one flush with rr.send_columns at the end: what LogRerun does), ``anchor`` (usd-rerun-logger 0.5's
loop: ``.cpu().numpy()`` of every env, Python loops over envs and bodies, ``np.array_equal`` against
the previous pose, one ``rr.log`` per body; it keeps a copy, as ``.cpu()`` does from a GPU).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

STEPS = 300
LINKS = 19  # + the rigid object = 20 bodies per env


def anchor_logger(scene, logged_envs, stream):
    """The anchor's per-body loop (Isaac Lab 2.x convention), with our geometry code for its first call."""
    import rerun as rr
    from pxr import Usd

    from episode_recorder.scenes.usd import iter_drawn_prims, log_prim_geometry

    prev: dict[str, np.ndarray] = {}
    state = {"geometry": False}

    def log_scene() -> None:
        for name, obj in list(scene.articulations.items()) + list(scene.rigid_objects.items()):
            poses = obj.data.body_pose_w.cpu().numpy().copy()
            for env in range(scene.num_envs):
                if env not in logged_envs:
                    continue
                root = obj.cfg.prim_path.replace(".*", str(env))
                for index, body in enumerate(obj.body_names):
                    path = f"{root}/{body}" if body != name else root
                    if not state["geometry"]:
                        prim = scene.stage.GetPrimAtPath(path)
                        if prim:
                            for p in iter_drawn_prims(prim):
                                log_prim_geometry(stream, str(p.GetPath()), p, Usd.TimeCode.EarliestTime())
                    pose = poses[env][index]
                    if path in prev and np.array_equal(prev[path], pose):
                        continue
                    prev[path] = pose
                    stream.log(path, rr.Transform3D(translation=pose[:3], quaternion=pose[[4, 5, 6, 3]]))
        state["geometry"] = True

    return log_scene


def run_one(mode: str, num_envs: int, logged: int) -> dict:
    if os.environ.get("BENCH_EXTRA_SITE"):
        sys.path.append(os.environ["BENCH_EXTRA_SITE"])
    import rerun as rr
    from isaaclab_standin import make_scene, step

    from episode_recorder.scenes.isaaclab import IsaacLabRerunLogger

    scene = make_scene(num_envs=num_envs, num_links=LINKS, version="2")
    path = os.path.join(tempfile.mkdtemp(), "bench.rrd")
    stream = rr.RecordingStream("bench")
    stream.save(path)
    envs = list(range(logged))
    if mode == "anchor":
        call = anchor_logger(scene, envs, stream)
    elif mode == "real_anchor":
        from usd_rerun_logger import IsaacLabRerunLogger as AnchorLogger

        call = AnchorLogger(scene, logged_envs=envs, recording_stream=stream).log_scene
    else:
        logger = IsaacLabRerunLogger(scene, logged_envs=envs, recording_stream=stream)
        if mode == "ours_columns":
            logger.log_geometry(stream)
            call = logger.record_poses
        else:
            call = logger.log_scene
    times = []
    for t in range(STEPS):
        step(scene, t, "2")
        stream.set_time("step", sequence=t)
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    flush_s = 0.0
    if mode == "ours_columns":
        start = time.perf_counter()
        logger.flush(stream, [rr.TimeColumn("step", sequence=np.arange(STEPS))])
        flush_s = time.perf_counter() - start
    stream.disconnect()
    return {
        "mode": mode,
        "envs": num_envs,
        "logged": logged,
        "first_ms": times[0] * 1e3,
        "per_step_ms": (sum(times[1:]) + flush_s) / (STEPS - 1) * 1e3,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rrd_kb": os.path.getsize(path) / 1024,
    }


ANCHOR_PYTHON = os.environ.get("ANCHOR_PYTHON", "/tmp/anchor-usd/bin/python")


def _env(mode: str) -> dict[str, str]:
    """The real anchor runs in its own venv (usd-rerun-logger 0.5.0, gymnasium 1.2.3); it imports `isaaclab`
    only to check it exists, so an empty stand-in package satisfies it; pxr and torch come from this venv."""
    env = dict(os.environ)
    if mode == "real_anchor":
        stub = os.path.join(tempfile.gettempdir(), "isaaclab_import_stub")
        os.makedirs(os.path.join(stub, "isaaclab"), exist_ok=True)
        open(os.path.join(stub, "isaaclab", "__init__.py"), "a").close()
        import site

        ours = site.getsitepackages()[0]
        env["PYTHONPATH"] = os.pathsep.join([stub, env.get("PYTHONPATH", "")])
        env["BENCH_EXTRA_SITE"] = ours  # appended after the anchor venv's own packages (its gymnasium wins)
    return env


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "one":
        print(json.dumps(run_one(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return
    print("| envs | logged envs | mode | log time / step (ms) | first call (ms) | peak RSS (MB) | .rrd (KB) |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for num_envs in (4, 16):
        for logged in (1, 4):
            for mode in ("real_anchor", "anchor", "ours", "ours_columns"):
                python = ANCHOR_PYTHON if mode == "real_anchor" else sys.executable
                if mode == "real_anchor" and not os.path.exists(python):
                    continue
                out = subprocess.run(
                    [python, __file__, "one", mode, str(num_envs), str(logged)],
                    capture_output=True, text=True, check=True, env=_env(mode),
                ).stdout
                r = json.loads(out.strip().splitlines()[-1])
                print(
                    f"| {num_envs} | {logged} | {mode} | {r['per_step_ms']:.3f} | {r['first_ms']:.1f} | "
                    f"{r['peak_rss_mb']:.0f} | {r['rrd_kb']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
