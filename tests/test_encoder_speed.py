"""preset="auto": the encoder measures itself and moves to faster settings when it falls behind."""

from __future__ import annotations

import logging

import av
import numpy as np
import pytest
from support import decode, pattern, psnr, record_clip, x264_settings

from episode_recorder.sinks.speed import WINDOW, SpeedGovernor
from episode_recorder.sinks.video import (
    AUTO_PRESETS,
    ULTRAFAST_CAVLC,
    EncoderSetting,
    VideoFileEncoder,
    VideoOptions,
    initial_setting,
)


def drive(governor: SpeedGovernor, clip: int, setting: EncoderSetting, cost: dict[str, float], interval: float,
          frames: int) -> tuple[list[EncoderSetting], EncoderSetting]:
    """Feed frames arriving every ``interval`` s that take ``cost[preset]`` s to encode (injected, not timed)."""
    changes, now = [], 0.0
    for _ in range(frames):
        now += max(cost[setting.preset], interval)  # a busy encoder takes the next frame at once
        change = governor.encoded(clip, cost[setting.preset], now, waited=False)
        if change is not None:
            governor.switched(*change, applied=True)
            setting = change[1]
            changes.append(setting)
    return changes, setting


SLOW = {"veryfast": 0.007, "superfast": 0.006, "ultrafast": 0.0055, ULTRAFAST_CAVLC: 0.0052}  # s per frame


def test_auto_steps_down_while_frames_arrive_faster_than_it_encodes():
    governor = SpeedGovernor(cores=64, warn=lambda text: None)
    options = VideoOptions(format="mp4")
    threads = initial_setting(options).threads  # 1 on 2 cores
    setting = governor.open(0, options, 480, 640)  # 64 cores: from the best quality down
    assert setting == EncoderSetting("veryfast", threads)
    changes, setting = drive(governor, 0, setting, SLOW, interval=0.005, frames=5 * WINDOW)
    assert changes == [EncoderSetting(p, threads) for p in ("superfast", "ultrafast", ULTRAFAST_CAVLC)]
    # At the fastest preset only a caller that keeps waiting gets more threads: it is blocked anyway.
    # One wait (a stall of the machine) is not enough.
    assert all(governor.encoded(0, 0.0055, 1.0 + 0.0055 * f, waited=f == 3) is None for f in range(WINDOW))
    change = None
    for frame in range(WINDOW):
        change = governor.encoded(0, 0.0055, 2.0 + 0.0055 * frame, waited=frame % 2 == 0) or change
    assert change == (0, EncoderSetting(ULTRAFAST_CAVLC, 2 * threads))
    # Threads given explicitly are kept.
    governor.open(1, VideoOptions(format="mp4", preset="auto", threads=1), 96, 128)
    drive(governor, 1, EncoderSetting("veryfast", 1), SLOW, interval=0.005, frames=4 * WINDOW)
    assert all(governor.encoded(1, 0.0055, 2.0 + 0.0055 * f, waited=True) is None for f in range(2 * WINDOW))


def test_a_caller_that_keeps_waiting_moves_two_steps_and_a_key_frame_wait_does_not_count():
    governor = SpeedGovernor(cores=2, warn=lambda text: None)
    setting = governor.open(0, VideoOptions(format="mp4"), 960, 1280)
    assert setting.preset == "veryfast"
    changes = []
    for frame in range(WINDOW):  # 40 ms per frame, the caller waits from the third on: far behind
        changes.append(governor.encoded(0, 0.040, 0.040 * (frame + 1), waited=frame >= 2))
        if changes[-1] is not None:
            break
    # veryfast -> ultrafast, at the third frame the caller waited for, not at the window's end
    assert changes == [None] * 4 + [(0, EncoderSetting("ultrafast", setting.threads))]
    governor.switched(*changes[-1], applied=True)
    # The change's key frame makes the caller wait for the next frames: not a reason for more threads.
    later = [governor.encoded(0, 0.030 if f < 2 else 0.010, 1.0 + 0.020 * f, waited=f < 2) for f in range(WINDOW)]
    assert later == [None] * WINDOW
    governor.open(1, VideoOptions(format="mp4"), 480, 640)  # from superfast: one step, onto ultrafast
    governor.switched(1, EncoderSetting("superfast", setting.threads), applied=True)
    jumps = [governor.encoded(1, 0.040, 2.0 + 0.040 * f, waited=f >= 2) for f in range(WINDOW)]
    assert [j for j in jumps if j][0] == (1, EncoderSetting("ultrafast", setting.threads))


