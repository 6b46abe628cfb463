"""``episode-recorder gallery DIR``: one self-contained HTML page to watch and compare episodes.

``DIR/index.html`` shows every video under ``DIR`` (mp4, webm, gif) as a card with a poster frame
(the first frame, a small JPEG inlined in the page), the env, episode, steps, return and the run
(the folder) it came from, read from its JSON sidecar and the folder's ``run.json`` (written by
``record``). The page sorts and filters cards by return, episode and env, shows two runs side by
side, and gives the ``rerun`` command for each run's ``.rrd`` files. Videos are linked by
relative paths, the page holds its own CSS and JS: it works from ``file://`` with no server and
no network.

    >>> import tempfile
    >>> gallery(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    wrote .../index.html (0 videos, 0 runs)...
    0
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import webbrowser
from pathlib import Path
from typing import Any
from urllib.parse import quote

from episode_recorder.cli import CommandError

__all__ = ["collect_cards", "gallery", "render_page"]

VIDEO_EXTENSIONS = (".mp4", ".webm", ".gif")
POSTER_WIDTH = 320


def gallery(folder: str | os.PathLike[str], open_browser: bool = False) -> int:
    """Write ``folder/index.html``; print where it is; open it in a browser if asked."""
    root = Path(folder)
    if not root.is_dir():
        raise CommandError(f"{str(folder)!r} is not a folder; pass the folder your videos are in (e.g. recordings).")
    cards = collect_cards(root)
    runs = collect_runs(root, cards)
    index = root / "index.html"
    temporary = index.with_name(".index.html.part")
    temporary.write_text(render_page(root, cards, runs), encoding="utf-8")
    os.replace(temporary, index)
    print(f"wrote {index} ({len(cards)} videos, {len(runs)} runs); open {index.resolve().as_uri()}")
    if open_browser:
        webbrowser.open(index.resolve().as_uri())
    return 0


def video_files(root: Path) -> list[Path]:
    """Finished videos under ``root`` (hidden files and folders, such as ``.x.mp4.part``, skipped)."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        found += [Path(folder, name) for name in sorted(files) if name.endswith(VIDEO_EXTENSIONS) and not name.startswith(".")]
    return found


def collect_cards(root: Path) -> list[dict[str, Any]]:
    """One dict per video: what its sidecar, its run's ``run.json`` and the file itself say."""
    cards = []
    run_files: dict[Path, dict[str, Any]] = {}
    for order, path in enumerate(video_files(root)):
        sidecar = read_json(path.with_suffix(".json"))
        if path.parent not in run_files:
            run_files[path.parent] = read_json(path.parent / "run.json")
        run_info = run_files[path.parent]
        probe = poster_and_probe(path)
        env_index = sidecar.get("env_index")
        env_id = sidecar.get("env_id") or run_info.get("env_id") or ""
        rrd = (run_info.get("rerun") or {}).get(str(env_index if env_index is not None else 0))
        cards.append({
            "order": order,
            "src": path.relative_to(root).as_posix(),
            "kind": "gif" if path.suffix == ".gif" else "video",
            "run": run_name(root, path.parent),
            "env": env_id if env_index is None or not run_info.get("env_indices") else f"{env_id}[{env_index}]",
            "env_index": env_index,
            "episode": sidecar.get("episode_id"),
            "steps": episode_steps(sidecar),
            "return": sidecar.get("episode_return"),
            "camera": sidecar.get("camera"),
            "frames": sidecar.get("frames", probe["frames"]),
            "fps": sidecar.get("fps", probe["fps"]),
            "poster": probe["poster"],
            "rrd": rrd if rrd and os.path.exists(rrd) else None,
            "timeline": None if sidecar.get("episode_id") is None else f"episode_{sidecar['episode_id']}_step",
        })
    return cards


def collect_runs(root: Path, cards: list[dict[str, Any]]) -> dict[str, list[str]]:
    """``{run: [.rrd files]}`` for every run with a video or an ``.rrd`` file."""
    runs: dict[str, list[str]] = {card["run"]: [] for card in cards}
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        rrds = [str(Path(folder, name).resolve()) for name in sorted(files) if name.endswith(".rrd")]
        if rrds:
            runs.setdefault(run_name(root, Path(folder)), []).extend(rrds)
    return runs


def run_name(root: Path, folder: Path) -> str:
    relative = folder.relative_to(root).as_posix()
    return root.resolve().name if relative == "." else relative


def episode_steps(sidecar: dict[str, Any]) -> int | None:
    """Env steps of the clip: ``episode_length``, else ``end_step - start_step + 1`` (see docs/sidecar.md)."""
    if sidecar.get("episode_length") is not None:
        return int(sidecar["episode_length"])
    if sidecar.get("end_step") is not None and sidecar.get("start_step") is not None:
        return int(sidecar["end_step"]) - int(sidecar["start_step"]) + 1
    return None


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def poster_and_probe(path: Path) -> dict[str, Any]:
    """The first frame as a small inlined JPEG (``data:`` URI), plus the stream's frame count and fps."""
    import av

    result: dict[str, Any] = {"poster": None, "frames": None, "fps": None}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            result["fps"] = None if rate is None else float(rate)
            result["frames"] = stream.frames or None
            frame = next(container.decode(stream), None)
    except (av.FFmpegError, IndexError):
        return result
    if frame is not None:
        image = frame.to_image()
        image.thumbnail((POSTER_WIDTH, POSTER_WIDTH * 4))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=80)
        result["poster"] = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return result


