"""SynthAction's hard preset: exact reversal = antonym under every nuisance, formats, determinism, CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import paxion  # noqa: F401  (registers the builders)
from paxion.data.synthetic import ACTIONS, antonym_of, generate
from paxion.data.synthetic.__main__ import main as cli
from paxion.data.synthetic.hard import HardConfig, make_hard_specs, render_hard
from paxion.data.video import open_video
from paxion.registry import registry

SMALL = {"num_train": 20, "num_val": 12, "num_test": 4, "frames": 14, "min_frames": 6, "size": 32, "workers": 1}
ANN = "ActionBench/ssv2/shuffled_object_and_action_antonyms"
VIDEOS = "SSv2/video_clips/clips_downsampled_5fps_downsized_224x224"


@pytest.fixture(scope="module")
def hard(tmp_path_factory):
    out = tmp_path_factory.mktemp("hard")
    generate(out, seed=5, preset="hard", **SMALL)
    return out


def _spec_for(action: str, cfg: HardConfig, clip_id: int) -> dict:
    """A drawn spec of the right object count, with ``action`` put in (every nuisance kept)."""
    for spec in make_hard_specs(cfg):
        if ACTIONS[spec["action"]][0].num_objects == ACTIONS[action][0].num_objects:
            return dict(spec, action=action, id=clip_id)
    raise AssertionError(action)


def test_reversed_clip_is_exactly_the_antonym_clip_for_every_action():
    cfg = HardConfig(seed=2, num_train=40, num_val=0, num_test=0, frames=16, min_frames=8, size=32)
    for i, action in enumerate(sorted(ACTIONS)):
        spec = _spec_for(action, cfg, clip_id=100 + i)
        forward, _ = render_hard(spec, cfg)  # noise, shake, drift and distractors all on
        backward, _ = render_hard(dict(spec, action=antonym_of(action)), cfg)
        assert forward.shape == (spec["frames"], 32, 32, 3)
        assert np.array_equal(forward[::-1], backward), action
        assert not np.array_equal(forward, backward), action


def test_action_happens_inside_its_window_and_nuisances_move():
    cfg = HardConfig(seed=0, num_train=60, num_val=0, num_test=0, size=64, noise_std=0.0)
    spec = next(s for s in make_hard_specs(cfg) if s["action"] == "move_left" and s["window"][0] >= 2)
    start, length = spec["window"]
    _, coverage = render_hard(spec, cfg)  # (T, H, W) of the action's object only
    xs = (coverage * np.arange(64)).sum((1, 2)) / coverage.sum((1, 2))
    assert xs[start + length - 1] < xs[start] - 0.3 * 64  # moved left (0.44 of the frame)
    before = xs[: start + 1]  # before the window only the camera shake moves it (amplitude `shake`)
    assert np.ptp(before) < 4 * cfg.shake * 64
    calm = dict(spec, distractors=[], drift=[0.1, 0.1, 0.1, 0.1])  # background standing still
    frames, _ = render_hard(calm, dataclasses.replace(cfg, shake=0.0))
    shaky, _ = render_hard(calm, cfg)
    assert np.array_equal(frames[0], frames[start])  # no shake, drift or noise: nothing moves before the window
    assert not np.array_equal(shaky[0], shaky[start])


def test_specs_vary_length_window_easing_and_clutter():
    specs = make_hard_specs(HardConfig(seed=1, num_train=200, num_val=0, num_test=0))
    frames = [s["frames"] for s in specs]
    assert min(frames) >= 10 and max(frames) <= 40 and len(set(frames)) > 15
    assert all(0 <= s["window"][0] and sum(s["window"]) <= s["frames"] for s in specs)
    assert all(s["window"][1] >= 0.4 * s["frames"] for s in specs)
    assert {s["easing"] for s in specs} == {"linear", "smoothstep", "ease_in", "ease_out"}
    assert {len(s["distractors"]) for s in specs} == {0, 1, 2, 3}
    assert all(0.45 <= s["scale"] <= 0.75 for s in specs)


def test_writes_actionbench_files_and_variable_length_mp4s(hard):
    ann = hard / ANN
    for name in ("train.json", "validation.json", "train_antonym.json", "labels.json", "test-answers.csv",
                 "state_change_heavy_instance_filtering_train.json", "state_change_heavy_instance_filtering_val.json"):
        assert (ann / name).is_file(), name
    train = json.loads((ann / "train.json").read_text())
    assert len(train) == 20 and train[0]["label_action_antonym_clip_text"] != train[0]["label"]
    specs = {s["id"]: s for s in json.loads((hard / "synthaction_specs.json").read_text())}
    saliency = json.loads((ann / "state_change_heavy_instance_filtering_train.json").read_text())
    for item in train[:5]:
        reader = open_video(str(hard / VIDEOS / f"{item['id']}.mp4"))
        assert reader.num_frames == specs[item["id"]]["frames"]
        assert saliency[str(item["id"])]["clip_relative_start_end"][1] == specs[item["id"]]["frames"] / 5
        video = reader.get_frames(torch.arange(reader.num_frames))
        assert tuple(video.shape[1:]) == (3, 32, 32)
    marker = json.loads((hard / "synthaction.json").read_text())
    assert marker["complete"] and marker["config"]["preset"] == "hard" and marker["config"]["seed"] == 5


def test_real_builder_reads_it(hard):
    cls = registry.get("dataset", "actionbench_ssv2")
    node = OmegaConf.merge({"paths": {"data_root": str(hard)}, "ds": OmegaConf.structured(cls.Config)})
    val = cls(OmegaConf.to_object(node.ds)).build("val", num_frames=8, image_size=32, training=False)
    assert len(val) == 12
    sample = val[0]
    assert sample["video"].shape == (8, 3, 32, 32) and sample["action_antonym_text"]


def test_same_seed_same_clips_other_seed_other_clips(hard, tmp_path):
    generate(tmp_path / "again", seed=5, preset="hard", **dict(SMALL, workers=2))
    assert (tmp_path / "again" / ANN / "train.json").read_text() == (hard / ANN / "train.json").read_text()
    for clip_id in (1, 21, 36):
        name = f"{VIDEOS}/{clip_id}.mp4"
        assert (tmp_path / "again" / name).read_bytes() == (hard / name).read_bytes()
    other = make_hard_specs(HardConfig(seed=6, **{k: v for k, v in SMALL.items() if k != "workers"}))
    assert other != json.loads((hard / "synthaction_specs.json").read_text())


def test_cli_preset_flag(tmp_path):
    cli(["--out", str(tmp_path / "d"), "--preset", "hard", "--num-train", "2", "--num-val", "2", "--num-test", "0",
         "--size", "32", "--frames", "8", "--min-frames", "4", "--workers", "1"])
    assert json.loads((tmp_path / "d" / "synthaction.json").read_text())["config"]["preset"] == "hard"
    with pytest.raises(SystemExit) as exc:
        cli(["--out", str(tmp_path / "e"), "--preset", "hard", "--frames", "4", "--min-frames", "9"])
    assert "min_frames" in str(exc.value.code)  # a one-line message, not a traceback


def test_hard_foundation_model_ships_loads_strictly_and_is_blind_to_frame_order():
    from safetensors.torch import load_file

    from paxion.backbones.synth_hard import HARD_WEIGHTS_FILE, SYNTH_HARD_CONFIG
    from paxion.backbones.synth import shipped_weights

    path = shipped_weights().with_name(HARD_WEIGHTS_FILE)
    assert path.stat().st_size <= 5 * 2**20
    model = registry.get("backbone", "internvideo_synth_hard")()
    model.load_state_dict(load_file(str(path)), strict=True)
    model.eval()
    torch.manual_seed(0)
    video = torch.randn(2, SYNTH_HARD_CONFIG.num_frames, 3, 64, 64)
    with torch.no_grad():
        pooled, _ = model.encode_video(video)
        pooled_rev, _ = model.encode_video(video.flip(1))
    torch.testing.assert_close(pooled, pooled_rev, atol=1e-5, rtol=1e-5)  # frozen: sees no motion
    assert not torch.allclose(pooled[0], pooled[1])


def test_hard_foundation_recipe_chains_stage_two_onto_stage_one_export(tmp_path):
    """Stage 2 (plain captions) starts from the file stage 1's export command writes: the chain the shipped
    weights were made by."""
    import shutil
    from pathlib import Path

    from safetensors.torch import load_file

    from paxion.backbones.synth import shipped_weights
    from paxion.backbones.synth_hard import HARD_WEIGHTS_FILE
    from paxion.config import load_config

    pretrain = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "synthaction"
    out = f"paths.output_root={tmp_path}"
    one = load_config(pretrain / "internvideo_synth_hard_positions.yaml", [out])
    two = load_config(pretrain / "internvideo_synth_hard.yaml", [out])
    assert one.datasets.synthaction_objects.position_words and not two.datasets.synthaction_objects.position_words
    assert one.model.backbone == two.model.backbone == "internvideo_synth_hard"
    assert one.model.backbone_ckpt is None  # stage 1 starts from the random initialisation
    stage_one_export = Path(one.run.output_dir).with_suffix(".safetensors")
    assert Path(two.model.backbone_ckpt) == stage_one_export
    assert (two.run.max_epoch, two.run.init_lr) == (10, 1.0e-3) and two.run.output_dir != one.run.output_dir

    stage_one_export.parent.mkdir(parents=True)
    shutil.copyfile(shipped_weights().with_name(HARD_WEIGHTS_FILE), stage_one_export)
    model = registry.get("task", two.task.name)(two).build_model()
    expected = load_file(str(stage_one_export))
    got = model.backbone.state_dict()
    assert set(got) == set(expected) and all(torch.equal(got[k], expected[k]) for k in expected)
