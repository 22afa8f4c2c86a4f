"""The embedded default, shortened: the shipped frozen model is near chance on AA and VR, a Knowledge
Patcher trained with VTC + DVDM on top of it clearly is not (fixed val set of 250 SynthAction clips)."""

import pytest

from paxion import quickstart

EPOCHS = 4  # the full default trains 8; see the README table for its numbers


@pytest.mark.slow
def test_patcher_learns_actions_the_backbone_lacks(tmp_path):
    overrides = [f"paths.cache_root={tmp_path / 'cache'}", f"paths.output_root={tmp_path / 'out'}",
                 f"run.max_epoch={EPOCHS}"]
    summary = quickstart.run(tmp_path / "run", overrides)
    before = summary["rows"]["backbone (frozen)"]
    after = summary["rows"]["+ Knowledge Patcher (VTC+DVDM)"]
    assert before["num_samples"] == after["num_samples"] == quickstart.DATA["num_val"] >= 200
    assert before["action_antonym_accuracy"] <= 0.60
    assert before["video_reversal_accuracy"] <= 0.60
    assert after["action_antonym_accuracy"] >= 0.65
    assert after["video_reversal_accuracy"] >= 0.75
    assert (tmp_path / "run" / "summary.json").is_file()
