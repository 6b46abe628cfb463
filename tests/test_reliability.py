"""Nothing lost: signals to the job, crashes of the whole job, fork, shared names, full disks, bad frames.

Real child processes record with the real wrappers; real signals; every file is decoded with PyAV
and its frames compared with what was captured (frame ``i`` of a recording is ``pattern(start + i)``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import psutil
import pytest
from patterns import pattern
from reliability_env import H, W, PatternGymEnv, encoder_took_every_frame, wait_until
from support import decode, psnr

from episode_recorder.recorder import Recorder, write_sidecar
from episode_recorder.recover import recover
from episode_recorder.sinks.video import VideoOptions

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"


def gone(pid: int) -> bool:
    """The process has exited with all its threads (a zombie leader's other threads may still hold its files)."""
    try:
        if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            return False
        return len(os.listdir(f"/proc/{pid}/task")) <= 1 and psutil.Process(pid).num_threads() <= 1
    except (psutil.NoSuchProcess, FileNotFoundError):
        return True


def assert_frames(path: Path, start: int, count: int | None = None) -> int:
    """The file decodes to ``pattern(start), pattern(start + 1), ...`` (``count`` of them if given)."""
    frames = decode(path)[0]
    if count is not None:
        assert len(frames) == count, f"{path.name}: {len(frames)} frames, expected {count}"
    for index, frame in enumerate(frames):
        assert psnr(frame, pattern(start + index, H, W)) > 28, f"{path.name} frame {index}"
    return len(frames)


def visible(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def shared_mappings(pid: int) -> list[str]:
    """The shared-memory files process ``pid`` has mapped (``/dev/shm/...`` or ``memfd:...``)."""
    with open(f"/proc/{pid}/maps") as maps:
        return sorted({line.split(None, 5)[-1].strip() for line in maps if "/dev/shm/" in line or "memfd:" in line})


# --- a training job in a child process ----------------------------------------------------------
JOB = """
import os, signal, sys, time
sys.path[:0] = [{tests!r}, {src!r}]
from reliability_env import PatternGymEnv, encoder_took_every_frame
from episode_recorder.gym import RecordVideo
env = RecordVideo(PatternGymEnv(episode_length={episode_length}), {folder!r}, episode_trigger=lambda e: True,
                  format={fmt!r}, fps=30)
{setup}
try:
    env.reset()
    for step in range({steps}):
        _, _, terminated, truncated, _ = env.step(0)
        if terminated or truncated:
            env.reset()
    encoder_took_every_frame(env.recorder)
    print("ready", env.recorder._encoder._process.pid, flush=True)
    {wait}
finally:
    {finally_}
"""


def start_job(folder: Path, *, steps: int, episode_length: int = 1000, fmt: str = "mp4", setup: str = "",
              wait: str = "time.sleep(120)", finally_: str = "pass") -> tuple[subprocess.Popen, int]:
    """Run a recording job as the leader of its own process group; returns it and its encoder's pid."""
    script = JOB.format(tests=str(TESTS), src=str(SRC), folder=str(folder), fmt=fmt, steps=steps,
                        episode_length=episode_length, setup=setup, wait=wait, finally_=finally_)
    job = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    line = job.stdout.readline()
    assert line.startswith("ready"), job.stderr.read()
    return job, int(line.split()[1])


# --- 1. playable at every moment; whole-job crash; recover ----------------------------------------
@pytest.mark.parametrize("fmt", ["mp4", "webm", "gif"])
def test_the_file_being_written_plays_up_to_about_its_last_second(tmp_path, fmt):
    recorder = Recorder(tmp_path, VideoOptions(format=fmt, fps=30))
    segment = recorder.start("clip")
    for t in range(120):  # 4 s at 30 fps
        segment.add(pattern(t, H, W))
    encoder_took_every_frame(recorder)
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    shutil.copy(tmp_path / f".clip.{fmt}.part", snapshot)  # what a power cut would leave
    assert len(decode(snapshot / f".clip.{fmt}.part")[0]) >= 120 - 30 - 15  # players play it as it is
    (report,) = recover(snapshot)
    on_disk = assert_frames(snapshot / f"clip.{fmt}", 0, report.frames)  # recover: every frame, in order
    assert on_disk >= 120 - 30 - 15, f"{on_disk} of 120 frames decodable while recording"
    segment.stop()
    (clip,) = recorder.close()
    assert_frames(Path(clip.path), 0, 120)
    if fmt == "mp4":  # finished files are ordinary faststart MP4s: the index before the data
        head = Path(clip.path).read_bytes()[:4096]
        assert head.find(b"moov") < head.find(b"mdat") or b"mdat" not in head
        assert b"moof" not in Path(clip.path).read_bytes()
    assert not list(tmp_path.glob(".clip*")), "the temporary files are gone once the clip is saved"


@pytest.mark.parametrize("fmt", ["mp4", "webm", "gif"])
def test_sigkill_of_the_whole_job_leaves_a_part_that_recover_makes_playable(tmp_path, fmt):
    job, encoder = start_job(tmp_path, steps=150, fmt=fmt)  # 151 frames captured, ~5 s
    os.kill(encoder, signal.SIGKILL)  # the OOM killer / `scancel -s KILL` / a power cut: everything at once
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    wait_until(lambda: gone(encoder), what="the encoder to die")
    part = tmp_path / f".rl-video-episode-0.{fmt}.part"
    assert part.exists() and visible(tmp_path) == []
    (report,) = recover(tmp_path)
    assert report.action == "remuxed" and report.source == str(part), report
    assert report.path == str(tmp_path / f"rl-video-episode-0.{fmt}")
    recovered = assert_frames(Path(report.path), 1, report.frames)
    assert 151 - 30 - 15 <= recovered <= 151
    print(f"[report] whole-job SIGKILL {fmt}: captured 151, recovered {recovered}")
    assert os.listdir(tmp_path) == [f"rl-video-episode-0.{fmt}"]


@pytest.mark.parametrize("fmt", ["mp4", "webm", "gif"])
def test_a_part_cut_at_any_byte_recovers_to_the_first_frames_in_order(tmp_path, fmt):
    """A power cut can stop a write anywhere: recover keeps every whole frame before the cut."""
    recorder = Recorder(tmp_path / "run", VideoOptions(format=fmt, fps=30))
    segment = recorder.start("clip")
    for t in range(90):
        segment.add(pattern(t, H, W))
    encoder_took_every_frame(recorder)
    data = (tmp_path / "run" / f".clip.{fmt}.part").read_bytes()
    segment.stop()
    recorder.close()
    recovered = []
    for fraction in (0.35, 0.5, 0.62, 0.8, 0.97):
        folder = tmp_path / f"cut{fraction}"
        folder.mkdir()
        (folder / f".clip.{fmt}.part").write_bytes(data[: int(len(data) * fraction)])
        (report,) = recover(folder)
        assert report.action in ("remuxed", "removed"), report
        if report.action == "remuxed":
            recovered.append(assert_frames(Path(report.path), 0, report.frames))
    assert len(recovered) >= 3 and recovered == sorted(recovered), recovered


def test_recover_renames_partials_and_leaves_files_being_written_alone(tmp_path):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"))
    live = recorder.start("live")
    for t in range(5):
        live.add(pattern(t, H, W))
    (tmp_path / "old.partial.mp4").write_bytes(b"")  # nothing readable: reported, left as it is
    finished = Recorder(tmp_path / "done", VideoOptions(format="mp4"))
    segment = finished.start("ep")
    for t in range(7):
        segment.add(pattern(t, H, W))
    segment.stop()
    (clip,) = finished.close()
    os.rename(clip.path, tmp_path / "ep.partial.mp4")
    report = {Path(item.source).name: item for item in recover(tmp_path)}
    assert report[".live.mp4.part"].action == "in use"
    assert str(report["ep.partial.mp4"]) == "renamed ep.partial.mp4 -> ep.mp4 (7 frames)"
    assert report["old.partial.mp4"].action == "failed"
    assert (report["ep.partial.mp4"].action, report["ep.partial.mp4"].frames) == ("renamed", 7)
    assert_frames(tmp_path / "ep.mp4", 0, 7)
    live.stop()
    recorder.close()
    assert_frames(tmp_path / "live.mp4", 0, 5)


# --- 2. signals to the job's process group --------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_a_signal_to_the_process_group_without_handler_leaves_every_frame(tmp_path, sig):
    job, encoder = start_job(tmp_path, steps=70, episode_length=30)  # episodes of 31 frames, then 11
    os.killpg(job.pid, sig)
    assert job.wait() == -sig
    wait_until(lambda: gone(encoder), what="the encoder to finish and exit")  # no orphan
    assert visible(tmp_path) == [
        "rl-video-episode-0.mp4", "rl-video-episode-1.mp4", "rl-video-episode-2.partial.mp4"
    ]
    counts = [assert_frames(tmp_path / name, start) for name, start in zip(visible(tmp_path), (1, 32, 63))]
    assert counts == [31, 31, 11]
    print(f"[report] killpg {sig.name}, no handler: captured 73, in files {sum(counts)}")
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".part")]
    (report,) = recover(tmp_path)
    assert (report.action, Path(report.path).name, report.frames) == ("renamed", "rl-video-episode-2.mp4", 11)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_user_handler_plus_finally_close_saves_the_episode_under_its_final_name(tmp_path, sig):
    job, encoder = start_job(
        tmp_path, steps=40, setup=f"signal.signal({int(sig)}, lambda *a: sys.exit(0))",
        wait="signal.pause()", finally_="env.close(); print('closed', flush=True)",
    )
    os.killpg(job.pid, sig)
    out, err = job.communicate(timeout=60)
    assert job.returncode == 0 and "closed" in out, err
    assert "EncoderProcessDied" not in err and "leaked" not in err, err
    assert visible(tmp_path) == ["rl-video-episode-0.mp4"]
    assert_frames(tmp_path / "rl-video-episode-0.mp4", 1, 41)
    assert gone(encoder)


