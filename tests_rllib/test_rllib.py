"""RecordEpisodes on a local Ray cluster: PPO on CartPole-v1 with 2 env runners.

Two trainings share one ``ray.init(num_cpus=2)``: one records every training runner (2 sub-envs
each), logs to an offline W&B run, and loses runner 2 to a SIGKILL after its first iteration; one
records only the evaluation runner's sub-env 0 and streams it to a Rerun server. Every video is
decoded with PyAV. Runs in its own venv (ray[rllib] pins its own gymnasium): ``make test-rllib``.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.rllib")
from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402

from episode_recorder.rllib import RecordEpisodes  # noqa: E402
from episode_recorder.triggers import every  # noqa: E402

pytestmark = pytest.mark.rllib

MAX_ITERATIONS = 8  # runner 2 is killed after the first; training goes on until it is back


def decode(path: str | Path) -> tuple[int, tuple[int, int], str, float]:
    """(frames, (height, width), pixel format, spread of pixel values) of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        pix_fmt = stream.codec_context.pix_fmt
    return len(frames), frames[0].shape[:2], pix_fmt, float(np.std(frames[0]))


def sidecar(path: str) -> dict[str, Any]:
    with open(os.path.splitext(path)[0] + ".json") as file:
        return json.load(file)


def ppo(callback: Any, **evaluation: Any) -> Any:
    config = (
        PPOConfig()
        .environment("CartPole-v1", env_config={"render_mode": "rgb_array"})
        # Half a CPU each: 2 training runners and 1 evaluation runner fit in num_cpus=2.
        .env_runners(
            num_env_runners=2, num_envs_per_env_runner=2, rollout_fragment_length=50, num_cpus_per_env_runner=0.5
        )
        .training(train_batch_size_per_learner=200, minibatch_size=100, num_epochs=1)
        .fault_tolerance(restart_failed_env_runners=True)
        .callbacks(callback)
    )
    if evaluation:
        config = config.evaluation(**evaluation)
    return config.build_algo()


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster() -> Any:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def training(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """PPO recording all training runners; runner 2 is SIGKILLed after the first iteration."""
    import wandb

    folder = str(tmp_path_factory.mktemp("train_videos"))
    run = wandb.init(project="er-rllib", mode="offline", dir=str(tmp_path_factory.mktemp("wandb")))
    algo = ppo(partial(RecordEpisodes, folder, episode_trigger=every(1), wandb_log_key="rollout"))

    def runner_pids() -> list[int]:
        return algo.env_runner_group.foreach_env_runner(lambda runner: os.getpid(), local_env_runner=False)

    try:
        pids = dict(zip([1, 2], runner_pids()))
        results = [algo.train()]
        os.kill(pids[2], signal.SIGKILL)  # mid-episode: runner 2 records its ongoing episodes
        # RLlib notices the death in the next iteration; Ray restarts the actor (a new process),
        # and RLlib brings it back (and samples from it) at the start of an iteration once it is up.
        results.append(algo.train())
        while len(new_pids := runner_pids()) < 2 and len(results) < MAX_ITERATIONS:
            results.append(algo.train())
    finally:
        algo.stop()
        run.finish()
    return {"folder": folder, "results": results, "pids": pids, "new_pids": new_pids, "wandb_dir": run.dir}


def reported(result: dict[str, Any], *section: str) -> list[str]:
    for key in section:
        result = result.get(key, {})
    return list(result.get("episode_videos", []))


def test_every_training_runner_records_decodable_videos(training: dict[str, Any]) -> None:
    paths = [path for result in training["results"] for path in reported(result, "env_runners")]
    assert len(paths) == len(set(paths)), "a path was reported twice"
    seen = set()
    for iteration, result in enumerate(training["results"], start=1):
        for path in reported(result, "env_runners"):
            info = sidecar(path)
            frames, size, pix_fmt, spread = decode(path)
            assert frames == info["frames"] == info["episode_length"] + 1  # the reset frame and every step
            assert (size, pix_fmt) == ((400, 600), "yuv420p") and spread > 5  # a drawn cart, not a blank frame
            assert info["dropped_frames"] == 0 and info["episode_return"] == info["episode_length"]
            assert info["training_iteration"] == iteration
            assert info["runner_group"] == "train" and info["host"] == socket.gethostname()
            name = os.path.basename(path)
            assert name == (
                f"rl-video-train-runner-{info['runner_index']}-{info['host']}-{info['pid']}"
                f"-env-{info['env_index']}-episode-{info['episode_id']}.mp4"
            )
            seen.add((info["runner_index"], info["env_index"]))
    assert seen == {(1, 0), (1, 1), (2, 0), (2, 1)}


def test_killed_runner_leaves_no_corrupt_file_and_its_successor_records(training: dict[str, Any]) -> None:
    folder, killed = training["folder"], training["pids"][2]
    assert len(training["new_pids"]) == 2, f"runner 2 not back after {MAX_ITERATIONS} iterations"
    successor = training["new_pids"][1]
    assert successor != killed
    # The dead runner's encoder finishes its open clips as playable .partial files, in the background.
    wait_until(lambda: not glob.glob(os.path.join(folder, ".*.part")), 60, "the killed runner's encoder finishing")
    videos = sorted(glob.glob(os.path.join(folder, "*.mp4")))
    listed = {path for result in training["results"] for path in reported(result, "env_runners")}
    partial_files = [path for path in videos if path.endswith(".partial.mp4")]
    assert partial_files and all(f"-{killed}-" in path for path in partial_files)
    for path in partial_files:
        assert decode(path)[0] >= 1
    assert_unlisted_are_unfinished(set(videos) - listed - set(partial_files))
    last = reported(training["results"][-1], "env_runners")
    assert any(f"-runner-2-{socket.gethostname()}-{successor}-" in path for path in last)


def test_wandb_gets_every_reported_video(training: dict[str, Any]) -> None:
    count = sum(len(reported(result, "env_runners")) for result in training["results"])
    logged = glob.glob(os.path.join(training["wandb_dir"], "media", "videos", "rollout", "train_*.mp4"))
    assert len(logged) == count


def assert_unlisted_are_unfinished(paths: set[str]) -> None:
    """Videos in no result: episodes still running at ``algo.stop()`` (saved by ``close()``) or
    abandoned by RLlib's reset before an evaluation. Complete files, marked as unfinished."""
    for path in paths:
        info = sidecar(path)
        assert info["episode_return"] is None and decode(path)[0] == info["frames"] >= 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.filterwarnings("ignore:RRD file has no footer")
def test_evaluation_only_sub_env_0_to_files_and_rerun(cluster: Any, tmp_path: Path) -> None:
    from rerun.chunk import RrdReader

    port, saved = free_port(), tmp_path / "server.rrd"
    server = subprocess.Popen(
        [sys.executable, "-m", "rerun", "--save", str(saved), "--port", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    folder = str(tmp_path / "videos")
    try:
        wait_until(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 60, "the Rerun server listening")
        callback = partial(
            RecordEpisodes, folder, training=False, env_indices=[0], episode_trigger=every(1),
            rerun_url=f"rerun+http://127.0.0.1:{port}/proxy",
        )
        # One sub-env per evaluation runner: with two, sub-env 1 could finish both evaluation
        # episodes before sub-env 0 (the recorded one) finishes its first, which RLlib then abandons.
        algo = ppo(callback, evaluation_interval=1, evaluation_num_env_runners=1, evaluation_duration=2,
                   evaluation_duration_unit="episodes", evaluation_config={"num_envs_per_env_runner": 1})
        try:
            result = algo.train()
        finally:
            algo.stop()  # the runners close their envs: files finished, Rerun streams flushed
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)

    assert reported(result, "env_runners") == []
    paths = reported(result, "evaluation", "env_runners")
    on_disk = set(glob.glob(os.path.join(folder, "*.mp4")))
    assert paths and set(paths) <= on_disk
    for path in paths:
        info = sidecar(path)
        assert os.path.basename(path).startswith("rl-video-eval-runner-1-") and info["env_index"] == 0
        assert decode(path)[0] == info["frames"] == info["episode_length"] + 1
        assert info["runner_group"] == "eval" and info["training_iteration"] == 1
    assert_unlisted_are_unfinished(on_disk - set(paths))

    reader = RrdReader(saved)
    (store,) = reader.recordings()
    assert store.application_id == "episode-recorder" and store.recording_id.startswith("eval-runner-1-")
    frame_rows: dict[str, int] = {}
    for chunk in reader.stream(store=store):
        if not chunk.is_static and chunk.entity_path.startswith("/env_0/episode_"):
            frame_rows[chunk.entity_path] = frame_rows.get(chunk.entity_path, 0) + chunk.num_rows
    expected = {f"/env_0/episode_{sidecar(p)['episode_id']}": sidecar(p)["frames"] for p in on_disk}
    assert frame_rows == expected
