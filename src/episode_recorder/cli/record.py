"""``episode-recorder record ENV_ID``: run a Gymnasium env with a policy and record its episodes.

The command is a user of the library's wrappers: ``episode_recorder.gym.RecordVideo`` (one env)
or ``episode_recorder.gym.vector.RecordVideo`` with ``env_indices`` (``--num-envs``), with a
JSON sidecar per video, ``LogRerun`` per recorded env for ``--rerun`` and ``wandb_log_key`` for
``--wandb``. It writes ``run.json`` (what was run) into the output folder for ``gallery``.

    episode-recorder record CartPole-v1 --episodes 3 --seed 0 --out runs/cartpole
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib
import importlib.util
import json
import logging
import os
import re
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from episode_recorder._optional import require
from episode_recorder.cli import CommandError
from episode_recorder.keep import Keep

Policy = Callable[[Any], Any]
SB3_ALGORITHMS = ("A2C", "DDPG", "DQN", "PPO", "SAC", "TD3")
DEFAULT_EPISODES = 3


def record(args: argparse.Namespace) -> int:
    """Run the ``record`` subcommand; returns the exit status."""
    gym = require("gymnasium", "gym", "episode-recorder record")
    episodes, max_steps = episode_and_step_limits(args.episodes, args.steps)
    if args.num_envs < 1:
        raise CommandError(f"--num-envs must be >= 1, received {args.num_envs}.")
    env_indices = parse_env_indices(args.env_indices, args.num_envs)
    env_kwargs = parse_env_kwargs(args.env_kwargs)
    keep = parse_keep(args.keep)
    make_policy = load_policy(args.policy)  # before any env or W&B run: a bad --policy fails at once
    out = Path(args.out) if args.out else default_out(args.env_id)
    prefix = re.sub(r"[^A-Za-z0-9._-]+", "_", args.env_id.split(":")[-1])
    rerun_paths = rerun_targets(args.rerun, out, prefix, args.num_envs, env_indices)
    wandb_run = start_wandb(args.wandb, args)
    saved: list[dict[str, Any]] = []

    def video_saved(path: str, info: dict[str, Any]) -> None:
        saved.append(info)
        if wandb_run is not None:
            wandb_run.log({})  # commit the previous video's row: this one is logged next, under the same key

    progress = Progress(episodes, max_steps, len(env_indices), sys.stderr, enabled=not args.quiet)
    handler = progress.log_handler()
    library_logger = logging.getLogger("episode_recorder")
    library_logger.addHandler(handler)
    level = library_logger.level
    library_logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        with warnings.catch_warnings():
            if not out.exists():  # --rerun's file is made first: RecordVideo would warn about our own folder
                warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
            env = make_recorded_env(gym, args, env_kwargs, out, prefix, env_indices, episodes, rerun_paths, keep, video_saved)
        write_run_json(out, args, env_indices, rerun_paths)
        status = 0
        try:
            with StopOnInterrupt() as interrupt:  # Ctrl+C: end after this step, finish the files and list them
                run_episodes(env, make_policy(env), args.seed, episodes, max_steps, env_indices, args.num_envs > 1,
                             progress, stop=lambda: interrupt.requested)
            if interrupt.requested:
                progress.write_line("interrupted: finishing the videos recorded so far")
                status = 130
        finally:
            env.close()
            progress.finish()
    finally:
        library_logger.removeHandler(handler)
        library_logger.setLevel(level)
        if wandb_run is not None:
            wandb_run.finish()
    print_summary(saved, args.env_id, args.num_envs > 1, out, rerun_paths)
    return status


# --- parsing ------------------------------------------------------------------------------------
def episode_and_step_limits(episodes: int | None, steps: int | None) -> tuple[int | None, int | None]:
    """(episodes per recorded env, max steps); by default 3 episodes, unlimited episodes with --steps."""
    for name, value in (("--episodes", episodes), ("--steps", steps)):
        if value is not None and value < 1:
            raise CommandError(f"{name} must be >= 1, received {value}.")
    if episodes is None and steps is None:
        episodes = DEFAULT_EPISODES
    return episodes, steps


def parse_env_indices(text: str | None, num_envs: int) -> list[int]:
    """``"0,3"`` -> [0, 3]; by default every sub-env."""
    if text is None:
        return list(range(num_envs))
    try:
        indices = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--env-indices takes comma-separated sub-env numbers such as 0,3; received {text!r}.") from None
    bad = [i for i in indices if not 0 <= i < num_envs]
    if not indices or bad or len(set(indices)) != len(indices):
        raise CommandError(
            f"--env-indices must be distinct numbers from 0 to {num_envs - 1} (--num-envs {num_envs}); received {text!r}."
        )
    return indices


def parse_env_kwargs(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as error:
        raise CommandError(f"--env-kwargs is not valid JSON ({error}); received {text!r}. Example: '{{\"max_episode_steps\": 50}}'.") from None
    if not isinstance(kwargs, dict):
        raise CommandError(f"--env-kwargs must be a JSON object such as '{{\"g\": 9.8}}', received {text!r}.")
    return kwargs


def parse_keep(text: str | None) -> Keep | None:
    try:
        return None if text is None else Keep.parse(text)
    except ValueError as error:
        raise CommandError(str(error)) from None


def default_out(env_id: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("recordings") / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', env_id)}-{stamp}"


def rerun_targets(rerun: str | None, out: Path, prefix: str, num_envs: int, env_indices: list[int]) -> dict[int, Path]:
    """The ``.rrd`` file of each recorded env for ``--rerun [PATH]`` (``-env-{i}`` added for sub-envs)."""
    if rerun is None:
        return {}
    base = Path(rerun) if rerun else out / f"{prefix}.rrd"
    if base.suffix != ".rrd":
        raise CommandError(f"--rerun takes a path ending in .rrd, received {rerun!r}.")
    if num_envs == 1:
        return {0: base}
    return {i: base.with_name(f"{base.stem}-env-{i}.rrd") for i in env_indices}


def start_wandb(project: str | None, args: argparse.Namespace) -> Any:
    if project is None:
        return None
    wandb = require("wandb", "wandb", "episode-recorder record --wandb")
    config = {"env_id": args.env_id, "policy": args.policy, "seed": args.seed, "num_envs": args.num_envs}
    return wandb.init(project=project, config=config, job_type="record")


# --- env and policy -----------------------------------------------------------------------------
def make_recorded_env(
    gym: Any,
    args: argparse.Namespace,
    env_kwargs: dict[str, Any],
    out: Path,
    prefix: str,
    env_indices: list[int],
    episodes: int | None,
    rerun_paths: dict[int, Path],
    keep: Keep | None,
    on_video_saved: Callable[[str, dict[str, Any]], None],
) -> Any:
    """The env (or SyncVectorEnv) wrapped in our RecordVideo, with LogRerun inside where asked."""
    trigger: Callable[[int], bool] = (lambda episode: True) if episodes is None else (lambda episode: episode < episodes)
    video = dict(
        episode_trigger=trigger,
        name_prefix=prefix,
        format=args.format,
        sidecar=True,
        keep=keep,
        on_video_saved=on_video_saved,
        wandb_log_key="video" if args.wandb else None,
    )
    if args.num_envs == 1:
        from episode_recorder.gym import RecordVideo

        return RecordVideo(make_one_env(gym, args.env_id, env_kwargs, rerun_paths.get(0), trigger), str(out), **video)
    from episode_recorder.gym.vector import RecordVideo as VectorRecordVideo

    makers = [
        functools.partial(make_one_env, gym, args.env_id, env_kwargs, rerun_paths.get(i), trigger)
        for i in range(args.num_envs)
    ]
    return VectorRecordVideo(gym.vector.SyncVectorEnv(makers), str(out), env_indices=env_indices, **video)


def make_one_env(gym: Any, env_id: str, env_kwargs: dict[str, Any], rrd: Path | None, trigger: Callable[[int], bool]) -> Any:
    try:
        env = gym.make(env_id, render_mode="rgb_array", **env_kwargs)
    except TypeError as error:
        raise CommandError(f"{env_id} does not take these --env-kwargs {env_kwargs}: {error}") from None
    except gym.error.Error as error:
        raise CommandError(f"Cannot make {env_id!r}: {error}") from None
    if rrd is None:
        return env
    from episode_recorder.rerun import LogRerun

    return LogRerun(env, save_path=rrd, episode_trigger=trigger)


def load_policy(spec: str) -> Callable[[Any], Policy]:
    """``make_policy(env)`` for ``random``, ``MODULE:CALLABLE`` / ``FILE.py:CALLABLE`` (``policy(obs) -> action``),
    or a Stable-Baselines3 ``[ALGO:]model.zip``."""
    if spec == "random":
        return lambda env: (lambda obs: env.action_space.sample())
    if spec.endswith(".zip"):
        policy = load_sb3_policy(spec)
        return lambda env: policy
    module_name, sep, attribute = spec.rpartition(":")
    if not sep or not module_name or not attribute:
        raise CommandError(
            f"--policy takes 'random', MODULE:CALLABLE, FILE.py:CALLABLE or an SB3 checkpoint.zip; received {spec!r}."
        )
    if module_name.endswith(".py"):
        if not os.path.isfile(module_name):
            raise CommandError(f"--policy {spec}: no file {module_name!r}.")
        module_spec = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            raise CommandError(f"--policy {spec}: cannot import {module_name!r} ({error}).") from None
    policy = getattr(module, attribute, None)
    if not callable(policy):
        raise CommandError(f"--policy {spec}: {module_name} has no callable {attribute!r}.")
    return lambda env: policy


def load_sb3_policy(spec: str) -> Policy:
    """A Stable-Baselines3 checkpoint, ``PPO:model.zip`` or ``model.zip`` named after its algorithm."""
    algorithm, _, path = spec.rpartition(":") if ":" in spec else ("", "", spec)
    if not algorithm:
        found = [name for name in SB3_ALGORITHMS if re.search(rf"(^|[^a-z0-9]){name.lower()}([^a-z0-9]|$)", Path(path).stem.lower())]
        if len(found) != 1:
            raise CommandError(
                f"--policy {spec}: cannot tell the algorithm from the file name; prefix it, e.g. --policy PPO:{path} "
                f"(one of {', '.join(SB3_ALGORITHMS)})."
            )
        algorithm = found[0]
    if algorithm.upper() not in SB3_ALGORITHMS:
        raise CommandError(f"--policy {spec}: unknown algorithm {algorithm!r}; use one of {', '.join(SB3_ALGORITHMS)}.")
    if not os.path.isfile(path):
        raise CommandError(f"--policy {spec}: no file {path!r}.")
    sb3 = require("stable_baselines3", "sb3", "--policy with a Stable-Baselines3 checkpoint")
    model = getattr(sb3, algorithm.upper()).load(path, device="cpu")
    return lambda obs: model.predict(obs, deterministic=True)[0]


# --- the loop -----------------------------------------------------------------------------------
class StopOnInterrupt:
    """While active, Ctrl+C (SIGINT) sets ``requested`` instead of raising inside whatever call is
    running (a frame half sent, a file being finished); a second Ctrl+C raises KeyboardInterrupt."""

    def __enter__(self) -> StopOnInterrupt:
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self._interrupted)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        signal.signal(signal.SIGINT, self.previous)

    def _interrupted(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


def run_episodes(
    env: Any,
    policy: Policy,
    seed: int | None,
    episodes: int | None,
    max_steps: int | None,
    env_indices: list[int],
    vector: bool,
    progress: Progress,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Step until every recorded env finished ``episodes`` episodes, ``max_steps`` steps, or ``stop()``."""
    import numpy as np

    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    finished = dict.fromkeys(env_indices, 0)
    steps = 0
    while True:
        obs, _, terminated, truncated, _ = env.step(policy(obs))
        steps += 1
        dones = np.logical_or(terminated, truncated).reshape(-1)
        for index in env_indices:
            finished[index] += int(dones[index])
        progress.update(steps, sum(min(n, episodes or n) for n in finished.values()))
        if episodes is not None and min(finished.values()) >= episodes:
            return
        if (max_steps is not None and steps >= max_steps) or stop():
            return
        if not vector and dones[0]:
            obs, _ = env.reset()