def test_forgetting_close_warns_of_no_leak_and_keeps_every_frame(tmp_path):
    job, encoder = start_job(tmp_path, steps=20, wait="pass", finally_="pass")  # the script just ends
    _, err = job.communicate(timeout=60)
    assert job.returncode == 0, err
    assert "leaked" not in err and "resource_tracker" not in err, err
    wait_until(lambda: gone(encoder), what="the encoder to exit")
    assert visible(tmp_path) == ["rl-video-episode-0.partial.mp4"]
    assert_frames(tmp_path / "rl-video-episode-0.partial.mp4", 1, 21)


def test_rings_are_anonymous_memory_so_no_crash_can_leave_a_dev_shm_segment(tmp_path):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"))
    segments = [recorder.start(f"clip{i}") for i in range(3)]
    for t in range(5):
        for segment in segments:
            segment.add(pattern(t, H, W))
    encoder_took_every_frame(recorder)
    # memfd: no name anywhere, freed with its last user (this process may map other libraries' segments)
    assert shared_mappings(recorder._encoder._process.pid) == ["/memfd:episode-recorder-ring (deleted)"]
    mapped = shared_mappings(os.getpid())
    assert "/memfd:episode-recorder-ring (deleted)" in mapped and not [m for m in mapped if "/dev/shm/psm_" in m]
    for segment in segments:
        segment.stop()
    recorder.close()


