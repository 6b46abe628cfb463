"""Camera frames as H.264 ``rr.VideoStream`` samples: LogRerun, and video files + Rerun from one wrapper.

Every test reads the ``.rrd`` back with Rerun's own reader and decodes the samples with PyAV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")
rr = pytest.importorskip("rerun")

from episode_recorder.gym import RecordVideo  # noqa: E402
from episode_recorder.gym.vector import RecordVideo as VectorRecordVideo  # noqa: E402
from episode_recorder.rerun import LogRerun  # noqa: E402
from episode_recorder.sinks.rerun import read_recordings, read_video_samples  # noqa: E402
from rrd_read import blueprint_views, component, read_rrd  # noqa: E402
from support import decode, pattern, psnr  # noqa: E402

SIZE = (96, 128)  # at 48x64 this synthetic pattern is near 30 dB at crf 23; real renders are far above


class PatternEnv(gym.Env):
    """Frames that change every step (``pattern(t)``); episodes of ``episode_length`` steps.

    ``num_envs=N``: a batched env (Isaac Lab style) that renders ``(N, H, W, 3)``, env ``i`` ending
    after ``episode_length + i`` steps and resetting inside ``step()``. ``cameras``: renders
    ``{"cam": {"front": ..., "side": ...}}``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, episode_length: int = 12, num_envs: int | None = None, cameras: bool = False) -> None:
        self.render_mode = "rgb_array"
        self.episode_length, self.cameras = episode_length, cameras
        count = num_envs or 1
        if num_envs is not None:
            self.num_envs = num_envs
        self.observation_space = gym.spaces.Box(-1e9, 1e9, (count, 1) if num_envs else (1,))
        self.action_space = gym.spaces.Box(-1.0, 1.0, (count, 2) if num_envs else (2,))
        self.t = np.zeros(count, np.int64)  # frame counter per env, never reset: every frame differs
        self.steps = np.zeros(count, np.int64)
        self.rendered: list[Any] = []  # what render() returned, in order

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self.t += 1
        self.steps[:] = 0
        return self._obs(), {}

    def step(self, action: Any) -> Any:
        self.t += 1
        self.steps += 1
        done = self.steps >= self.episode_length + np.arange(len(self.t))
        reward = (self.steps * 0.5).astype(np.float64)
        if not hasattr(self, "num_envs"):
            return self._obs(), float(reward[0]), bool(done[0]), False, {}
        self.steps[done] = 0  # reset inside step()
        return self._obs(), reward, done, np.zeros_like(done), {}

    def _obs(self) -> np.ndarray:
        obs = self.steps.astype(np.float32)[:, None]
        return obs if hasattr(self, "num_envs") else obs[0]

    def render(self) -> Any:
        frames = np.stack([pattern(int(t), *SIZE, env_index=i) for i, t in enumerate(self.t)])
        out: Any = frames if hasattr(self, "num_envs") else frames[0]
        if self.cameras:
            out = {"cam": {"front": out, "side": 255 - out}}
        self.rendered.append(out)
        return out


def decode_samples(samples: list[tuple[int, bool, bytes]]) -> list[np.ndarray]:
    """Decode Annex B samples in order with a fresh PyAV decoder (the first must be a keyframe)."""
    assert samples and samples[0][1], "a stream must start with a keyframe"
    codec = av.CodecContext.create("h264", "r")
    frames = []
    for _, _, data in samples:
        frames += [frame.to_ndarray(format="rgb24") for frame in codec.decode(av.Packet(data))]
    frames += [frame.to_ndarray(format="rgb24") for frame in codec.decode(None)]
    return frames


def assert_stream_matches(samples: list[tuple[int, bool, bytes]], expected: list[np.ndarray], steps: list[int]) -> None:
    """The samples sit on ``steps``, decode to ``expected`` (PSNR >= 30 dB), and can be entered at any keyframe."""
    assert [step for step, _, _ in samples] == steps
    decoded = decode_samples(samples)
    assert len(decoded) == len(expected)
    for got, want in zip(decoded, expected):
        assert got.shape == want.shape
        assert psnr(got, want) >= 30
    keyframes = [i for i, (_, keyframe, _) in enumerate(samples) if keyframe]
    assert keyframes[0] == 0 and np.all(np.diff(keyframes + [len(samples)]) <= 60)  # <= 2 s at 30 fps
    if len(keyframes) > 1:  # SPS/PPS are in-band: decoding can start at a later keyframe
        later = decode_samples(samples[keyframes[1] :])
        assert len(later) == len(expected) - keyframes[1]
        assert psnr(later[0], expected[keyframes[1]]) >= 30


