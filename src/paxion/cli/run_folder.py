"""A runner output folder read back: config, final metrics, per-sample predictions, training log, environment.

:func:`find_runs` walks a folder (a quickstart folder or any runner output folder) and returns one
:class:`Run` for every folder below it holding ``config.yaml`` and ``result/*_output.json``. The facts
of a run that need no page layout live here too: why its numbers cannot be trusted (:func:`problems`),
its wall time from ``log.txt`` (:func:`duration_s`) and the preprocessing that made its clips
(:func:`model_input`). ``paxion.cli.report`` renders these as HTML.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

PROBES = {"action_antonym": "AA", "video_reversal": "VR", "object_shuffle": "OS"}
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
DIVERGED = "non-finite training loss"  # what the runner logs (and raises) for a NaN/inf loss


@dataclass
class Run:
    """One runner output folder: its config, final metrics, per-sample predictions, training log, environment."""

    path: Path
    name: str
    cfg: Any
    metrics: dict[str, Any]
    predictions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # probe -> rows
    train_log: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # skipped_videos.json entries of the scored split

    @property
    def label(self) -> str:
        return self.name if self.name == self.module else f"{self.name} ({self.module})"

    @property
    def module(self) -> str:
        task = self.cfg.get("task") or {}
        return str(task.get("eval_module", "")) if hasattr(task, "get") else ""

    def select(self, key: str) -> Any:
        return OmegaConf.select(self.cfg, key, default=None)


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
    env_file = path / "environment.json"
    env = json.loads(env_file.read_text()) if env_file.is_file() else {}
    log = (path / "log.txt").read_text(errors="replace").splitlines() if (path / "log.txt").is_file() else []
    name = str(path.relative_to(root)) if path != root else path.name
    skipped_file = path / "skipped_videos.json"
    skipped = json.loads(skipped_file.read_text()) if skipped_file.is_file() else []
    return Run(path, name, OmegaConf.load(path / "config.yaml"), metrics, {k: v for k, v in preds.items() if v},
               train, env, log, [e for e in skipped if str(e.get("split")) == str(split)])


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


# --------------------------------------------------------------------------- facts of a run


def finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def problems(run: Run) -> list[str]:
    """Why a run's numbers cannot be trusted: non-finite scores or metrics, a diverged training loss."""
    found = [f"{k} = {v}" for k, v in run.metrics.items() if "nonfinite" in k and isinstance(v, (int, float)) and v]
    found += [f"metric {k} is {v}" for k, v in run.metrics.items() if not finite(v)]
    bad_steps = [r["step"] for r in run.train_log if not all(finite(r.get(k)) for k in ("loss", "mean_loss"))]
    if bad_steps:
        found.append(f"non-finite training loss logged at step {bad_steps[0]} ({len(bad_steps)} log points)")
    diverged = [line for line in run.log_lines if DIVERGED in line]
    if diverged and not bad_steps:
        found.append(diverged[-1].split(": ", 1)[-1][:300])
    return found


def skipped_videos(run: Run, limit: int = 20) -> list[str]:
    """The clips a run's scores leave out or replace: one line per kind (unreadable, missing), with their ids.

    Counts come from the metrics (``skipped_videos``, ``missing_videos``); ids from ``skipped_videos.json``.
    """
    lines = []
    for kind, key, effect in (("unreadable", "skipped_videos", "replaced by other clips"),
                              ("missing", "missing_videos", "left out of the scores")):
        ids = [Path(str(e["path"])).stem for e in run.skipped if e.get("kind") == kind]
        count = run.metrics.get(key) or len(ids)
        if not count:
            continue
        shown = ", ".join(ids[:limit]) + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")
        lines.append(f"{count} {kind} video{'s' if count != 1 else ''} ({effect})"
                     + (f": {shown}" if ids else " (ids: see skipped_videos.json)"))
    return lines


def duration_s(run: Run) -> Optional[float]:
    """Seconds from the first to the last line of ``log.txt`` (all sessions of a resumed run)."""
    stamps = [LOG_TIME.match(line) for line in run.log_lines]
    times = [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S") for m in stamps if m]
    return (times[-1] - times[0]).total_seconds() if len(times) >= 2 else None


def model_input(run: Run) -> Optional[Any]:
    """The :class:`paxion.api.VideoPreprocess` that made the run's clips (backbone built on ``meta``)."""
    import torch

    import paxion  # noqa: F401  (fills the registry)
    from paxion.api import VideoPreprocess
    from paxion.data.base import VideoDataConfig
    from paxion.registry import registry

    backbone = run.select("model.backbone")
    if not isinstance(backbone, str) or ("backbone", backbone) not in registry:
        return None
    with warnings.catch_warnings(), torch.device("meta"):  # shapes only: no weights, no memory
        warnings.simplefilter("ignore")
        pre = registry.get("backbone", backbone)().preprocess
    data = VideoDataConfig()
    for ds in (run.cfg.get("datasets") or {}).values():
        data = VideoDataConfig(decoder=ds.get("decoder", data.decoder),
                               resize_on_decode=ds.get("resize_on_decode", data.resize_on_decode))
    return VideoPreprocess(pre.num_frames, pre.image_size, data.decoder, data.resize_on_decode)
