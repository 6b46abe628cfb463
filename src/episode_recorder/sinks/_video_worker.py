"""The encoder process behind :class:`episode_recorder.sinks.video.VideoEncoderProcess`.

Run as ``python -m episode_recorder.sinks._video_worker COMMAND_FD RESULT_FD PARENT_PID WAKE_FD``. It reads
``open`` / ``frame`` / ``close`` / ``abort`` / ``quit`` messages from a Unix socket (``open`` carries
the clip's ring memory and the lock on its temporary file as descriptors), takes frames out of each
clip's shared-memory ring (writing a byte to ``WAKE_FD`` for each frame it finishes, for a
parent that waits for a free slot), and reports ``saved`` / ``aborted`` / ``failed`` results (and ``samples``,
a batch of encoded frames at a time, of clips opened with ``VideoOptions(samples=True)``). When the parent
goes away without ``quit`` (its socket closes, or it exits while a forked child still holds the
socket), every open clip is finished as a playable ``<name>.partial.<format>`` file, then the
process ends. Signals meant for the job (SIGINT, SIGTERM, SIGHUP) are ignored: the parent decides.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import socket
import struct
import sys
import time
import traceback
from typing import Any

import av

from episode_recorder.sinks.h264 import open_clip_encoder
from episode_recorder.sinks.speed import SpeedGovernor
from episode_recorder.sinks.video import VideoOptions, _Ring, send_message


# A clip's H.264 samples go to the parent this many at a time, or once the first has waited this
# long: a message per frame woke the parent's result reader, which took the GIL from the step loop.
SAMPLE_BATCH = 16
SAMPLE_BATCH_SECONDS = 0.25
# While clips are open and messages keep coming, the encoder looks for them this often instead of
# sleeping on its socket (see _Commands.next), until none has come for POLL_FOR_SECONDS.
POLL_SECONDS = 0.002
POLL_FOR_SECONDS = 0.02


class _Clip:
    def __init__(self, ring: _Ring, encoder: Any, samples: _Samples | None = None) -> None:
        self.ring = ring
        self.encoder = encoder
        self.samples = samples


def _failure(clip_id: int, error: BaseException) -> tuple[Any, ...]:
    trace = "".join(traceback.format_exception(error))
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        error = RuntimeError(f"{type(error).__name__}: {error}")
    return ("failed", clip_id, error, trace)


class _Commands:
    """Messages from the parent's socket, until it closes or the parent process is gone."""

    def __init__(self, command_fd: int, parent_pid: int) -> None:
        self.socket = socket.socket(fileno=command_fd)
        self.parent_pid = parent_pid
        self.buffer = bytearray()
        self.start = 0  # where the next message begins in ``buffer``
        self.fds: list[int] = []  # received with "open" messages, in order
        self.ended = False
        self.received = 0.0  # when data last came (time.monotonic)
        try:
            self.parent = os.pidfd_open(parent_pid)  # readable once the parent has exited
        except (AttributeError, OSError):
            self.parent = None  # no pidfd (old kernel, macOS): poll the parent id instead

    def next(self, poll: bool = False) -> tuple[Any, ...] | None:
        """The next message, or None once the parent has gone.

        ``poll`` (clips are open): while messages keep coming (one came in the last
        ``POLL_FOR_SECONDS``), look every ``POLL_SECONDS`` instead of sleeping on the socket, so
        that the parent's sends (a frame per step) need not wake this process: a wake cost the
        sending step ~15-30 us (measured; more on VMs, where it is an interrupt to the other CPU).
        """
        while True:
            message = self._complete()
            if message is not None:
                return message
            if self.ended:
                return None
            del self.buffer[: self.start]  # everything before ``start`` has been read
            self.start = 0
            watched = [self.socket] if self.parent is None else [self.socket, self.parent]
            polling = poll and time.monotonic() - self.received < POLL_FOR_SECONDS
            ready, _, _ = select.select(watched, [], [], 0 if polling else 1.0 if self.parent is None else None)
            if self.socket in ready:
                self._receive()
            elif self.parent in ready or (self.parent is None and os.getppid() != self.parent_pid):
                self._drain()  # what the parent sent before it died, then stop
            elif polling:
                time.sleep(POLL_SECONDS)

    def closes_next(self, clip_id: int) -> bool:
        """Whether the message after the current one, if it has arrived, closes ``clip_id``: its
        caller is then about to wait for the frame being encoded."""
        if select.select([self.socket], [], [], 0)[0]:
            self._receive()
        start = self.start
        message = self._complete()
        self.start = start  # only a look: next() reads it again
        return message is not None and message[0] == "close" and message[1] == clip_id

    def _complete(self) -> tuple[Any, ...] | None:
        """The message at ``start`` if it has fully arrived (``start`` moves past it), else None."""
        start = self.start
        if len(self.buffer) - start >= 4:
            (size,) = struct.unpack_from("<I", self.buffer, start)
            if len(self.buffer) - start >= 4 + size:
                self.start = start + 4 + size
                return pickle.loads(memoryview(self.buffer)[start + 4 : self.start])
        return None

    def _receive(self) -> None:
        data, fds, _, _ = socket.recv_fds(self.socket, 1 << 16, 4)
        self.received = time.monotonic()
        self.fds.extend(fds)
        self.buffer += data
        self.ended = self.ended or not data

    def _drain(self) -> None:
        self.socket.setblocking(False)
        try:
            while not self.ended:
                self._receive()
        except BlockingIOError:
            pass
        self.ended = True