def run(env: Any, steps: int, seed: int = 0) -> None:
    env.reset(seed=seed)
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if np.any(terminated) and not hasattr(env.unwrapped, "num_envs"):
            env.reset()
    env.close()


def test_logrerun_single_env_video_is_the_rendered_frames(tmp_path: Path) -> None:
    base = PatternEnv(episode_length=70)  # 71 frames: two keyframes at 30 fps
    path = tmp_path / "single.rrd"
    env = LogRerun(base, save_path=path, log_frames=True, episode_trigger=lambda e: e == 0)
    assert env.frames == "video"
    run(env, 75)
    samples = read_video_samples(path, "/camera", "episode_0_step")
    assert_stream_matches(samples, base.rendered[:71], list(range(71)))
    rows = read_rrd(path, durations_ns=True)
    assert component(rows["/camera"], "VideoStream:codec") == [[rr.VideoCodec.H264.value]]
    assert not any("EncodedImage:blob" in row for row in rows["/camera"])
    # is_keyframe is a sparse marker (Rerun's rule): [True] on the keyframes, nothing on the other samples
    markers = [row.get("VideoStream:is_keyframe") or [] for row in rows["/camera"] if row.get("VideoStream:sample")]
    assert [i for i, marker in enumerate(markers) if marker] == [0, 60] and all(m in ([], [True]) for m in markers)
    assert blueprint_views(path) == {("2D", "/camera"), ("TimeSeries", "/scalars")}
    [recording] = read_recordings(path)
    assert (recording.name, recording.episode_id, recording.frames) == ("episode_0", 0, {"/camera": 71})


def test_logrerun_shared_timelines_put_episodes_on_one_axis(tmp_path: Path) -> None:
    base = PatternEnv(episode_length=5)
    path = tmp_path / "shared.rrd"
    env = LogRerun(base, save_path=path, timelines="shared", episode_trigger=lambda e: e in (0, 1, 3))
    env.reset(seed=0)
    assert env.sequence_timeline_name == "env_step"
    for _ in range(17):  # episodes 0 (steps 1-5), 1 (6-10), 2 (11-15, not recorded), 3 (16-17)
        if env.step(env.action_space.sample())[2]:
            env.reset()
    env.close()
    samples = read_video_samples(path, "/camera", "env_step")
    # Frames sit at the env steps taken so far; a reset takes no step, so episode 1's first frame
    # shares step 5 with episode 0's last, and comes after it in the stream.
    assert [s for s, _, _ in samples] == list(range(0, 6)) + list(range(5, 11)) + [15, 16, 17]
    assert [i for i, (_, keyframe, _) in enumerate(samples) if keyframe] == [0, 6, 12]  # one per recording
    decoded = decode_samples(samples)
    assert len(decoded) == len(base.rendered) == 15
    assert all(psnr(got, want) >= 30 for got, want in zip(decoded, base.rendered))
    rows = read_rrd(path, durations_ns=True)
    assert not any(name.startswith("episode_") for row in rows["/camera"] for name in row)
    assert component(rows["/camera"], "VideoStream:codec") == [[rr.VideoCodec.H264.value]]  # once, not per recording
    episodes = {row["env_step"]: row["Scalars:scalars"][0] for row in rows["/scalars/episode"]}
    assert episodes == {0: 0.0, 5: 1.0, 15: 3.0}
    rewards = {row["env_step"]: row["Scalars:scalars"][0] for row in rows["/scalars/reward"]}
    assert rewards[3] == 1.5 and rewards[8] == 1.5 and rewards[17] == 1.0  # 3rd, 3rd and 2nd step of an episode
    assert [(r.name, r.episode_id, r.first_step, r.frames) for r in read_recordings(path)] == [
        ("episode_0", 0, 0, {"/camera": 6}),
        ("episode_1", 1, 5, {"/camera": 6}),
        ("episode_3", 3, 15, {"/camera": 3}),
    ]


