"""When to record: Gymnasium's capped-cubic schedule and friends."""

from __future__ import annotations

from collections.abc import Callable


def capped_cubic_video_schedule(episode_id: int) -> bool:
    """Gymnasium's default trigger: episodes 0, 1, 8, 27, ..., 729, then every 1000th.

    >>> [i for i in range(3000) if capped_cubic_video_schedule(i)][:6]
    [0, 1, 8, 27, 64, 125]
    >>> capped_cubic_video_schedule(2000)
    True
    """
    if episode_id < 1000:
        return int(round(episode_id ** (1.0 / 3))) ** 3 == episode_id
    return episode_id % 1000 == 0


def every(n: int) -> Callable[[int], bool]:
    """A trigger that fires on ids 0, n, 2n, ...

    >>> trigger = every(3)
    >>> [i for i in range(10) if trigger(i)]
    [0, 3, 6, 9]
    """
    if n < 1:
        raise ValueError(f"every(n) needs n >= 1, received {n}")
    return lambda index: index % n == 0