def write_run_json(out: Path, args: argparse.Namespace, env_indices: list[int], rerun_paths: dict[int, Path]) -> None:
    """What was run, for ``gallery``: env id, policy, seed, format and the ``.rrd`` file per env."""
    run = {
        "env_id": args.env_id,
        "policy": args.policy,
        "seed": args.seed,
        "num_envs": args.num_envs,
        "env_indices": env_indices if args.num_envs > 1 else None,
        "format": args.format,
        "rerun": {str(i): str(path.resolve()) for i, path in rerun_paths.items()},
        "arguments": sys.argv[1:],
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (out / "run.json").write_text(json.dumps(run, indent=2))


# --- output -------------------------------------------------------------------------------------
class Progress:
    """A one-line text progress bar on a terminal; on a pipe, a line per finished episode."""

    def __init__(self, episodes: int | None, max_steps: int | None, envs: int, stream: TextIO, enabled: bool = True) -> None:
        self.total_episodes = None if episodes is None else episodes * envs
        self.max_steps = max_steps
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self.steps = self.episodes = 0
        self._shown = ""

    def update(self, steps: int, episodes: int) -> None:
        new_episode = episodes != self.episodes
        self.steps, self.episodes = steps, episodes
        if self.enabled and (self.tty or new_episode):
            self._draw()

    def text(self) -> str:
        if self.total_episodes is not None:
            done, total, unit = self.episodes, self.total_episodes, "episodes"
        else:
            done, total, unit = self.steps, self.max_steps, "steps"
        filled = round(24 * min(done / total, 1.0))
        extra = f", {self.steps} steps" if unit == "episodes" else f", {self.episodes} episodes"
        return f"[{'#' * filled}{'.' * (24 - filled)}] {done}/{total} {unit}{extra}"

    def write_line(self, line: str) -> None:
        """Print a line (a log message) above the bar."""
        self._clear()
        self.stream.write(line + "\n")
        if self.tty and self._shown:
            self._draw()
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()
        self._shown = ""

    def log_handler(self) -> logging.Handler:
        progress = self

        class ProgressHandler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                progress.write_line(self.format(record))

        handler = ProgressHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        return handler

    def _clear(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\r" + " " * len(self._shown) + "\r")

    def _draw(self) -> None:
        self._clear()
        self._shown = self.text()
        self.stream.write(self._shown + ("" if self.tty else "\n"))
        self.stream.flush()


def print_summary(saved: list[dict[str, Any]], env_id: str, vector: bool, out: Path, rerun_paths: dict[int, Path]) -> None:
    """The table of files still on disk (keep= may have deleted some): file, env, episode, frames, return."""
    rows = [("file", "env", "episode", "frames", "return")]
    for info in sorted(saved, key=lambda i: (i["env_index"] or 0, i["episode_id"] or 0, i["start_step"])):
        if not os.path.exists(info["path"]):
            continue
        env = f"{env_id}[{info['env_index']}]" if vector and info["env_index"] is not None else env_id
        value = info["episode_return"]
        rows.append((
            os.path.relpath(info["path"]),
            env,
            "-" if info["episode_id"] is None else str(info["episode_id"]),
            str(info["frames"]),
            "-" if value is None else f"{value:.2f}",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for number, row in enumerate(rows):
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
        if number == 0:
            print("  ".join("-" * w for w in widths))
    print(f"{len(rows) - 1} videos in {out}" + "".join(f"; rerun {p}" for p in rerun_paths.values()))
