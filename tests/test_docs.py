"""Every code block of README.md and docs/**/*.md runs as written.

Each fenced block with a language is one test, run as a user would run it: ``python`` blocks with
the interpreter, ``bash`` / ``sh`` / ``shell`` / ``console`` blocks with ``bash -e`` (``python`` and
the console scripts on PATH are this interpreter's), each in a fresh process whose working
directory is the test's tmp_path (so ``"videos"`` lands there, never in the repository), with W&B
offline. Blocks without a language (diagrams, output) are not code.

A block that cannot run here says why, in an HTML comment on the line just above its fence:

    <!-- docs-test: skip: needs Isaac Lab (Isaac Sim) -->
    ```python
    ...

The reason is shown in pytest's skip summary. A python block that imports wandb must log at least
one video to its (offline) run. New pages under docs/ are picked up automatically.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUNNERS = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash", "console": "bash"}
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^\s`]*)[^`]*$")
MARKER = re.compile(r"<!--\s*docs-test:\s*skip:\s*(?P<reason>.+?)\s*-->")
TIMEOUT_S = 240


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip: str | None  # the reason, when marked

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a markdown page, with their skip markers."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        fence, indent, start = match["fence"], len(match["indent"]), index
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            line = lines[index]
            body.append(line[indent:] if line[:indent].isspace() else line.lstrip() if indent else line)
            index += 1
        index += 1  # the closing fence
        language = match["info"].lower()
        if language not in RUNNERS:
            continue
        above = start - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        marker = MARKER.search(lines[above]) if above >= 0 else None
        found.append(Block(page, start + 1, RUNNERS[language], "\n".join(body) + "\n", marker["reason"] if marker else None))
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]


def test_the_pages_have_code_to_run():
    assert ROOT / "README.md" in PAGES and ROOT / "docs" / "gym.md" in PAGES
    pages = {block.page.name for block in ALL_BLOCKS if block.skip is None and block.language == "python"}
    assert {"README.md", "gym.md", "wandb.md"} <= pages


def test_the_parser_finds_blocks_markers_and_ignores_diagrams(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```\na diagram\n```\n\n<!-- docs-test: skip: needs Isaac Lab -->\n```python\nimport isaaclab\n```\n"
        "\n- a list item:\n\n  ```bash\n  echo hi\n  ```\n"
    )
    found = blocks(page)
    assert [(b.line, b.language, b.code, b.skip) for b in found] == [
        (8, "python", "import isaaclab\n", "needs Isaac Lab"),
        (14, "bash", "echo hi\n", None),
    ]


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[block.id for block in ALL_BLOCKS])
def test_code_block_runs(block: Block, tmp_path):
    if block.skip:
        pytest.skip(f"{block.id}: {block.skip}")
    script = tmp_path / ("block.py" if block.language == "python" else "block.sh")
    # A line per line of the page before the block, so tracebacks give the page's line numbers.
    script.write_text("\n" * block.line + block.code)
    command = [sys.executable, str(script)] if block.language == "python" else ["bash", "-e", str(script)]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
        PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),  # python, console scripts
    )
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{block.id} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    if block.language == "python" and re.search(r"^\s*import wandb|^\s*from wandb", block.code, re.M):
        videos = list((tmp_path / "wandb").glob("wandb/*run-*/files/media/videos/**/*.*"))
        assert videos, f"{block.id} uses W&B but logged no video to its run"


def test_a_checkout_installs_with_pip(tmp_path):
    """The README's install from a checkout builds: pip installs this tree (its own deps aside) and it imports."""
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "src", checkout / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, checkout / name)
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run([*pip, "--target", str(site), str(checkout)], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    check = "import episode_recorder, episode_recorder.sinks._video_worker, episode_recorder.gym.vector; print(episode_recorder.__file__)"
    done = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(site)),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(site / "episode_recorder" / "__init__.py")
