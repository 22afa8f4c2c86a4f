"""Golden test: Paxion on InternVideo (Knowledge Patcher, Patch & Fuse) against outputs of the original code.

The files under ``tests/golden/paxion/`` were written by ``tools/golden/paxion.py`` running the original
repository (commit in the file's ``meta``). Everything here goes through the public path: the
registered backbones, ``PaxionConfig`` with the release-layout backbone and Paxion checkpoints, the
backbone's tokenizer on raw text, and uint8 clips through ``PaxionModel``.

Tolerances (absolute, fp32 on CPU): token ids exact; backbone features 2e-5; patcher latents and
fused vectors 2e-5; logits (cosine / temp 0.05, so x20) 5e-5; losses 2e-5.
"""

from __future__ import annotations

import pytest
import torch
from golden_support import compare, golden_dir, load_golden

from paxion.systems.paxion.fuser import FuserConfig
from paxion.systems.paxion.model import PaxionConfig, PaxionModel
from paxion.systems.paxion.patcher import PatcherConfig
from paxion.registry import registry

GOLDEN = load_golden("paxion")
FILES = golden_dir("paxion")
COMMIT = "9369d924a598c4519bfc466e01f80a4977d4c423"

FEATURES = 2e-5
LOGITS = 5e-5
LOSSES = 2e-5


def _model(fuser: bool) -> PaxionModel:
    cfg = PaxionConfig(
        backbone="internvideo_tiny",
        backbone_ckpt=str(FILES / "internvideo_tiny.ckpt"),
        patcher=PatcherConfig(**GOLDEN["patcher"]),
        fuser=FuserConfig(name="xattn", **GOLDEN["fuser"]) if fuser else FuserConfig(),
        objectives=["vtc"] if fuser else ["vtc", "vac", "atm"],
        pretrained=str(FILES / ("pf.pth" if fuser else "kp.pth")),
        text_cache_size=0,
    )
    return PaxionModel(cfg).eval()


@pytest.fixture(scope="module")
def outputs() -> dict[str, torch.Tensor]:
    """The project's counterparts of every golden output."""
    kp, pf = _model(fuser=False), _model(fuser=True)
    captions, antonyms = GOLDEN["captions"], GOLDEN["antonyms"]
    video = GOLDEN["video"]
    batch = len(captions)
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        tokens = kp.backbone.tokenize(captions + antonyms)
        out["small.input_ids"] = tokens["input_ids"]
        out["backbone.text_pooled"], out["backbone.text_tokens"] = kp.backbone.encode_text(tokens)
        frames = kp.backbone.encode_frames(kp.normalize_video(video))
        out["backbone.video_tokens"] = kp.backbone.aggregate(frames)[1]
        text = kp.encode_text(captions + antonyms)
        for model, key in ((kp, "kp"), (pf, "pf")):
            enc = model.encode_video(video, with_reversed=True)
            module = "patcher" if key == "kp" else "fused"
            logits = model.logits(enc.features(module), text, module)
            for view, name in ((slice(None, batch), ""), (slice(batch, None), "_reversed")):
                out[f"backbone.video_pooled{name}"] = enc.pooled[view]
                out[f"{key}.logits{name}"] = logits[view]
                if key == "kp":
                    out[f"kp.latents{name}"] = enc.latents[view]
                else:
                    out[f"pf.fused{name}"] = enc.fused[view]
        sample = {
            "video_input": video,
            "text_input": captions,
            "action_antonym_text_input": antonyms,
            "state_change_saliency_flag": GOLDEN["salient"],
        }
        losses = kp(sample)
        out["kp.loss"], out["kp.loss_vtc"], out["kp.loss_atm"] = losses["loss"], losses["vtc"], losses["atm"]
        out["pf.loss"] = pf(sample)["loss"]
    return out


def test_golden_files_record_the_original_commit() -> None:
    meta = GOLDEN["meta"]
    assert meta["repo"] == "MikeWangWZHL/Paxion" and meta["commit"] == COMMIT
    assert meta["packages"]["transformers"] == "4.26.0"


def test_clip_tokenizer_matches_the_original_on_awkward_texts() -> None:
    """Full size (77 ids, truncated with EOT last), as the original Paxion tokenises InternVideo text."""
    with torch.device("meta"):  # the tokenizer is all we need; no 478M-parameter allocation
        backbone = registry.get("backbone", "internvideo_mm_l14")()
    tokens = backbone.tokenize(GOLDEN["texts"])
    expected = GOLDEN["outputs"]
    assert torch.equal(tokens["input_ids"], expected["tokenizer.input_ids"].long())
    assert torch.equal(tokens["attention_mask"].bool(), ~expected["tokenizer.padding"])


def test_small_model_token_ids_from_raw_text(outputs: dict[str, torch.Tensor]) -> None:
    assert torch.equal(outputs["small.input_ids"], GOLDEN["outputs"]["small.input_ids"])


def test_backbone_features_match_the_original(outputs: dict[str, torch.Tensor]) -> None:
    names = ["backbone.text_pooled", "backbone.text_tokens", "backbone.video_pooled", "backbone.video_pooled_reversed",
             "backbone.video_tokens"]
    compare(outputs, GOLDEN["outputs"], {name: FEATURES for name in names})


def test_knowledge_patcher_matches_the_original(outputs: dict[str, torch.Tensor]) -> None:
    compare(outputs, GOLDEN["outputs"], {
        "kp.latents": FEATURES, "kp.latents_reversed": FEATURES,
        "kp.logits": LOGITS, "kp.logits_reversed": LOGITS,
        "kp.loss": LOSSES, "kp.loss_vtc": LOSSES, "kp.loss_atm": LOSSES,
    })


def test_patch_and_fuse_matches_the_original(outputs: dict[str, torch.Tensor]) -> None:
    compare(outputs, GOLDEN["outputs"], {
        "pf.fused": FEATURES, "pf.fused_reversed": FEATURES,
        "pf.logits": LOGITS, "pf.logits_reversed": LOGITS, "pf.loss": LOSSES,
    })
