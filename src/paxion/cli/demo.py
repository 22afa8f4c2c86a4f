"""The demo's printout: a clip scored against candidate captions and against its time reversal.

``src/demo.py`` is the entry; the model, preprocessing and scoring come from :mod:`paxion.api`.
Without a config, the model is the embedded default: the shipped foundation model and patcher.
"""

from __future__ import annotations

import json

from paxion.api import SHIPPED_PATCHER, Scores, asset  # noqa: F401  (SHIPPED_PATCHER: re-exported)

DEMO_CLIP = "demo_clip.mp4"
DEMO_TEXTS = "demo_clip.json"  # {"caption", "action_antonym", ...}


def demo_texts() -> dict[str, str]:
    return json.loads(asset(DEMO_TEXTS).read_text())


def format_scores(scores: Scores) -> str:
    """One row per candidate, one column per scorer (backbone, patched, fused when the model has a fuser)."""
    columns = {"backbone": scores.backbone, "patched": scores.patcher}
    if scores.fused is not None:
        columns["fused"] = scores.fused
    width = max(len(t) for t in scores.texts) + 2
    lines = [f"{'candidate':<{width}}" + "".join(f"{name:>10}" for name in columns)]
    for i, text in enumerate(scores.texts):
        lines.append(f"{text:<{width}}" + "".join(f"{values[i]:>10.3f}" for values in columns.values()))
    return "\n".join(lines)