# --- 3. names -------------------------------------------------------------------------------------
def test_two_recorders_with_one_name_write_distinct_complete_files(tmp_path):
    (tmp_path / "rl-video-episode-1.mp4").write_bytes(b"an earlier run's file")
    saved: list[tuple[str, int]] = []
    envs = [
        gym.wrappers.TimeLimit(PatternGymEnv(), 10) for _ in range(2)
    ]
    from episode_recorder.gym import RecordVideo

    wrappers = [
        RecordVideo(env, str(tmp_path), episode_trigger=lambda e: True,
                    on_video_saved=lambda path, info: saved.append((path, info["frames"])))
        for env in envs
    ]
    for wrapper in wrappers:
        wrapper.reset()
    for episode in range(2):
        for _ in range(10):
            for wrapper in wrappers:
                wrapper.step(0)
        for wrapper in wrappers:
            wrapper.reset()
    for wrapper in wrappers:
        wrapper.close()
    assert (tmp_path / "rl-video-episode-1.mp4").read_bytes() == b"an earlier run's file"
    assert visible(tmp_path) == [
        "rl-video-episode-0-1.mp4", "rl-video-episode-0.mp4", "rl-video-episode-1-1.mp4",
        "rl-video-episode-1-2.mp4", "rl-video-episode-1.mp4", "rl-video-episode-2-1.mp4", "rl-video-episode-2.mp4",
    ]
    assert len({path for path, _ in saved}) == len(saved) == 6
    for path, frames in saved:
        assert frames in (11, 1) and len(decode(path)[0]) == frames


