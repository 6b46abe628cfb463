"""The ``episode-recorder`` command: ``record``, ``gallery``, ``inspect`` and ``recover``.

    episode-recorder record CartPole-v1 --episodes 3 --out runs/cartpole
    episode-recorder gallery runs --open
    episode-recorder inspect runs/cartpole/*.mp4

Also ``python -m episode_recorder ...``. Each subcommand lives in its own module; this one only
parses the command line and dispatches. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from episode_recorder import __version__

__all__ = ["CommandError", "main"]


class CommandError(Exception):
    """A user error the command reports as one line (what was received, what to do)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="episode-recorder",
        description="Record episodes of Gymnasium envs to video (and Rerun, W&B), browse them in a "
        "gallery, and check video files.",
        epilog="Run 'episode-recorder COMMAND --help' for a command's options. Docs: docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    record = commands.add_parser(
        "record",
        help="run a Gymnasium env with a policy and record its episodes",
        description="Run ENV_ID with a policy, record each episode to a video with a JSON sidecar, "
        "then print a summary table. Progress goes to stderr.",
    )
    record.add_argument("env_id", metavar="ENV_ID", help="a registered Gymnasium id, e.g. CartPole-v1")
    record.add_argument("--episodes", type=int, default=None, help="episodes to record per recorded env (default 3, or unlimited with --steps)")
    record.add_argument("--steps", type=int, default=None, help="stop after this many env steps")
    record.add_argument("--num-envs", type=int, default=1, help="run N sub-envs in a SyncVectorEnv (default 1)")
    record.add_argument("--env-indices", default=None, metavar="0,3", help="sub-envs to record (default: all)")
    record.add_argument("--format", default="mp4", choices=("mp4", "webm", "gif"), help="video format (default mp4)")
    record.add_argument("--rerun", nargs="?", const="", default=None, metavar="PATH",
                        help="also log to a Rerun .rrd file (default OUT/ENV.rrd; one per sub-env)")
    record.add_argument("--wandb", default=None, metavar="PROJECT", help="also log each video to a W&B run in PROJECT")
    record.add_argument("--out", default=None, metavar="DIR", help="output folder (default recordings/ENV-TIME)")
    record.add_argument("--env-kwargs", default=None, metavar="JSON", help="keyword arguments for gym.make, as JSON")
    record.add_argument("--policy", default="random", metavar="POLICY",
                        help="'random' (default), MODULE:CALLABLE or FILE.py:CALLABLE (called as policy(obs) -> "
                        "action), or a Stable-Baselines3 checkpoint [ALGO:]model.zip")
    record.add_argument("--seed", type=int, default=None, help="seed for the env and the action space")
    record.add_argument("--keep", default=None, metavar="POLICY", help="clips to keep, e.g. 'best=3,worst=3,last=2'")
    record.add_argument("--quiet", action="store_true", help="no progress bar and no per-file log lines")

    gallery = commands.add_parser(
        "gallery",
        help="write DIR/index.html: a grid of every video under DIR, to sort, filter and compare",
        description="Write DIR/index.html, a self-contained page (works from file://, no server or "
        "network) showing every video under DIR with its sidecar's episode, steps and return.",
    )
    gallery.add_argument("folder", metavar="DIR")
    gallery.add_argument("--open", action="store_true", help="open the page in the default browser")

    inspect = commands.add_parser(
        "inspect",
        help="frames, fps, size, codec, duration of video files, and whether each is complete",
        description="Decode each file to the end and report what it holds; exit status 1 if any is incomplete.",
    )
    inspect.add_argument("files", nargs="+", metavar="FILE")
    inspect.add_argument("--json", action="store_true", help="one JSON object per file instead of a table")

    recover = commands.add_parser(
        "recover",
        help="turn the .part / .partial files a crashed run left in DIR into normally named, playable videos",
        description="Remux (no re-encoding) or rename what an interrupted run left in DIR, and report each "
        "file; files a live recorder is writing are left alone. Exit status 1 if any file failed.",
    )
    recover.add_argument("folder", metavar="DIR")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "record":
            from episode_recorder.cli.record import record

            return record(args)
        if args.command == "gallery":
            from episode_recorder.cli.gallery import gallery

            return gallery(args.folder, open_browser=args.open)
        if args.command == "inspect":
            from episode_recorder.cli.inspection import inspect_command

            return inspect_command(args.files, as_json=args.json)
        return recover_command(args.folder)
    except (CommandError, ImportError) as error:
        print(f"episode-recorder {args.command}: error: {error}", file=sys.stderr)
        return 2


def recover_command(folder: str) -> int:
    from episode_recorder.recover import recover

    if not os.path.isdir(folder):
        raise CommandError(f"{folder} is not a folder: pass the folder a run wrote its videos into.")
    results = recover(folder)
    if not results:
        print(f"nothing to recover in {folder}")
        return 0
    for item in results:
        target = f" -> {item.path}" if item.path else ""
        detail = f" ({item.frames} frames)" if item.frames else (f": {item.error}" if item.error else "")
        print(f"{item.action:8} {item.source}{target}{detail}")
    return 1 if any(item.action == "failed" for item in results) else 0
