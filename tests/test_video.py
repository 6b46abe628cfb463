from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from support import decode, default_subme, encoder_stopped, pattern, psnr, record_clip, wait_for, x264_settings

from episode_recorder.recorder import Recorder
from episode_recorder.sinks.video import EncoderProcessDied, VideoFileEncoder, VideoOptions

CODECS = {"mp4": "h264", "webm": "vp9", "gif": "gif"}
MIN_PSNR = {"mp4": 30.0, "webm": 30.0, "gif": 20.0}


def record(folder: Path, frames: list[np.ndarray], **options) -> Path:
    return Path(record_clip(folder, frames, VideoOptions(**options)).path)


@pytest.mark.parametrize("fmt", ["mp4", "webm", "gif"])
def test_every_frame_is_in_the_file_with_its_content(tmp_path, fmt):
    frames = [pattern(t, 96, 128) for t in range(40)]
    path = record(tmp_path, frames, format=fmt, fps=20)
    assert path.name == f"clip.{fmt}"
    decoded, pix_fmt, rate = decode(path)
    assert len(decoded) == len(frames)
    assert decoded[0].shape == (96, 128, 3)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == CODECS[fmt]
    if fmt != "gif":
        assert pix_fmt == "yuv420p"
    assert rate == pytest.approx(20, rel=0.02)
    for index, (got, want) in enumerate(zip(decoded, frames)):
        assert psnr(got, want) > MIN_PSNR[fmt], f"frame {index}"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]


def test_the_encoder_reads_a_frame_in_place_and_takes_views_and_reused_buffers(tmp_path):
    # VideoFileEncoder converts straight from the caller's memory (no copy): a strided view must
    # still be read right, and a buffer refilled after write() returns must not change that frame.
    frames = [pattern(t, 64, 96) for t in range(12)]
    encoder = VideoFileEncoder(str(tmp_path / "views.mp4"), 64, 96, VideoOptions(format="mp4"))
    buffer = np.empty((64, 96, 3), np.uint8)
    wide = np.zeros((64, 2 * 96, 3), np.uint8)
    for t, frame in enumerate(frames):
        if t % 2:
            wide[:, ::2] = frame
            encoder.write(wide[:, ::2])  # not contiguous
        else:
            np.copyto(buffer, frame)
            encoder.write(buffer)
            buffer[:] = 255 - buffer  # the caller reuses its buffer at once
    decoded, _, _ = decode(Path(encoder.close()))
    assert len(decoded) == len(frames)
    for index, (got, want) in enumerate(zip(decoded, frames)):
        assert psnr(got, want) > MIN_PSNR["mp4"], f"frame {index}"


def test_gif_loops_forever(tmp_path):
    path = record(tmp_path, [pattern(t, 20, 30) for t in range(5)], format="gif", fps=10)
    with Image.open(path) as image:
        assert image.info.get("loop") == 0
        assert image.n_frames == 5


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_odd_sizes_are_padded_to_even_never_rescaled(tmp_path, fmt):
    frames = [pattern(t, 47, 63) for t in range(10)]
    decoded, pix_fmt, _ = decode(record(tmp_path, frames, format=fmt))
    assert pix_fmt == "yuv420p"
    assert decoded[0].shape == (48, 64, 3)
    for index, got in enumerate(decoded):
        scores = [psnr(got[:47, :63], want) for want in frames]
        assert int(np.argmax(scores)) == index and scores[index] > 27
        assert psnr(got[47, :63], frames[index][46]) > 25  # the padding repeats the last row


