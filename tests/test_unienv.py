from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support import PatternEnv, decode, default_subme, psnr, x264_settings
from unienv_interface.env_base.wrapper import Wrapper
from unienv_interface.wrapper import EpisodeRenderStackWrapper as UniEnvRenderStack

from episode_recorder.unienv import EpisodeRenderStackWrapper, EpisodeVideoWrapper


def run(env, steps: int, *, batched: bool = False, done_index: int | None = None) -> None:
    """Step ``env``, resetting (masked for batched envs) whenever an env ends."""
    env.reset()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(None)
        if batched:
            done = np.asarray(terminated) | np.asarray(truncated)
            if done.any():
                env.reset(mask=done if isinstance(terminated, np.ndarray) else torch.from_numpy(done))
        elif terminated or truncated:
            env.reset()


def assert_frames(path, env: PatternEnv, ts: list[int], env_index: int = 0, camera: str = "front") -> None:
    decoded, pix_fmt, _ = decode(path)
    assert len(decoded) == len(ts), path
    for got, t in zip(decoded, ts):
        assert psnr(got, env.expected_frame(t, env_index, camera)) > 30, (path, t)


def test_is_a_unienv_wrapper_with_unienv_counters(tmp_path):
    base = PatternEnv(episode_length=4)
    env = EpisodeVideoWrapper(base, store_dir=tmp_path / "videos")
    assert isinstance(env, Wrapper) and isinstance(env, EpisodeRenderStackWrapper)
    assert env.store_dir == str((tmp_path / "videos").resolve()) and os.path.isdir(env.store_dir)
    assert env.store_format == "webm"
    run(env, 10)
    assert (env.video_episode_num, env.video_step_num, env.video_episode_start_step) == (2, 10, 8)
    env.close()
    assert base.closed


@pytest.mark.parametrize("batched", [False, True])
def test_render_stack_matches_unienv_step_by_step(batched):
    """Same env, same calls: our counters and frames equal UniEnv's own wrapper at every step."""
    kwargs = dict(episode_length=3, batch_size=2 if batched else None)
    ours = EpisodeRenderStackWrapper(PatternEnv(**kwargs), done_index=1 if batched else None, rendered_index=0 if batched else None)
    theirs = UniEnvRenderStack(PatternEnv(**kwargs), done_index=1 if batched else None, rendered_index=0 if batched else None)
    for env in (ours, theirs):
        env.reset()
    for step in range(14):
        results = [env.step(None) for env in (ours, theirs)]
        for env, (_, _, terminated, truncated, _) in zip((ours, theirs), results):
            if batched:
                done = np.asarray(terminated) | np.asarray(truncated)
                if done.any():
                    env.reset(mask=done)
            elif terminated:
                env.reset()
        assert [ours.video_episode_num, ours.video_step_num, ours.video_episode_start_step] == [
            theirs.video_episode_num,
            theirs.video_step_num,
            theirs.video_episode_start_step,
        ], step
        assert len(ours.episodic_frames) == len(theirs.episodic_frames), step
        assert all(np.array_equal(a, b) for a, b in zip(ours.episodic_frames, theirs.episodic_frames))
        assert np.array_equal(ours.render(), theirs.render())


def test_render_stack_keeps_mapping_frames_and_renders_once_per_step():
    base = PatternEnv(cameras=True, episode_length=5)
    env = EpisodeRenderStackWrapper(base, nested_separator="/")
    env.reset()
    env.step(None)
    renders = base.renders
    env.render()
    env.render()
    assert base.renders == renders
    assert sorted(env.episodic_frames) == ["cam/front", "cam/side"]
    assert len(env.episodic_frames["cam/side"]) == 2


@pytest.mark.parametrize("fmt", ["mp4", "webm", "gif"])
def test_each_episode_is_a_file_with_every_captured_frame(tmp_path, fmt):
    base = PatternEnv(episode_length=6)
    env = EpisodeVideoWrapper(base, store_dir=tmp_path, format=fmt)
    run(env, 15)
    env.close()
    names = sorted(os.listdir(tmp_path))
    assert names == [f"episode_0_step_0.{fmt}", f"episode_1_step_6.{fmt}", f"episode_2_step_12.{fmt}"]
    if fmt == "gif":
        assert len(decode(tmp_path / names[0])[0]) == 7
        return
    # the env's frame counter advances at every reset and step: episode k covers 7 frames
    assert_frames(tmp_path / names[0], base, list(range(1, 8)))
    assert_frames(tmp_path / names[1], base, list(range(8, 15)))
    assert_frames(tmp_path / names[2], base, list(range(15, 19)))  # cut by close(): reset + 3 steps
    assert decode(tmp_path / names[0])[2] == pytest.approx(25)  # env.render_fps