# --- the page -----------------------------------------------------------------------------------
def render_page(root: Path, cards: list[dict[str, Any]], runs: dict[str, list[str]]) -> str:
    """The whole page: markup for every card, the runs' Rerun commands, inline CSS and JS."""
    envs = sorted({card["env"] for card in cards if card["env"]})
    run_names = sorted(runs)
    rerun_rows = "".join(
        f'<li><b>{html.escape(run)}</b>: ' + " ".join(
            f'<code>rerun {html.escape(rrd)}</code> <a href="{html.escape(link(root, rrd))}" download>.rrd</a>' for rrd in rrds
        ) + "</li>"
        for run, rrds in sorted(runs.items()) if rrds
    )
    body = "".join(render_card(card) for card in cards) or '<p class="empty">No videos found under this folder.</p>'
    return PAGE.format(
        title=html.escape(f"Episodes in {root.resolve().name}"),
        count=len(cards),
        runs=len(runs),
        env_options=select_options(envs),
        run_options=select_options(run_names),
        rerun=f'<section id="rerun"><h2>Open in Rerun</h2><ul>{rerun_rows}</ul></section>' if rerun_rows else "",
        cards=body,
        style=STYLE,
        script=SCRIPT,
    )


def select_options(values: list[str]) -> str:
    return "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values)


def link(root: Path, path: str) -> str:
    """A relative URL from the page to ``path`` (absolute ``file://`` URL when outside ``root``)."""
    target = Path(path).resolve()
    try:
        return quote(target.relative_to(root.resolve()).as_posix())
    except ValueError:
        return target.as_uri()


