"""One self-contained HTML page comparing ActionBench runs of any systems: ``python -m paxion.report A B C``.

Every run folder below the given folders is one row. The page holds, in order: red warnings for
numbers that cannot be trusted; the probing table (AA / VR / OS accuracy with its Wilson 95 % interval
and macro-F1 per cell, cells whose interval holds 50 % marked as at chance); a chart of the same with
the intervals as error bars; frozen -> patched arrows for each patched Paxion run whose frozen backbone
was probed too; the per-action-template accuracy as a heat map (templates x runs, one per probe); and
each run's metadata (model and scorer, weights file and its SHA-256, data, commit, device, duration).
"""

from __future__ import annotations

import hashlib
import html
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

import matplotlib.pyplot as plt

from paxion.cli.report import COLOURS, STYLE, _alerts, _cell, _img, _table, per_group, png
from paxion.cli.run_folder import PROBES, Run, annotations, duration_s, find_runs

CHANCE = 0.5
Z95 = 1.959963984540054  # two-sided 95 % normal quantile
WEIGHT_KEYS = ("run.load_ckpt_path", "model.pretrained", "model.state_ckpt", "model.release_ckpt",
               "model.backbone_ckpt")


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion hits / n (the (0, 1) interval for n = 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Cell:
    """One probe of one run: accuracy hits / n, its Wilson 95 % interval and the macro-F1."""

    hits: int
    n: int
    macro_f1: Optional[float]

    @property
    def accuracy(self) -> float:
        return self.hits / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.hits, self.n)

    @property
    def at_chance(self) -> bool:
        low, high = self.interval
        return low <= CHANCE <= high


def cell(run: Run, probe: str) -> Optional[Cell]:
    """The probe's cell, counted from the per-sample predictions (the metrics file when they are missing)."""
    rows = run.predictions.get(probe)
    macro = run.metrics.get(f"{probe}_macro_f1")
    if rows:
        return Cell(sum(int(r["pred"] == r["target"]) for r in rows), len(rows), macro)
    accuracy, n = run.metrics.get(f"{probe}_accuracy"), run.metrics.get("num_samples")
    if accuracy is None or not n:
        return None
    return Cell(round(accuracy * n), int(n), macro)


@dataclass
class Entry:
    """A run and the label it gets on the page (the folder given, then the run's place inside it)."""

    label: str
    run: Run


def collect(roots: Sequence[Path]) -> list[Entry]:
    entries = []
    for root in roots:
        for run in find_runs(root):
            label = root.name if run.path == root else f"{root.name}/{run.name}"
            entries.append(Entry(label, run))
    return entries


def model_name(run: Run) -> str:
    """What was probed and what scored it, e.g. ``paxion: singularity_tiny (patcher)`` or ``alpro (pair scorer)``."""
    arch = str(run.select("model.arch") or "?")
    if arch == "paxion":
        return f"paxion: {run.select('model.backbone')} ({run.module or 'patcher'})"
    tower = run.select("model.backbone") if arch == "openvclip" else run.select("model.size")
    scorer = "pair scorer" if run.select("task.use_pair_scorer") else "similarity"
    return f"{arch}{f' {tower}' if tower else ''} ({scorer})"


def is_patched(run: Run) -> bool:
    return run.select("model.arch") == "paxion" and run.module not in ("", "backbone")


def frozen_patched_pairs(entries: Sequence[Entry]) -> list[tuple[Entry, Entry]]:
    """(frozen, patched): a patched Paxion run and the backbone-only run of the same backbone and weights."""
    def tower(run: Run) -> tuple[Any, Any]:
        return run.select("model.backbone"), run.select("model.backbone_ckpt")

    pairs = []
    for patched in (e for e in entries if is_patched(e.run)):
        frozen = [e for e in entries if e.run.select("model.arch") == "paxion" and e.run.module == "backbone"
                  and tower(e.run) == tower(patched.run)]
        if frozen:
            pairs.append((frozen[0], patched))
    return pairs