def test_logrerun_batched_env_one_stream_per_logged_env(tmp_path: Path) -> None:
    base = PatternEnv(episode_length=4, num_envs=3)
    path = tmp_path / "batched.rrd"
    env = LogRerun(base, logged_envs=[0, 2], save_path=path, episode_trigger=lambda e: True)
    env.reset()
    for _ in range(6):
        env.step(np.zeros((3, 2), np.float32))
    env.close()
    rows = read_rrd(path, durations_ns=True)
    assert "/camera/env_1" not in rows
    # env 0 ends its episode at step 4: episode_0 has frames 0-3 (reset + 3 steps) and a stateless
    # last row; episode_1 starts with the state after step 4 (the reset inside step()).
    for env_index in (0, 2):
        for name, renders, steps in (("episode_0", base.rendered[:4], range(4)), ("episode_1", base.rendered[4:], range(3))):
            samples = read_video_samples(path, f"/camera/env_{env_index}", f"{name}_step")
            assert_stream_matches(samples, [frames[env_index] for frames in renders], list(steps))
    recordings = read_recordings(path)
    assert [(r.name, r.frames) for r in recordings] == [
        ("episode_0", {"/camera/env_0": 4, "/camera/env_2": 4}),
        ("episode_1", {"/camera/env_0": 3, "/camera/env_2": 3}),
    ]


def test_logrerun_mapping_render_one_stream_per_camera(tmp_path: Path) -> None:
    base = PatternEnv(episode_length=8, cameras=True)
    path = tmp_path / "cameras.rrd"
    env = LogRerun(base, save_path=path, log_frames=True, episode_trigger=lambda e: e == 0)
    run(env, 8)
    for camera in ("front", "side"):
        samples = read_video_samples(path, f"/camera/cam/{camera}", "episode_0_step")
        assert_stream_matches(samples, [r["cam"][camera] for r in base.rendered[:9]], list(range(9)))
    assert {("2D", "/camera/cam/front"), ("2D", "/camera/cam/side")} <= blueprint_views(path)


def test_logrerun_jpeg_stays_available(tmp_path: Path) -> None:
    base = PatternEnv(episode_length=3)
    path = tmp_path / "jpeg.rrd"
    env = LogRerun(base, save_path=path, frames="jpeg", episode_trigger=lambda e: e == 0)
    run(env, 3)
    rows = read_rrd(path, durations_ns=True)["/camera"]
    assert component(rows, "EncodedImage:media_type") == [["image/jpeg"]] * 4
    assert read_video_samples(path, "/camera", "episode_0_step") == []
    with pytest.raises(ValueError, match="frames must be 'video' or 'jpeg', received 'png'"):
        LogRerun(PatternEnv(), save_path=tmp_path / "x.rrd", frames="png")
    with pytest.raises(ValueError, match="timelines must be one of .*received 'global'"):
        LogRerun(PatternEnv(), save_path=tmp_path / "y.rrd", timelines="global")


def test_record_video_file_and_rerun_are_one_encode(tmp_path: Path) -> None:
    base = PatternEnv(episode_length=10)
    path = tmp_path / "gym.rrd"
    env = RecordVideo(base, str(tmp_path / "videos"), episode_trigger=lambda e: e == 0, rerun=path)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = []
    for _ in range(10):
        actions.append(env.action_space.sample())
        env.step(actions[-1])
    env.close()
    file_frames, pix_fmt, _ = decode(tmp_path / "videos" / "rl-video-episode-0.mp4")
    samples = read_video_samples(path, "/camera", "rl-video-episode-0_step")
    assert_stream_matches(samples, base.rendered[:11], list(range(11)))
    # Encoded once: the file and the Rerun samples decode to the very same pixels.
    assert all(np.array_equal(a, b) for a, b in zip(decode_samples(samples), file_frames, strict=True))
    assert pix_fmt == "yuv420p"
    rows = read_rrd(path, durations_ns=True)
    rewards = {r["rl-video-episode-0_step"]: r["Scalars:scalars"] for r in rows["/scalars/reward"]}
    assert rewards == {t: [0.5 * t] for t in range(1, 11)}  # the step's reward on its frame
    logged_actions = {r["rl-video-episode-0_step"]: r["Scalars:scalars"] for r in rows["/scalars/action"]}
    np.testing.assert_allclose([logged_actions[t] for t in range(1, 11)], actions, rtol=1e-6)
    assert [(r.name, r.frames) for r in read_recordings(path)] == [("rl-video-episode-0", {"/camera": 11})]