class _Results:
    """The result pipe; once the parent has gone, results have nowhere to go and are dropped."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def send(self, message: tuple[Any, ...]) -> None:
        if self.fd is None:
            return
        try:
            send_message(self.fd, message)
        except OSError:  # BrokenPipeError: the parent is gone
            os.close(self.fd)
            self.fd = None


class _Samples:
    """A clip's samples for the parent, sent as ``("samples", clip, [(pts, keyframe, data), ...])``
    every ``SAMPLE_BATCH`` samples or ``SAMPLE_BATCH_SECONDS``, and before the clip's result."""

    def __init__(self, results: _Results, clip_id: int) -> None:
        self.results, self.clip_id = results, clip_id
        self.pending: list[Any] = []
        self.since = 0.0  # when the oldest pending sample came

    def __call__(self, sample: Any) -> None:
        if not self.pending:
            self.since = time.monotonic()
        self.pending.append(sample)
        if len(self.pending) >= SAMPLE_BATCH or time.monotonic() - self.since >= SAMPLE_BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.results.send(("samples", self.clip_id, self.pending))
            self.pending = []


def _adapt(governor: SpeedGovernor, clips: dict[int, _Clip], clip_id: int, cost: float, waited: bool) -> None:
    """Tell the governor what a frame cost; make the change it asks for, if any."""
    change = governor.encoded(clip_id, cost, time.perf_counter(), waited)
    if change is not None:
        target, setting = change
        encoder = clips[target].encoder
        if encoder is not None:
            governor.switched(target, setting, encoder.switch(setting))


def _wake(fd: int) -> None:
    """Tell a parent waiting for a free slot that one is free (a full pipe: it has bytes to wake on)."""
    try:
        os.write(fd, b"x")
    except (BlockingIOError, BrokenPipeError):
        pass


def _finish(clip: _Clip, clip_id: int, kind: str, results: _Results) -> None:
    """Close or abort a clip and report it (a failed clip was reported already)."""
    if clip.encoder is None:
        return
    if kind == "abort":
        clip.encoder.abort()
        results.send(("aborted", clip_id))
        return
    try:
        path = clip.encoder.close()
    except Exception as error:
        clip.encoder.abort(keep=isinstance(error, OSError))
        result = _failure(clip_id, error)
    else:
        result = ("saved", clip_id, path, clip.encoder.frames, clip.encoder.report())
    _flush_samples(clip)  # the last samples came out of close(); they go before the result
    results.send(result)