def test_auto_keeps_its_setting_when_it_keeps_up_and_the_next_clip_tries_better():
    vp9 = {"6": 0.015, "7": 0.012, "8": 0.007}  # s per frame
    two_cores = SpeedGovernor(cores=2, warn=lambda text: None)
    governor = SpeedGovernor(cores=4, warn=lambda text: None)
    for each in (two_cores, governor):
        setting = each.open(0, VideoOptions(format="webm", threads=1), 480, 640)
        assert setting == EncoderSetting("8", 1)
        assert drive(each, 0, setting, vp9, interval=0.020, frames=4 * WINDOW)[0] == []  # busy 35%
        each.closed(0)
    # With 2 cores the step loop needs the other one: never costlier than the start setting.
    assert two_cores.open(1, VideoOptions(format="webm", threads=1), 480, 640) == EncoderSetting("8", 1)
    setting = governor.open(1, VideoOptions(format="webm", threads=1), 480, 640)
    assert setting == EncoderSetting("7", 1)
    # The better setting turns out too slow for frames every 10 ms: down again, inside the clip.
    assert drive(governor, 1, setting, vp9, interval=0.010, frames=3 * WINDOW)[0] == [EncoderSetting("8", 1)]
    governor.closed(1)
    # Its measured cost (12 ms, 10 ms apart) now keeps the next clip from trying it again.
    assert governor.open(2, VideoOptions(format="webm", threads=1), 480, 640) == EncoderSetting("8", 1)
    # Another size has its own history.
    assert governor.open(3, VideoOptions(format="webm", threads=1), 96, 128) == EncoderSetting("8", 1)


def test_explicit_settings_are_never_changed():
    governor = SpeedGovernor(cores=8, warn=lambda text: None)
    options = VideoOptions(format="mp4", preset="medium", threads=3)
    assert governor.open(0, options, 480, 640) == EncoderSetting("medium", 3)
    for frame in range(3 * WINDOW):
        assert governor.encoded(0, 0.05, 0.05 * (frame + 1), waited=True) is None


