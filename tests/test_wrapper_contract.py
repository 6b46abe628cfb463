"""What every wrapper promises its caller: when files are complete, early clear errors, and a
wrapper that keeps working after a sink failed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import wandb
from support import PatternEnv, decode, pattern
from test_gym import PatternEnv as GymPatternEnv
from test_wandb import history, start_run, video_rows

from episode_recorder.gym import RecordVideo
from episode_recorder.gym.vector import RecordVideo as VectorRecordVideo
from episode_recorder.unienv import EpisodeVideoWrapper, EpisodeWandbVideoWrapper


def finished_videos(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if not name.startswith(".") and name.endswith(".mp4"))


# --- the call that ends a recording returns with the file complete ------------------------------


def test_gym_file_is_complete_when_the_ending_call_returns(tmp_path: Path) -> None:
    env = RecordVideo(GymPatternEnv(lengths=(30,)), str(tmp_path), episode_trigger=lambda e: True)
    env.reset(seed=0)
    for _ in range(30):
        env.step(0)
    assert finished_videos(tmp_path) == []
    env.reset()  # ends episode 0
    assert finished_videos(tmp_path) == ["rl-video-episode-0.mp4"]
    assert len(decode(tmp_path / "rl-video-episode-0.mp4")[0]) == 31
    for _ in range(5):
        env.step(0)
    env.stop_recording()
    assert len(decode(tmp_path / "rl-video-episode-1.mp4")[0]) == 6
    env.close()


def test_gym_snippet_is_complete_when_the_step_that_ends_it_returns(tmp_path: Path) -> None:
    env = RecordVideo(GymPatternEnv(lengths=(100,)), str(tmp_path), step_trigger=lambda s: s == 3, video_length=10)
    env.reset(seed=0)
    for step in range(14):
        env.step(0)
        assert finished_videos(tmp_path) == ([] if step < 13 else ["rl-video-step-3.mp4"])
    assert len(decode(tmp_path / "rl-video-step-3.mp4")[0]) == 11
    env.close()


def test_finish_in_background_returns_before_the_file_is_complete(tmp_path: Path) -> None:
    env = RecordVideo(
        GymPatternEnv(lengths=(200,), size=(240, 320)), str(tmp_path), episode_trigger=lambda e: True,
        finish_in_background=True,
    )
    env.reset(seed=0)
    for _ in range(200):
        env.step(0)
    env.reset()  # returns without waiting: at most a few frames of the ring left to encode
    env.close()  # waits for everything
    assert len(decode(tmp_path / "rl-video-episode-0.mp4")[0]) == 201


def test_vector_per_env_file_is_complete_when_its_episode_ends(tmp_path: Path) -> None:
    envs = gym.vector.SyncVectorEnv([lambda: GymPatternEnv(lengths=(4,)), lambda: GymPatternEnv(lengths=(7,))])
    envs = VectorRecordVideo(envs, str(tmp_path), env_indices=[0, 1], episode_trigger=lambda k: k == 0)
    envs.reset(seed=0)
    for step in range(7):
        envs.step(np.zeros(2, np.int64))
        expected = (["rl-video-env-0-episode-0.mp4"] if step >= 3 else []) + (
            ["rl-video-env-1-episode-0.mp4"] if step >= 6 else []
        )
        assert finished_videos(tmp_path) == expected
    envs.close()
    assert [len(decode(tmp_path / name)[0]) for name in finished_videos(tmp_path)] == [5, 8]


def test_unienv_file_is_complete_when_the_terminating_step_returns(tmp_path: Path) -> None:
    env = EpisodeVideoWrapper(PatternEnv(episode_length=6), store_dir=tmp_path, format="mp4")
    env.reset()
    for step in range(6):
        env.step(None)
        assert finished_videos(tmp_path) == ([] if step < 5 else ["episode_0_step_0.mp4"])
    assert len(decode(tmp_path / "episode_0_step_0.mp4")[0]) == 7
    env.close()


def test_unienv_episode_trigger_skips_episodes(tmp_path: Path) -> None:
    env = EpisodeVideoWrapper(PatternEnv(episode_length=3), store_dir=tmp_path, format="mp4", episode_trigger=lambda n: n % 2 == 1)
    for _ in range(4):
        env.reset()
        for _ in range(3):
            env.step(None)
    env.close()
    assert finished_videos(tmp_path) == ["episode_1_step_3.mp4", "episode_3_step_9.mp4"]


def test_wandb_wrapper_episode_trigger_limits_uploads(tmp_path: Path) -> None:
    run, run_dir = start_run()
    env = EpisodeWandbVideoWrapper(PatternEnv(episode_length=3), wandb_log_key="video", episode_trigger=lambda n: n == 2)
    for episode in range(4):
        env.reset()
        for _ in range(3):
            env.step(None)
        wandb.log({"episode": episode})
    env.close()
    wandb.finish()
    assert [row["video_episode_id"] for row in video_rows(history(run_dir), "video")] == [2]


# --- early, clear errors ------------------------------------------------------------------------


def test_format_is_case_insensitive_and_a_bad_one_creates_nothing(tmp_path: Path) -> None:
    env = RecordVideo(GymPatternEnv(), str(tmp_path / "upper"), format="MP4", episode_trigger=lambda e: e == 0)
    env.reset(seed=0)
    env.step(0)
    env.close()
    assert finished_videos(tmp_path / "upper") == ["rl-video-episode-0.mp4"]
    for make in (
        lambda folder: RecordVideo(GymPatternEnv(), str(folder), format="avi"),
        lambda folder: EpisodeVideoWrapper(PatternEnv(), store_dir=folder, format="avi"),
    ):
        with pytest.raises(ValueError, match="Unknown video format 'avi'"):
            make(tmp_path / "bad")
        assert not (tmp_path / "bad").exists()


def test_env_indices_must_be_a_list(tmp_path: Path) -> None:
    envs = gym.vector.SyncVectorEnv([lambda: GymPatternEnv()] * 4)
    with pytest.raises(TypeError, match=r"env_indices must be a list of sub-env indices, e.g. env_indices=\[3\], received 3"):
        VectorRecordVideo(envs, str(tmp_path / "v"), env_indices=3)
    with pytest.raises(ValueError, match="below num_envs=4, received \\[4\\]"):
        VectorRecordVideo(envs, str(tmp_path / "v"), env_indices=[4])


def test_wandb_log_key_without_a_run_fails_at_construction(tmp_path: Path) -> None:
    assert wandb.run is None
    with pytest.raises(RuntimeError, match="needs an active W&B run.*wandb.init"):
        RecordVideo(GymPatternEnv(), str(tmp_path), wandb_log_key="video")


def test_a_gymnasium_env_given_to_a_unienv_wrapper_says_how_to_convert_it(tmp_path: Path, monkeypatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for make in (
        lambda: EpisodeVideoWrapper(GymPatternEnv(), store_dir=tmp_path / "videos"),
        lambda: EpisodeWandbVideoWrapper(GymPatternEnv(), wandb_log_key="video"),
    ):
        with pytest.raises(TypeError, match="received PatternEnv.*FromGymnasiumEnv"):
            make()
    assert os.listdir(tmp_path) == []  # no folder left behind


def test_an_unwritable_folder_is_an_error_at_construction(tmp_path: Path) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True).returncode:
        pytest.skip("this machine does not allow a read-only bind mount")
    try:
        for make in (
            lambda: RecordVideo(GymPatternEnv(), str(folder)),
            lambda: EpisodeVideoWrapper(PatternEnv(), store_dir=folder),
        ):
            with pytest.raises(OSError, match=f"Cannot write videos into {folder}"):
                make()
    finally:
        subprocess.run(["umount", str(folder)], check=True)


# --- a failing sink leaves a working wrapper ----------------------------------------------------


def test_a_failing_callback_is_raised_once_and_the_wrapper_keeps_working(tmp_path: Path) -> None:
    calls: list[str] = []

    def on_video_saved(path: str, info: dict[str, Any]) -> None:
        calls.append(os.path.basename(path))
        if len(calls) == 1:
            raise RuntimeError("upload failed")

    env = RecordVideo(GymPatternEnv(lengths=(3,)), str(tmp_path), episode_trigger=lambda e: True, on_video_saved=on_video_saved)
    env.reset(seed=0)
    for _ in range(3):
        env.step(0)
    with pytest.raises(RuntimeError, match="upload failed"):
        env.reset()  # ends episode 0; its callback fails
    assert not env.recording
    env.reset()  # episode 2 records as usual
    for _ in range(3):
        env.step(0)
    env.close()
    assert calls == ["rl-video-episode-0.mp4", "rl-video-episode-2.mp4"]
    assert [len(decode(tmp_path / name)[0]) for name in finished_videos(tmp_path)] == [4, 4]


# --- LogRerun without close() --------------------------------------------------------------------

_LOG_RERUN_SCRIPT = """
import os, signal, sys, time
import gymnasium as gym
from episode_recorder.rerun import LogRerun