def test_a_file_appears_under_its_final_name_only_when_complete(tmp_path):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"))
    segment = recorder.start("episode")
    for t in range(30):
        segment.add(pattern(t, 64, 64))
    (clip_id,) = segment._clip_ids.values()
    ring = recorder._encoder._rings[clip_id]
    wait_for(lambda: int(ring.taken[0]) == 30, "the encoder to take all 30 frames")
    # Every frame is encoded, but the clip is still open: only the hidden temporary file exists.
    assert not (tmp_path / "episode.mp4").exists()
    assert (tmp_path / ".episode.mp4.part").exists()
    segment.stop()
    wait_for((tmp_path / "episode.mp4").exists, "the final file")
    # The first moment the final name exists, the file is complete (it is renamed, never written in place).
    assert len(decode(tmp_path / "episode.mp4")[0]) == 30
    assert not (tmp_path / ".episode.mp4.part").exists()
    recorder.close()


def noisy_frames(count: int = 45, height: int = 64, width: int = 96) -> list[np.ndarray]:
    """Frames with enough detail that quality settings change the bits spent on them."""
    rng = np.random.default_rng(0)
    noise = rng.integers(-40, 40, (count, height, width, 3))
    return [np.clip(pattern(t, height, width) + noise[t], 0, 255).astype(np.uint8) for t in range(count)]


def encode(path: Path, frames: list[np.ndarray], **options) -> Path:
    encoder = VideoFileEncoder(str(path), *frames[0].shape[:2], VideoOptions(fps=30, **options))
    for frame in frames:
        encoder.write(frame)
    return Path(encoder.close())


def mean_psnr(path: Path, frames: list[np.ndarray]) -> float:
    decoded = decode(path)[0]
    assert len(decoded) == len(frames)
    return float(np.mean([psnr(a, b) for a, b in zip(decoded, frames)]))


def bits_per_second(path: Path, frames: int, fps: float = 30) -> float:
    return path.stat().st_size * 8 / (frames / fps)


def test_encoder_settings_change_the_output(tmp_path):
    frames = noisy_frames()
    default, coarse, fine = (encode(tmp_path / f"{name}.mp4", frames, **options) for name, options in
                             [("default", {}), ("coarse", {"crf": 40}), ("fine", {"crf": 12})])
    assert "crf=23.0" in x264_settings(default) and default_subme() in x264_settings(default)  # preset "auto"
    assert "crf=40.0" in x264_settings(coarse) and "crf=12.0" in x264_settings(fine)
    assert coarse.stat().st_size * 3 < default.stat().st_size < fine.stat().st_size / 1.5
    assert mean_psnr(coarse, frames) + 1 < mean_psnr(default, frames) < mean_psnr(fine, frames) - 0.5

    ultrafast = x264_settings(encode(tmp_path / "ultrafast.mp4", frames, preset="ultrafast"))
    assert "cabac=0" in ultrafast and "me=dia" in ultrafast and "subme=0" in ultrafast

    for target in (100_000, 800_000):  # bitrate replaces crf: average bitrate, close to the target
        path = encode(tmp_path / f"abr_{target}.mp4", frames, bitrate=target)
        assert "rc=abr" in x264_settings(path) and f"bitrate={target // 1000}" in x264_settings(path)
        assert 0.65 * target < bits_per_second(path, len(frames)) < 1.35 * target

    sharp, blurry = encode(tmp_path / "sharp.webm", frames, format="webm", crf=10), encode(
        tmp_path / "blurry.webm", frames, format="webm", crf=60
    )
    assert blurry.stat().st_size * 5 < sharp.stat().st_size
    assert mean_psnr(blurry, frames) + 2 < mean_psnr(sharp, frames)
    low, high = (encode(tmp_path / f"vp9_{b}.webm", frames, format="webm", bitrate=b) for b in (100_000, 600_000))
    assert bits_per_second(low, len(frames)) < 1.5 * 100_000 < 2 * bits_per_second(low, len(frames))
    assert low.stat().st_size * 2 < high.stat().st_size
    speed5, speed8 = (encode(tmp_path / f"speed{p}.webm", frames, format="webm", preset=p) for p in ("5", "8"))
    assert speed5.read_bytes() != speed8.read_bytes()  # preset is libvpx's cpu-used