@lru_cache(maxsize=None)
def sha256(path: str) -> Optional[str]:
    file = Path(path)
    if not file.is_file():
        return None
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights(run: Run) -> list[tuple[str, str, Optional[str]]]:
    """(config key, file name, SHA-256 of the file now at that path or None) of every weights file the run named."""
    out = []
    for key in WEIGHT_KEYS:
        value = run.select(key)
        if value:
            out.append((key.split(".")[-1], Path(str(value)).name, sha256(str(value))))
    return out


def data_name(run: Run) -> str:
    datasets = run.cfg.get("datasets") or {}
    names = ", ".join(str(k) for k in datasets)
    root = run.select("paths.data_root")
    return f"{names or '?'} / {run.metrics.get('split', '?')}" + (f" ({Path(str(root)).name})" if root else "")


# --------------------------------------------------------------------------- HTML pieces


def _cell_html(c: Optional[Cell]) -> str:
    if c is None:
        return "–"
    low, high = c.interval
    macro = "–" if c.macro_f1 is None else f"{100 * c.macro_f1:.1f}"
    style = " class='chance'" if c.at_chance else ""
    return (f"<span{style}><b>{100 * c.accuracy:.1f}</b> [{100 * low:.1f}, {100 * high:.1f}]</span>"
            f"<br><small>macro-F1 {macro} · n={c.n}</small>")


def probing_table(entries: Sequence[Entry]) -> str:
    head = ["run", "model (scored by)", *(f"{short} (%) [95 % CI]" for short in PROBES.values())]
    rows = [[html.escape(e.label), html.escape(model_name(e.run)), *(_cell_html(cell(e.run, p)) for p in PROBES)]
            for e in entries]
    return _table(head, rows).replace("<table>", "<table class='probing'>", 1)


def probing_chart(entries: Sequence[Entry]) -> str:
    """Accuracy per probe with Wilson 95 % error bars, one bar per run; the chance line at 50 %."""
    probes = [p for p in PROBES if any(cell(e.run, p) for e in entries)]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / max(len(entries), 1)
    for i, entry in enumerate(entries):
        cells = [cell(entry.run, p) for p in probes]
        values = [100 * c.accuracy if c else float("nan") for c in cells]
        errors = [[100 * (c.accuracy - c.interval[0]) if c else 0 for c in cells],
                  [100 * (c.interval[1] - c.accuracy) if c else 0 for c in cells]]
        ax.bar([j + i * width for j in range(len(probes))], values, width, yerr=errors, capsize=2,
               label=entry.label, color=COLOURS[i % len(COLOURS)] if i < len(COLOURS) else f"C{i % 10}")
    ax.axhline(100 * CHANCE, color="k", ls="--", lw=0.8, label="chance")
    ax.set_xticks([j + width * (len(entries) - 1) / 2 for j in range(len(probes))], [PROBES[p] for p in probes])
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("ActionBench: accuracy with Wilson 95 % intervals")
    return png(fig)


def arrows_table(entries: Sequence[Entry]) -> str:
    rows = []
    for frozen, patched in frozen_patched_pairs(entries):
        cells = []
        for probe in PROBES:
            before, after = cell(frozen.run, probe), cell(patched.run, probe)
            if before is None or after is None:
                cells.append("–")
                continue
            delta = 100 * (after.accuracy - before.accuracy)
            arrow, kind = ("↑", "up") if delta > 0 else (("↓", "down") if delta < 0 else ("→", "same"))
            cells.append(f"{100 * before.accuracy:.1f} <span class='{kind}'>{arrow}</span> "
                         f"{100 * after.accuracy:.1f} ({delta:+.1f})")
        rows.append([html.escape(frozen.label), html.escape(patched.label), *cells])
    if not rows:
        return ""
    return _table(["frozen", "patched", *(f"{s} frozen → patched (%)" for s in PROBES.values())], rows)