def test_a_change_the_codec_refuses_inside_a_clip_applies_to_the_next_clip(tmp_path):
    frames = [pattern(t, 96, 128) for t in range(20)]
    encoder = VideoFileEncoder(str(tmp_path / "clip.mp4"), 96, 128, VideoOptions(format="mp4", preset="medium"))
    for frame in frames[:10]:
        encoder.write(frame)
    assert not encoder.switch(EncoderSetting("ultrafast", 1))  # other stream headers (no CABAC)
    for frame in frames[10:]:
        encoder.write(frame)
    encoder.close()
    decoded, _, _ = decode(tmp_path / "clip.mp4")
    assert len(decoded) == 20 and [s["preset"] for s in encoder.report()["settings"]] == ["medium"]

    governor = SpeedGovernor(cores=2, warn=lambda text: None)
    governor.open(0, VideoOptions(format="mp4"), 96, 128)
    governor.switched(0, EncoderSetting("superfast", 1), applied=False)
    assert governor.encoded(0, 1.0, 1.0, waited=True) is None  # no further change in this clip
    governor.closed(0)
    assert governor.open(1, VideoOptions(format="mp4"), 96, 128) == EncoderSetting("superfast", 1)


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_every_auto_step_switches_inside_one_playable_clip(tmp_path, fmt):
    inside = [p for p in AUTO_PRESETS[fmt] if p != ULTRAFAST_CAVLC]  # its own stream headers: see below
    steps = [EncoderSetting(preset, 1) for preset in inside] + [EncoderSetting(inside[-1], 2)]
    frames = [pattern(t, 96, 128) for t in range(4 * len(steps))]
    path = tmp_path / f"clip.{fmt}"
    encoder = VideoFileEncoder(str(path), 96, 128, VideoOptions(format=fmt), setting=steps[0])
    for index, frame in enumerate(frames):
        if index % 4 == 0:
            assert encoder.switch(steps[index // 4])
        encoder.write(frame)
    encoder.close()
    assert [s["preset"] for s in encoder.report()["settings"]] == [s.preset for s in steps]
    decoded, pix_fmt, _ = decode(path)
    assert len(decoded) == len(frames) and pix_fmt == "yuv420p"
    assert min(psnr(got, want) for got, want in zip(decoded, frames)) >= 30
    with av.open(str(path)) as container:
        keyframes = [packet.is_keyframe for packet in container.demux(video=0) if packet.size]
    assert [i for i, key in enumerate(keyframes) if key] == list(range(0, len(frames), 4))


def test_the_last_h264_step_starts_with_the_next_clip_and_costs_less(tmp_path):
    frames = [pattern(t, 96, 128) for t in range(8)]
    encoder = VideoFileEncoder(str(tmp_path / "a.mp4"), 96, 128, VideoOptions(), setting=EncoderSetting("ultrafast", 1))
    encoder.write(frames[0])
    assert not encoder.switch(EncoderSetting(ULTRAFAST_CAVLC, 1))  # CAVLC: other stream headers
    encoder.close()
    clip = VideoFileEncoder(str(tmp_path / "b.mp4"), 96, 128, VideoOptions(), setting=EncoderSetting(ULTRAFAST_CAVLC, 1))
    for frame in frames:
        clip.write(frame)
    clip.close()
    settings = x264_settings(tmp_path / "b.mp4")
    assert "cabac=0" in settings and "8x8dct=0" in settings and "bframes=0" in settings
    decoded, pix_fmt, _ = decode(tmp_path / "b.mp4")
    assert len(decoded) == 8 and pix_fmt == "yuv420p" and min(map(psnr, decoded, frames)) >= 30
    assert AUTO_PRESETS["mp4"][-1] == ULTRAFAST_CAVLC  # the governor reaches it last, before threads


def test_auto_picks_a_faster_preset_when_frames_arrive_faster_than_it_encodes(tmp_path, caplog):
    frames = [pattern(t, 240, 320) for t in range(60)]
    with caplog.at_level(logging.WARNING, logger="episode_recorder"):
        metadata = record_clip(tmp_path, frames, VideoOptions(format="mp4")).metadata()
    encoder = metadata["encoder"]
    ladder = AUTO_PRESETS["mp4"]
    assert encoder["adaptive"] and encoder["crf"] == 23 and encoder["encode_ms_per_frame"] > 0
    start = initial_setting(VideoOptions())  # "auto": veryfast
    assert encoder["settings"][0] == {"preset": start.preset, "threads": start.threads, "from_frame": 0}
    faster = encoder["settings"][1]
    assert ladder.index(faster["preset"]) > ladder.index(start.preset) or faster["threads"] > start.threads
    assert encoder["preset"] == encoder["settings"][-1]["preset"]
    assert any("falling behind" in r.getMessage() and r.name == "episode_recorder" for r in caplog.records)
    decoded, pix_fmt, _ = decode(metadata["path"])
    assert len(decoded) == len(frames) and pix_fmt == "yuv420p"
    assert min(psnr(got, want) for got, want in zip(decoded, frames)) >= 30
    with av.open(metadata["path"]) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.has_b_frames == 0  # no reordering: what Rerun's VideoStream needs
        packets = [p for p in container.demux(stream) if p.size]
        sei = bytes(packets[encoder["settings"][1]["from_frame"]])
    assert all(p.pts == p.dts for p in packets)
    if faster["preset"] != start.preset:  # the faster preset's x264 options from that frame on
        assert b"subme=1" in sei or b"subme=0" in sei
    else:
        assert f"threads={faster['threads']}".encode() in sei


def test_explicit_presets_and_rates_are_honoured(tmp_path):
    frames = [pattern(t, 240, 320) for t in range(40)]
    metadata = record_clip(tmp_path / "a", frames, VideoOptions(format="mp4", preset="medium", crf=30)).metadata()
    assert metadata["encoder"]["preset"] == "medium" and metadata["encoder"]["crf"] == 30
    assert metadata["encoder"]["settings"] == [{"preset": "medium", "threads": initial_setting(VideoOptions()).threads, "from_frame": 0}]
    assert not metadata["encoder"]["adaptive"]
    with av.open(metadata["path"]) as container:
        assert b"subme=7" in bytes(next(p for p in container.demux(video=0) if p.size))  # x264's medium
    webm = record_clip(tmp_path / "b", frames, VideoOptions(format="webm", preset="5", bitrate=1_000_000)).metadata()
    assert webm["encoder"]["preset"] == "5" and webm["encoder"]["bitrate"] == 1_000_000 and webm["encoder"]["crf"] is None
    decoded, _, _ = decode(webm["path"])
    assert len(decoded) == len(frames)
    assert min(psnr(got, want) for got, want in zip(decoded, frames)) >= 30
