"""Log finished video files to the active Weights & Biases run, without re-encoding them.

W&B copies a logged file into the run's ``files/media/videos`` folder when ``log`` is called,
so the file given here can be removed right afterwards. This module knows nothing about
environments: it takes paths (or :class:`~episode_recorder.recorder.Clip` objects), keys and
a step.

Two W&B behaviours lose videos silently; both are detected here and warned about once per run:

- a ``step`` lower than the run's current step is dropped by W&B; such a video is logged
  without ``step`` instead (it lands in the run's next row) and the warning says what to change;
- two ``commit=False`` logs of the same key before the next commit keep only the last one.

    >>> import glob, numpy as np, tempfile, wandb
    >>> from episode_recorder.recorder import Recorder, VideoOptions
    >>> run = wandb.init(project="demo", mode="offline")
    >>> recorder = Recorder(tempfile.mkdtemp(), VideoOptions(format="mp4"),
    ...                     on_saved=lambda clip: log_clip_to_wandb(clip, key="video"))
    >>> segment = recorder.start("episode_0", episode_id=0)
    >>> for t in range(8):
    ...     segment.add(np.full((32, 48, 3), t * 30, np.uint8))
    >>> _ = segment.stop(); _ = recorder.close()  # logs {"video": ..., "video_episode_id": 0}
    >>> len(glob.glob(f"{run.dir}/media/videos/*.mp4"))
    1
    >>> run.finish()
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from episode_recorder._optional import require

if TYPE_CHECKING:
    from episode_recorder.recorder import Clip

__all__ = ["require_wandb", "active_run", "log_videos", "log_clip_to_wandb", "clip_caption"]

_warned: set[tuple[str, str]] = set()  # (run id, kind of warning) already shown
_uncommitted: dict[str, tuple[int, set[str]]] = {}  # run id -> (step, keys logged with commit=False)


def require_wandb(purpose: str = "Logging videos to Weights & Biases") -> ModuleType:
    """The ``wandb`` module, or an ImportError saying ``pip install 'episode-recorder[wandb]'``."""
    return require("wandb", "wandb", purpose)


def active_run(run: Any = None, purpose: str = "Logging videos to Weights & Biases") -> Any:
    """``run``, else the active ``wandb.run``; raises a clear error when there is none."""
    wandb = require_wandb(purpose)
    run = run if run is not None else wandb.run
    if run is None:
        raise RuntimeError(f"{purpose} needs an active W&B run, and there is none: call wandb.init() first.")
    return run


def log_videos(
    videos: Mapping[str, str | os.PathLike[str]],
    *,
    extra: Mapping[str, Any] | None = None,
    step: int | None = None,
    captions: Mapping[str, str] | None = None,
    run: Any = None,
) -> None:
    """Log finished video files as ``wandb.Video`` under their keys, with ``extra`` values.

    With ``step`` the row is that W&B step; without, it is logged with ``commit=False`` and
    rides on the run's next ``log``. The frame rate and format are the file's own.

        >>> import numpy as np, wandb
        >>> from episode_recorder.sinks.video import VideoFileEncoder, VideoOptions
        >>> encoder = VideoFileEncoder("episode_0.mp4", 32, 32, VideoOptions())
        >>> for t in range(4):
        ...     encoder.write(np.full((32, 32, 3), 60 * t, np.uint8))
        >>> run = wandb.init(project="demo", mode="offline")
        >>> log_videos({"eval/video": encoder.close()}, extra={"eval/return": 3.0})
        >>> run.finish()
    """
    paths = {key: os.fspath(path) for key, path in videos.items()}
    where = ", ".join(paths.values())
    run = active_run(run, f"Logging the video(s) {where} to Weights & Biases")
    wandb = require_wandb()
    current = run.step
    if step is not None and step < current:
        _warn_once(
            run,
            "step",
            f"W&B step {step} is lower than the run's current step {current}, and W&B silently drops "
            "such logs; the video is logged at the run's next row instead (and so are later ones like it). "
            "To log videos at environment steps, pass the same step= to all your own wandb.log() calls "
            "(or none of them), or record without controlling the W&B step (e.g. control_wandb_step=False) "
            "and use wandb.define_metric(..., step_metric=...) for a custom x-axis.",
        )
        step = None
    data: dict[str, Any] = {
        key: wandb.Video(path, caption=(captions or {}).get(key) or None) for key, path in paths.items()
    }
    data.update(extra or {})
    if step is not None:
        run.log(data, step=step)
        return
    pending_step, pending_keys = _uncommitted.get(run.id, (None, set()))
    if pending_step != current:
        pending_keys = set()
    replaced = sorted(pending_keys & paths.keys())
    if replaced:
        _warn_once(
            run,
            "replaced",
            f"The video(s) under {replaced} logged earlier at W&B step {current} were replaced by "
            f"{where}: W&B keeps one value per key and step, and no wandb.log() committed a row in "
            "between. Call wandb.log(...) once per episode (e.g. with the episode's metrics), or "
            "let the recorder set the step (e.g. control_wandb_step=True).",
        )
    _uncommitted[run.id] = (current, pending_keys | paths.keys())
    run.log(data, commit=False)


def clip_caption(clip: Clip) -> str:
    """``"episode 3, env 1, return 12.5"``: whichever of these the clip knows.

    >>> from episode_recorder.recorder import Clip
    >>> clip_caption(Clip("e.mp4", "e.mp4", None, 30.0, "mp4", episode_id=3, env_index=1, episode_return=12.5))
    'episode 3, env 1, return 12.5'
    """
    parts = []
    if clip.episode_id is not None:
        parts.append(f"episode {clip.episode_id}")
    if clip.env_index is not None:
        parts.append(f"env {clip.env_index}")
    if clip.episode_return is not None:
        parts.append(f"return {clip.episode_return:.4g}")
    return ", ".join(parts)


def log_clip_to_wandb(
    clip: Clip,
    *,
    key: str = "video",
    caption: str | None = None,
    step: int | None = None,
    log_episode_id: bool = True,
    run: Any = None,
) -> None:
    """Log one saved clip under ``key`` (usable as a ``Recorder`` ``on_saved`` callback).

    The caption defaults to :func:`clip_caption`; ``f"{key}_episode_id"`` is logged too when
    the clip has an episode id and ``log_episode_id`` is true.

        >>> from episode_recorder.recorder import Recorder, VideoOptions
        >>> recorder = Recorder("videos", VideoOptions(), on_saved=log_clip_to_wandb)
        >>> recorder.close()
        []
    """
    extra = {f"{key}_episode_id": clip.episode_id} if log_episode_id and clip.episode_id is not None else {}
    log_videos(
        {key: clip.path},
        extra=extra,
        step=step,
        captions={key: caption if caption is not None else clip_caption(clip)},
        run=run,
    )


def _warn_once(run: Any, kind: str, message: str) -> None:
    if (run.id, kind) not in _warned:
        _warned.add((run.id, kind))
        warnings.warn(message, RuntimeWarning, stacklevel=3)