def test_an_encoder_error_reaches_the_caller_with_the_original_exception(tmp_path):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4", preset="no-such-preset"))
    segment = recorder.start("bad")
    with pytest.raises(Exception) as info:
        for t in range(50):
            segment.add(pattern(t, 32, 32))
            time.sleep(0.01)
        segment.stop()
        recorder.close()
    assert type(info.value).__module__.startswith("av")
    assert any("encoder process" in note for note in getattr(info.value, "__notes__", []))
    recorder.close()
    assert not list(tmp_path.iterdir())


def test_drop_policy_never_waits_and_counts_what_it_dropped(tmp_path):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"), queue_frames=3, when_full="drop")
    frames = [pattern(t, 48, 64) for t in range(30)]
    with encoder_stopped(recorder):  # fails if add() waits for it
        segment = recorder.start("fast")
        for frame in frames:
            segment.add(frame)
        (clip,) = segment.stop()
    recorder.close()
    assert (clip.frames, clip.dropped_frames) == (3, 27)  # the ring's 3 slots, then nothing was taken
    decoded = decode(clip.path)[0]
    assert len(decoded) == 3 and all(psnr(got, want) > 30 for got, want in zip(decoded, frames))


def test_wait_policy_waits_for_a_frozen_encoder_and_loses_nothing(tmp_path):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"), queue_frames=2)
    frames = [pattern(t, 48, 64) for t in range(10)]
    segment = recorder.start("patient")
    with encoder_stopped(recorder):
        adding = threading.Thread(target=lambda: [segment.add(frame) for frame in frames])
        adding.start()
        wait_for(lambda: segment.frames == 2, "the ring to fill")
        adding.join(0.2)
        assert adding.is_alive() and segment.frames == 2  # the third add waits for a slot
    adding.join(60)
    (clip,) = segment.stop()
    recorder.close()
    decoded = decode(clip.path)[0]
    assert clip.dropped_frames == 0 and len(decoded) == 10
    assert all(psnr(got, want) > 30 for got, want in zip(decoded, frames))


def test_a_write_waiting_for_the_encoder_sleeps_instead_of_spinning(tmp_path):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"), queue_frames=2)
    segment = recorder.start("asleep")
    with encoder_stopped(recorder):
        adding = threading.Thread(target=lambda: [segment.add(pattern(t, 48, 64)) for t in range(4)])
        adding.start()
        wait_for(lambda: segment.frames == 2, "the ring to fill")
        clock = time.pthread_getcpuclockid(adding.ident)
        cpu_before = time.clock_gettime(clock)
        time.sleep(0.5)
        waiting_cpu = time.clock_gettime(clock) - cpu_before
        assert adding.is_alive()
    adding.join(60)
    (clip,) = segment.stop()
    recorder.close()
    # it sleeps on the encoder's wake pipe (woken at least every 0.1 s to check the process is alive);
    # a 0.5 ms sleep/poll loop costs ~10-20 ms of CPU per 0.5 s here
    assert waiting_cpu < 0.005, f"the waiting write() used {1e3 * waiting_cpu:.1f} ms of CPU in 0.5 s"
    assert clip.frames == 4 and len(decode(clip.path)[0]) == 4


def test_an_encoder_leaves_no_descriptor_open_after_close(tmp_path):
    before = set(os.listdir("/proc/self/fd"))
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"), queue_frames=2)
    segment = recorder.start("tidy")
    for t in range(5):
        segment.add(pattern(t, 48, 64))
    segment.stop()
    recorder.close()
    assert set(os.listdir("/proc/self/fd")) - before == set()


def test_wait_policy_loses_nothing_with_a_tiny_queue(tmp_path):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"), queue_frames=1)
    segment = recorder.start("slow")
    for t in range(30):
        segment.add(pattern(t, 120, 160))
    (clip,) = segment.stop()
    recorder.close()
    assert clip.dropped_frames == 0 and len(decode(clip.path)[0]) == 30