def _flush_samples(clip: _Clip) -> None:
    if clip.samples is not None:
        clip.samples.flush()


def serve(command_fd: int, result_fd: int, parent_pid: int, wake_fd: int) -> None:
    # Signals for the job (Ctrl+C, SIGTERM/SIGHUP from a scheduler or a terminal) are for the
    # training process to handle: keep encoding until it says "quit" or goes away (then open
    # clips are saved as partial files).
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    av.logging.set_level(av.logging.ERROR)
    os.set_blocking(wake_fd, False)
    clips: dict[int, _Clip] = {}
    results = _Results(result_fd)
    governor = SpeedGovernor(os.cpu_count() or 1, warn=lambda text: results.send(("log", logging.WARNING, text)))
    results.send(("ready",))
    commands = _Commands(command_fd, parent_pid)
    while True:
        message = commands.next(poll=bool(clips))
        if message is None or message[0] == "quit":
            break
        kind = message[0]
        clip_id = message[1]
        if kind == "open":
            _, _, slots, height, width, path, options = message
            ring_fd = commands.fds.pop(0)
            lock_fd = None if path is None else commands.fds.pop(0)  # a clip of samples only claims no name
            ring = _Ring(slots, height, width, fd=ring_fd)
            ring.close_fd()
            try:
                options = VideoOptions(**options)
                setting = governor.open(clip_id, options, height, width)
                samples = _Samples(results, clip_id) if options.samples else None
                encoder = open_clip_encoder(path, height, width, options, samples, lock_fd, setting)
                clips[clip_id] = _Clip(ring, encoder, samples)
            except Exception as error:  # reported once, then the clip's frames are skipped
                clips[clip_id] = _Clip(ring, None)
                results.send(_failure(clip_id, error))
            continue
        clip = clips[clip_id]
        if kind == "frame":
            frame = clip.ring.frames[message[2]]
            if clip.encoder is not None:
                try:
                    hurry = message[4] or commands.closes_next(clip_id)  # the caller waits for this frame
                    started = time.perf_counter()
                    clip.encoder.write(frame, hurry)
                    cost = time.perf_counter() - started
                    # The recent cost per frame, which the parent's write() sizes its queue by
                    # (the codec's start-up frames left out).
                    if clip.encoder.frames > 2:
                        recent = int(clip.ring.encode_us[0])
                        clip.ring.encode_us[0] = int(1e6 * cost) if recent <= 0 else int(0.8 * recent + 0.2e6 * cost)
                    _adapt(governor, clips, clip_id, cost, message[3])
                except Exception as error:
                    # a full disk or an I/O error: keep what was written for recover()
                    clip.encoder.abort(keep=isinstance(error, OSError) and clip.encoder.frames > 0)
                    clip.encoder = None
                    _flush_samples(clip)  # the frames encoded before the error
                    results.send(_failure(clip_id, error))
            clip.ring.taken[0] += 1
            _wake(wake_fd)
            continue
        del clips[clip_id]
        governor.closed(clip_id)
        try:
            _finish(clip, clip_id, kind, results)
        finally:
            clip.ring.release()  # after the result: a caller waiting for it does not wait for this
    # The parent is gone (or quit with clips still open, after an error): nothing captured is lost.
    for clip in clips.values():
        if clip.encoder is not None and clip.encoder.frames > 0:
            try:
                clip.encoder.salvage()
            except Exception:  # e.g. a full disk: the playable temporary file stays for recover()
                clip.encoder.abort(keep=True)
        elif clip.encoder is not None:
            clip.encoder.abort()
    if results.fd is not None:
        os.close(results.fd)


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    # Every clip is finished and every result sent: skip the interpreter's clean-up (~50 ms of
    # the caller's close() that waits for this process to end).
    os._exit(0)
