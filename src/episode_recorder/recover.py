"""Turn what an interrupted run left in a folder into normally named, fully playable videos.

A clip is written as a hidden ``.<name>.part`` that is playable up to about its last second at
every moment; if the training process dies, the encoder finishes it as ``<name>.partial.<format>``.
If both die at once (SIGKILL of the whole job, OOM killer, power cut), the ``.part`` stays.
:func:`recover` handles both, leaves files that a live recorder is still writing alone (they are
locked), and reports what it did. Exposed on the command line as ``episode-recorder recover DIR``.

    >>> import tempfile
    >>> recover(tempfile.mkdtemp())
    []
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from typing import Literal

from episode_recorder.sinks.video import FORMATS, numbered, publish, remux, temp_path_of

__all__ = ["RecoveredFile", "recover"]

Action = Literal["remuxed", "renamed", "removed", "in use", "failed"]


@dataclass(frozen=True)
class RecoveredFile:
    """What :func:`recover` did with one file an interrupted run left.

    ``action``: "remuxed" (a ``.part`` copied, packets unchanged, into ``path``), "renamed" (a
    complete ``.partial.`` file moved to ``path``), "removed" (nothing playable in it: no frame),
    "in use" (a live recorder is writing it: left alone), "failed" (left as it was; see ``error``).
    ``frames``: the frames now in ``path``.
    """

    source: str
    action: Action
    path: str | None = None
    frames: int = 0
    error: str | None = None

    def __str__(self) -> str:
        """One line for a person: ``remuxed .ep.mp4.part -> ep.mp4 (212 frames)``."""
        source = os.path.basename(self.source)
        if self.path is not None:
            return f"{self.action} {source} -> {os.path.basename(self.path)} ({self.frames} frames)"
        return f"{self.action} {source}" + (f": {self.error}" if self.error else "")


def recover(folder: str | os.PathLike[str]) -> list[RecoveredFile]:
    """Make every clip an interrupted run left in ``folder`` a normally named, playable file.

    - ``.<name>.part`` (the run and its encoder died together): its video packets are copied
      (no re-encoding; MP4 made faststart) into ``<name>``, or ``<stem>-1.<format>``... when
      ``<name>`` is taken; then the ``.part`` is removed. A ``.part`` without a single frame is
      removed. Half-written ``.<name>.part.tmp`` files are removed.
    - ``<stem>.partial.<format>`` (the encoder finished the clip after its run died): moved to
      ``<stem>.<format>`` (or the next free name).

    Files a live recorder is writing are locked and left alone ("in use"). Returns one
    :class:`RecoveredFile` per file looked at, in name order; never raises for a single bad file.

        >>> for item in recover("videos"):                                   # doctest: +SKIP
        ...     print(item.action, item.source, "->", item.path, item.frames, "frames")
        remuxed videos/.rl-video-episode-3.mp4.part -> videos/rl-video-episode-3.mp4 212 frames
    """
    folder = os.fspath(folder)
    report = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.lexists(path):  # a .part.tmp that recovering its .part just replaced and removed
            continue
        if name.startswith(".") and name.endswith(".part.tmp"):
            report.append(_remove_leftover(path))
        elif name.startswith(".") and name.endswith(".part") and _format_of(name[1:-5]):
            report.append(_recover_part(path, os.path.join(folder, name[1:-5])))
        elif _partial_target(name):
            report.append(_rename_partial(path, os.path.join(folder, _partial_target(name))))
    return report


def _format_of(name: str) -> str | None:
    extension = os.path.splitext(name)[1][1:]
    return extension if extension in FORMATS else None


def _partial_target(name: str) -> str | None:
    """``ep.partial.mp4`` -> ``ep.mp4`` (also ``ep.partial-1.mp4``, a second partial of that name)."""
    stem, extension = os.path.splitext(name)
    if extension[1:] not in FORMATS or name.startswith("."):
        return None
    base, dot, rest = stem.rpartition(".partial")
    if not dot or not base or (rest and not (rest.startswith("-") and rest[1:].isdigit())):
        return None
    return base + extension


def _locked(path: str) -> int | None:
    """A descriptor holding the file's lock, or None if a live recorder holds it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove_leftover(path: str) -> RecoveredFile:
    lock = _locked(path)
    if lock is None:
        return RecoveredFile(path, "in use")
    try:
        os.remove(path)
        return RecoveredFile(path, "removed")
    finally:
        os.close(lock)


def _recover_part(source: str, target: str) -> RecoveredFile:
    lock = _locked(source)
    if lock is None:
        return RecoveredFile(source, "in use")
    remuxed = source + ".tmp"
    try:
        frames = remux(source, remuxed, _format_of(target) or "mp4", complete=False) if os.path.getsize(source) else 0
        if frames == 0:
            os.remove(source)
            return RecoveredFile(source, "removed")
        path = publish(remuxed, target)
        os.remove(source)
        return RecoveredFile(source, "remuxed", path, frames)
    except Exception as error:  # unreadable header, full disk...: leave the source as it was
        return RecoveredFile(source, "failed", error=f"{type(error).__name__}: {error}")
    finally:
        if os.path.exists(remuxed):
            os.remove(remuxed)
        os.close(lock)


def _rename_partial(source: str, target: str) -> RecoveredFile:
    try:
        frames = _count_frames(source)
        if frames == 0:
            return RecoveredFile(source, "failed", error="no readable video frame; left as it is")
        for candidate in numbered(target):
            if not os.path.lexists(candidate) and not os.path.lexists(temp_path_of(candidate)):
                return RecoveredFile(source, "renamed", publish(source, candidate), frames)
    except Exception as error:
        return RecoveredFile(source, "failed", error=f"{type(error).__name__}: {error}")
    raise AssertionError("unreachable")


def _count_frames(path: str) -> int:
    import av

    with av.open(path) as container:
        if not container.streams.video:
            return 0
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)