def test_a_dead_encoder_process_is_reported(tmp_path):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"))
    segment = recorder.start("doomed")
    segment.add(pattern(0, 32, 32))
    recorder._encoder._process.kill()
    recorder._encoder._process.wait()
    with pytest.raises(EncoderProcessDied, match="exited"):
        for t in range(100):
            segment.add(pattern(t, 32, 32))
            time.sleep(0.005)
        segment.stop()
        recorder.wait()


def test_bad_options_are_rejected_up_front(tmp_path):
    with pytest.raises(ValueError, match="mp4, webm, gif"):
        VideoOptions(format="avi")
    with pytest.raises(ValueError, match="fps"):
        VideoOptions(fps=0)
    with pytest.raises(ValueError, match="when_full"):
        Recorder(tmp_path, VideoOptions(), when_full="block")


def test_sigkill_mid_episode_leaves_only_complete_files(tmp_path):
    """Kill the training process mid-episode: finished episodes are intact, the cut one is saved as partial."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from support import PatternEnv
        from episode_recorder.unienv import EpisodeVideoWrapper
        env = EpisodeVideoWrapper(PatternEnv(height=96, width=128, episode_length=20), store_dir={str(tmp_path)!r}, format="mp4")
        env.reset()
        for step in range(47):  # two full episodes (21 frames each), then 7 frames of a third
            _, _, terminated, truncated, _ = env.step(None)
            if terminated or truncated:
                env.reset()
        print("captured", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    deadline = time.monotonic() + 60
    while not (tmp_path / "episode_2_step_40.partial.mp4").exists():  # renamed once complete
        assert time.monotonic() < deadline, os.listdir(tmp_path)
        time.sleep(0.05)
    names = sorted(p for p in os.listdir(tmp_path) if not p.startswith("."))
    assert names == ["episode_0_step_0.mp4", "episode_1_step_20.mp4", "episode_2_step_40.partial.mp4"]
    counts = [len(decode(tmp_path / name)[0]) for name in names]
    assert counts == [21, 21, 8]  # the reset frame plus 7 steps of the cut episode


def test_ctrl_c_in_the_terminal_reaches_the_users_finally_and_every_file_is_complete(tmp_path):
    """Ctrl+C in a terminal: SIGINT to the whole foreground process group (training and encoder).

    The user's loop gets KeyboardInterrupt, its ``finally: env.close()`` still writes every file.
    """
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from support import PatternEnv
        from episode_recorder.unienv import EpisodeVideoWrapper

        class Remembering(PatternEnv):
            rendered = []
            def render(self):
                self.rendered.append(int(self.t[0]))
                return super().render()

        base = Remembering(height=96, width=128, episode_length=20)
        env = EpisodeVideoWrapper(base, store_dir={str(tmp_path)!r}, format="mp4")
        try:
            env.reset()
            for step in range(50):  # two episodes (21 frames each), then 10 steps of a third
                _, _, terminated, truncated, _ = env.step(None)
                if terminated or truncated:
                    env.reset()
            print("waiting for Ctrl+C", flush=True)
            sys.stdin.readline()  # interrupted here
            print("never reached", flush=True)
        finally:
            env.close()
            with open({str(tmp_path / "rendered.json")!r}, "w") as file:
                json.dump(base.rendered, file)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        assert child.stdout.readline() == "waiting for Ctrl+C\n", child.stderr.read()
        os.killpg(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGINT and "KeyboardInterrupt" in err, err  # Python's exit for an uncaught Ctrl+C
    assert "never reached" not in out
    names = sorted(os.listdir(tmp_path))
    assert names == ["episode_0_step_0.mp4", "episode_1_step_20.mp4", "episode_2_step_40.mp4", "rendered.json"]
    rendered = json.loads((tmp_path / "rendered.json").read_text())
    expected = [rendered[:21], rendered[21:42], rendered[42:]]
    assert [len(ts) for ts in expected] == [21, 21, 11]
    for name, ts in zip(names, expected):
        decoded = decode(tmp_path / name)[0]
        assert len(decoded) == len(ts), name
        assert all(psnr(got, pattern(t, 96, 128)) > 30 for got, t in zip(decoded, ts)), name


@pytest.mark.parametrize("preset", ["auto", "ultrafast"])  # (an explicit veryfast keeps its own 10-frame lookahead)
def test_every_frame_is_encoded_by_its_own_write_so_ending_a_clip_encodes_nothing_more(tmp_path, preset):
    samples = []
    encoder = VideoFileEncoder(str(tmp_path / "now.mp4"), 48, 64, VideoOptions(preset=preset), on_sample=samples.append)
    for t in range(10):
        encoder.write(pattern(t, 48, 64))
        assert len(samples) == t + 1  # x264 held each frame until the next one without force-cfr
    encoder.close()
    assert len(samples) == 10 and len(decode(tmp_path / "now.mp4")[0]) == 10


def test_a_clip_starts_with_the_last_clips_cost_per_frame_of_its_size(tmp_path):
    from episode_recorder.sinks.video import VideoEncoderProcess

    encoder = VideoEncoderProcess(queue_frames=16)
    try:
        first = encoder.open(str(tmp_path / "a.mp4"), 48, 64, VideoOptions())
        assert int(encoder._rings[first].encode_us[0]) == 0  # nothing measured at 48x64 yet
        for t in range(8):
            encoder.write(first, pattern(t, 48, 64))
        encoder.close(first)
        encoder.wait({first})
        second = encoder.open(str(tmp_path / "b.mp4"), 48, 64, VideoOptions())
        assert int(encoder._rings[second].encode_us[0]) > 0  # the first clip's cost per frame
        assert encoder._room(encoder._rings[second]) > 3  # a 48x64 frame costs well under 10 ms
        other = encoder.open(str(tmp_path / "c.mp4"), 32, 32, VideoOptions())
        assert int(encoder._rings[other].encode_us[0]) == 0  # another size: its own cost
        encoder.abort(other)
        encoder.abort(second)
        encoder.wait({second, other})
    finally:
        encoder.shutdown()


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_the_encoder_process_runs_one_thread_so_it_takes_no_core_from_the_first_steps(tmp_path, monkeypatch):
    from episode_recorder.sinks.video import VideoEncoderProcess

    # A user's BLAS setting is theirs; numpy's OpenBLAS pool in the encoder spun ~50 ms after start.
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "8")
    encoder = VideoEncoderProcess()
    try:
        clip = encoder.open(str(tmp_path / "a.mp4"), 48, 64, VideoOptions(threads=1))
        for t in range(3):
            encoder.write(clip, pattern(t, 48, 64))
        threads = os.listdir(f"/proc/{encoder._process.pid}/task")
        encoder.close(clip)
        assert encoder.wait({clip})[-1][0] == "saved"
        assert len(threads) == 1, f"encoder threads: {threads}"
    finally:
        encoder.shutdown()


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="reads CPU time from /proc")
def test_an_encoder_with_a_clip_open_and_no_frames_coming_sleeps(tmp_path):
    from episode_recorder.sinks._video_worker import POLL_FOR_SECONDS
    from episode_recorder.sinks.video import VideoEncoderProcess

    encoder = VideoEncoderProcess()

    def cpu_ms() -> float:  # the encoder process's time on a CPU
        with open(f"/proc/{encoder._process.pid}/schedstat") as stat:
            return int(stat.read().split()[0]) / 1e6

    try:
        clip = encoder.open(str(tmp_path / "a.mp4"), 48, 64, VideoOptions())
        encoder.write(clip, pattern(0, 48, 64))
        time.sleep(POLL_FOR_SECONDS + 0.1)  # it looks for messages every 2 ms while frames come, then sleeps
        before = cpu_ms()
        time.sleep(1.0)
        assert cpu_ms() - before < 5.0  # polling on would cost ~10-25 ms per second here
        encoder.write(clip, pattern(1, 48, 64))
        encoder.close(clip)
        (saved,) = encoder.wait({clip}, timeout=10)
        assert saved[0] == "saved" and len(decode(saved[2])[0]) == 2
    finally:
        encoder.shutdown()


def test_the_queue_drains_over_the_last_frames_of_a_clip_of_known_length(tmp_path):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"), queue_frames=16)
    warm_up = recorder.start("warm-up")  # measures the cost of a 48x64 frame: far more than 4 may queue
    for t in range(8):
        warm_up.add(pattern(t, 48, 64))
    warm_up.stop(wait=True)
    for max_frames, queued_before_waiting in ((None, 4), (4, 2)):
        segment = recorder.start(f"known-{max_frames}", max_frames=max_frames)
        with encoder_stopped(recorder):
            adding = threading.Thread(target=lambda: [segment.add(pattern(t, 48, 64)) for t in range(4)])
            adding.start()
            wait_for(lambda: segment.frames >= queued_before_waiting, "frames to be queued")
            adding.join(0.2)
            # 4 frames left: 4 may be queued, then 3, 2, 1; the encoder is frozen, so the third waits
            assert segment.frames == queued_before_waiting and adding.is_alive() == (max_frames is not None)
        adding.join(60)
        (clip,) = segment.stop(wait=True)
        assert clip.frames == 4 and len(decode(clip.path)[0]) == 4
    recorder.close()


def test_the_ring_reuses_its_lowest_free_slot_so_a_short_queue_touches_few_slots():
    from episode_recorder.sinks.video import _Ring

    ring = _Ring(slots=4, height=2, width=2)
    used = []
    for frame in range(6):  # the encoder takes each frame before the next comes: one slot does
        slot = ring.free_slot()
        ring.in_flight.append(slot)
        ring.written += 1
        ring.taken[0] += 1
        used.append(slot)
    assert used == [0] * 6
    for frame in range(3):  # three frames queued: three slots, none of them reused while queued
        ring.in_flight.append(ring.free_slot())
        ring.written += 1
    assert list(ring.in_flight) == [0, 1, 2]
    ring.taken[0] += 1  # the oldest (slot 0) was encoded
    assert ring.free_slot() == 0 and list(ring.in_flight) == [1, 2]
    ring.release()


def test_the_encoder_process_sees_that_the_next_message_closes_the_clip_without_taking_it():
    import socket

    from episode_recorder.sinks._video_worker import _Commands
    from episode_recorder.sinks.video import encode_message

    parent, child = socket.socketpair()
    commands = _Commands(child.detach(), os.getpid())
    parent.sendall(encode_message(("frame", 3, 0, False, False)) + encode_message(("frame", 3, 1, False, False)))
    assert commands.next() == ("frame", 3, 0, False, False)
    assert not commands.closes_next(3)  # another frame comes first
    assert commands.next() == ("frame", 3, 1, False, False)
    assert not commands.closes_next(3)  # nothing has arrived yet
    parent.sendall(encode_message(("close", 4)) + encode_message(("close", 3)))
    assert not commands.closes_next(3)  # another clip's close
    assert commands.next() == ("close", 4)
    assert commands.closes_next(3) and commands.closes_next(3)  # a look, twice: the message stays
    assert commands.next() == ("close", 3)
    parent.close()
    assert commands.next() is None
    commands.socket.close()
    if commands.parent is not None:
        os.close(commands.parent)


def test_a_last_frame_converted_on_every_core_encodes_to_the_same_bytes(tmp_path):
    # The frame a caller waits for is converted with more threads: swscale's slices give the same
    # pixels, so the file is byte for byte the one a single thread writes.
    frames = [pattern(t, 97, 131) for t in range(6)]  # odd: the padded path too
    paths = []
    for hurry in (False, True):
        encoder = VideoFileEncoder(str(tmp_path / f"hurry-{hurry}.mp4"), 97, 131, VideoOptions(format="mp4", threads=1))
        for t, frame in enumerate(frames):
            encoder.write(frame, hurry=hurry and t == len(frames) - 1)
        paths.append(Path(encoder.close()))
    assert paths[0].read_bytes() == paths[1].read_bytes()