@pytest.mark.parametrize("format", ["webm", "gif"])
def test_webm_and_gif_with_rerun_get_a_second_h264_encode(tmp_path: Path, format: str) -> None:
    base = PatternEnv(episode_length=6)
    stream = rr.RecordingStream("webm-test")
    path = tmp_path / f"{format}.rrd"
    stream.save(str(path))
    env = RecordVideo(base, str(tmp_path), episode_trigger=lambda e: e == 0, format=format, rerun=stream)
    run(env, 6)
    stream.disconnect()  # a stream passed in stays ours: close() only flushed it
    file_frames, _, _ = decode(tmp_path / f"rl-video-episode-0.{format}")
    assert len(file_frames) == 7
    with av.open(str(tmp_path / f"rl-video-episode-0.{format}")) as container:
        assert container.streams.video[0].codec_context.name == ("vp9" if format == "webm" else "gif")
    samples = read_video_samples(path, "/camera", "rl-video-episode-0_step")
    assert_stream_matches(samples, base.rendered[:7], list(range(7)))


def test_vector_record_video_per_env_streams(tmp_path: Path) -> None:
    envs = gym.vector.SyncVectorEnv([lambda: PatternEnv(episode_length=5) for _ in range(3)])
    path = tmp_path / "vector.rrd"
    envs = VectorRecordVideo(envs, str(tmp_path / "v"), env_indices=[0, 2], episode_trigger=lambda k: k == 0, rerun=path)
    envs.reset(seed=0)
    for _ in range(5):
        envs.step(envs.action_space.sample())
    envs.close()
    for index in (0, 2):
        sub = envs.env.envs[index]
        name = f"rl-video-env-{index}-episode-0"
        samples = read_video_samples(path, f"/camera/env_{index}", f"{name}_step")
        assert_stream_matches(samples, sub.rendered[:6], list(range(6)))
        assert len(decode(tmp_path / "v" / f"{name}.mp4")[0]) == 6
        rows = read_rrd(path, durations_ns=True)[f"/scalars/env_{index}/reward"]
        assert {r[f"{name}_step"]: r["Scalars:scalars"][0] for r in rows} == {t: 0.5 * t for t in range(1, 6)}


def test_unienv_mapping_render_to_files_and_rerun(tmp_path: Path) -> None:
    pytest.importorskip("unienv_interface")
    from support import PatternEnv as UniPatternEnv

    from episode_recorder.unienv import EpisodeVideoWrapper

    base = UniPatternEnv(episode_length=6, cameras=True)
    path = tmp_path / "unienv.rrd"
    env = EpisodeVideoWrapper(base, store_dir=tmp_path / "u", format="mp4", rerun=path)
    env.reset()
    for _ in range(6):
        env.step(env.sample_action())
    env.close()
    for camera, key in (("front", "cam.front"), ("side", "cam.side")):
        expected = [base.expected_frame(t, camera=camera) for t in range(1, 8)]
        samples = read_video_samples(path, f"/camera/{key}", "episode_0_step_0_step")
        assert_stream_matches(samples, expected, list(range(7)))
        file_frames, _, _ = decode(tmp_path / "u" / f"episode_0_step_0_key_{key}.mp4")
        assert all(np.array_equal(a, b) for a, b in zip(decode_samples(samples), file_frames, strict=True))
    rewards = read_rrd(path, durations_ns=True)["/scalars/reward"]
    assert {r["episode_0_step_0_step"]: r["Scalars:scalars"][0] for r in rewards} == {t: 1.0 for t in range(1, 7)}


def test_bad_rerun_argument_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="rerun= takes True .* received int"):
        RecordVideo(PatternEnv(), str(tmp_path), rerun=3)


