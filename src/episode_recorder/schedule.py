"""When a recording of which env starts and stops: the one schedule every adapter shares.

Adapters translate their API's events (resets, step results, dones, masks, autoreset modes) into
a few calls and act on what the schedule decides through two callbacks:

- ``episode_started(env)``: ``env`` begins an episode (a reset, or an auto-reset seen in a step);
  counts it, ends a whole-episode take and starts one when ``episode_trigger(k)`` says so;
- ``episode_ended(env)``: ``env``'s episode is over (its last frame is in) before the next starts;
- ``advance()`` then ``check_step_trigger()``: one more step, and a snippet of every env when
  ``step_trigger(step_id)`` says so (or, with ``step_trigger_arms_episode``, the next episode);
- ``frame_added(env)``: one more frame; a take ends after ``video_length + 1`` frames.

``on_start(take)`` opens what the adapter records into (``take.segment``); ``on_stop(take)``
finishes it. A :class:`Take` knows its env, why it started, and the episode and step it started at.

    >>> log = []
    >>> schedule = Schedule([0, 1], episode_trigger=lambda k: k % 2 == 0,
    ...                     on_start=lambda t: log.append(f"start env {t.env} ep {t.episode_id}"),
    ...                     on_stop=lambda t: log.append(f"stop env {t.env} after {t.frames} frames"))
    >>> for env in (0, 1):
    ...     take = schedule.episode_started(env)
    ...     schedule.frame_added(env)
    >>> schedule.episode_ended(0); _ = schedule.episode_started(0)   # env 0: episode 1, not recorded
    >>> log
    ['start env 0 ep 0', 'start env 1 ep 0', 'stop env 0 after 1 frames']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Trigger = Callable[[int], bool]
TakeKind = Literal["episode", "step", "manual"]
EnvKey = Any  # an env index, or None for a single env / a tiled overview

__all__ = ["Schedule", "Take"]


@dataclass(eq=False)  # one recording: compared by identity
class Take:
    """One recording the schedule started: of which env, why, and since when."""

    env: EnvKey
    kind: TakeKind  # "episode": episode_trigger; "step": step_trigger; "manual": the adapter's start()
    episode_id: int  # the env's episode counter when it started
    step_id: int  # the schedule's step counter when it started
    name: str | None = None  # given for manual takes; adapters name the others
    max_frames: int | None = None  # video_length + 1: the most frames it can hold (None: whole episodes)
    frames: int = 0
    segment: Any = None  # what the adapter records into (a Segment, a Rerun timeline, ...)


class Schedule:
    """Decides, for each env in ``envs``, when a recording (a :class:`Take`) starts and stops.

    ``video_length=n``: a take ends once it holds ``n + 1`` frames, across resets (Gymnasium's and
    Stable-Baselines3's rule); ``None``: whole episodes (a take ends when its env's episode ends or
    the next one starts). ``step_id`` is the step counter before the first ``advance()``.
    ``step_trigger_arms_episode=True`` makes a step trigger record each env's next episode instead
    of starting a snippet.
    """

    def __init__(
        self,
        envs: Sequence[EnvKey] = (None,),
        *,
        episode_trigger: Trigger | None = None,
        step_trigger: Trigger | None = None,
        video_length: int | None = None,
        step_id: int = -1,
        step_trigger_arms_episode: bool = False,
        on_start: Callable[[Take], None],
        on_stop: Callable[[Take], None],
    ) -> None:
        if video_length is not None and video_length < 0:
            raise ValueError(f"video_length must be >= 0 (None: whole episodes), received {video_length}")
        self.envs = list(envs)
        self.episode_trigger = episode_trigger
        self.step_trigger = step_trigger
        self.video_length: float = math.inf if video_length is None else video_length
        self.step_id = step_id
        self.step_trigger_arms_episode = step_trigger_arms_episode
        self.on_start = on_start
        self.on_stop = on_stop
        self.episode_ids: dict[EnvKey, int] = {env: -1 for env in self.envs}
        self.in_episode: dict[EnvKey, bool] = {env: False for env in self.envs}
        self.takes: dict[EnvKey, Take | None] = {env: None for env in self.envs}
        self._armed: dict[EnvKey, bool] = {env: False for env in self.envs}

    @property
    def whole_episodes(self) -> bool:
        """Whether takes last whole episodes (``video_length=None``)."""
        return self.video_length == math.inf

    def take(self, env: EnvKey = None) -> Take | None:
        """The running take of ``env`` (None when it is not recording)."""
        return self.takes[env]

    # --- events the adapters translate -------------------------------------------------------
    def episode_started(self, env: EnvKey = None, episode_id: int | None = None) -> Take | None:
        """``env`` begins its next episode; returns its running take (record the reset frame into it).

        ``episode_id``: the episode's number when the adapter's API numbers episodes itself (UniEnv).
        """
        self.episode_ids[env] = self.episode_ids[env] + 1 if episode_id is None else episode_id
        self.in_episode[env] = True
        if self.takes[env] is not None and self.whole_episodes:
            self.stop(env)
        episode = self.episode_ids[env]
        wanted = self.episode_trigger is not None and self.episode_trigger(episode)
        if self._armed[env]:
            self._armed[env], wanted = False, True
        if wanted:
            self.start(env, "episode")
        return self.takes[env]

    def episode_ended(self, env: EnvKey = None) -> None:
        """``env``'s episode is over before its next one starts (whole-episode takes end here)."""
        if self.takes[env] is not None and self.whole_episodes:
            self.stop(env)
        self.in_episode[env] = False

    def advance(self) -> int:
        """Count one step; returns the new ``step_id``."""
        self.step_id += 1
        return self.step_id

    def check_step_trigger(self) -> bool:
        """Ask ``step_trigger(step_id)``; if it fires, start a snippet of every env (replacing a running
        take) or arm each env's next episode. Returns whether it fired."""
        if self.step_trigger is None or not self.step_trigger(self.step_id):
            return False
        for env in self.envs:
            if self.step_trigger_arms_episode:
                self._armed[env] = True
            else:
                self.start(env, "step")
        return True

    def frame_added(self, env: EnvKey = None) -> None:
        """Count a frame recorded into ``env``'s take; the take ends after ``video_length + 1`` frames."""
        take = self.takes[env]
        take.frames += 1
        if take.frames > self.video_length:
            self.stop(env)

    # --- starting and stopping ---------------------------------------------------------------
    def start(self, env: EnvKey = None, kind: TakeKind = "manual", name: str | None = None) -> Take:
        """Start a take of ``env`` (stopping its running one first)."""
        if self.takes[env] is not None:
            self.stop(env)
        max_frames = None if self.video_length == math.inf else int(self.video_length) + 1
        take = Take(env, kind, self.episode_ids[env], self.step_id, name, max_frames=max_frames)
        self.on_start(take)  # registered only once the adapter has opened it
        self.takes[env] = take
        return take

    def stop(self, env: EnvKey = None) -> Take | None:
        """Stop ``env``'s running take (if any) and return it."""
        take, self.takes[env] = self.takes[env], None
        if take is not None:
            self.on_stop(take)
        return take

    def stop_all(self) -> None:
        """Stop every running take (an adapter's ``close()``)."""
        for env in self.envs:
            self.stop(env)
