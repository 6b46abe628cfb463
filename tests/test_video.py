from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from support import decode, pattern, psnr

from episode_recorder.recorder import Recorder
from episode_recorder.sinks.video import EncoderProcessDied, VideoOptions

CODECS = {"mp4": "h264", "webm": "vp9", "gif": "gif"}
MIN_PSNR = {"mp4": 30.0, "webm": 30.0, "gif": 20.0}


def record(folder: Path, frames: list[np.ndarray], **options) -> Path:
    recorder = Recorder(folder, VideoOptions(**options))
    segment = recorder.start("clip")
    for frame in frames:
        segment.add(frame)
    (clip,) = segment.stop()
    recorder.close()
    assert clip.status == "saved" and clip.frames == len(frames)
    return Path(clip.path)


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
    time.sleep(0.5)  # let the encoder catch up: the file is still in progress
    assert not (tmp_path / "episode.mp4").exists()
    assert (tmp_path / ".episode.mp4.part").exists()
    segment.stop()
    recorder.close()
    assert (tmp_path / "episode.mp4").exists() and not (tmp_path / ".episode.mp4.part").exists()


def test_encoder_settings_change_the_output(tmp_path):
    frames = [pattern(t, 96, 128) for t in range(20)]
    small = record(tmp_path / "a", frames, format="mp4", crf=45)
    large = record(tmp_path / "b", frames, format="mp4", crf=12, preset="ultrafast")
    assert small.stat().st_size * 3 < large.stat().st_size
    with av.open(str(record(tmp_path / "c", frames, format="webm", bitrate=200_000))) as container:
        assert container.streams.video[0].codec_context.name == "vp9"


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
    recorder = Recorder(tmp_path, VideoOptions(format="webm", preset="0"), queue_frames=1, when_full="drop")
    segment = recorder.start("fast")
    for t in range(30):
        segment.add(pattern(t, 240, 320))
    (clip,) = segment.stop()
    recorder.close()
    assert clip.dropped_frames > 0
    assert clip.frames + clip.dropped_frames == 30
    assert len(decode(clip.path)[0]) == clip.frames


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
    while not (tmp_path / "episode_2_step_40.partial.mp4").exists():
        assert time.monotonic() < deadline, os.listdir(tmp_path)
        time.sleep(0.1)
    time.sleep(0.2)
    names = sorted(p for p in os.listdir(tmp_path) if not p.startswith("."))
    assert names == ["episode_0_step_0.mp4", "episode_1_step_20.mp4", "episode_2_step_40.partial.mp4"]
    counts = [len(decode(tmp_path / name)[0]) for name in names]
    assert counts == [21, 21, 8]  # the reset frame plus 7 steps of the cut episode


def test_ctrl_c_in_the_terminal_does_not_kill_the_encoder(tmp_path):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"))
    segment = recorder.start("interrupted")
    for t in range(5):
        segment.add(pattern(t, 32, 32))
    os.kill(recorder._encoder._process.pid, signal.SIGINT)
    time.sleep(0.2)
    segment.stop()
    (clip,) = recorder.close()
    assert clip.status == "saved" and len(decode(clip.path)[0]) == 5
