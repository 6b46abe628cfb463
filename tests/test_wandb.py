"""W&B logging against a real offline ``wandb`` run, read back from the run's transaction log."""

from __future__ import annotations

import functools
import json
import os
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wandb
from support import PatternEnv, decode, psnr
from wandb.proto import wandb_internal_pb2

from episode_recorder.recorder import Recorder
from episode_recorder.sinks.video import VideoOptions
from episode_recorder.sinks.wandb import log_clip_to_wandb, require_wandb
from episode_recorder.unienv import EpisodeWandbVideoWrapper


@pytest.fixture(autouse=True)
def _temp_under_tmp_path(tmp_path, monkeypatch):
    """The wrapper's temporary folders go under tmp_path, so the tests can look at them."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))


class RecordingEnv(PatternEnv):
    """A PatternEnv that remembers the frame counter ``t`` of every render."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rendered_t: list[int] = []

    def render(self) -> Any:
        self.rendered_t.append(int(self.t[0]))
        return super().render()


def history(run_dir: Path) -> list[dict[str, Any]]:
    """Every committed history row of a finished offline run, from its ``.wandb`` transaction log.

    ``wandb.finish()`` returns before wandb-core has written the log, so this waits for the run's
    final ``exit`` record.
    """
    deadline = time.monotonic() + 30
    while True:
        records = list(transaction_log(run_dir))
        if any(record.WhichOneof("record_type") == "exit" for record in records) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    rows: list[dict[str, Any]] = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                keys = list(item.nested_key) or [item.key]
                target = row
                for key in keys[:-1]:
                    target = target.setdefault(key, {})
                target[keys[-1]] = json.loads(item.value_json)
            rows.append(row)
    return rows


def transaction_log(run_dir: Path) -> Iterator[wandb_internal_pb2.Record]:
    """The ``Record`` protos of a run's ``.wandb`` file.

    The file is a ``:W&B`` header followed by LevelDB-log records (32 KiB blocks; each chunk has a
    7-byte header: crc32, length, type 1 full / 2 first / 3 middle / 4 last).
    """
    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or kind == 0:  # the rest of a block is padding
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def media_files(run_dir: Path) -> list[Path]:
    return [path for path in (run_dir / "files" / "media" / "videos").rglob("*") if path.is_file()]


def video_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [row for row in rows if key in row]


def assert_episode(run_dir: Path, video: dict[str, Any], expected: list[np.ndarray]) -> None:
    assert video["_type"] == "video-file"
    frames, _, _ = decode(run_dir / "files" / video["path"])
    assert len(frames) == len(expected)
    assert min(psnr(a, b) for a, b in zip(frames, expected)) > 28


def run_episodes(env: Any, episodes: int, on_step: Any = None) -> None:
    env.reset()
    done = 0
    while done < episodes:
        _, _, terminated, truncated, _ = env.step(env.sample_action())
        if on_step is not None:
            on_step()
        if terminated or truncated:
            done += 1
            if done < episodes:
                env.reset()


def start_run() -> tuple[Any, Path]:
    run = wandb.init(project="episode-recorder-tests")
    return run, Path(run.dir).parent


def test_each_episode_rides_on_the_next_user_log(tmp_path):
    run, run_dir = start_run()
    base = RecordingEnv(episode_length=10)
    env = EpisodeWandbVideoWrapper(base, wandb_log_key="rollout/video", format="webm")
    assert (env.wandb_log_key, env.store_format, env.control_wandb_step, env.log_wandb_episode_id) == (
        "rollout/video", "webm", False, True
    )
    temporary = Path(env.store_dir)
    assert temporary.parent == tmp_path / "tmp"
    user_steps = []

    def user_log() -> None:
        user_steps.append(run.step)
        wandb.log({"reward": 1.0})

    run_episodes(env, 3, user_log)
    env.close()
    assert not temporary.exists()  # every file was logged, then the folder was removed
    wandb.finish()

    rows = history(run_dir)
    assert len(rows) == 30
    logged = video_rows(rows, "rollout/video")
    # Each episode ends inside step 10, 20, 30; its video joins the user's log of that step.
    assert [row["_step"] for row in logged] == [user_steps[9], user_steps[19], user_steps[29]] == [9, 19, 29]
    assert [row["rollout/video_episode_id"] for row in logged] == [0, 1, 2]
    assert [row["rollout/video"]["caption"] for row in logged] == ["episode 0", "episode 1", "episode 2"]
    assert len(media_files(run_dir)) == 3
    for episode, row in enumerate(logged):
        ts = base.rendered_t[11 * episode : 11 * (episode + 1)]  # the reset frame and 10 steps
        assert_episode(run_dir, row["rollout/video"], [base.expected_frame(t) for t in ts])


