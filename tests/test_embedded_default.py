"""The embedded default, shortened: the shipped frozen model is near chance on AA and VR, a Knowledge
Patcher trained with VTC + DVDM on top of it clearly is not (fixed val set of 250 SynthAction clips)."""

import pytest

from paxion.cli import quickstart

EPOCHS = 4  # the full default trains 12; the README table has its numbers
BACKBONE = "backbone (frozen)"


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedded")
    return [f"paths.cache_root={root / 'cache'}", f"paths.output_root={root / 'out'}"], root


def _check_backbone(metrics):
    assert metrics["num_samples"] == quickstart.DATA["num_val"] >= 200
    assert metrics["action_antonym_accuracy"] <= 0.60
    assert metrics["video_reversal_accuracy"] <= 0.60


@pytest.mark.slow  # 4 training epochs: minutes
def test_patcher_learns_actions_the_backbone_lacks(roots):
    paths, root = roots
    summary = quickstart.run(root / "train", [*paths, f"run.max_epoch={EPOCHS}"])
    _check_backbone(summary["rows"][BACKBONE])
    after = summary["rows"]["+ Knowledge Patcher (VTC+DVDM)"]
    assert after["num_samples"] == quickstart.DATA["num_val"]
    assert after["action_antonym_accuracy"] >= 0.65
    assert after["video_reversal_accuracy"] >= 0.75
    assert (root / "train" / "summary.json").is_file()


@pytest.mark.slow  # writes the full 2,250-clip SynthAction: ~20 CPU seconds
def test_shipped_patcher_knows_actions(roots):
    paths, root = roots
    summary = quickstart.run(root / "shipped", paths, eval_only=True)
    _check_backbone(summary["rows"][BACKBONE])
    shipped = summary["rows"]["+ shipped patcher"]
    assert shipped["action_antonym_accuracy"] >= 0.65
    assert shipped["video_reversal_accuracy"] >= 0.75
    assert shipped["object_shuffle_accuracy"] >= 0.85


def test_every_quickstart_preset_names_configs_that_agree():
    from paxion.config import load_config

    for name, preset in quickstart.PRESETS.items():
        cfgs = [load_config(quickstart.config_path(c), []) for c in (preset.train, preset.backbone, preset.patcher)]
        assert len({c.paths.data_root for c in cfgs}) == 1, name
        assert len({c.model.backbone for c in cfgs}) == 1, name
        assert cfgs[2].model.pretrained.endswith(preset.shipped_patcher), name


@pytest.mark.slow  # writes 290 hard clips (another draw of the hard val split), scores the shipped hard models
def test_hard_preset_shipped_patcher_story(roots):
    paths, root = roots
    spec = dict(quickstart.PRESETS["hard"].data, num_train=40)
    summary = quickstart.run(root / "hard", paths, eval_only=True, data_spec=spec, preset="hard")
    before, after = summary["rows"][BACKBONE], summary["rows"]["+ shipped patcher"]
    _check_backbone(before)
    assert before["object_shuffle_accuracy"] >= 0.80  # measured 84.0 on this draw (84.8 on the preset's own val)
    assert after["action_antonym_accuracy"] >= 0.75  # 79.6
    assert after["video_reversal_accuracy"] >= 0.78  # 82.8
    assert after["object_shuffle_accuracy"] >= before["object_shuffle_accuracy"]  # 88.0