env = LogRerun(gym.make("CartPole-v1", render_mode="rgb_array"), save_path=sys.argv[1],
               episode_trigger=lambda e: e == 0, log_frames=True, flush_seconds=0.2)
env.reset(seed=0)
for step in range(int(sys.argv[3])):
    env.step(step % 2)  # alternating actions: CartPole lasts more than 29 steps
    time.sleep(float(sys.argv[4]))
if sys.argv[2] == "raise":
    raise RuntimeError("the training loop crashed")
if sys.argv[2] == "sigterm":
    os.kill(os.getpid(), signal.SIGTERM)
"""


@pytest.mark.parametrize(
    ("ending", "steps", "pause", "at_least"),
    [("raise", 29, 0.0, 30), ("return", 29, 0.0, 30), ("sigterm", 25, 0.04, 25 - 0.2 / 0.04 - 5)],
)
def test_log_rerun_without_close_keeps_its_frames(tmp_path: Path, ending: str, steps: int, pause: float, at_least: float) -> None:
    from rrd_read import read_rrd

    path = tmp_path / "run.rrd"
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(_LOG_RERUN_SCRIPT))
    result = subprocess.run(
        [sys.executable, str(script), str(path), ending, str(steps), str(pause)], capture_output=True, text=True, timeout=120
    )
    if ending != "sigterm":  # (under SIGTERM the exit code is rerun-sdk's business: it handles the signal)
        assert (result.returncode == 0) == (ending == "return"), result.stderr
    # one entry per frame (H.264 samples, or JPEGs), after the video stream's static codec
    frames = [entry for entry in read_rrd(path).get("/camera", []) if not entry.get("static")]
    assert at_least <= len(frames) <= steps + 1
    if ending != "sigterm":
        assert len(frames) == steps + 1  # every frame: the reset's and one per step