def _heat(value: Optional[float]) -> str:
    """Background colour of an accuracy (%): red below chance, white at chance, green above."""
    if value is None or math.isnan(value):
        return "#eee"
    t = max(-1.0, min(1.0, (value - 50) / 50))
    shade = int(255 - 140 * abs(t))
    return f"rgb({shade},255,{shade})" if t >= 0 else f"rgb(255,{shade},{shade})"


def heat_map(entries: Sequence[Entry], probe: str, ann: dict[str, dict[str, Any]]) -> str:
    tables = [per_group(e.run, probe, ann, "template") for e in entries]
    templates = sorted({t for table in tables for t in table})
    if not templates:
        return ""
    head = "".join(f"<th class='rot'>{html.escape(e.label)}</th>" for e in entries)
    body = []
    for template in templates:
        cells = []
        for table in tables:
            value, count = table.get(template, (None, 0))
            text = "–" if value is None else f"{value:.0f}"
            cells.append(f"<td style='background:{_heat(value)}' title='{count} clips'>{text}</td>")
        body.append(f"<tr><td>{html.escape(template)}</td>{''.join(cells)}</tr>")
    return (f"<div class='wide'><table class='heat' data-probe='{probe}'><tr><th>template</th>{head}</tr>"
            f"{''.join(body)}</table></div>")


def metadata_table(entries: Sequence[Entry]) -> str:
    rows = []
    for entry in entries:
        run, env, seconds = entry.run, entry.run.environment, duration_s(entry.run)
        files = "<br>".join(f"{key}: {html.escape(name)} <code>{(digest or 'file not found')[:12]}</code>"
                            for key, name, digest in weights(run)) or "none (initialised from the seed)"
        rows.append([html.escape(entry.label), html.escape(model_name(run)), files, html.escape(data_name(run)),
                     _cell(run.metrics.get("num_samples")), _cell((env.get("commit") or "–")[:12]),
                     _cell(env.get("device")), "–" if seconds is None else f"{seconds:.0f} s",
                     html.escape(str(run.path))])
    return _table(["run", "model (scored by)", "weights (SHA-256, first 12)", "data / split", "clips", "commit",
                   "device", "duration", "folder"], rows)


COMPARE_STYLE = """body{max-width:1400px}.wide{overflow-x:auto}.heat td:first-child{white-space:nowrap}.chance{color:#777}.chance:after{content:" ≈ chance";font-size:0.75em}
.up{color:#080;font-weight:bold}.down{color:#c00;font-weight:bold}.heat td{text-align:center;min-width:3em}
.heat td:first-child{text-align:left}.probing td{white-space:nowrap}"""


def render(roots: Sequence[Path]) -> str:
    entries = collect(roots)
    if not entries:
        raise FileNotFoundError(f"{', '.join(map(str, roots))}: no run folder with config.yaml and "
                                "result/*_output.json below")
    runs = [e.run for e in entries]
    ann = next((a for a in (annotations(r) for r in runs) if a), {})
    parts = ["<h1>ActionBench comparison</h1>", *_alerts(runs),
             f"<p class='note'>{len(entries)} runs. Each cell: accuracy (%) [Wilson 95 % interval] and macro-F1; "
             "chance is 50 % on every probe, and a cell whose interval holds 50 % is marked ≈ chance.</p>",
             probing_table(entries), _img(probing_chart(entries), "accuracy per probe with intervals")]
    arrows = arrows_table(entries)
    if arrows:
        parts += ["<h2>Frozen → patched</h2>", arrows]
    for probe in PROBES:
        table = heat_map(entries, probe, ann)
        if table:
            parts += [f"<h2>{PROBES[probe]} per action template (%)</h2>", table]
    parts += ["<h2>Runs</h2>", metadata_table(entries)]
    head = (f"<head><meta charset='utf-8'><title>ActionBench comparison</title>"
            f"<style>{STYLE}\n{COMPARE_STYLE}</style></head>")
    return f"<!doctype html><html>{head}<body>{''.join(parts)}</body></html>"
