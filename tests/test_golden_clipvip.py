"""Golden test: CLIP-ViP (and Paxion's Knowledge Patcher on it) against outputs of the original code.

The files under ``tests/golden/clipvip/`` were written by ``tools/golden/clipvip.py`` running the CLIP-ViP
code vendored in the original Paxion repository (commit in the file's ``meta``). Everything here goes
through the public path: the registered ``clipvip_b32`` / ``clipvip_tiny`` backbones, their tokenizer on
raw text, the release-layout backbone file through ``PaxionConfig.backbone_ckpt`` and the Paxion
release-layout patcher file through ``PaxionConfig.pretrained``.

Tolerances (absolute, fp32 on CPU): token ids and masks exact; backbone features and patcher latents
2e-5; logits (cosine / temp 0.05, so x20) 5e-5; losses 2e-5.
"""

from __future__ import annotations

import pytest
import torch
from golden_support import compare, golden_dir, load_golden

from paxion.systems.paxion.model import PaxionConfig, PaxionModel
from paxion.systems.paxion.patcher import PatcherConfig
from paxion.registry import registry

GOLDEN = load_golden("clipvip")
FILES = golden_dir("clipvip")
COMMIT = "9369d924a598c4519bfc466e01f80a4977d4c423"

FEATURES = 2e-5
LOGITS = 5e-5
LOSSES = 2e-5


@pytest.fixture(scope="module")
def outputs() -> dict[str, torch.Tensor]:
    """The project's counterparts of every golden output."""
    cfg = PaxionConfig(
        backbone="clipvip_tiny",
        backbone_ckpt=str(FILES / "clipvip_tiny.pt"),
        patcher=PatcherConfig(**GOLDEN["patcher"]),
        pretrained=str(FILES / "kp.pth"),
        text_cache_size=0,
    )
    model = PaxionModel(cfg).eval()
    backbone = model.backbone
    captions, antonyms, video = GOLDEN["captions"], GOLDEN["antonyms"], GOLDEN["video"]
    batch = len(captions)
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        tokens = backbone.tokenize(captions + antonyms)
        out["small.input_ids"], out["small.attention_mask"] = tokens["input_ids"], tokens["attention_mask"]
        out["backbone.text_pooled"], out["backbone.text_tokens"] = backbone.encode_text(tokens)
        for name, clip in (("", video), ("_reversed", video.flip(1))):
            frames = backbone.encode_frames(model.normalize_video(clip))
            out[f"backbone.video_tokens{name}"] = backbone.aggregate(frames)[1]
        enc = model.encode_video(video, with_reversed=True)
        logits = model.logits(enc.features("patcher"), model.encode_text(captions + antonyms), "patcher")
        for view, name in ((slice(None, batch), ""), (slice(batch, None), "_reversed")):
            out[f"backbone.video_pooled{name}"] = enc.pooled[view]
            out[f"kp.latents{name}"] = enc.latents[view]
            out[f"kp.logits{name}"] = logits[view]
        six = model.normalize_video(GOLDEN["video_t6"])
        out["backbone.video_pooled_t6"] = backbone.aggregate(backbone.encode_frames(six))[0]
        losses = model({
            "video_input": video,
            "text_input": captions,
            "action_antonym_text_input": antonyms,
            "state_change_saliency_flag": GOLDEN["salient"],
        })
        out["kp.loss"], out["kp.loss_vtc"], out["kp.loss_atm"] = losses["loss"], losses["vtc"], losses["atm"]
    return out


@pytest.fixture(scope="module")
def full_size_backbone():
    with torch.device("meta"):  # the tokenizer is all we need; no 151M-parameter allocation
        return registry.get("backbone", "clipvip_b32")()


def test_golden_files_record_the_original_commit() -> None:
    meta = GOLDEN["meta"]
    assert meta["repo"] == "MikeWangWZHL/Paxion" and meta["commit"] == COMMIT
    assert meta["packages"]["transformers"] == "4.26.0"


def test_clip_tokenizer_matches_the_original_on_awkward_texts(full_size_backbone) -> None:
    """Full vocabulary, one padded batch (pad = EOT), as the original's ``padding=True`` call."""
    tokens = full_size_backbone.tokenize(GOLDEN["texts"])
    assert torch.equal(tokens["input_ids"], GOLDEN["outputs"]["tokenizer.input_ids"])
    assert torch.equal(tokens["attention_mask"], GOLDEN["outputs"]["tokenizer.attention_mask"])


def test_overlong_text_is_refused_where_the_original_cannot_run(full_size_backbone) -> None:
    """The original does not truncate: a caption over 77 tokens would overrun the position table."""
    assert GOLDEN["overlong_texts"], "the golden list lost its over-long text"
    for text, length in zip(GOLDEN["overlong_texts"], GOLDEN["outputs"]["tokenizer.overlong_lengths"].tolist()):
        with pytest.raises(ValueError, match=f"has {length} tokens"):
            full_size_backbone.tokenize([text])


def test_small_model_token_ids_from_raw_text(outputs: dict[str, torch.Tensor]) -> None:
    assert torch.equal(outputs["small.input_ids"], GOLDEN["outputs"]["small.input_ids"])
    assert torch.equal(outputs["small.attention_mask"], GOLDEN["outputs"]["small.attention_mask"])


def test_backbone_features_match_the_original(outputs: dict[str, torch.Tensor]) -> None:
    names = ["backbone.text_pooled", "backbone.text_tokens", "backbone.video_pooled", "backbone.video_pooled_reversed",
             "backbone.video_tokens", "backbone.video_tokens_reversed", "backbone.video_pooled_t6"]
    compare(outputs, GOLDEN["outputs"], {name: FEATURES for name in names})


def test_knowledge_patcher_matches_the_original(outputs: dict[str, torch.Tensor]) -> None:
    compare(outputs, GOLDEN["outputs"], {
        "kp.latents": FEATURES, "kp.latents_reversed": FEATURES,
        "kp.logits": LOGITS, "kp.logits_reversed": LOGITS,
        "kp.loss": LOSSES, "kp.loss_vtc": LOSSES, "kp.loss_atm": LOSSES,
    })