def test_control_wandb_step_logs_each_camera_at_the_episode_start_step():
    run, run_dir = start_run()
    base = PatternEnv(episode_length=6, cameras=True)
    env = EpisodeWandbVideoWrapper(base, wandb_log_key="eval", format="mp4", control_wandb_step=True)
    expected: list[dict[str, list[np.ndarray]]] = []

    def remember() -> None:  # the frames of the current step, per camera
        t = int(base.t[0])
        expected[-1]["front"].append(base.expected_frame(t))
        expected[-1]["side"].append(base.expected_frame(t, camera="side"))

    env.reset()
    for _ in range(2):
        expected.append({"front": [], "side": []})
        remember()
        for _ in range(6):
            env.step(env.sample_action())
            remember()
        env.reset()
    env.close()
    wandb.finish()

    logged = video_rows(history(run_dir), "eval/cam.front")
    assert [row["_step"] for row in logged] == [0, 6]
    assert [row["eval_episode_id"] for row in logged] == [0, 1]
    assert all("eval/cam.side" in row and "eval" not in row for row in logged)
    assert len(media_files(run_dir)) == 4
    for row, frames in zip(logged, expected):
        assert_episode(run_dir, row["eval/cam.front"], frames["front"])
        assert_episode(run_dir, row["eval/cam.side"], frames["side"])
        assert row["eval/cam.front"]["path"].endswith(".mp4")


def test_close_logs_an_open_episode_once_and_never_a_logged_one_again(tmp_path):
    run, run_dir = start_run()
    env = EpisodeWandbVideoWrapper(
        PatternEnv(episode_length=5), wandb_log_key="video", control_wandb_step=True, log_wandb_episode_id=False,
        store_dir=tmp_path / "kept",
    )
    run_episodes(env, 1)  # logged when it terminates
    env.close()  # no reset since: nothing more to log
    env.close()
    second = EpisodeWandbVideoWrapper(PatternEnv(episode_length=50), wandb_log_key="partial", control_wandb_step=True)
    second.reset()
    for _ in range(3):
        second.step(second.sample_action())
    second.close()  # an episode still running: logged now, with its 4 frames
    wandb.finish()

    (row,) = history(run_dir)  # both wrappers' first episode starts at step 0
    assert sorted(key for key in row if not key.startswith("_")) == ["partial", "partial_episode_id", "video"]
    assert [len(decode(run_dir / "files" / row[key]["path"])[0]) for key in ("video", "partial")] == [6, 4]
    assert len(media_files(run_dir)) == 2
    assert [path.name for path in (tmp_path / "kept").iterdir()] == ["episode_0_step_0.webm"]  # store_dir keeps files


def test_a_step_behind_the_run_warns_once_and_still_logs_every_video():
    run, run_dir = start_run()
    env = EpisodeWandbVideoWrapper(PatternEnv(episode_length=4), wandb_log_key="video", control_wandb_step=True)

    def user_logs_twice() -> None:  # the run's step runs ahead of the env's
        wandb.log({"a": 1.0})
        wandb.log({"b": 1.0})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_episodes(env, 3, user_logs_twice)
        env.close()
    wandb.finish()

    messages = [str(w.message) for w in caught if "W&B silently drops" in str(w.message)]
    assert len(messages) == 1
    assert "W&B step 0 is lower than the run's current step 6" in messages[0]
    assert "define_metric" in messages[0]
    logged = video_rows(history(run_dir), "video")
    assert [row["video_episode_id"] for row in logged] == [0, 1, 2]
    assert [row["_step"] for row in logged] == [6, 14, 22]  # each with the user's next log


def test_two_uncommitted_episodes_under_one_key_warn(tmp_path):
    run, run_dir = start_run()
    env = EpisodeWandbVideoWrapper(PatternEnv(episode_length=3), wandb_log_key="video", format="gif")
    with pytest.warns(RuntimeWarning, match=r"replaced by .*Call wandb.log\(\.\.\.\) once per episode"):
        run_episodes(env, 2)
    env.close()
    wandb.finish()
    logged = video_rows(history(run_dir), "video")
    assert [row["video_episode_id"] for row in logged] == [1]  # what W&B keeps; hence the warning
    assert logged[0]["video"]["path"].endswith(".gif")
    assert len(decode(run_dir / "files" / logged[0]["video"]["path"])[0]) == 4


def test_no_active_run_is_a_clear_error_and_the_video_is_kept():
    env = EpisodeWandbVideoWrapper(PatternEnv(episode_length=4), wandb_log_key="video")
    env.reset()
    for _ in range(3):
        env.step(env.sample_action())
    with pytest.raises(RuntimeError, match=r"call wandb.init\(\) first") as error:
        env.step(env.sample_action())
    kept = Path(env.store_dir) / "episode_0_step_0.webm"
    assert str(kept) in str(error.value)
    env.close()  # does not try again
    assert len(decode(kept)[0]) == 5


def test_missing_wandb_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail as if not installed
    with pytest.raises(ImportError, match=r"pip install 'episode-recorder\[wandb\]'"):
        require_wandb()
    env = PatternEnv()
    with pytest.raises(ImportError, match=r"EpisodeWandbVideoWrapper .*episode-recorder\[wandb\]"):
        EpisodeWandbVideoWrapper(env, wandb_log_key="video")


