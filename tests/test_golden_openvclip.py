"""Open-VCLIP against files produced by running the original code (``tools/golden/openvclip.py``).

The golden files hold the original's outputs and the seeds of their inputs; the fp32 CLIP file is
rebuilt here from those seeds (its checksums are in the golden file) and read through the
project's public paths: the backbone's ``tokenize``, the ``openvclip`` system built from a config
with ``clip_ckpt`` (its fp16 cast on by default), and ``python -m paxion.tools.swa``.

Tolerances (measured differences in the comments, CPU fp32):
* token ids: identical, padding included; over-long text refused as the original refuses it;
* per-frame video embeddings and text embeddings: 1e-5 absolute (measured 4.8e-7 / 2.4e-7);
* classification logits (values ~1-3): 1e-5 absolute (measured 4.8e-7);
  with ``clip_fp16_cast: false`` the same file gives 5.2e-4 / 8.5e-4 / 2.9e-3;
* SWA averages: 1e-6 (the original means in fp32, the project accumulates in fp64).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from paxion.backbones.openvclip import SIZES, OpenVCLIPConfig
from paxion.backbones.openvclip.convert import fp16_cast_keys
from paxion.systems.openvclip import OpenVCLIP, OpenVCLIPModelConfig
from paxion.tools import swa as swa_tool

GOLDEN = Path(__file__).parent / "golden" / "openvclip"
COMMIT = "047a817"
VARIANTS = ["expand_temporal_view", "none"]
EMBED_ATOL, LOGIT_ATOL = 1e-5, 1e-5


def golden(name: str) -> dict:
    body = json.loads((GOLDEN / name).read_text(encoding="utf-8"))
    assert body["original"] == "wengzejia1/Open-VCLIP" and body["commit"] == COMMIT
    return body


def small_config(spec: dict) -> OpenVCLIPConfig:
    c = spec["config"]
    return OpenVCLIPConfig(
        image_size=c["image_size"], patch_size=c["patch_size"], vision_width=c["vision_width"],
        vision_layers=c["vision_layers"], vision_heads=c["vision_width"] // 64, embed_dim=c["embed_dim"],
        context_length=c["context_length"], vocab_size=c["vocab_size"], text_width=c["text_width"],
        text_layers=c["text_layers"], text_heads=c["text_width"] // 64, num_frames=c["num_frames"],
    )


def seeded(shape: list[int], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory) -> Path:
    """The fp32 OpenAI-CLIP-layout state dict the original loaded (rebuilt from the golden seeds)."""
    spec = golden("model_expand_temporal_view.json")
    weights = {w["key"]: seeded(w["shape"], w["seed"]) * w["scale"] + w["offset"] for w in spec["weights"]}
    for key, (total, absolute) in spec["weight_checksums"].items():
        got = weights[key].double()
        assert abs(float(got.sum()) - total) <= 1e-6 * max(1.0, absolute), f"{key}: torch's generator changed"
    c = spec["config"]
    meta = {k: torch.tensor(c[name]) for k, name in
            (("input_resolution", "image_size"), ("context_length", "context_length"), ("vocab_size", "vocab_size"))}
    path = tmp_path_factory.mktemp("openvclip_golden") / "clip_fp32.pt"
    torch.save({**weights, **meta}, path)
    return path


def build_system(monkeypatch, spec: dict, clip_file: Path, **overrides) -> OpenVCLIP:
    monkeypatch.setitem(SIZES, "golden", small_config(spec))
    cfg = OpenVCLIPModelConfig(backbone="golden", temporal_modeling=spec["variant"], clip_ckpt=str(clip_file),
                               num_frames=spec["config"]["num_frames"], **overrides)
    return OpenVCLIP(cfg).eval()


def outputs(system: OpenVCLIP, spec: dict) -> dict[str, torch.Tensor]:
    video = seeded(spec["video"]["shape"], spec["video"]["seed"])
    assert [float(video.double().sum()), float(video.double().abs().sum())] == pytest.approx(spec["video_checksum"])
    system.set_class_names(spec["class_names"])
    with torch.no_grad():
        return {
            "frame_embeddings": system.frame_embeddings(video),
            "text_embeddings": system.text_embeddings(spec["prompt_texts"]),
            "logits": system.logits(video),
        }


def max_diffs(got: dict[str, torch.Tensor], spec: dict) -> dict[str, float]:
    return {key: float((value - torch.tensor(spec[key])).abs().max()) for key, value in got.items()}


# ----------------------------------------------------------------------------- tokens


def test_token_ids_are_the_originals():
    rows = golden("tokens.json")["rows"]
    backbone_cfg = dataclasses.replace(SIZES["tiny"], context_length=77, vocab_size=49408)
    from paxion.backbones.openvclip import OpenVCLIPBackbone

    with torch.device("meta"):
        backbone = OpenVCLIPBackbone(backbone_cfg)
    refused = [row for row in rows if "error" in row]
    assert len(refused) == 1
    with pytest.raises(ValueError, match="at most 77"):  # clip.tokenize raises on it too
        backbone.tokenize([refused[0]["text"]])
    rows = [row for row in rows if "error" not in row]
    batch = backbone.tokenize([row["text"] for row in rows])["input_ids"]  # one batch: padding shows
    for row, ids in zip(rows, batch):
        expected = row["ids"] + [0] * (row["padded_to"] - len(row["ids"]))
        assert ids.tolist() == expected, row["text"]


# ----------------------------------------------------------------------------- model outputs


@pytest.mark.parametrize("variant", VARIANTS)
def test_fp16_cast_rounds_the_tensors_the_original_rounds(variant, clip_file):
    spec = golden(f"model_{variant}.json")
    keys = [w["key"] for w in spec["weights"]]
    assert sorted(fp16_cast_keys(keys, variant)) == spec["rounded_keys"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_embeddings_and_logits_match_the_original(variant, clip_file, monkeypatch):
    spec = golden(f"model_{variant}.json")
    diffs = max_diffs(outputs(build_system(monkeypatch, spec, clip_file), spec), spec)
    assert diffs["frame_embeddings"] <= EMBED_ATOL, diffs
    assert diffs["text_embeddings"] <= EMBED_ATOL, diffs
    assert diffs["logits"] <= LOGIT_ATOL, diffs


def test_keeping_fp32_weights_departs_from_the_original(clip_file, monkeypatch):
    """clip_fp16_cast: false is a deliberate deviation; on this fp32 file it moves every output."""
    spec = golden("model_expand_temporal_view.json")
    system = build_system(monkeypatch, spec, clip_file, clip_fp16_cast=False)
    diffs = max_diffs(outputs(system, spec), spec)
    assert diffs["frame_embeddings"] > 10 * EMBED_ATOL and diffs["logits"] > 10 * LOGIT_ATOL, diffs


def test_reference_is_the_clip_file_as_stored(clip_file, monkeypatch):
    """θ0 for IWO / patching / SWA: the file's fp32 values (the original's torch.jit.load(...).state_dict())."""
    spec = golden("model_expand_temporal_view.json")
    system = build_system(monkeypatch, spec, clip_file)
    stored = torch.load(clip_file, weights_only=True)
    reference = system.reference_state_dict()
    key = "visual.conv1.weight"
    assert torch.equal(reference["backbone.model." + key], stored[key])
    assert torch.equal(system.state_dict()["backbone.model." + key], stored[key].half().float())
    assert not torch.equal(stored[key], stored[key].half().float())


# ----------------------------------------------------------------------------- SWA


class TinyClip(torch.nn.Module):
    """The scripted stand-in for a JIT CLIP file the golden script gave the original's SWA tool."""

    def __init__(self, keys: dict[str, list[int]]) -> None:
        super().__init__()
        self.visual = torch.nn.Module()
        self.visual.proj = torch.nn.Parameter(seeded(keys["visual.proj"], 50))
        self.text_projection = torch.nn.Parameter(seeded(keys["text_projection"], 51))
        self.ln_final = torch.nn.Module()
        self.ln_final.weight = torch.nn.Parameter(seeded(keys["ln_final.weight"], 52))
        self.register_buffer("input_resolution", torch.tensor(224))
        self.register_buffer("context_length", torch.tensor(77))
        self.register_buffer("vocab_size", torch.tensor(49408))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.visual.proj


@pytest.mark.parametrize("window", ["2_3", "0_4"])
def test_swa_tool_matches_the_original(window, tmp_path):
    spec = golden("swa.json")
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.jit.script(TinyClip(spec["keys"])).save(str(tmp_path / "tiny_clip.pt"))
    for epoch in range(1, 5):
        gen = torch.Generator().manual_seed(100 + epoch)
        state = {"model." + k: torch.randn(shape, generator=gen) for k, shape in spec["keys"].items()}
        torch.save({"model_state": state}, folder / f"checkpoint_epoch_{epoch:05d}.pyth")
    start, end = window.split("_")
    argv = [str(folder), "--start", start, "--end", end, "--reference", str(tmp_path / "tiny_clip.pt")]
    assert swa_tool.main([*argv, "--output", str(tmp_path)]) == 0
    averaged = torch.load(tmp_path / f"swa_{window}.pth", weights_only=True)["model_state"]
    expected = spec["averages"][window]
    assert sorted(averaged) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(averaged[key], torch.tensor(value), atol=1e-6, rtol=0)