def test_record_video_with_a_shared_timelines_sink(tmp_path: Path) -> None:
    from episode_recorder.sinks.rerun import RerunVideoSink

    base = PatternEnv(episode_length=3)
    path = tmp_path / "shared.rrd"
    stream = rr.RecordingStream("shared-sink")
    stream.save(str(path))
    sink = RerunVideoSink(stream, timelines="shared", owns_stream=True)
    env = RecordVideo(base, str(tmp_path / "v"), episode_trigger=lambda e: True, rerun=sink)
    run(env, 6)  # two episodes of 3 steps, both recorded, then a third one's reset frame
    samples = read_video_samples(path, "/camera", "env_step")
    assert [s for s, _, _ in samples] == [0, 1, 2, 3, 3, 4, 5, 6, 6]  # a reset takes no step
    assert all(psnr(got, want) >= 30 for got, want in zip(decode_samples(samples), base.rendered, strict=True))
    assert [(r.name, r.first_step, r.frames) for r in read_recordings(path)] == [
        ("rl-video-episode-0", 0, {"/camera": 4}),
        ("rl-video-episode-1", 3, {"/camera": 4}),
        ("rl-video-episode-2", 6, {"/camera": 1}),
    ]


def test_sink_sends_few_chunks_by_count_and_age(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows go out once ``flush_every`` are buffered or ``flush_seconds`` after the last send (few, large chunks)."""
    from types import SimpleNamespace

    from episode_recorder.recorder import Recorder
    from episode_recorder.sinks import rerun as sink_module
    from episode_recorder.sinks.rerun import RerunVideoSink
    from episode_recorder.sinks.video import VideoOptions
    from rerun.chunk import RrdReader

    clock = [0.0]
    monkeypatch.setattr(sink_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    path = tmp_path / "chunks.rrd"
    stream = rr.RecordingStream("chunks")
    stream.save(str(path))
    with pytest.raises(ValueError, match="flush_seconds must be > 0, received 0"):
        RerunVideoSink(stream, flush_seconds=0)
    recorder = Recorder(None, VideoOptions(fps=10), rerun=RerunVideoSink(stream, flush_every=4, flush_seconds=10.0))
    segment = recorder.start("clip")
    frames = [pattern(t, *SIZE) for t in range(10)]
    for t, frame in enumerate(frames):
        clock[0] = 11.0 if t >= 6 else 0.0  # 11 s pass before the 7th step
        segment.add(frame, reward=float(t))
    segment.stop()
    recorder.close()
    stream.disconnect()
    chunks = [(chunk.entity_path, chunk.num_rows) for chunk in RrdReader(str(path)).stream() if not chunk.is_static]
    # rewards: 4 (count), then 3 (age: the 7th step is 11 s after the last send), then the 3 left at the end
    assert [rows for entity, rows in chunks if entity == "/scalars/reward"] == [4, 3, 3]
    samples = [rows for entity, rows in chunks if entity == "/camera"]  # when they arrive is the encoder's business
    assert sum(samples) == 10 and max(samples) <= 4
    assert_stream_matches(read_video_samples(path, "/camera", "clip_step"), frames, list(range(10)))


def test_the_encoder_sends_samples_in_batches_and_all_before_the_clips_result() -> None:
    """One message per batch, not per frame (each woke the parent's reader, which took the GIL)."""
    from episode_recorder.sinks._video_worker import SAMPLE_BATCH
    from episode_recorder.sinks.video import VideoEncoderProcess, VideoOptions

    encoder = VideoEncoderProcess()
    try:
        clip = encoder.open(None, *SIZE, VideoOptions(samples=True, fps=10))
        frames = [pattern(t, *SIZE) for t in range(40)]
        for frame in frames:
            encoder.write(clip, frame)
        encoder.close(clip)
        results = encoder.wait({clip}, timeout=60)
    finally:
        encoder.shutdown()
    kinds = [result[0] for result in results]
    assert kinds[-1] == "saved" and set(kinds[:-1]) == {"samples"}
    batches = [result[2] for result in results[:-1]]
    assert len(batches) < len(frames) and max(map(len, batches)) <= SAMPLE_BATCH
    samples = [sample for batch in batches for sample in batch]
    assert [pts for pts, _, _ in samples] == list(range(len(frames)))
    decoded = decode_samples(samples)
    assert len(decoded) == len(frames) and all(psnr(got, want) > 30 for got, want in zip(decoded, frames))
