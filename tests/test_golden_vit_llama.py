"""ViT + frozen LLaMA block against files written by the original code (ziqipang/LM4VisualEncoding,
video part; ``tools/golden/vit_llama.py``).

The files hold a small random-weight ViTLLaMA of the original architecture as its fine-tuning saves it
(``{"model", "epoch", "args"}`` with ``llama.*`` / ``llama_dim_mapper{1,2}.*`` keys), the small Meta-layout
LLaMA file its LLaMA layer was read from (layer 1), and the original's outputs on a fixed uint8 clip
(through its evaluation transforms) and fixed LLaMA-width tokens. Everything goes through the public
path: the registered ``videomae_classifier`` model with ``pretrained:`` and ``llm_block.weights:``.
Tolerance ``ATOL`` for every float output (fp32; measured max-abs differences: logits 4.8e-7, loss 3.6e-7,
pooled features 4.8e-7, LLaMA block output 7.2e-7).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paxion.modules.frozen_llm_block import FrozenLLMBlockConfig, build_frozen_llm_block
from paxion.registry import registry
from paxion.systems.videomae.model import VideoMAEClassifierConfig

GOLDEN = Path(__file__).parent / "golden" / "vit_llama"
FINETUNED = GOLDEN / "vit_llama_small_finetuned.pth"
META = GOLDEN / "llama_small_consolidated.00.pth"
ATOL = 1e-5
# the small architecture of the files: LLaMA width 32, 4 heads, FFN 96 (multiple_of 16), one block = layer 1
LLM = {"enable": True, "d_llm": 32, "n_heads": 4, "multiple_of": 16, "first_layer": 1, "num_layers": 1}


@pytest.fixture(scope="module")
def outputs() -> dict:
    return torch.load(GOLDEN / "outputs.pt", map_location="cpu", weights_only=True)


def _classifier(**llm):
    cfg = VideoMAEClassifierConfig(encoder="videomae_vit_tiny", num_classes=5, num_frames=4, image_size=32,
                                   pretrained=str(FINETUNED), llm_block=FrozenLLMBlockConfig(**{**LLM, **llm}))
    return registry.get("model", "videomae_classifier")(cfg).eval()


def _close(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours.float(), theirs.float(), atol=ATOL, rtol=0, msg=lambda m: f"{name}: {m}")


def test_files_record_the_original_commit(outputs) -> None:
    assert outputs["commit"].startswith("e34e919")


def test_finetuned_file_gives_the_originals_logits_and_loss(outputs) -> None:
    model = _classifier()
    with torch.no_grad():
        _close("logits", model.classify(outputs["video_u8"]), outputs["logits"])
        tokens = model.encoder.forward_tokens(model.normalize_video(outputs["video_u8"]).permute(0, 2, 1, 3, 4),
                                              {model.insert_after: model.llm_block})
        _close("pooled_features", model.encoder.pool(tokens), outputs["pooled_features"])
        losses = model({"video_input": outputs["video_u8"], "label": outputs["labels"]})
    _close("loss", losses["loss"], outputs["loss"])


def test_meta_layout_llama_layer_gives_the_originals_block(outputs) -> None:
    block = build_frozen_llm_block(32, FrozenLLMBlockConfig(**LLM, weights=str(META))).eval()
    with torch.no_grad():
        _close("llama_output", block.llm(outputs["llama_input"]), outputs["llama_output"])
    # the same layer inside the classifier, read from the Meta file instead of the fine-tuned one
    model = _classifier(weights=str(META))
    with torch.no_grad():
        _close("logits (llm_block.weights)", model.classify(outputs["video_u8"]), outputs["logits"])
