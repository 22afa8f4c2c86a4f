"""``python -m paxion.quickstart --compare`` end to end on a small SynthAction set: every system's shipped
tiny model is probed, the two patchers train (two steps each), and the comparison page pairs them."""

from __future__ import annotations

import re

from paxion.cli import compare
from paxion.cli.compare_report import collect, frozen_patched_pairs

TINY_DATA = {"seed": 1, "num_train": 16, "num_val": 10, "num_test": 0, "frames": 8, "size": 32}


def test_compare_probes_every_system_and_pairs_the_patched_runs(tmp_path):
    overrides = [f"paths.cache_root={tmp_path / 'cache'}", "run.max_epoch=1", "run.max_iters_per_epoch=2",
                 "run.batch_size_train=4", "run.num_workers=0", "run.persistent_workers=false"]
    summary = compare.run(tmp_path / "out", overrides, data_spec=TINY_DATA)
    assert list(summary["rows"]) == list(compare.STEPS)
    for name, metrics in summary["rows"].items():
        assert metrics["num_samples"] == TINY_DATA["num_val"] and metrics["nonfinite_scores"] == 0, name
    entries = collect([tmp_path / "out" / name for name in compare.STEPS])
    pairs = [(f.label, p.label) for f, p in frozen_patched_pairs(entries)]
    assert pairs == [("paxion_frozen", "paxion_patched"), ("singularity_towers_frozen", "singularity_towers_patched")]
    page = (tmp_path / "out" / "comparison.html").read_text()
    table = re.search(r"<table class='probing'>(.*?)</table>", page, flags=re.S).group(1)
    assert len(re.findall(r"<tr>", table)) == 1 + len(compare.STEPS)