def test_two_processes_with_one_folder_and_prefix_write_distinct_files(tmp_path):
    jobs = [  # both jobs are recording episode 0 at once when they report ready
        start_job(tmp_path, steps=30, setup="signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))",
                  wait="signal.pause()", finally_="env.close()")
        for _ in range(2)
    ]
    for job, _ in jobs:
        os.killpg(job.pid, signal.SIGTERM)
        assert job.wait(60) == 0, job.stderr.read()
    assert visible(tmp_path) == ["rl-video-episode-0-1.mp4", "rl-video-episode-0.mp4"]
    for name in visible(tmp_path):
        assert_frames(tmp_path / name, 1, 31)


# --- 4. fork --------------------------------------------------------------------------------------
def test_a_forked_child_gets_its_own_encoder_and_the_parent_is_unaffected(tmp_path):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"))
    segment = recorder.start("parent")
    for t in range(10):
        segment.add(pattern(t, H, W))
    parent_encoder = recorder._encoder._process.pid
    pid = os.fork()
    if pid == 0:  # the child: records through the inherited recorder, then exits
        code = 1
        try:
            segment.add(pattern(100, H, W))  # the open segment continues in a file of the child's
            for t in range(101, 105):
                segment.add(pattern(t, H, W))
            own = recorder._encoder._process.pid
            segment.stop()
            (clip,) = recorder.close()
            code = 0 if own != parent_encoder and clip.name == "parent-1.mp4" and clip.frames == 5 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for t in range(10, 20):
        segment.add(pattern(t, H, W))
    segment.stop()
    (clip,) = recorder.close()
    assert_frames(Path(clip.path), 0, 20)
    assert_frames(tmp_path / "parent-1.mp4", 100, 5)


def test_a_forked_child_that_never_records_does_not_hold_the_encoder(tmp_path):
    """The job dies while its forked child lives on: the encoder still finishes the clip at once."""
    job, encoder = start_job(
        tmp_path, steps=20,
        wait="child = os.fork()\n    if child == 0:\n        time.sleep(120); os._exit(0)\n    "
             "print('forked', child, flush=True); time.sleep(120)",
    )
    line = job.stdout.readline()
    assert line.startswith("forked"), job.stderr.read()
    child = int(line.split()[1])
    try:
        os.kill(job.pid, signal.SIGKILL)
        job.wait()
        partial = tmp_path / "rl-video-episode-0.partial.mp4"
        wait_until(partial.exists, timeout=30, what="the partial file while the child lives")
        wait_until(lambda: gone(encoder), what="the encoder to exit")
        assert not gone(child)
        assert_frames(partial, 1, 21)
    finally:
        os.kill(child, signal.SIGKILL)


# --- 5. failing sinks, full disks -----------------------------------------------------------------
def test_a_failing_on_saved_is_raised_once_and_the_recorder_keeps_working(tmp_path):
    calls: list[str] = []

    def on_saved(clip):
        calls.append(clip.name)
        if clip.name == "first.mp4":
            raise RuntimeError("upload failed")

    recorder = Recorder(tmp_path, VideoOptions(format="mp4"), on_saved=on_saved)
    first = recorder.start("first")
    for t in range(5):
        first.add(pattern(t, H, W))
    with pytest.raises(RuntimeError, match="upload failed") as info:
        first.stop()
        recorder.wait()
    assert any("on_saved for" in note and "first.mp4" in note for note in info.value.__notes__)
    second = recorder.start("second")  # later calls work; the error is not raised again
    for t in range(5):
        second.add(pattern(t, H, W))
    second.stop()
    clips = recorder.close()
    assert [clip.status for clip in clips] == ["saved", "saved"] and calls == ["first.mp4", "second.mp4"]
    assert_frames(tmp_path / "first.mp4", 0, 5)


