"""How ``preset="auto"`` chooses encoder settings: by measuring the encoder against the frames.

The encoder process reports every frame it encodes: how long it took, and whether the caller had
to wait for a free ring slot before sending it. Over each window of ``WINDOW`` frames (all clips
together) the governor computes the encoder's *busy fraction*: encoding time over the wall time
the window took. Frames arriving faster than they are encoded keep the encoder busy all the time.

- Busy above ``BUSY_HIGH``, or the caller waited: the adaptive clip that cost the most in the
  window moves one step down its format's ``AUTO_PRESETS`` (two when the caller waited for at
  least half the window's frames; at once, with a key frame, when the codec accepts the change
  inside the clip, else from its next clip). A caller that waited for ``EARLY_WAITS`` frames
  does not wait for the window to end (a first clip of big frames at "veryfast" made every step
  wait for 12 frames). At the fastest preset, a
  caller that still waits for at least half the window's frames gets more encoder threads
  (unless ``threads`` was given): it is blocked anyway, so the cores are free.
- A clip starts where the last clip of the same format and size ended; one step better when the
  costs measured so far predict a busy fraction under ``BUSY_LOW`` there (costs of steps not yet
  measured at that size are estimated from ``RELATIVE_COST``, measured on the development machine).
  On machines with up to 2 cores it never climbs above the start setting (``AUTO_START``): the
  step loop and a software renderer need the CPU a costlier setting would take from them.

Every change is logged as a WARNING on the ``episode_recorder`` logger.

    >>> from episode_recorder.sinks.video import VideoOptions
    >>> governor = SpeedGovernor(cores=8)
    >>> governor.open(0, VideoOptions(format="mp4", threads=1), 480, 640)
    EncoderSetting(preset='veryfast', threads=1)
    >>> for frame in range(1, 13):  # 7 ms to encode a frame, a frame every 5 ms: always busy
    ...     change = governor.encoded(0, cost=0.007, now=0.007 * frame, waited=False)
    >>> change
    (0, EncoderSetting(preset='superfast', threads=1))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from episode_recorder.sinks.video import AUTO_PRESETS, ULTRAFAST_CAVLC, EncoderSetting, VideoOptions, initial_setting

WINDOW = 12  # frames per measurement
BUSY_HIGH = 0.85  # above this the encoder is about to fall behind: go faster
BUSY_LOW = 0.6  # a better setting is tried when it is predicted to stay below this
SKIP_AFTER_CHANGE = 2  # frames not measured after a change (codec start-up, key frame)
EARLY_WAITS = 3  # a caller that waited for this many frames of a window: a faster preset at once
# Cost per frame relative to the start setting, measured with 1 thread at 480x640 (bench_encoder.py).
RELATIVE_COST = {
    "mp4": {"veryfast": 1.0, "superfast": 0.65, "ultrafast": 0.5, ULTRAFAST_CAVLC: 0.4},
    "webm": {"6": 1.2, "7": 1.1, "8": 1.0},
    "gif": {"octree": 1.0},
}

logger = logging.getLogger("episode_recorder")


@dataclass
class _ClipState:
    options: VideoOptions
    key: tuple[str, int, int]  # format, height, width
    setting: EncoderSetting
    window_cost: float = 0.0
    skip: int = SKIP_AFTER_CHANGE
    busy: float | None = None  # the encoder's busy fraction in the last window of this clip
    frozen: bool = False  # the codec refused a change inside this clip: the next clip makes it


@dataclass
class _History:
    """What the last clip of a format and size ended with, and the costs measured at that size."""

    setting: EncoderSetting
    busy: float | None
    cost: dict[EncoderSetting, float] = field(default_factory=dict)  # seconds per frame


class SpeedGovernor:
    """Chooses the setting of every adaptive clip of one encoder process (see the module doc)."""

    def __init__(self, cores: int, warn: Callable[[str], None] = logger.warning) -> None:
        self.max_threads = max(1, cores)
        self.climbs_above_start = cores > 2
        self.warn = warn
        self._clips: dict[int, _ClipState] = {}
        self._history: dict[tuple[str, int, int], _History] = {}
        self._window_start: float | None = None
        self._window_busy = 0.0
        self._window_frames = 0
        self._window_waits = 0  # frames of the window the caller had waited for

    def open(self, clip: int, options: VideoOptions, height: int, width: int) -> EncoderSetting:
        """The setting a new clip starts with (explicit presets: exactly what was asked)."""
        key = (options.format, height, width)
        setting = initial_setting(options)
        history = self._history.get(key)
        if options.adaptive and history is not None:
            setting = self._better(options, history) or history.setting
        self._clips[clip] = _ClipState(options, key, setting)
        return setting

    def encoded(self, clip: int, cost: float, now: float, waited: bool) -> tuple[int, EncoderSetting] | None:
        """Account one encoded frame (``cost`` seconds, ending at ``now``); returns a change to make."""
        state = self._clips[clip]
        if self._window_start is None:
            self._window_start = now - cost
        self._window_busy += cost
        self._window_frames += 1
        self._window_waits += waited and not state.skip  # a change's key frame makes the caller wait once
        if state.skip:
            state.skip -= 1
        elif state.options.adaptive:
            state.window_cost += cost
            history = self._history.setdefault(state.key, _History(state.setting, None))
            previous = history.cost.get(state.setting)
            history.cost[state.setting] = cost if previous is None else 0.8 * previous + 0.2 * cost
        early = self._window_waits >= EARLY_WAITS and self._has_faster_preset(state)
        if self._window_frames < WINDOW and not early:
            return None
        busy = self._window_busy / max(now - self._window_start, 1e-9)
        waits, frames = self._window_waits, self._window_frames
        waited = waits > 0
        for each in self._clips.values():
            each.busy = busy
        heaviest = max(self._clips, key=lambda c: self._clips[c].window_cost if self._clips[c].options.adaptive else -1.0)
        self._window_start, self._window_busy, self._window_frames, self._window_waits = now, 0.0, 0, 0
        for each in self._clips.values():
            each.window_cost = 0.0
        if busy <= BUSY_HIGH and not waited:
            return None
        target = self._clips[heaviest]
        faster = self._faster(target, waits, frames)
        if faster is None:
            return None
        self.warn(
            f"The video encoder is falling behind (busy {100 * busy:.0f}% of the time"
            f"{', the caller waited for it' if waited else ''}): "
            f"{_describe(target.setting)} -> {_describe(faster)}."
        )
        return heaviest, faster

    def switched(self, clip: int, setting: EncoderSetting, applied: bool) -> None:
        """Record a change: made inside the clip (``applied``), or kept for the next clip."""
        state = self._clips[clip]
        if applied:
            state.setting, state.skip = setting, SKIP_AFTER_CHANGE
            return
        state.frozen = True
        history = self._history.setdefault(state.key, _History(setting, None))
        history.setting, history.busy = setting, None
        self.warn(f"{_describe(setting)} takes effect from the next clip (the codec cannot change it inside one).")

    def closed(self, clip: int) -> None:
        """Forget a finished clip; the next clip of its format and size starts where it ended."""
        state = self._clips.pop(clip, None)
        if state is not None and state.options.adaptive and not state.frozen:
            history = self._history.setdefault(state.key, _History(state.setting, state.busy))
            history.setting, history.busy = state.setting, state.busy

    def _has_faster_preset(self, state: _ClipState) -> bool:
        ladder = AUTO_PRESETS[state.options.format]
        return state.options.adaptive and not state.frozen and state.setting.preset != ladder[-1]

    def _faster(self, state: _ClipState, waits: int, frames: int) -> EncoderSetting | None:
        if not state.options.adaptive or state.frozen:
            return None
        ladder = AUTO_PRESETS[state.options.format]
        index = ladder.index(state.setting.preset)
        if index + 1 < len(ladder):  # two steps for a caller that waited for half the frames: far behind,
            step = index + 1  # but not onto a step that only starts with the next clip
            if 2 * waits >= frames and step + 1 < len(ladder) and ladder[step + 1] != ULTRAFAST_CAVLC:
                step += 1
            return EncoderSetting(ladder[step], state.setting.threads)
        more_threads = state.options.threads is None and state.options.format != "gif"  # explicit threads stay
        # Threads only for a caller that keeps waiting: a stall of the machine makes it wait once,
        # and a second thread would then take the step loop's core for the rest of the run.
        if waits >= WINDOW // 2 and more_threads and state.setting.threads < self.max_threads:
            return EncoderSetting(state.setting.preset, min(self.max_threads, 2 * state.setting.threads))
        return None

    def _better(self, options: VideoOptions, history: _History) -> EncoderSetting | None:
        """One step better than the last clip ended with, if predicted to stay under BUSY_LOW."""
        current = history.setting
        if history.busy is None or current not in history.cost:
            return None
        ladder = AUTO_PRESETS[options.format]
        index = ladder.index(current.preset)
        start = initial_setting(options)
        if current.threads > start.threads:
            candidate = EncoderSetting(current.preset, max(start.threads, current.threads // 2))
            ratio = current.threads / candidate.threads  # assumes threads scale perfectly: cautious
        elif index > 0 and (self.climbs_above_start or index > ladder.index(start.preset)):
            candidate = EncoderSetting(ladder[index - 1], current.threads)
            relative = RELATIVE_COST[options.format]
            ratio = relative[candidate.preset] / relative[current.preset]
        else:
            return None
        measured = history.cost.get(candidate)
        if measured is not None:
            ratio = measured / history.cost[current]
        return candidate if history.busy * ratio <= BUSY_LOW else None


def _describe(setting: EncoderSetting) -> str:
    threads = "thread" if setting.threads == 1 else "threads"
    return f"preset {setting.preset!r} with {setting.threads} {threads}"
