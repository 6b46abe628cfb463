from __future__ import annotations

import gymnasium as gym
import pytest

from episode_recorder.gym import RecordVideo
from episode_recorder.triggers import capped_cubic_video_schedule, every


def test_capped_cubic_schedule_is_gymnasiums():
    # Gymnasium's rule (gymnasium.utils.save_video, which imports moviepy): cubes below 1000, then every 1000th.
    expected = [k**3 for k in range(10)] + [1000, 2000, 3000, 4000]
    assert [i for i in range(5000) if capped_cubic_video_schedule(i)] == expected


def test_every_n_fires_on_multiples_of_n_starting_at_zero():
    assert [i for i in range(12) if every(4)(i)] == [0, 4, 8]
    assert all(every(1)(i) for i in range(5))
    for bad in (0, -3):
        with pytest.raises(ValueError, match=f"n >= 1, received {bad}"):
            every(bad)


def test_every_as_a_record_video_trigger(tmp_path):
    folder = tmp_path / "videos"
    env = RecordVideo(gym.make("CartPole-v1", render_mode="rgb_array"), str(folder), episode_trigger=every(2))
    for episode in range(5):
        env.reset(seed=episode)
        env.step(env.action_space.sample())
    env.close()
    assert sorted(p.name for p in folder.iterdir()) == [f"rl-video-episode-{i}.mp4" for i in (0, 2, 4)]
