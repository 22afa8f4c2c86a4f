"""A self-contained HTML results page for ActionBench runs: ``python -m paxion.report RUN_DIR [--out FILE]``.

``RUN_DIR`` is a quickstart folder (``backbone/`` and ``patcher/`` runs side by side) or any runner
output folder; every folder below it holding ``config.yaml`` and ``result/*_output.json`` is one row.
Charts (matplotlib PNGs, embedded as base64): accuracy per probe for every run (backbone vs patched),
accuracy per action template, training curves from ``metrics.jsonl``; then the worst examples of the
last patched run with their frame strips. Writes ``RUN_DIR/report.html``.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: no display needed
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

logger = logging.getLogger(__name__)

PROBES = {"action_antonym": "AA", "video_reversal": "VR", "object_shuffle": "OS"}
NEGATIVE_KEY = {"action_antonym": "label_action_antonym_clip_text", "object_shuffle": "label_object_shuffled_clip_text"}
COLOURS = ["#8c8c8c", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]


@dataclass
class Run:
    """One runner output folder: its config, final metrics, per-sample predictions and training log."""

    path: Path
    name: str
    cfg: Any
    metrics: dict[str, Any]
    predictions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # probe -> rows
    train_log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name if self.name == self.module else f"{self.name} ({self.module})"

    @property
    def module(self) -> str:
        task = self.cfg.get("task") or {}
        return str(task.get("eval_module", "")) if hasattr(task, "get") else ""


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def load_run(path: Path, root: Path) -> Optional[Run]:
    outputs = sorted((path / "result").glob("*_output.json"))
    if not (path / "config.yaml").is_file() or not outputs:
        return None
    metrics = json.loads(outputs[-1].read_text())
    split = metrics.get("split", outputs[-1].name.split("_output")[0])
    preds = {p: _read_jsonl(path / "result" / f"{split}_{p}_predictions.jsonl") for p in PROBES}
    train = [r for r in _read_jsonl(path / "metrics.jsonl") if r.get("kind") == "train"]
    name = str(path.relative_to(root)) if path != root else path.name
    return Run(path, name, OmegaConf.load(path / "config.yaml"), metrics, {k: v for k, v in preds.items() if v}, train)


def find_runs(root: Path) -> list[Run]:
    folders = [root] + sorted(p.parent for p in root.rglob("config.yaml") if p.parent != root)
    runs = [r for r in (load_run(f, root) for f in folders) if r is not None]
    # the frozen backbone first, so that "before" reads before "after"
    return sorted(runs, key=lambda r: (r.module != "backbone", r.name))


def annotations(run: Run) -> dict[str, dict[str, Any]]:
    """Validation annotations by video id (ActionBench-SSv2 layout), or {} when not available."""
    datasets = run.cfg.get("datasets") or {}
    for ds in datasets.values():
        root = ds.get("ann_root") if hasattr(ds, "get") else None
        path = Path(str(root)) / "validation.json" if root else None
        if path is not None and path.is_file():
            return {str(item["id"]): item for item in json.loads(path.read_text())}
    return {}


def png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def probe_chart(runs: Sequence[Run]) -> str:
    """Grouped bars: accuracy per probe, one bar per run; chance line at 50 %."""
    probes = [p for p in PROBES if any(f"{p}_accuracy" in r.metrics for r in runs)]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / max(len(runs), 1)
    for i, run in enumerate(runs):
        values = [100 * run.metrics.get(f"{p}_accuracy", float("nan")) for p in probes]
        xs = [j + i * width for j in range(len(probes))]
        bars = ax.bar(xs, values, width, label=run.label, color=COLOURS[i % len(COLOURS)])
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.axhline(50, color="k", ls="--", lw=0.8, label="chance")
    ax.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(probes))], [PROBES[p] for p in probes])
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("ActionBench probes: backbone vs patched")
    return png(fig)


def per_template(run: Run, probe: str, ann: dict[str, dict[str, Any]]) -> dict[str, float]:
    hits: dict[str, list[int]] = defaultdict(list)
    for row in run.predictions.get(probe, []):
        item = ann.get(str(row.get("video_id")))
        if item is not None:
            hits[item["template"].replace("[something]", "something")].append(int(row["pred"] == row["target"]))
    return {t: 100 * sum(v) / len(v) for t, v in sorted(hits.items())}


def template_chart(runs: Sequence[Run], probe: str, ann: dict[str, dict[str, Any]]) -> Optional[str]:
    tables = [(run, per_template(run, probe, ann)) for run in runs]
    templates = sorted({t for _, table in tables for t in table})
    if not templates:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(templates) * max(len(runs), 1) + 1.2))
    height = 0.8 / len(runs)
    for i, (run, table) in enumerate(tables):
        ys = [j + i * height for j in range(len(templates))]
        ax.barh(ys, [table.get(t, float("nan")) for t in templates], height, label=run.label,
                color=COLOURS[i % len(COLOURS)])
    ax.axvline(50, color="k", ls="--", lw=0.8)
    ax.set_yticks([j + height * (len(runs) - 1) / 2 for j in range(len(templates))], templates, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"{PROBES[probe]} accuracy (%)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{PROBES[probe]} per action template")
    return png(fig)


def curves_chart(run: Run) -> Optional[str]:
    if not run.train_log:
        return None
    keys = [k for k in ("mean_loss", "loss", "vtc", "atm", "mcqa") if any(k in r for r in run.train_log)]
    fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(9, 3.2))
    for key in keys:
        rows = [r for r in run.train_log if key in r]
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], label=key)
    ax.set_xlabel("optimizer step")
    ax.set_title(f"training losses ({run.name})")
    ax.legend(fontsize=8)
    ax_lr.plot([r["step"] for r in run.train_log], [r.get("lr", float("nan")) for r in run.train_log])
    ax_lr.set_title("learning rate")
    ax_lr.set_xlabel("optimizer step")
    return png(fig)


def worst_examples(run: Run, ann: dict[str, dict[str, Any]], per_probe: int = 4) -> list[dict[str, Any]]:
    """The samples whose correct candidate got the lowest probability, per probe, with a frame strip."""
    from paxion.inference import frame_strip

    out = []
    for probe in ("action_antonym", "video_reversal"):
        rows = sorted(run.predictions.get(probe, []), key=lambda r: r["scores"][0])[:per_probe]
        for row in rows:
            item = ann.get(str(row.get("video_id")), {})
            strip = _strip_png(run, str(row.get("video_id")), frame_strip)
            negative = item.get(NEGATIVE_KEY.get(probe, ""), "time-reversed clip")
            out.append({"probe": PROBES[probe], "video_id": row.get("video_id"), "caption": item.get("label", ""),
                        "negative": negative, "p_correct": row["scores"][0], "strip": strip})
    return out


def _strip_png(run: Run, video_id: str, frame_strip: Any) -> Optional[str]:
    from paxion.data.video import VideoDecodeError, load_clip

    for ds in (run.cfg.get("datasets") or {}).values():
        videos = ds.get("videos") if hasattr(ds, "get") else None
        path = Path(str(videos)) / f"{video_id}.mp4" if videos else None
        if path is None or not path.is_file():
            continue
        try:
            video, _ = load_clip(path, 8)
        except VideoDecodeError as exc:
            logger.warning("report: cannot read %s: %s", path, exc)
            return None
        buf = io.BytesIO()
        frame_strip(video, scale=max(1, 96 // video.shape[-1])).save(buf, format="PNG")
        return base64.b64encode(buf.getvalue()).decode()
    return None


def _img(data: Optional[str], alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">' if data else "<em>(no image)</em>"


def _metrics_table(runs: Sequence[Run]) -> str:
    head = "".join(f"<th>{PROBES[p]}</th>" for p in PROBES)
    rows = []
    for run in runs:
        cells = "".join(f"<td>{100 * run.metrics[f'{p}_accuracy']:.1f}</td>" if f"{p}_accuracy" in run.metrics
                        else "<td>–</td>" for p in PROBES)
        rows.append(f"<tr><td>{html.escape(run.name)}</td><td>{html.escape(run.module)}</td>{cells}"
                    f"<td>{run.metrics.get('num_samples', '')}</td></tr>")
    return f"<table><tr><th>run</th><th>scored by</th>{head}<th>clips</th></tr>{''.join(rows)}</table>"


STYLE = """body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
img{max-width:100%}.strip img{image-rendering:pixelated;height:72px;max-width:none}"""


def render(root: Path) -> str:
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"{root}: no run folder with config.yaml and result/*_output.json below it")
    ann = next((a for a in (annotations(r) for r in runs) if a), {})
    parts = [f"<h1>ActionBench report: {html.escape(root.name)}</h1>", _metrics_table(runs),
             "<h2>Accuracy per probe</h2>", _img(probe_chart(runs), "accuracy per probe")]
    for probe in ("action_antonym", "video_reversal"):
        chart = template_chart(runs, probe, ann)
        if chart:
            parts += [f"<h2>{PROBES[probe]} per action template</h2>", _img(chart, f"{probe} per template")]
    for run in runs:
        chart = curves_chart(run)
        if chart:
            parts += [f"<h2>Training curves: {html.escape(run.name)}</h2>", _img(chart, "training curves")]
    patched = [r for r in runs if r.module != "backbone"]
    if patched:
        rows = "".join(
            f"<tr><td>{e['probe']}</td><td>{e['video_id']}</td>"
            f"<td class='strip'>{_img(e['strip'], str(e['video_id']))}</td>"
            f"<td>{html.escape(e['caption'])}</td><td>{html.escape(str(e['negative']))}</td>"
            f"<td>{e['p_correct']:.3f}</td></tr>"
            for e in worst_examples(patched[-1], ann))
        parts += [f"<h2>Worst examples ({html.escape(patched[-1].name)})</h2>",
                  "<table><tr><th>probe</th><th>id</th><th>frames</th><th>caption</th><th>negative</th>"
                  f"<th>p(correct)</th></tr>{rows}</table>"]
    head = f"<head><meta charset='utf-8'><title>Paxion report</title><style>{STYLE}</style></head>"
    return f"<!doctype html><html>{head}<body>{''.join(parts)}</body></html>"


def main(argv: Optional[Sequence[str]] = None) -> Path:
    parser = argparse.ArgumentParser(description="Self-contained HTML report of ActionBench runs.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/report.html")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out or args.run_dir / "report.html"
    out.write_text(render(args.run_dir))
    print(f"report: {out}")
    return out


if __name__ == "__main__":
    main()
