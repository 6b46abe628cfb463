"""episode_recorder.schedule.Schedule: the start/stop decisions every adapter relies on."""

from __future__ import annotations

import pytest

from episode_recorder.schedule import Schedule, Take


def make(**kwargs) -> tuple[Schedule, list[tuple]]:
    """A schedule that logs (event, env, kind, episode_id, step_id, frames) as each take starts and stops."""
    events: list[tuple] = []

    def log(event: str) -> object:
        return lambda t: events.append((event, t.env, t.kind, t.episode_id, t.step_id, t.frames))

    return Schedule(on_start=log("start"), on_stop=log("stop"), **kwargs), events


def test_snippets_span_resets_and_hold_video_length_plus_one_frames() -> None:
    schedule, events = make(step_trigger=lambda s: s == 1, video_length=3)
    schedule.episode_started()
    for step in range(6):
        schedule.advance()
        schedule.check_step_trigger()
        if schedule.take() is not None:
            assert schedule.take().max_frames == 4  # what the adapter tells the encoder's queue
            schedule.frame_added()
        if step == 2:
            schedule.episode_ended()
            schedule.episode_started()  # a snippet continues across the reset
    assert events == [("start", None, "step", 0, 1, 0), ("stop", None, "step", 0, 1, 4)]


def test_whole_episodes_per_env_with_their_own_counters() -> None:
    schedule, events = make(envs=[0, 3], episode_trigger=lambda k: k == 1)
    for env in (0, 3):
        schedule.episode_started(env)
    schedule.episode_ended(3)
    assert schedule.episode_started(3).episode_id == 1  # env 3's episode 1; env 0 still in episode 0
    assert schedule.take(0) is None and schedule.episode_ids == {0: 0, 3: 1}
    assert schedule.take(3).max_frames is None  # whole episodes: no length known in advance
    schedule.frame_added(3)
    schedule.episode_ended(3)
    assert events == [("start", 3, "episode", 1, -1, 0), ("stop", 3, "episode", 1, -1, 1)]


def test_step_trigger_arms_each_envs_next_episode() -> None:
    schedule, events = make(envs=[0, 1], step_trigger=lambda s: s == 2, step_trigger_arms_episode=True)
    for env in (0, 1):
        schedule.episode_started(env)
    for _ in range(3):
        schedule.advance()
        schedule.check_step_trigger()
    assert events == []  # armed, not started: episodes are recorded whole
    schedule.episode_ended(1)
    schedule.episode_started(1)
    schedule.episode_ended(1)
    schedule.episode_started(1)  # the arm was used once
    assert events == [("start", 1, "episode", 1, 2, 0), ("stop", 1, "episode", 1, 2, 0)]


def test_a_failing_start_leaves_no_take() -> None:
    def fail(take: Take) -> None:
        raise OSError("disk full")

    schedule = Schedule(episode_trigger=lambda k: True, on_start=fail, on_stop=lambda take: None)
    with pytest.raises(OSError, match="disk full"):
        schedule.episode_started()
    assert schedule.take() is None
