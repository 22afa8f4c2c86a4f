"""``python src/demo.py`` with no arguments: shipped model + patcher + clip, both probabilities printed."""

import re
import runpy
import sys
from pathlib import Path

from paxion.demo import demo_texts

DEMO = Path(__file__).resolve().parents[1] / "src" / "demo.py"


def test_demo_without_arguments_prints_both_probabilities(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(DEMO)])
    runpy.run_path(str(DEMO), run_name="__main__")
    out = capsys.readouterr().out
    texts = demo_texts()
    rows = {}
    for line in out.splitlines():
        match = re.match(r"^(.*?)\s+(\d\.\d{3})\s+(\d\.\d{3})$", line)
        if match:
            rows.setdefault(match.group(1).strip(), (float(match.group(2)), float(match.group(3))))
    assert texts["caption"] in rows and texts["action_antonym"] in rows, out
    caption, antonym = rows[texts["caption"]], rows[texts["action_antonym"]]
    for scorer in (0, 1):  # backbone, patched: a distribution over the two captions
        assert abs(caption[scorer] + antonym[scorer] - 1.0) < 2e-3
    assert caption[1] > antonym[1], "the shipped patcher should prefer the true caption of the shipped clip"