def test_close_stops_the_encoder_even_when_a_callback_fails(tmp_path):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"), on_saved=lambda clip: 1 / 0)
    segment = recorder.start("ep")
    for t in range(5):
        segment.add(pattern(t, H, W))
    process = recorder._encoder._process
    with pytest.raises(ZeroDivisionError):
        recorder.close()
    assert process.poll() == 0 and not recorder._encoder._rings
    assert_frames(tmp_path / "ep.mp4", 0, 5)


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_names_the_file_keeps_what_fit_and_the_recorder_keeps_working(small_disk):
    recorder = Recorder(small_disk, VideoOptions(format="gif"))  # gif: ~5 kB a frame, fills it fast
    segment = recorder.start("big")
    error = None
    try:
        for t in range(400):
            segment.add(pattern(t, H, W))
        segment.stop()
        recorder.wait()
    except OSError as raised:
        error = raised
    assert error is not None and error.filename in (str(small_disk / "big.gif"), str(small_disk / ".big.gif.part"))
    assert "big.gif" in str(error) and any(str(small_disk / "big.gif") in note for note in error.__notes__)
    with pytest.raises(OSError) as sidecar_error:
        write_sidecar(small_disk / "big.json", {"frames": list(range(100_000))})
    assert sidecar_error.value.filename == str(small_disk / "big.json")
    assert not [name for name in os.listdir(small_disk) if name.endswith((".json", ".tmp"))]
    recorder.close()  # after the error: stops the encoder, raises nothing more
    assert ".big.gif.part" in os.listdir(small_disk)  # what fit is kept for recover()
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)  # space freed
    (report,) = recover(small_disk)
    assert report.action == "remuxed" and report.frames > 10, report
    assert_frames(Path(report.path), 0, report.frames)
    print(f"[report] full disk: captured {segment.frames}, recovered {report.frames}")


def test_write_sidecar_replaces_atomically(tmp_path):
    path = tmp_path / "clip.json"
    write_sidecar(path, {"frames": 1})
    write_sidecar(path, {"frames": 2})
    assert json.loads(path.read_text()) == {"frames": 2} and os.listdir(tmp_path) == ["clip.json"]


# --- 6. bad frames ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "frame, message",
    [
        (pattern(0, H, W).astype(np.float64), r"values in \[.*\].*0-255 data"),
        (np.full((H, W, 3), np.nan, np.float32), "NaN"),
        (np.full((H, W, 3), np.inf, np.float32), "infinite"),
        (np.zeros((0, 0, 3), np.uint8), "empty frame"),
        (np.zeros((H, W, 3), np.int64), "dtype int64"),
    ],
    ids=["float-0-255", "nan", "inf", "zero-size", "int64"],
)
def test_a_bad_frame_is_a_clear_error_at_its_step_and_recording_goes_on(tmp_path, frame, message):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"))
    segment = recorder.start("ep")
    segment.add(pattern(0, H, W))
    with pytest.raises(ValueError, match=message) as info:
        segment.add(frame)
    assert "float (0.0-1.0)" in str(info.value) or "[0.0, 1.0]" in str(info.value)
    segment.add(pattern(1, H, W))
    segment.stop()
    (clip,) = recorder.close()
    assert_frames(Path(clip.path), 0, 2)


def test_bad_torch_frames_are_caught_on_their_device():
    torch = pytest.importorskip("torch")
    from episode_recorder.frames import to_rgb

    with pytest.raises(ValueError, match="NaN"):
        to_rgb(torch.full((4, 4, 3), float("nan")))
    with pytest.raises(ValueError, match="0-255 data"):
        to_rgb(torch.full((4, 4, 3), 200.0))


def test_a_fork_after_a_recorder_closed_leaves_the_childs_descriptors_alone(tmp_path):
    recorder = Recorder(tmp_path, VideoOptions(format="mp4"))
    freed = recorder._encoder._command_fd
    recorder.close()  # its descriptors are closed: their numbers go to the next files opened
    pipes = [os.pipe()]
    while freed not in pipes[-1] and len(pipes) < 100:
        pipes.append(os.pipe())
    read, write = pipes[-1]
    assert freed in (read, write)  # the pipe reuses the number the encoder's socket had
    os.write(write, b"ok")
    pid = os.fork()
    if pid == 0:  # e.g. an AsyncVectorEnv worker talking to its parent over a pipe
        ok = False
        try:
            ok = os.read(read, 2) == b"ok" and os.write(write, b"ok") == 2
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and os.read(read, 2) == b"ok"
    for fd in (fd for pipe in pipes for fd in pipe):
        os.close(fd)
