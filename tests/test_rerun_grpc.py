"""Two training processes stream LogRerun recordings to one Rerun server over gRPC on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rerun.chunk import RrdReader

import episode_recorder

WORKER = textwrap.dedent(
    """
    import sys
    import gymnasium as gym
    import rerun as rr
    from episode_recorder.rerun import LogRerun

    url, worker = sys.argv[1], int(sys.argv[2])
    # One recording per worker (same application id): the viewer shows them side by side.
    stream = rr.RecordingStream("training", recording_id=f"worker-{worker}")
    stream.connect_grpc(url)
    env = LogRerun(gym.make("InvertedPendulum-v5"), recording_stream=stream,
                   episode_trigger=lambda episode: True)
    env.action_space.seed(worker)
    for episode in range(2):
        env.reset(seed=worker)
        for _ in range(5 + worker):
            env.step(env.action_space.sample())
    env.close()
    stream.disconnect()
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the Rerun server exited with {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"the Rerun server did not listen on port {port} within {timeout} s")


# The server's --save stream has no footer (a legacy-format .rrd); RrdReader.stream() reads it.
@pytest.mark.filterwarnings("ignore:RRD file has no footer")
def test_two_processes_stream_to_one_server(tmp_path: Path) -> None:
    saved = tmp_path / "server.rrd"
    port = free_port()
    env = dict(os.environ)
    source_root = str(Path(episode_recorder.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    server = subprocess.Popen(
        [sys.executable, "-m", "rerun", "--save", str(saved), "--port", str(port), "--bind", "127.0.0.1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, server)
        script = tmp_path / "worker.py"
        script.write_text(WORKER)
        url = f"rerun+http://127.0.0.1:{port}/proxy"
        workers = [
            subprocess.Popen([sys.executable, str(script), url, str(w)], env=env, stderr=subprocess.PIPE)
            for w in (0, 1)
        ]
        for worker in workers:
            _, stderr = worker.communicate(timeout=120)
            assert worker.returncode == 0, stderr.decode()
    finally:
        server.send_signal(signal.SIGINT)  # the server flushes the file and exits
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    reader = RrdReader(saved)
    recordings = {store.recording_id: store for store in reader.recordings()}
    assert sorted(recordings) == ["worker-0", "worker-1"]
    for worker, store in recordings.items():
        steps = 5 + int(worker[-1])
        frames: dict[str, int] = {}
        static_geoms = 0
        for chunk in reader.stream(store=store):
            if chunk.entity_path == "/world/bodies/pole":
                for name in chunk.timeline_names:
                    if name.endswith("_step"):
                        frames[name] = frames.get(name, 0) + chunk.num_rows
            if chunk.is_static and chunk.entity_path.count("/") == 4:
                static_geoms += 1
        assert store.application_id == "training"
        assert frames == {"episode_0_step": steps + 1, "episode_1_step": steps + 1}
        assert static_geoms == 3  # InvertedPendulum: rail, cart, pole; logged once