def test_log_clip_to_wandb_as_a_recorder_callback(tmp_path):
    run, run_dir = start_run()
    on_saved = functools.partial(log_clip_to_wandb, key="gym/video")
    recorder = Recorder(tmp_path / "videos", VideoOptions(format="mp4", fps=20), on_saved=on_saved)
    expected = []
    for episode in range(2):
        segment = recorder.start(f"episode_{episode}", episode_id=episode, env_index=1)
        frames = [PatternEnv().expected_frame(10 * episode + t) for t in range(5)]
        for frame in frames:
            segment.add(frame)
        (clip,) = segment.stop(episode_return=2.5 * episode)
        recorder.wait([clip])  # on_saved logs it
        wandb.log({"episode": episode})
        expected.append(frames)
    recorder.close()
    wandb.finish()

    logged = video_rows(history(run_dir), "gym/video")
    assert [row["gym/video"]["caption"] for row in logged] == [
        "episode 0, env 1, return 0",
        "episode 1, env 1, return 2.5",
    ]
    assert [row["gym/video_episode_id"] for row in logged] == [0, 1]
    for row, frames in zip(logged, expected):
        assert_episode(run_dir, row["gym/video"], frames)
    assert sorted(os.listdir(tmp_path / "videos")) == ["episode_0.mp4", "episode_1.mp4"]  # the user's files stay


def test_gymnasium_record_video_logs_each_saved_video_with_a_caption(tmp_path):
    import gymnasium as gym

    from episode_recorder.gym import RecordVideo

    run, run_dir = start_run()
    env = RecordVideo(
        gym.make("CartPole-v1", render_mode="rgb_array"),
        str(tmp_path / "videos"),
        episode_trigger=lambda episode: True,
        wandb_log_key="rollout",
    )
    frames_per_episode = []
    for seed in range(2):
        env.reset(seed=seed)
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            steps, done = steps + 1, terminated or truncated
        frames_per_episode.append(steps + 1)
        wandb.log({"episode_steps": steps})
    env.close()
    wandb.log({"final": 1})
    wandb.finish()
    rows = video_rows(history(run_dir), "rollout")
    assert len(rows) == 2
    assert [row["rollout_episode_id"] for row in rows] == [0, 1]
    for row, count in zip(rows, frames_per_episode):
        assert row["rollout"]["caption"].startswith(f"episode {row['rollout_episode_id']}")
        assert len(decode(run_dir / "files" / row["rollout"]["path"])[0]) == count
    assert len(media_files(run_dir)) == 2


def test_vector_record_video_logs_one_key_per_env_with_captions(tmp_path):
    import gymnasium as gym

    from episode_recorder.gym.vector import RecordVideo

    run, run_dir = start_run()
    envs = gym.make_vec("CartPole-v1", num_envs=3, render_mode="rgb_array", vectorization_mode="sync")
    envs = RecordVideo(envs, str(tmp_path / "videos"), env_indices=[0, 2], episode_trigger=lambda k: k == 0,
                       wandb_log_key="rollout")
    envs.reset(seed=0)
    returns: dict[int, float] = {0: 0.0, 2: 0.0}
    finished: set[int] = set()
    while finished != {0, 2}:
        _, rewards, terminations, truncations, _ = envs.step(envs.action_space.sample())
        for index in set(returns) - finished:
            returns[index] += float(rewards[index])
            if terminations[index] or truncations[index]:
                finished.add(index)
        wandb.log({"reward": float(rewards.sum())})
    envs.close()
    wandb.finish()

    rows = history(run_dir)
    assert not video_rows(rows, "rollout/env_1") and not video_rows(rows, "rollout")
    for index in (0, 2):
        (row,) = video_rows(rows, f"rollout/env_{index}")
        assert row[f"rollout/env_{index}"]["caption"] == f"episode 0, env {index}, return {returns[index]:.4g}"
        assert row[f"rollout/env_{index}_episode_id"] == 0
        frames = decode(run_dir / "files" / row[f"rollout/env_{index}"]["path"])[0]
        assert len(frames) == returns[index] + 1  # CartPole: reward 1 per step, plus the reset frame
    assert len(media_files(run_dir)) == 2


def test_batched_unienv_env_logs_the_chosen_env_with_its_index_in_the_caption():
    run, run_dir = start_run()
    base = PatternEnv(batch_size=3, episode_length=4)
    env = EpisodeWandbVideoWrapper(base, wandb_log_key="video", format="mp4", control_wandb_step=True,
                                   done_index=2, rendered_index=2)
    env.reset()
    for _ in range(6):  # env 2's first episode lasts 6 steps; envs 0 and 1 reset on their own meanwhile
        _, _, terminated, truncated, _ = env.step(env.sample_action())
        done = np.asarray(terminated) | np.asarray(truncated)
        if done.any():
            env.reset(mask=done)
    env.close()
    wandb.finish()

    (row,) = video_rows(history(run_dir), "video")
    assert row["video"]["caption"] == "episode 0, env 2"
    assert (row["_step"], row["video_episode_id"]) == (0, 0)
    # as in UniEnv, the masked resets of envs 0 and 1 render a frame too
    assert_episode(run_dir, row["video"], [base.expected_frame(t, env_index=2) for t in [1, 2, 3, 4, 5, 5, 6, 6, 7]])
