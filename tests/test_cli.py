"""The ``episode-recorder`` command: record, inspect, recover dispatch, errors and logging."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import signal
import time
import warnings
from pathlib import Path

import av
import gymnasium as gym
import numpy as np
import pytest

from episode_recorder.cli import main
from rrd_read import read_rrd
from support import decode

SRC = str(Path(__file__).resolve().parents[1] / "src")


def sidecars(folder: Path) -> dict[str, dict]:
    return {p.with_suffix("").name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if p.name != "run.json"}


def test_record_single_env_with_rerun_keep_and_a_file_policy(tmp_path, capsys) -> None:
    policy = tmp_path / "push_left.py"
    policy.write_text("def act(obs):\n    return 0\n")
    out = tmp_path / "run"
    status = main(["record", "CartPole-v1", "--episodes", "3", "--seed", "4", "--out", str(out),
                   "--policy", f"{policy}:act", "--rerun", "--keep", "best=1,last=1"])
    assert status == 0
    captured = capsys.readouterr()

    # the same policy and seed, without us: the returns the files must report
    env = gym.make("CartPole-v1")
    env.reset(seed=4)
    returns = []
    for _ in range(3):
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(0)
            total, done = total + reward, terminated or truncated
        returns.append(total)
        env.reset()
    best = max(range(3), key=lambda e: (returns[e], e))
    kept = sorted({best, 2})
    meta = sidecars(out)
    assert sorted(meta) == [f"CartPole-v1-episode-{e}" for e in kept]
    for episode in kept:
        info = meta[f"CartPole-v1-episode-{episode}"]
        frames, _, fps = decode(out / f"CartPole-v1-episode-{episode}.mp4")
        assert info["episode_return"] == returns[episode] and info["episode_length"] == returns[episode]
        assert len(frames) == info["frames"] == info["episode_length"] + 1 and fps == 50  # the reset frame + one per step
        assert frames[0].shape == (400, 600, 3)

    table = captured.out.splitlines()
    assert table[0].split() == ["file", "env", "episode", "frames", "return"]
    assert [row.split()[2] for row in table[2:-1]] == [str(e) for e in kept]
    assert f"{len(kept)} videos in {out}; rerun {out / 'CartPole-v1.rrd'}" == table[-1]
    assert "3/3 episodes" in captured.err and f"INFO saved {out / 'CartPole-v1-episode-0.mp4'}" in captured.err
    assert "INFO deleted" in captured.err

    run = json.loads((out / "run.json").read_text())
    assert run["env_id"] == "CartPole-v1" and run["seed"] == 4 and run["rerun"] == {"0": str((out / "CartPole-v1.rrd").resolve())}
    entities = read_rrd(out / "CartPole-v1.rrd")
    assert any(name.startswith("/camera") or name.startswith("camera") for name in entities), sorted(entities)


def test_record_vector_env_indices_wandb_and_an_sb3_checkpoint(tmp_path, capsys) -> None:
    sb3 = pytest.importorskip("stable_baselines3")
    checkpoint = tmp_path / "ppo-cartpole.zip"
    sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, seed=0, device="cpu").save(checkpoint)
    out = tmp_path / "vec"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = main(["record", "CartPole-v1", "--num-envs", "3", "--env-indices", "1,2", "--episodes", "2",
                       "--format", "webm", "--out", str(out), "--policy", str(checkpoint), "--seed", "0",
                       "--env-kwargs", '{"max_episode_steps": 15}',
                       "--wandb", "cli-test", "--quiet"])
    assert status == 0
    assert not [str(w.message) for w in caught if "W&B" in str(w.message)]  # no video replaced another
    captured = capsys.readouterr()
    assert captured.err == ""  # --quiet
    meta = sidecars(out)
    assert sorted(meta) == [f"CartPole-v1-env-{i}-episode-{e}" for i in (1, 2) for e in (0, 1)]
    for name, info in meta.items():
        frames, pix_fmt, _ = decode(out / f"{name}.webm")
        assert len(frames) == info["frames"] == info["episode_length"] + 1 <= 16 and pix_fmt == "yuv420p"
    assert "CartPole-v1[2]" in captured.out
    logged = list((tmp_path / "wandb").rglob("media/videos/video/env_*.webm"))  # keys video/env_1, video/env_2
    assert len(logged) == 4, logged


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--num-envs", "2", "--env-indices", "5"], "--env-indices must be distinct numbers from 0 to 1 (--num-envs 2); received '5'"),
        (["--env-kwargs", "{oops"], "--env-kwargs is not valid JSON"),
        (["--env-kwargs", '{"no_such_arg": 1}'], "does not take these --env-kwargs"),
        (["--policy", "nowhere_module:act"], "cannot import 'nowhere_module'"),
        (["--policy", "model.zip"], "cannot tell the algorithm from the file name; prefix it, e.g. --policy PPO:model.zip"),
        (["--keep", "top=3"], "Cannot read keep policy 'top=3'"),
        (["--episodes", "0"], "--episodes must be >= 1, received 0"),
    ],
)
def test_record_errors_say_what_was_received(tmp_path, capsys, arguments, message) -> None:
    assert main(["record", "CartPole-v1", "--out", str(tmp_path / "x"), *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith("episode-recorder record: error: ") and message in err, err
    assert not any((tmp_path / "x").glob("*.mp4"))


def test_sb3_checkpoint_without_stable_baselines3_gives_the_install_hint(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "PPO-cartpole.zip").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # import fails as if not installed
    assert main(["record", "CartPole-v1", "--out", str(tmp_path / "x"), "--policy", str(tmp_path / "PPO-cartpole.zip")]) == 2
    assert "pip install 'episode-recorder[sb3]'" in capsys.readouterr().err


def test_unknown_env_id(tmp_path, capsys) -> None:
    assert main(["record", "NoSuchEnv-v0", "--out", str(tmp_path / "x")]) == 2
    assert "Cannot make 'NoSuchEnv-v0'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_inspect_reports_complete_and_cut_files(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["record", "CartPole-v1", "--episodes", "1", "--seed", "0", "--out", str(out), "--format", "webm", "--quiet"]) == 0
    video = out / "CartPole-v1-episode-0.webm"
    frames = json.loads(video.with_suffix(".json").read_text())["frames"]
    data = video.read_bytes()
    cut_mp4 = tmp_path / "cut.mp4"
    cut_mp4.write_bytes(b"\0\0\0\x18ftypisom")  # an mp4 header and nothing else: no moov
    cut_webm = tmp_path / "cut.webm"
    cut_webm.write_bytes(data[: len(data) * 2 // 3])
    capsys.readouterr()
    assert main(["inspect", "--json", str(video), str(cut_webm), str(cut_mp4)]) == 1
    good, cut, empty = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert good == {"file": str(video), "frames": frames, "fps": 50.0, "width": 600, "height": 400, "codec": "vp9",
                    "duration": round(frames / 50, 3), "complete": True, "problem": None}
    assert not cut["complete"] and 0 < cut["frames"] < frames and "of the" in cut["problem"]
    assert not empty["complete"] and "cannot open" in empty["problem"]
    assert main(["inspect", str(video)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["file", "frames", "fps", "size", "codec", "duration", "complete"]
    assert table[1].split()[1:] == [str(frames), "50", "600x400", "vp9", f"{frames / 50:.2f}", "s", "yes"]


def test_recover_makes_what_a_crash_left_playable(tmp_path, capsys) -> None:
    from episode_recorder.recorder import Recorder
    from episode_recorder.sinks.video import VideoOptions

    crashed = tmp_path / "crashed"
    crashed.mkdir()
    recorder = Recorder(tmp_path / "live", VideoOptions(format="mp4", fps=30))
    segment = recorder.start("clip")
    for t in range(90):
        segment.add(np.full((48, 64, 3), t, np.uint8))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # what a power cut would leave: the .part as it is now
        shutil.copy(tmp_path / "live" / ".clip.mp4.part", crashed / ".episode-0.mp4.part")
        with av.open(str(crashed / ".episode-0.mp4.part")) as container:
            if sum(1 for _ in container.decode(video=0)) >= 30:
                break
    segment.stop()
    (clip,) = recorder.close()
    shutil.copy(clip.path, crashed / "episode-1.partial.mp4")  # the encoder salvaged this one
    capsys.readouterr()
    assert main(["recover", str(crashed)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["remuxed", "renamed"]
    assert sorted(os.listdir(crashed)) == ["episode-0.mp4", "episode-1.mp4"]
    with av.open(str(crashed / "episode-1.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 90
    with av.open(str(crashed / "episode-0.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) >= 30
    assert main(["recover", str(crashed)]) == 0 and "nothing to recover" in capsys.readouterr().out
    assert main(["recover", str(tmp_path / "missing")]) == 2


def test_python_dash_m_and_library_logging_is_silent_unless_configured(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    help_text = subprocess.run([sys.executable, "-m", "episode_recorder", "--help"], env=env, capture_output=True, text=True, check=True).stdout
    assert all(command in help_text for command in ("record", "gallery", "inspect"))
    script = (
        "import sys, logging, gymnasium as gym\n"
        "from episode_recorder.gym import RecordVideo\n"
        "if sys.argv[1] == 'configured': logging.basicConfig(level=logging.INFO)\n"
        f"env = RecordVideo(gym.make('CartPole-v1', render_mode='rgb_array'), {str(tmp_path / 'v')!r} + sys.argv[1])\n"
        "env.reset(seed=0)\n"
        "for _ in range(5): env.step(0)\n"
        "env.close()\n"
    )
    quiet = subprocess.run([sys.executable, "-c", script, "silent"], env=env, capture_output=True, text=True, check=True)
    assert "episode_recorder" not in quiet.stderr and "saved" not in quiet.stderr
    loud = subprocess.run([sys.executable, "-c", script, "configured"], env=env, capture_output=True, text=True, check=True)
    assert f"INFO:episode_recorder:saved {tmp_path / 'vconfigured' / 'rl-video-episode-0.mp4'} (6 frames, 0.12 s of video)" in loud.stderr


def test_ctrl_c_finishes_and_lists_the_files_recorded_so_far(tmp_path) -> None:
    out = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-m", "episode_recorder", "record", "CartPole-v1", "--steps", "1000000", "--seed", "0", "--out", str(out)],
        env={**os.environ, "PYTHONPATH": SRC}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    second = out / "CartPole-v1-episode-1.mp4"  # complete when the reset that starts the third episode returns
    while not second.exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)  # polling for a condition, with a deadline
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr
    assert "interrupted: finishing the videos recorded so far" in stderr
    listed = [line.split()[0] for line in stdout.splitlines()[2:-1]]
    assert sorted(os.path.abspath(p) for p in listed) == sorted(str(p) for p in out.glob("*.mp4"))
    assert len(listed) >= 3 and not list(out.glob(".*.part"))  # the episode running at Ctrl+C is a whole file too
    for name, info in sidecars(out).items():
        assert len(decode(out / f"{name}.mp4")[0]) == info["frames"]  # the interrupted episode too
