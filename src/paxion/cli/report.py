"""A self-contained HTML results page for ActionBench runs: ``python -m paxion.report RUN_DIR [--out FILE]``
(several RUN_DIRs, or ``--compare``: one page comparing them, :mod:`paxion.cli.compare_report`).

``RUN_DIR`` is a quickstart folder (``backbone/`` and ``patcher/`` runs side by side) or any runner
output folder; every folder below it holding ``config.yaml`` and ``result/*_output.json`` is one row.
The page holds, in order: a red warning when a run diverged or scored non-finite values; the metrics
per run; the run metadata (config, seed, weights, device, versions from ``environment.json``, duration
from ``log.txt``); charts (matplotlib PNGs, embedded as base64) of accuracy per probe, per action
template (AA, VR, OS) and the training curves; Object Shuffle by object; and the worst examples of the
last patched run, each clip as decoded (original size) and as the model saw it. Writes ``RUN_DIR/report.html``.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: no display needed
import matplotlib.pyplot as plt  # noqa: E402

from paxion.cli.run_folder import (  # noqa: E402
    PROBES, Run, annotations, duration_s, find_runs, finite, model_input, problems, skipped_videos)

logger = logging.getLogger(__name__)

NEGATIVE_KEY = {"action_antonym": "label_action_antonym_clip_text", "object_shuffle": "label_object_shuffled_clip_text"}
COLOURS = ["#8c8c8c", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]


# --------------------------------------------------------------------------- charts


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


def per_group(run: Run, probe: str, ann: dict[str, dict[str, Any]], key: str) -> dict[str, tuple[float, int]]:
    """Accuracy (%) and clip count per value of ``key`` (``template`` or ``object``) of the annotations."""
    hits: dict[str, list[int]] = defaultdict(list)
    for row in run.predictions.get(probe, []):
        item = ann.get(str(row.get("video_id")))
        if item is None:
            continue
        if key == "template":
            group = item["template"].replace("[something]", "something")
        else:
            group = ", ".join(item.get("placeholders") or []) or "(none)"
        hits[group].append(int(row["pred"] == row["target"]))
    return {g: (100 * sum(v) / len(v), len(v)) for g, v in sorted(hits.items())}


def template_chart(runs: Sequence[Run], probe: str, ann: dict[str, dict[str, Any]]) -> Optional[str]:
    tables = [(run, per_group(run, probe, ann, "template")) for run in runs]
    templates = sorted({t for _, table in tables for t in table})
    if not templates:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(templates) * max(len(runs), 1) + 1.2))
    height = 0.8 / len(runs)
    for i, (run, table) in enumerate(tables):
        ys = [j + i * height for j in range(len(templates))]
        ax.barh(ys, [table.get(t, (float("nan"), 0))[0] for t in templates], height, label=run.label,
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


# --------------------------------------------------------------------------- examples with frames


def worst_examples(run: Run, ann: dict[str, dict[str, Any]], per_probe: int = 4) -> list[dict[str, Any]]:
    """The samples whose correct candidate got the lowest probability, per probe, with both frame strips."""
    preprocess = model_input(run)
    out = []
    for probe in PROBES:
        rows = sorted(run.predictions.get(probe, []), key=lambda r: r["scores"][0])[:per_probe]
        for row in rows:
            item = ann.get(str(row.get("video_id")), {})
            original, seen = _strips(run, str(row.get("video_id")), preprocess)
            negative = item.get(NEGATIVE_KEY.get(probe, ""), "time-reversed clip")
            out.append({"probe": PROBES[probe], "video_id": row.get("video_id"), "caption": item.get("label", ""),
                        "negative": negative, "p_correct": row["scores"][0], "original": original, "seen": seen})
    return out


def _strips(run: Run, video_id: str, preprocess: Any) -> tuple[Optional[str], Optional[str]]:
    """(decoded at the file's size, as the model saw it) frame strips as base64 PNG, None where unreadable."""
    from paxion.data.video import VideoDecodeError, load_clip
    from paxion.cli.inference import frame_strip

    for ds in (run.cfg.get("datasets") or {}).values():
        videos = ds.get("videos") if hasattr(ds, "get") else None
        path = Path(str(videos)) / f"{video_id}.mp4" if videos else None
        if path is None or not path.is_file():
            continue
        try:
            original, _ = load_clip(path, preprocess.num_frames if preprocess else 8)
            seen = preprocess(path)[0] if preprocess else None
        except VideoDecodeError as exc:
            logger.warning("report: cannot read %s: %s", path, exc)
            return None, None
        return _strip_png(original, frame_strip), (_strip_png(seen, frame_strip) if seen is not None else None)
    return None, None


def _strip_png(video: Any, frame_strip: Any, height: int = 96) -> str:
    buf = io.BytesIO()
    frame_strip(video, scale=max(1, height // video.shape[-2])).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


# --------------------------------------------------------------------------- HTML


def _img(data: Optional[str], alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">' if data else "<em>(no image)</em>"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Cells are HTML already; one column per fact."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _cell(value: Any, percent: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, float)) and not finite(float(value)):
        return f"<span class='bad'>{value}</span>"
    if percent:
        return f"{100 * value:.1f}"
    return _breakable(str(value))


def _breakable(text: str) -> str:
    """Escaped ``text`` that may wrap after ``_``, ``/`` and ``.`` (long names keep the tables narrow)."""
    return re.sub(r"([_/.])(?=\w)", r"\1<wbr>", html.escape(text))


def _metrics_table(runs: Sequence[Run]) -> str:
    head = ["run", "scored by", "split", "clips", *(f"{short} (%)" for short in PROBES.values()),
            "unreadable / missing videos", "non-finite scores"]
    rows = []
    for run in runs:
        m = run.metrics
        nonfinite = m.get("nonfinite_scores")
        flag = f"<span class='bad'>{nonfinite}</span>" if nonfinite else _cell(nonfinite)
        rows.append([html.escape(run.name), html.escape(run.module), _cell(m.get("split")), _cell(m.get("num_samples")),
                     *(_cell(m.get(f"{p}_accuracy"), percent=True) for p in PROBES),
                     f"{_cell(m.get('skipped_videos'))} / {_cell(m.get('missing_videos'))}", flag])
    return _table(head, rows)


def _metadata_table(runs: Sequence[Run], root: Path) -> str:
    rows = []
    for run in runs:
        env, seconds = run.environment, duration_s(run)
        config = (run.path / "config.yaml").relative_to(root).as_posix()
        versions = "<br>".join(f"{key} {_cell(env.get(key))}" for key in ("python", "torch", "paxion"))
        facts = {
            "run": _breakable(run.name), "config": f"<a href='{html.escape(config)}'>{_breakable(config)}</a>",
            "seed": _cell(run.select("run.seed") if run.train_log else None), "model": _cell(run.select("model.arch")),
            "backbone": _cell(run.select("model.backbone")), "weights": _cell(_weights(run)),
            "precision": _cell(run.select("run.precision")), "device": _cell(env.get("device")),
            "processes": _cell(env.get("world_size")), "duration": "–" if seconds is None else f"{seconds:.0f} s",
            "versions": versions if env else "–",
        }
        rows.append(facts)
    note = "<p class='note'>seed –: the run trained nothing (scoring is deterministic)"
    if not all(r.environment for r in runs):
        note += "; other –: not recorded (runs made before <code>environment.json</code> was written)"
    return _table(list(rows[0]), [list(r.values()) for r in rows]) + note + "</p>"


def _weights(run: Run) -> str:
    """The weights file the scored part came from: the backbone's own for a backbone-only score (a patcher
    file in its config is not used), else the loaded patcher/checkpoint; 'none' when trained from scratch."""
    if run.module == "backbone":
        ckpt = run.select("model.backbone_ckpt")
        return Path(str(ckpt)).name if ckpt else f"built into {run.select('model.backbone')}"
    weights = run.select("run.load_ckpt_path") or run.select("model.pretrained")
    return Path(str(weights)).name if weights else "none"


def _object_table(runs: Sequence[Run], ann: dict[str, dict[str, Any]], limit: int = 30) -> str:
    """Object Shuffle accuracy per object shown: the ``limit`` worst of the last run (most clips first on ties)."""
    tables = [per_group(run, "object_shuffle", ann, "object") for run in runs]
    if not any(tables):
        return ""
    objects = sorted(tables[-1], key=lambda o: (tables[-1][o][0], -tables[-1][o][1]))[:limit]
    head = ["object", "clips", *(f"{html.escape(r.label)} OS (%)" for r in runs)]
    rows = [[html.escape(o), str(tables[-1][o][1]), *(f"{t[o][0]:.1f}" if o in t else "–" for t in tables)]
            for o in objects]
    return _table(head, rows)


def _examples_table(run: Run, ann: dict[str, dict[str, Any]]) -> str:
    head = ["probe", "video id", "caption", "negative", "p(correct)", "frames (decoded size)", "frames (model input)"]
    rows = [[e["probe"], html.escape(str(e["video_id"])), html.escape(e["caption"]), html.escape(str(e["negative"])),
             f"{e['p_correct']:.3f}", f"<div class='strip'>{_img(e['original'], 'decoded')}</div>",
             f"<div class='strip'>{_img(e['seen'], 'model input')}</div>"] for e in worst_examples(run, ann)]
    return _table(head, rows)


STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0;max-width:100%}
td,th{border:1px solid #ccc;padding:4px 6px;text-align:left;overflow-wrap:anywhere}
img{max-width:100%}.strip img{image-rendering:pixelated;height:72px;max-width:none}
.bad{color:#c00;font-weight:bold}.alert{border:2px solid #c00;color:#c00;padding:0.5em 1em}.note{color:#666}
.warn{border:2px solid #d80;color:#840;padding:0.5em 1em}"""


def _alerts(runs: Sequence[Run]) -> list[str]:
    out = []
    items = [f"<li><b>{html.escape(r.name)}</b>: {html.escape(p)}</li>" for r in runs for p in problems(r)]
    if items:
        out.append("<div class='alert'><b>Do not trust these numbers:</b> a run diverged or scored non-finite "
                   f"values (non-finite scores count as wrong).<ul>{''.join(items)}</ul></div>")
    gaps = [f"<li><b>{html.escape(r.name)}</b>: {html.escape(line)}</li>" for r in runs for line in skipped_videos(r)]
    if gaps:
        out.append("<div class='warn'><b>Not every clip was scored as itself:</b> the scores below leave out "
                   "missing videos and replace unreadable ones (<code>skipped_videos.json</code> lists them)."
                   f"<ul>{''.join(gaps)}</ul></div>")
    return out


def render(root: Path) -> str:
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"{root}: no run folder with config.yaml and result/*_output.json below it")
    ann = next((a for a in (annotations(r) for r in runs) if a), {})
    parts = [f"<h1>ActionBench report: {html.escape(root.name)}</h1>", *_alerts(runs), _metrics_table(runs),
             "<h2>Runs</h2>", _metadata_table(runs, root),
             "<h2>Accuracy per probe</h2>", _img(probe_chart(runs), "accuracy per probe")]
    for probe in PROBES:
        chart = template_chart(runs, probe, ann)
        if chart:
            parts += [f"<h2>{PROBES[probe]} per action template</h2>", _img(chart, f"{probe} per template")]
    objects = _object_table(runs, ann)
    if objects:
        parts += ["<h2>Object Shuffle by object</h2>", objects]
    for run in runs:
        chart = curves_chart(run)
        if chart:
            parts += [f"<h2>Training curves: {html.escape(run.name)}</h2>", _img(chart, "training curves")]
    patched = [r for r in runs if r.module != "backbone"]
    if patched:
        parts += [f"<h2>Worst examples ({html.escape(patched[-1].name)})</h2>", _examples_table(patched[-1], ann)]
    head = f"<head><meta charset='utf-8'><title>Paxion report</title><style>{STYLE}</style></head>"
    return f"<!doctype html><html>{head}<body>{''.join(parts)}</body></html>"


def main(argv: Optional[Sequence[str]] = None) -> Path:
    parser = argparse.ArgumentParser(
        description="Self-contained HTML report of ActionBench runs: one folder gives its page, several (or "
                    "--compare) one page comparing every run below them.")
    parser.add_argument("run_dir", type=Path, nargs="+")
    parser.add_argument("--compare", action="store_true", help="the comparison page even for one folder")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: RUN_DIR/report.html, or comparison.html in the first RUN_DIR's parent "
                             "(RUN_DIR itself with --compare and one folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    roots = list(args.run_dir)
    if len(roots) == 1 and not args.compare:
        out, page = args.out or roots[0] / "report.html", render(roots[0])
    else:
        from paxion.cli.compare_report import render as render_comparison

        default = roots[0] / "comparison.html" if len(roots) == 1 else roots[0].parent / "comparison.html"
        out, page = args.out or default, render_comparison(roots)
    out.write_text(page)
    print(f"report: {out}")
    return out


if __name__ == "__main__":
    main()