MEMORY_SCRIPT = """
import json, sys
import psutil
from support import PatternEnv
from episode_recorder.unienv import EpisodeVideoWrapper

short, long = 100, 1200
env = EpisodeVideoWrapper(PatternEnv(height=144, width=192, episode_length=10**6), store_dir=sys.argv[1], format="mp4")
me = psutil.Process()
encoder = psutil.Process(env.recorder._encoder._process.pid)
rss = {}
env.reset()
for step in range(1, long + 1):
    env.step(None)
    if step in (short, long):  # the same episode, 100 vs 1200 frames (83 KB each) so far
        rss[step] = {"wrapper": me.memory_info().rss, "encoder": encoder.memory_info().rss}
env.close()
print(json.dumps(rss))
"""


def test_the_video_wrapper_holds_no_frames(tmp_path):
    """Memory does not grow with episode length: RSS after 1200 frames of one episode vs after 100."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1] / "src"), str(Path(__file__).parent)]))
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    rss = json.loads(done.stdout.splitlines()[-1])
    held = (1200 - 100) * 144 * 192 * 3  # 91 MB, if the wrapper kept the episode's frames
    for process in ("wrapper", "encoder"):
        growth = rss["1200"][process] - rss["100"][process]
        assert growth < held / 5, f"the {process} process grew by {growth / 1e6:.1f} MB over 1100 frames"
    assert len(decode(tmp_path / "episode_0_step_0.mp4")[0]) == 1201


def test_mapping_frames_give_one_file_per_camera(tmp_path):
    base = PatternEnv(cameras=True, episode_length=4)
    env = EpisodeVideoWrapper(base, store_dir=tmp_path, format="mp4")
    run(env, 4)
    env.close()
    assert sorted(os.listdir(tmp_path)) == ["episode_0_step_0_key_cam.front.mp4", "episode_0_step_0_key_cam.side.mp4"]
    assert_frames(tmp_path / "episode_0_step_0_key_cam.front.mp4", base, list(range(1, 6)))
    assert_frames(tmp_path / "episode_0_step_0_key_cam.side.mp4", base, list(range(1, 6)), camera="side")


@pytest.mark.parametrize("backend", ["numpy", "pytorch"])
def test_batched_env_records_the_chosen_env(tmp_path, backend):
    base = PatternEnv(batch_size=3, episode_length=4, backend=backend, float_frames=backend == "pytorch")
    env = EpisodeVideoWrapper(base, store_dir=tmp_path, format="mp4", done_index=2, rendered_index=2)
    run(env, 13, batched=True)
    env.close()
    # env 2 ends after 6 steps; envs 0 (step 4) and 1 (step 5) reset in between without ending the
    # video, and as in UniEnv each of those resets renders a frame too
    assert sorted(os.listdir(tmp_path)) == ["episode_0_step_0.mp4", "episode_1_step_6.mp4", "episode_2_step_12.mp4"]
    assert_frames(tmp_path / "episode_0_step_0.mp4", base, [1, 2, 3, 4, 5, 5, 6, 6, 7], env_index=2)


def test_batched_env_without_done_index_ends_the_video_when_any_env_ends(tmp_path):
    base = PatternEnv(batch_size=2, episode_length=4, backend="pytorch")
    env = EpisodeVideoWrapper(base, store_dir=tmp_path, format="mp4", rendered_index=torch.tensor(1).item())
    run(env, 6, batched=True)
    env.close()
    assert sorted(os.listdir(tmp_path))[:2] == ["episode_0_step_0.mp4", "episode_1_step_4.mp4"]


def test_close_writes_the_running_episode_once(tmp_path):
    env = EpisodeVideoWrapper(PatternEnv(episode_length=3), store_dir=tmp_path, format="mp4")
    run(env, 3)  # episode 0 ends at step 3, the reset starts episode 1 with one frame
    env.step(None)  # episode 1 now has two frames
    env.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["episode_0_step_0.mp4", "episode_1_step_3.mp4"]
    stamps = [os.stat(tmp_path / name).st_mtime_ns for name in names]
    env.close()
    assert [os.stat(tmp_path / name).st_mtime_ns for name in names] == stamps


def test_close_right_after_a_finished_episode_does_not_write_it_again(tmp_path):
    env = EpisodeVideoWrapper(PatternEnv(episode_length=3), store_dir=tmp_path, format="gif")
    env.reset()
    for _ in range(3):
        env.step(None)
    env.close()
    assert os.listdir(tmp_path) == ["episode_0_step_0.gif"]
    assert len(env.saved_clips) == 1 and env.saved_clips[0].frames == 4


def test_single_frame_episodes_are_not_written_and_keep_their_number(tmp_path):
    env = EpisodeVideoWrapper(PatternEnv(episode_length=3), store_dir=tmp_path, format="mp4")
    env.reset()
    env.reset()  # an episode of one frame: dropped, the number is reused
    assert env.video_episode_num == 0
    for _ in range(3):
        env.step(None)
    env.close()
    assert os.listdir(tmp_path) == ["episode_0_step_0.mp4"]
    assert len(decode(tmp_path / "episode_0_step_0.mp4")[0]) == 4


def test_fps_and_encoder_options_can_be_overridden(tmp_path):
    def episode(folder: str, **options) -> Path:
        env = EpisodeVideoWrapper(PatternEnv(episode_length=12, **options.pop("env", {})), store_dir=tmp_path / folder, format="mp4", **options)
        run(env, 12)
        env.close()
        return tmp_path / folder / "episode_0_step_0.mp4"

    default = episode("default", env={"render_fps": None})
    assert decode(default)[2] == pytest.approx(30)
    assert "crf=23.0" in x264_settings(default) and default_subme() in x264_settings(default)  # VideoOptions' defaults
    coarse = episode("coarse", fps=12, crf=45, preset="ultrafast")
    assert decode(coarse)[2] == pytest.approx(12)
    settings = x264_settings(coarse)
    assert "crf=45.0" in settings and "cabac=0" in settings and "me=dia" in settings  # crf and preset reached x264
    capped = x264_settings(episode("capped", bitrate=150_000))
    assert "rc=abr" in capped and "bitrate=150" in capped and "crf=" not in capped


def test_an_encoder_error_mid_episode_reaches_the_next_step_with_the_original_exception(tmp_path):
    """The disk fills up in the middle of an episode (a 64 KiB tmpfs): the next step() raises ENOSPC."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        env = EpisodeVideoWrapper(PatternEnv(height=240, width=320, episode_length=10**6), store_dir=disk, format="mp4", crf=0)
        env.reset()
        with pytest.raises(OSError) as info:
            for _ in range(2000):
                env.step(None)
        assert info.value.errno == errno.ENOSPC and type(info.value).__module__ == "av.error"
        assert any("while encoding" in note and "episode_0_step_0.mp4" in note for note in info.value.__notes__)
        assert any("in the encoder process" in note for note in info.value.__notes__)
        env.close()
        assert os.listdir(disk) == [".episode_0_step_0.mp4.part"]  # no file under a final name; what fit is kept for recover()
    finally:
        subprocess.run(["umount", str(disk)], check=True)


