"""Every system's released-model ActionBench config probes a tiny model of it through evaluate.py: the
full-size config (configs/eval/actionbench/ssv2/<system>.yaml) with only size / backbone / weight overrides,
on generated SynthAction clips in the ActionBench-SSv2 layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paxion.cli import evaluate
from paxion.config import load_config
from paxion.data.synthetic import generate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PROBE_DIR = "eval/actionbench"
NO_CKPT = ["model.pretrained=null"]
SINGULARITY = ["model.size=tiny", *NO_CKPT]
ALPRO = ["model.size=tiny", "model.num_frames=4", *NO_CKPT]
OPENVCLIP = ["model.backbone=tiny", "model.num_frames=4", "model.clip_ckpt=null", "model.release_ckpt=null"]
SYSTEMS = {  # config -> (overrides that make it tiny, what scores the probes)
    "ssv2/patcher.yaml": (["model.backbone=internvideo_tiny", "model.backbone_ckpt=null", *NO_CKPT], "patcher"),
    "ssv2/backbone.yaml": (["model.backbone=internvideo_tiny", "model.backbone_ckpt=null"], "backbone"),
    "ssv2/singularity_itc.yaml": (SINGULARITY, "similarity"),
    "ssv2/singularity_itm.yaml": (SINGULARITY, "pair scorer"),
    "ssv2/alpro_vtc.yaml": (ALPRO, "similarity"),
    "ssv2/alpro_vtm.yaml": (ALPRO, "pair scorer"),
    "ssv2/openvclip.yaml": (OPENVCLIP, "similarity"),
    **{f"ssv2/backbone_{name}.yaml": ([f"model.backbone={tower}", "model.backbone_ckpt=null"], "backbone")
       for name, tower in [("clipvip", "clipvip_tiny"), ("singularity", "singularity_tiny"),
                           ("alpro", "alpro_tiny"), ("openvclip", "openvclip_tiny")]},
    **{f"ssv2/patcher_{name}.yaml": ([f"model.backbone={tower}", "model.backbone_ckpt=null", *NO_CKPT], "patcher")
       for name, tower in [("clipvip", "clipvip_tiny"), ("singularity", "singularity_tiny"),
                           ("alpro", "alpro_tiny"), ("openvclip", "openvclip_tiny")]},
}
NUM_VAL = 6


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthaction")
    generate(root, seed=3, num_train=2, num_val=NUM_VAL, num_test=0, frames=8, size=32, workers=1)
    return root


def _probe(config: str, overrides: list[str], data_root: Path, out: Path) -> tuple[dict, dict[str, list[dict]]]:
    evaluate.main(["--cfg-path", str(CONFIGS / PROBE_DIR / config), *overrides, f"paths.data_root={data_root}",
                   f"paths.output_root={out}", f"run.output_dir={out}", "run.num_workers=0",
                   "run.persistent_workers=false", "run.progress_bar=false", "run.tensorboard=false"])
    metrics = json.loads((out / "result" / "val_output.json").read_text())
    rows = {p: [json.loads(line) for line in (out / "result" / f"val_{p}_predictions.jsonl").read_text().splitlines()]
            for p in ("action_antonym", "video_reversal", "object_shuffle")}
    return metrics, rows


@pytest.mark.parametrize("config", sorted(SYSTEMS))
def test_each_system_probes_through_evaluate(config, data_root, tmp_path, caplog):
    overrides, scorer = SYSTEMS[config]
    caplog.set_level("INFO", logger="paxion.tasks.actionbench")
    metrics, rows = _probe(config, overrides, data_root, tmp_path)
    assert metrics["num_samples"] == NUM_VAL and metrics["nonfinite_scores"] == 0
    for probe, predictions in rows.items():
        assert 0.0 <= metrics[f"{probe}_accuracy"] <= 1.0
        assert len(predictions) == NUM_VAL
        for row in predictions:  # probabilities over [correct, negative]
            assert row["target"] == 0 and abs(sum(row["scores"]) - 1.0) < 1e-4
    assert f"ActionBench val ({scorer}, {NUM_VAL} clips)" in caplog.text


@pytest.mark.parametrize("system", ["singularity", "alpro"])
def test_the_re_ranker_variant_scores_differently(system, data_root, tmp_path):
    """ITM / VTM configs reach score_pairs: same weights (seeded init), other scores than ITC / VTC."""
    overrides = SINGULARITY if system == "singularity" else ALPRO
    first = "itc" if system == "singularity" else "vtc"
    second = "itm" if system == "singularity" else "vtm"
    _, sim = _probe(f"ssv2/{system}_{first}.yaml", overrides, data_root, tmp_path / first)
    _, again = _probe(f"ssv2/{system}_{first}.yaml", overrides, data_root, tmp_path / "again")
    _, pairs = _probe(f"ssv2/{system}_{second}.yaml", overrides, data_root, tmp_path / second)
    assert sim == again, "the tiny model must be the same in every run"
    assert [r["scores"] for r in sim["action_antonym"]] != [r["scores"] for r in pairs["action_antonym"]]


@pytest.mark.parametrize("split", ["ssv2", "ego4d"])
def test_release_configs_expect_the_release_file_under_ckpt_root(split):
    names = sorted(p.name for p in (CONFIGS / PROBE_DIR / split).glob("*.yaml") if not p.name.startswith("_"))
    for system in ("singularity_itc", "singularity_itm", "alpro_vtc", "alpro_vtm", "openvclip",
                   "backbone_clipvip", "backbone_singularity", "backbone_alpro", "backbone_openvclip"):
        assert f"{system}.yaml" in names, f"{split}: no {system}.yaml"
        cfg = load_config(CONFIGS / PROBE_DIR / split / f"{system}.yaml", ["paths.ckpt_root=/CKPT"])
        files = [cfg.model.get(k) for k in ("pretrained", "release_ckpt", "backbone_ckpt") if cfg.model.get(k)]
        assert files and all(str(f).startswith("/CKPT/") for f in files), (system, files)
        assert cfg.task.name == "actionbench"
