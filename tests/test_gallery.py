"""``episode-recorder gallery``: the page, opened from file:// in a real headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import CHROMIUM, Chromium
from episode_recorder.cli import main

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")

WAIT_FOR_MEDIA = """new Promise((resolve) => {
  const start = performance.now();
  (function poll() {
    const videos = Array.from(document.querySelectorAll('#grid video'));
    const images = Array.from(document.querySelectorAll('#grid img'));
    const ready = videos.every((v) => v.readyState >= 2) && images.every((i) => i.complete);
    if (ready || performance.now() - start > 20000)
      resolve({videos: videos.map((v) => ({src: v.getAttribute('src'), readyState: v.readyState,
                                           duration: v.duration, error: v.error && v.error.message})),
               images: images.map((i) => ({src: i.getAttribute('src'), width: i.naturalWidth}))});
    else setTimeout(poll, 50);
  })();
})"""

VISIBLE = "((e) => e.getClientRects().length > 0)"  # laid out: neither it nor a parent is display:none
SHOWN = "Array.from(document.querySelectorAll('#grid .card')).filter(" + VISIBLE + """)
  .map((c) => ({run: c.dataset.run, env: c.dataset.env, episode: Number(c.dataset.episode),
               ret: c.dataset.return === '' ? null : Number(c.dataset.return)}))"""


def set_control(id_: str, value: str) -> str:
    return f"""(() => {{ const e = document.getElementById('{id_}'); e.value = {value!r};
                         e.dispatchEvent(new Event('change')); return e.value; }})()"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Two recorded runs (mp4 with a Rerun file; webm of 2 sub-envs) and a gif, under one folder."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["record", "CartPole-v1", "--episodes", "3", "--seed", "0", "--out", str(root / "a"), "--rerun", "--quiet"]) == 0
    assert main(["record", "CartPole-v1", "--episodes", "2", "--num-envs", "2", "--seed", "1", "--format", "webm",
                 "--out", str(root / "b"), "--quiet"]) == 0
    assert main(["record", "CartPole-v1", "--episodes", "1", "--seed", "2", "--format", "gif", "--out", str(root / "c"), "--quiet"]) == 0
    return root


def test_gallery_plays_sorts_filters_and_compares_in_chromium(runs: Path, tmp_path: Path, capsys) -> None:
    assert main(["gallery", str(runs)]) == 0
    index = runs / "index.html"
    assert f"open {index.resolve().as_uri()}" in capsys.readouterr().out
    page = index.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must not load anything from a network"
    assert f"rerun {(runs / 'a' / 'CartPole-v1.rrd').resolve()}" in page
    videos = sorted(p.relative_to(runs).as_posix() for p in runs.rglob("*") if p.suffix in (".mp4", ".webm", ".gif"))
    assert len(videos) == 3 + 4 + 1

    with Chromium(tmp_path / "profile") as browser:
        tab = browser.open(index.as_uri())
        media = browser.evaluate(tab, WAIT_FOR_MEDIA)
        assert sorted(v["src"] for v in media["videos"]) == [v for v in videos if not v.endswith(".gif")]
        for video in media["videos"]:
            assert video["readyState"] >= 2 and video["duration"] > 0 and video["error"] is None, video
        assert media["images"] == [{"src": "c/CartPole-v1-episode-0.gif", "width": 600}]

        everything = browser.evaluate(tab, SHOWN)
        assert len(everything) == 8
        assert {card["run"] for card in everything} == {"a", "b", "c"}
        assert {card["env"] for card in everything} == {"CartPole-v1", "CartPole-v1[0]", "CartPole-v1[1]"}

        browser.evaluate(tab, set_control("sort", "return-desc"))
        best_first = [card["ret"] for card in browser.evaluate(tab, SHOWN)]
        assert best_first == sorted(best_first, reverse=True) and best_first != [c["ret"] for c in everything]
        browser.evaluate(tab, set_control("sort", "return-asc"))
        assert [card["ret"] for card in browser.evaluate(tab, SHOWN)] == best_first[::-1]

        threshold = sorted(best_first)[len(best_first) // 2]
        browser.evaluate(tab, set_control("min-return", str(threshold)))
        shown = browser.evaluate(tab, SHOWN)
        assert 0 < len(shown) < 8 and all(card["ret"] >= threshold for card in shown)
        assert browser.evaluate(tab, "document.getElementById('shown').textContent") == f"{len(shown)} of 8 shown"
        browser.evaluate(tab, set_control("min-return", ""))
        browser.evaluate(tab, set_control("env", "CartPole-v1[1]"))
        assert sorted((c["run"], c["episode"]) for c in browser.evaluate(tab, SHOWN)) == [("b", 0), ("b", 1)]
        browser.evaluate(tab, set_control("env", ""))
        browser.evaluate(tab, set_control("episodes", "1-2"))
        assert sorted(c["episode"] for c in browser.evaluate(tab, SHOWN)) == [1, 1, 1, 2]
        browser.evaluate(tab, set_control("episodes", ""))

        browser.evaluate(tab, set_control("compare-a", "a"))
        browser.evaluate(tab, set_control("compare-b", "b"))
        columns = browser.evaluate(tab, f"""['column-a', 'column-b'].map((id) =>
            Array.from(document.querySelectorAll('#' + id + ' .card')).filter({VISIBLE}).map((c) => c.dataset.run))""")
        assert columns == [["a"] * 3, ["b"] * 4]
        assert browser.evaluate(tab, SHOWN) == []  # the grid gives way to the two columns
        screenshot = browser.screenshot(tab, tmp_path / "gallery-compare.png")
        browser.evaluate(tab, set_control("compare-a", ""))
        assert len(browser.evaluate(tab, SHOWN)) == 8
        browser.screenshot(tab, tmp_path / "gallery.png")

    for path in (screenshot, tmp_path / "gallery.png"):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 1000 and image.height > 400
            assert len(np.unique(np.asarray(image.convert("L").resize((64, 64))))) > 20  # more than a blank page
    print(f"screenshots: {tmp_path / 'gallery.png'} {screenshot}")
