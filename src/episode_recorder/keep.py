"""Which finished clips stay on disk: the ``keep=`` policy of every video wrapper.

A policy is either :class:`Keep` (the last N, the best N and the worst N by return; a clip stays
while any of the three wants it) or a callable over a clip's metadata (``Clip.metadata()``)
that returns True to keep it. A clip is deleted, with its ``.json`` sidecar, as soon as the
policy has decided against it, and that decision is final: a clip that has left the last N,
best N and worst N can never enter them again, because later clips only push it further out.

Clips are ranked per camera (each camera of a multi-camera episode has the same fate) and in
the order they were saved. Clips without a return (snippets, an episode cut short by
``close()``) are never among the best or worst; only ``last`` can keep them.

    >>> keep = Retention(Keep(best=1, last=1))
    >>> from episode_recorder.recorder import Clip
    >>> clips = [Clip(f"e{i}.mp4", f"/v/e{i}.mp4", None, 30, "mp4", episode_return=r) for i, r in enumerate([5, 9, 1])]
    >>> [[c.name for c in keep.add(clip)] for clip in clips]
    [[], ['e0.mp4'], []]
    >>> keep.add(Clip("e3.mp4", "/v/e3.mp4", None, 30, "mp4", episode_return=3))[0].name
    'e2.mp4'
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from episode_recorder.recorder import Clip

__all__ = ["Keep", "KeepPolicy", "Retention"]

logger = logging.getLogger("episode_recorder")


@dataclass(frozen=True)
class Keep:
    """Keep the ``last`` N clips saved, the ``best`` N and the ``worst`` N by ``episode_return``.

    >>> Keep(best=3, worst=3)
    Keep(last=0, best=3, worst=3)
    >>> Keep.parse("last=2,best=1")
    Keep(last=2, best=1, worst=0)
    """

    last: int = 0
    best: int = 0
    worst: int = 0

    def __post_init__(self) -> None:
        for name in ("last", "best", "worst"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Keep({name}=...) must be a whole number >= 0, received {value!r}.")
        if not (self.last or self.best or self.worst):
            raise ValueError(
                "Keep() with last, best and worst all 0 would delete every clip; "
                "pass keep=None to keep them all, or e.g. Keep(last=5)."
            )

    @classmethod
    def parse(cls, text: str) -> Keep:
        """``"last=2,best=3,worst=3"`` (the command line's ``--keep``) as a :class:`Keep`."""
        counts: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition("=")
            if name not in ("last", "best", "worst") or not value.strip().isdigit():
                raise ValueError(f"Cannot read keep policy {text!r}: expected e.g. 'last=2,best=3,worst=3'.")
            counts[name] = int(value)
        return cls(**counts)


KeepPolicy = Union[Keep, Callable[[dict[str, Any]], bool]]


def check_policy(policy: Any) -> KeepPolicy | None:
    """``policy`` if it is None, a :class:`Keep` or a callable; else a clear error (at construction)."""
    if policy is None or isinstance(policy, Keep) or callable(policy):
        return policy
    raise TypeError(
        f"keep= takes Keep(last=..., best=..., worst=...) or a callable over a clip's metadata "
        f"returning True to keep it; received {policy!r}."
    )


def ranked_return(clip: Clip) -> float | None:
    """The clip's return if it can be ranked (known and not NaN)."""
    value = clip.episode_return
    return None if value is None or math.isnan(value) else float(value)


class Retention:
    """Applies a keep policy to clips as they are saved; ``add`` returns the clips to delete now."""

    def __init__(self, policy: KeepPolicy) -> None:
        self.policy = check_policy(policy)
        self._alive: dict[str | None, list[Clip]] = {}  # per camera, in the order saved
        self._warned_unranked = False

    def add(self, clip: Clip) -> list[Clip]:
        """Take in a saved clip; returns the clips (possibly this one) the policy no longer keeps."""
        if not isinstance(self.policy, Keep):
            return [] if self.policy(clip.metadata()) else [clip]
        if ranked_return(clip) is None and (self.policy.best or self.policy.worst) and not self._warned_unranked:
            self._warned_unranked = True
            logger.warning(
                "%s has no episode return (a snippet, or an episode cut short), so %s cannot rank it "
                "among the best or worst; only last=%d can keep such clips.",
                clip.path,
                self.policy,
                self.policy.last,
            )
        alive = self._alive.setdefault(clip.camera, [])
        alive.append(clip)
        kept = {id(c) for c in alive[len(alive) - self.policy.last :]} if self.policy.last else set()
        ranked = sorted((c for c in alive if ranked_return(c) is not None), key=ranked_return)  # stable: ties by age
        if self.policy.best:
            kept.update(id(c) for c in ranked[::-1][: self.policy.best])
        kept.update(id(c) for c in ranked[: self.policy.worst])
        dropped = [c for c in alive if id(c) not in kept]
        self._alive[clip.camera] = [c for c in alive if id(c) in kept]
        return dropped