def render_card(card: dict[str, Any]) -> str:
    def text(value: Any, digits: int | None = None) -> str:
        if value is None:
            return "–"
        return f"{value:.{digits}f}" if digits is not None else html.escape(str(value))

    data = {
        "run": card["run"], "env": card["env"], "episode": card["episode"], "return": card["return"],
        "steps": card["steps"], "order": card["order"], "src": card["src"],
    }
    attributes = " ".join(f'data-{key}="{html.escape("" if value is None else str(value))}"' for key, value in data.items())
    src = html.escape(quote(card["src"]))
    if card["kind"] == "gif":
        media = f'<img class="media" src="{src}" alt="{html.escape(card["src"])}" loading="eager">'
    else:
        poster = f' poster="{card["poster"]}"' if card["poster"] else ""
        media = f'<video class="media" src="{src}"{poster} preload="auto" muted loop playsinline controls></video>'
    rrd = ""
    if card["rrd"]:
        timeline = f' (timeline <code>{html.escape(card["timeline"])}</code>)' if card["timeline"] else ""
        rrd = f'<p class="rrd">3D: <code>rerun {html.escape(card["rrd"])}</code>{timeline}</p>'
    camera = f"<dt>camera</dt><dd>{text(card['camera'])}</dd>" if card["camera"] else ""
    return (
        f'<article class="card" {attributes}>{media}'
        f'<h3><a href="{src}">{html.escape(os.path.basename(card["src"]))}</a></h3><dl>'
        f"<dt>env</dt><dd>{text(card['env'] or None)}</dd>"
        f"<dt>episode</dt><dd>{text(card['episode'])}</dd>"
        f"<dt>steps</dt><dd>{text(card['steps'])}</dd>"
        f"<dt>return</dt><dd class=\"return\">{text(card['return'], 2)}</dd>"
        f"<dt>run</dt><dd>{text(card['run'])}</dd>{camera}"
        f"<dt>frames</dt><dd>{text(card['frames'])} at {text(card['fps'])} fps</dd>"
        f"</dl>{rrd}</article>"
    )


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{style}</style></head>
<body><header><h1>{title}</h1><p id="summary">{count} videos from {runs} runs</p>
<form id="controls" onsubmit="return false">
<label>sort <select id="sort">
<option value="order">file order</option><option value="return-desc">return, best first</option>
<option value="return-asc">return, worst first</option><option value="episode">episode</option>
<option value="env">env</option><option value="run">run</option></select></label>
<label>env <select id="env"><option value="">all</option>{env_options}</select></label>
<label>run <select id="run"><option value="">all</option>{run_options}</select></label>
<label>return &ge; <input id="min-return" type="number" step="any" size="6"></label>
<label>&le; <input id="max-return" type="number" step="any" size="6"></label>
<label>episodes <input id="episodes" placeholder="e.g. 0-4,9" size="8"></label>
<label>compare <select id="compare-a"><option value="">–</option>{run_options}</select></label>
<label>with <select id="compare-b"><option value="">–</option>{run_options}</select></label>
<span id="shown"></span></form></header>
{rerun}
<main id="grid">{cards}</main>
<section id="compare" hidden><div class="column" id="column-a"><h2></h2><div class="cards"></div></div>
<div class="column" id="column-b"><h2></h2><div class="cards"></div></div></section>
<script>{script}</script></body></html>
"""

STYLE = """
[hidden]{display:none!important}
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#15171c;color:#e6e6e6}
header{position:sticky;top:0;background:#1d2027;padding:8px 16px;z-index:1;border-bottom:1px solid #333}
h1{font-size:18px;margin:0 0 4px} #summary{margin:0 0 6px;color:#aaa}
form label{margin-right:10px;white-space:nowrap} input,select{background:#2a2e37;color:#eee;border:1px solid #444}
input{width:6em}
#shown{color:#aaa} #rerun{padding:4px 16px} #rerun li{margin:2px 0}
#grid,.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px;padding:12px 16px}
#compare{display:grid;grid-template-columns:1fr 1fr;gap:8px} #compare .cards{grid-template-columns:repeat(auto-fill,minmax(240px,1fr))}
#compare h2{margin:8px 16px 0;font-size:16px}
.card{background:#22252d;border:1px solid #333;border-radius:6px;padding:8px}
.media{width:100%;background:#000;border-radius:4px;display:block}
.card h3{font-size:13px;margin:6px 0;word-break:break-all} a{color:#8cb4ff}
dl{display:grid;grid-template-columns:auto 1fr;gap:0 8px;margin:0} dt{color:#999} dd{margin:0}
code{background:#2d313a;padding:1px 4px;border-radius:3px;word-break:break-all;user-select:all}
.rrd{margin:6px 0 0;font-size:12px} .empty{padding:16px}
"""

SCRIPT = r"""
(function () {
  const grid = document.getElementById('grid');
  const cards = Array.from(grid.querySelectorAll('.card'));
  const $ = (id) => document.getElementById(id);
  const num = (card, key) => card.dataset[key] === '' ? NaN : Number(card.dataset[key]);
  function episodeSet(text) {
    const wanted = [];
    for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
      const [a, b] = part.split('-').map(Number);
      wanted.push([a, Number.isNaN(b) ? a : b]);
    }
    return wanted;
  }
  function keep(card) {
    const min = parseFloat($('min-return').value), max = parseFloat($('max-return').value);
    const ret = num(card, 'return'), episode = num(card, 'episode');
    if ($('env').value && card.dataset.env !== $('env').value) return false;
    if ($('run').value && card.dataset.run !== $('run').value) return false;
    if (!Number.isNaN(min) && !(ret >= min)) return false;
    if (!Number.isNaN(max) && !(ret <= max)) return false;
    const ranges = episodeSet($('episodes').value);
    if (ranges.length && !ranges.some(([a, b]) => episode >= a && episode <= b)) return false;
    return true;
  }
  function compare(a, b) {
    const by = $('sort').value;
    const missingLast = (x, y, sign) => Number.isNaN(x) ? 1 : Number.isNaN(y) ? -1 : sign * (x - y);
    let diff = 0;
    if (by === 'return-desc') diff = missingLast(num(a, 'return'), num(b, 'return'), -1);
    else if (by === 'return-asc') diff = missingLast(num(a, 'return'), num(b, 'return'), 1);
    else if (by === 'episode') diff = missingLast(num(a, 'episode'), num(b, 'episode'), 1);
    else if (by === 'env') diff = a.dataset.env.localeCompare(b.dataset.env);
    else if (by === 'run') diff = a.dataset.run.localeCompare(b.dataset.run);
    return diff || num(a, 'order') - num(b, 'order');
  }
  function fillColumn(id, run, list) {
    const column = $(id);
    column.querySelector('h2').textContent = run;
    const box = column.querySelector('.cards');
    box.replaceChildren(...list.filter((c) => c.dataset.run === run).map((c) => c.cloneNode(true)));
  }
  function update() {
    const sorted = cards.slice().sort(compare);
    let shown = 0;
    for (const card of sorted) {
      card.hidden = !keep(card);
      shown += card.hidden ? 0 : 1;
      grid.appendChild(card);
    }
    const a = $('compare-a').value, b = $('compare-b').value;
    const comparing = Boolean(a && b);
    $('compare').hidden = !comparing;
    grid.hidden = comparing;
    if (comparing) {
      const visible = sorted.filter((c) => !c.hidden);
      fillColumn('column-a', a, visible);
      fillColumn('column-b', b, visible);
    }
    $('shown').textContent = shown + ' of ' + cards.length + ' shown';
  }
  for (const element of document.querySelectorAll('#controls select, #controls input')) {
    element.addEventListener('input', update);
    element.addEventListener('change', update);
  }
  const params = new URLSearchParams(location.hash.slice(1));
  for (const [key, value] of params) { if ($(key)) $(key).value = value; }
  update();
})();
"""