class ShrinkingEnv(PatternEnv):
    def render(self):
        frame = super().render()
        return frame if self.t[0] < 3 else frame[:-2]


def test_bad_renders_give_clear_errors_and_no_corrupt_file(tmp_path):
    env = EpisodeVideoWrapper(ShrinkingEnv(episode_length=10), store_dir=tmp_path, format="mp4")
    env.reset()
    env.step(None)
    with pytest.raises(ValueError, match="Frame size changed within recording 'episode_0_step_0.mp4'"):
        env.step(None)
    env.close()
    assert [name for name in os.listdir(tmp_path) if not name.startswith(".")] == ["episode_0_step_0.mp4"]
    assert len(decode(tmp_path / "episode_0_step_0.mp4")[0]) == 2

    blind = PatternEnv()
    blind.render = lambda: None
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        EpisodeVideoWrapper(blind, store_dir=tmp_path / "none").reset()


class SwitchingCamerasEnv(PatternEnv):
    def render(self):
        frames = super().render()
        if self.t[0] >= 3:
            frames["cam"]["back"] = frames["cam"].pop("side")
        return frames


def test_camera_keys_changing_inside_an_episode_name_the_keys(tmp_path):
    env = EpisodeRenderStackWrapper(SwitchingCamerasEnv(cameras=True))
    env.reset()
    env.step(None)
    with pytest.raises(ValueError, match=r"Missing keys: \['cam.side'\]. New keys: \['cam.back'\]"):
        env.step(None)
