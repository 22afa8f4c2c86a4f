"""``python -m paxion.quickstart --compare``: the paper's probing table on a CPU, every system side by side.

On SynthAction val (the embedded default's 250 clips, written once) it probes a tiny SynthAction-trained
model of every system with the shipped weights (``paxion/assets/*_synth*.safetensors``, recipes in
``paxion/assets/README.md``), trains the two Knowledge Patchers of the comparison (over the embedded
default's InternVideo and over the tiny Singularity-temporal's towers), probes them, and writes one
comparison page (``comparison.html``, :mod:`paxion.cli.compare_report`) beside the run folders.
Overrides ``a.b=c`` apply to both patcher trainings (e.g. ``run.max_epoch=1``).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

from paxion.cli.compare_report import render
from paxion.cli.quickstart import DATA, TRAIN_CONFIG, config_path, ensure_data, run_config
from paxion.config import load_config

PROBE = "eval/actionbench/synthaction/"
# run folder -> (config, trains a patcher); frozen runs first, each patched run after its frozen one
STEPS: dict[str, tuple[str, bool]] = {
    "paxion_frozen": (PROBE + "embedded_backbone.yaml", False),
    "paxion_patched": (TRAIN_CONFIG, True),
    "singularity_1frame_itc": (PROBE + "singularity_itc.yaml", False),
    "singularity_1frame_itm": (PROBE + "singularity_itm.yaml", False),
    "singularity_temporal_itc": (PROBE + "singularity_temporal_itc.yaml", False),
    "singularity_temporal_itm": (PROBE + "singularity_temporal_itm.yaml", False),
    "alpro_vtc": (PROBE + "alpro_vtc.yaml", False),
    "alpro_vtm": (PROBE + "alpro_vtm.yaml", False),
    "openvclip": (PROBE + "openvclip.yaml", False),
    "singularity_towers_frozen": (PROBE + "backbone_singularity.yaml", False),
    "singularity_towers_patched": ("train/actionbench/synthaction/embedded_singularity.yaml", True),
}


def run(out_dir: Optional[Path], overrides: Sequence[str], data_spec: Optional[dict[str, Any]] = None,
        steps: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Every step of :data:`STEPS` (or ``steps``) into ``out_dir``; -> ``{"output_dir", "rows", "seconds",
    "report"}``, also written to ``summary.json``. ``data_spec`` replaces the SynthAction settings (tests)."""
    start = time.perf_counter()
    cfg = load_config(config_path(TRAIN_CONFIG), list(overrides))
    ensure_data(cfg.paths.data_root, DATA if data_spec is None else data_spec)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(out_dir) if out_dir else Path(cfg.paths.output_root) / "compare" / stamp
    shared = [f"paths.{k}={v}" for k, v in cfg.paths.items()]  # every run on the same data
    rows, seconds = {}, {}
    for name in steps or STEPS:
        config, trains = STEPS[name]
        began = time.perf_counter()
        rows[name] = run_config(config, [*shared, *overrides] if trains else shared, out / name, train=trains)
        seconds[name] = round(time.perf_counter() - began, 1)
    report = out / "comparison.html"
    report.write_text(render([out / name for name in rows]))
    summary = {"output_dir": str(out), "rows": rows, "seconds": time.perf_counter() - start,
               "step_seconds": seconds, "report": str(report)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
