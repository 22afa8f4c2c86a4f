"""The comparison page is built from real probe runs of six models of five systems (tiny, on generated
SynthAction clips) and opened in a real headless browser: every image decodes, the table has every run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from paxion.cli import evaluate, report
from paxion.cli.compare_report import cell, collect, frozen_patched_pairs, wilson
from paxion.data.synthetic import generate

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "eval" / "actionbench"
TINY_INTERNVIDEO = ["model.backbone=internvideo_tiny", "model.backbone_ckpt=null", "model.pretrained=null"]
RUNS = {  # folder -> (config, overrides)
    "frozen": ("ssv2/backbone.yaml", TINY_INTERNVIDEO),
    "patched": ("ssv2/patcher.yaml", TINY_INTERNVIDEO),
    "singularity": ("ssv2/singularity_itm.yaml", ["model.size=tiny", "model.pretrained=null"]),
    "alpro": ("ssv2/alpro_vtc.yaml", ["model.size=tiny", "model.num_frames=4", "model.pretrained=null"]),
    "openvclip": ("ssv2/openvclip.yaml", ["model.backbone=tiny", "model.num_frames=4", "model.clip_ckpt=null",
                                          "model.release_ckpt=null"]),
    "clipvip": ("ssv2/backbone_clipvip.yaml", ["model.backbone=clipvip_tiny", "model.backbone_ckpt=null"]),
}
NUM_VAL = 8


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("compare")
    generate(root / "data", seed=5, num_train=2, num_val=NUM_VAL, num_test=0, frames=8, size=32, workers=1)
    for name, (config, overrides) in RUNS.items():
        evaluate.main(["--cfg-path", str(CONFIGS / config), *overrides, f"paths.data_root={root / 'data'}",
                       f"run.output_dir={root / 'runs' / name}", "run.num_workers=0", "run.progress_bar=false",
                       "run.persistent_workers=false", "run.tensorboard=false"])
    return [root / "runs" / name for name in RUNS]


def test_wilson_interval():
    low, high = wilson(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    low, high = wilson(500, 1000)
    assert low < 0.5 < high and high - low < 0.07


def test_cells_pairs_and_page(run_dirs):
    entries = collect(run_dirs)
    assert [e.label for e in entries] == list(RUNS)
    for entry in entries:  # counted from the per-sample predictions, as the metrics file says
        for probe in ("action_antonym", "video_reversal", "object_shuffle"):
            c = cell(entry.run, probe)
            assert c.n == NUM_VAL and c.accuracy == pytest.approx(entry.run.metrics[f"{probe}_accuracy"])
    pairs = frozen_patched_pairs(entries)
    assert [(f.label, p.label) for f, p in pairs] == [("frozen", "patched")]
    out = report.main([*map(str, run_dirs), "--out", str(run_dirs[0].parent / "comparison.html")])
    page = out.read_text()
    assert "Frozen → patched" in page and page.count("<table class='heat'") == 3
    table = re.search(r"<table class='probing'>(.*?)</table>", page, flags=re.S).group(1)
    assert len(re.findall(r"<tr>", table)) == 1 + len(RUNS)
    at_chance = [cell(e.run, p).at_chance for e in entries for p in ("action_antonym", "video_reversal",
                                                                     "object_shuffle")]
    assert any(at_chance) and page.count("<span class='chance'>") == sum(at_chance)
    arrows = re.search(r"<h2>Frozen → patched</h2><table>(.*?)</table>", page, flags=re.DOTALL).group(1)
    frozen, patched = pairs[0]
    for probe in ("action_antonym", "video_reversal", "object_shuffle"):
        before, after = cell(frozen.run, probe).accuracy, cell(patched.run, probe).accuracy
        symbol = "↑" if after > before else ("↓" if after < before else "→")
        assert f"{100 * before:.1f} <span class='" in arrows and f">{symbol}</span> {100 * after:.1f}" in arrows
    commits = {entry.run.environment.get("commit") for entry in entries}
    assert None not in commits, "each run records the commit it ran from"
    assert all(commit[:12] in page for commit in commits)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs the Debian package chromium (.ci/run installs it)")
def test_page_renders_in_a_headless_browser(run_dirs, tmp_path):
    page = report.main([*map(str, run_dirs), "--out", str(tmp_path / "comparison.html")]).read_text()
    probe = ("<script>addEventListener('load',()=>{const im=[...document.images];const b=document.body;"
             "b.dataset.images=im.length;b.dataset.broken=im.filter(i=>!(i.complete&&i.naturalWidth>0)).length;"
             "b.dataset.rows=document.querySelectorAll('table.probing tr').length-1;"
             "b.dataset.labels=[...document.querySelectorAll('table.probing tr td:first-child')]"
             ".map(td=>td.textContent).join('|');});</script>")
    (tmp_path / "probe.html").write_text(page.replace("</body>", probe + "</body>"))
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", (tmp_path / "probe.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    facts = dict(re.findall(r'data-(\w+)="([^"]*)"', body))
    assert int(facts["images"]) >= 1 and facts["broken"] == "0", facts
    assert int(facts["rows"]) == len(RUNS) and facts["labels"].split("|") == list(RUNS)
