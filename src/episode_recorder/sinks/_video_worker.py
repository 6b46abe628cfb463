"""The encoder process behind :class:`episode_recorder.sinks.video.VideoEncoderProcess`.

Run as ``python -m episode_recorder.sinks._video_worker COMMAND_FD RESULT_FD``. It reads
``open`` / ``frame`` / ``close`` / ``abort`` / ``quit`` messages, takes frames out of each clip's
shared-memory ring, and reports ``saved`` / ``aborted`` / ``failed`` results (and a ``sample``
per encoded frame of clips opened with ``VideoOptions(samples=True)``). When the command pipe
closes without ``quit`` (the training process died), every open clip is finished as a playable
``<name>.partial.<format>`` file.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from typing import Any

import av

from episode_recorder.sinks.h264 import open_clip_encoder
from episode_recorder.sinks.video import VideoFileEncoder, VideoOptions, _Ring, read_message, send_message


class _Clip:
    def __init__(self, ring: _Ring, encoder: VideoFileEncoder | None, error: BaseException | None = None) -> None:
        self.ring = ring
        self.encoder = encoder
        self.error = error


def _failure(clip_id: int, error: BaseException) -> tuple[Any, ...]:
    trace = "".join(traceback.format_exception(error))
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        error = RuntimeError(f"{type(error).__name__}: {error}")
    return ("failed", clip_id, error, trace)


def _sample_sender(result_fd: int, clip_id: int) -> Any:
    return lambda sample: send_message(result_fd, ("sample", clip_id, sample))


def serve(command_fd: int, result_fd: int) -> None:
    # Ctrl+C reaches the whole process group: let the training process decide, and keep encoding
    # until it says "quit" or goes away (then open clips are saved as partial files).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    av.logging.set_level(av.logging.ERROR)
    clips: dict[int, _Clip] = {}
    send_message(result_fd, ("ready",))
    with os.fdopen(command_fd, "rb") as commands:
        while (message := read_message(commands)) is not None:
            kind = message[0]
            if kind == "quit":
                break
            clip_id = message[1]
            if kind == "open":
                _, _, name, slots, height, width, path, options = message
                ring = _Ring(slots, height, width, name=name)
                options = VideoOptions(**options)
                send = _sample_sender(result_fd, clip_id) if options.samples else None
                try:
                    clips[clip_id] = _Clip(ring, open_clip_encoder(path, height, width, options, send))
                except Exception as error:  # reported once, then the clip's frames are skipped
                    clips[clip_id] = _Clip(ring, None, error)
                    send_message(result_fd, _failure(clip_id, error))
                continue
            clip = clips[clip_id]
            if kind == "frame":
                frame = clip.ring.frames[message[2]]
                if clip.encoder is not None:
                    try:
                        clip.encoder.write(frame)
                    except Exception as error:
                        clip.encoder.abort()
                        clip.encoder = None
                        send_message(result_fd, _failure(clip_id, error))
                clip.ring.taken[0] += 1
                continue
            del clips[clip_id]
            clip.ring.release(unlink=False)
            if clip.encoder is None:
                continue  # its failure was already reported
            if kind == "abort":
                clip.encoder.abort()
                send_message(result_fd, ("aborted", clip_id))
                continue
            try:
                path = clip.encoder.close()
            except Exception as error:
                clip.encoder.abort()
                send_message(result_fd, _failure(clip_id, error))
            else:
                send_message(result_fd, ("saved", clip_id, path, clip.encoder.frames))
        else:  # the command pipe closed without "quit": the training process is gone
            for clip in clips.values():
                if clip.encoder is not None and clip.encoder.frames > 0:
                    clip.encoder.salvage()
                elif clip.encoder is not None:
                    clip.encoder.abort()
    os.close(result_fd)


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
