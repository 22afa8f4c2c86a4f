"""ALPRO against files written by the original code (salesforce/ALPRO; ``tools/golden/alpro.py``).

The files hold the original's token ids for awkward texts, a small random-weight ALPRO of the
original architecture in its release layouts (retrieval model with MLM head; QA model with the
plain-BERT ``text_encoder.*`` keys) and that model's outputs on a fixed uint8 video and raw text.
Everything here goes through the public path: the registered ``alpro`` model, its converter
(``pretrained:``) and tokenizer. Tolerances: token ids exact; float outputs ``ATOL`` (fp32; measured
max-abs differences: VTC similarity 5.2e-8, VTM logits 5.1e-7, VTC / VTM losses 1.2e-7 / 0, MLM
logits 1.7e-6, MLM loss 0, QA logits 1.6e-6, QA loss 0; a tanh GELU in BERT moves them by 1e-5 .. 1e-3).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from paxion.registry import registry
from paxion.systems.alpro import AlproConfig
from paxion.systems.singularity.objectives import mlm_loss

GOLDEN = Path(__file__).parent / "golden" / "alpro"
ATOL = 1e-5  # similarities, logits, losses (largest measured 1.7e-6: see the module docstring)
# the small architecture the files were written with (tools/golden/alpro.py)
SIZE = {"text_width": 32, "text_layers": 2, "fusion_layer": 1, "text_heads": 2, "text_mlp_width": 64,
        "max_positions": 64, "embed_dim": 256}
VIDEO = {"image_size": 32, "patch_size": 16, "width": 32, "layers": 2, "heads": 2, "mlp_ratio": 2.0}


def _load(name: str) -> dict:
    return torch.load(GOLDEN / name, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def outputs() -> dict:
    return _load("outputs.pt")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("alpro_golden")
    paths = {}
    for kind in ("ret", "qa"):
        path = folder / f"alpro_{kind}_small.pt"
        path.write_bytes(gzip.decompress((GOLDEN / f"alpro_{kind}_small.pt.gz").read_bytes()))
        paths[kind] = str(path)
    return paths


def _alpro(pretrained: str, **kw):
    cfg = AlproConfig(size="tiny", num_frames=4, size_overrides=SIZE, video_overrides=VIDEO, pretrained=pretrained,
                      **kw)
    return registry.get("model", "alpro")(cfg).eval()


def _close(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours.float(), theirs.float(), atol=ATOL, rtol=0, msg=lambda m: f"{name}: {m}")


def test_files_record_the_original_commit(outputs) -> None:
    assert outputs["commit"].startswith("4ff6163")
    assert _load("tokens.pt")["commit"] == outputs["commit"]


@pytest.mark.parametrize("max_len", [40, 30, 8])
def test_token_ids_and_masks_are_the_originals(max_len: int, weights) -> None:
    golden = _load("tokens.pt")
    model = _alpro(weights["ret"])
    ids, mask = model.tokenize(golden["texts"], max_len)
    for row, text in enumerate(golden["texts"]):
        assert ids[row].tolist() == golden[f"ids_{max_len}"][row].tolist(), f"ids of {text!r}"
        assert mask[row].tolist() == golden[f"mask_{max_len}"][row].tolist(), f"mask of {text!r}"


def test_retrieval_vtc_similarity_and_vtm_logits(outputs, weights) -> None:
    model = _alpro(weights["ret"])
    captions = outputs["captions"]
    ids, _ = model.tokenize(captions, model.cfg.max_txt_len)
    assert torch.equal(ids.cpu(), outputs["caption_ids"])
    videos = model.encode_video_for_retrieval(outputs["video_u8"])
    texts = model.encode_text_for_retrieval(captions)
    _close("vtc_sim", videos["embed"] @ texts["embed"].t(), outputs["vtc_sim"])
    n_v, n_t = len(outputs["video_u8"]), len(captions)
    v_idx = torch.arange(n_v).repeat_interleave(n_t)
    t_idx = torch.arange(n_t).repeat(n_v)
    with torch.no_grad():
        logits = model.vtm_logits(texts["hidden"][t_idx], texts["mask"][t_idx], videos["tokens"][v_idx])
    _close("vtm_logits", logits.view(n_v, n_t, 2), outputs["vtm_logits"])
    scores = model.score_pairs({k: v[v_idx] for k, v in videos.items()}, {k: v[t_idx] for k, v in texts.items()})
    _close("vtm_score", scores.view(n_v, n_t), outputs["vtm_logits"].softmax(-1)[..., 1])


def test_pretraining_vtc_vtm_and_mlm_losses(outputs, weights) -> None:
    model = _alpro(weights["ret"], objectives=["vtc", "vtm", "mlm"], max_txt_len=30)
    video = outputs["video_u8"][:2]  # two pairs: VTM's hard negative is the other one, no sampling left
    with torch.no_grad():  # forward's loss_mlm uses random masks: MLM is checked on the fixed masks below
        losses = model({"video_input": video, "text_input": outputs["pair_captions"]}, gather=False)
        _close("loss_vtc", losses["loss_vtc"], outputs["loss_vtc"])
        _close("loss_vtm", losses["loss_vtm"], outputs["loss_vtm"])
        ids, mask = model.tokenize(outputs["pair_captions"], 30)
        masked, labels = outputs["mlm_input_ids"], outputs["mlm_labels"]
        assert torch.equal(ids.masked_fill(labels != -100, 103), masked)
        tokens = model.encode_video(model.normalize_video(video))
        logits = model.mlm_head(model.fuse(model.encode_text(masked, mask), mask, tokens)[:, : ids.shape[1]])
    _close("mlm_logits", logits[labels != -100][:, outputs["vocab_used"]], outputs["mlm_logits"])
    _close("loss_mlm", mlm_loss(logits, labels), outputs["loss_mlm"])


def test_qa_logits_and_loss(outputs, weights) -> None:
    model = _alpro(weights["qa"], objectives=["qa"], num_answers=5)
    logits = model.answer_logits(outputs["video_u8"], outputs["questions"])
    _close("qa_logits", logits, outputs["qa_logits"])
    with torch.no_grad():
        losses = model({"video_input": outputs["video_u8"], "question_input": outputs["questions"],
                        "label": outputs["qa_labels"]}, gather=False)
    _close("loss_qa", losses["loss_qa"], outputs["loss_qa"])
    _close("loss_qa (from logits)", F.cross_entropy(logits, outputs["qa_labels"]), outputs["loss_qa"])
