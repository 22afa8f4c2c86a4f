"""A minimal random backbone that fulfils the VideoTextBackbone contract, for the Paxion tests.

Per-frame patch tokens (frame-order independent) and an order-dependent ``aggregate`` (a learned
per-frame weighting plus dropout, like InternVideo's extractor), hashed-word tokenizer.
"""

from __future__ import annotations

import zlib

import torch
from einops import rearrange
from torch import nn

from paxion.backbones.base import FrameFeatures, Preprocess, TextInput, VideoTextBackbone
from paxion.registry import registry

FAKE = "paxion_test_fake"
FAKE_MIXING = "paxion_test_fake_mixing"  # frames see each other: reversal needs its own pass


class FakeBackbone(VideoTextBackbone):
    def __init__(self, frames: int = 4, image: int = 8, patch: int = 4, width: int = 16, embed: int = 8,
                 order_invariant: bool = True) -> None:
        super().__init__()
        self.vision_width, self.text_width, self.embed_dim = width, 12, embed
        self.patch = patch
        self.tokens_per_frame = (image // patch) ** 2 + 1
        self.preprocess = Preprocess(num_frames=frames, image_size=image)
        self.frame_order_invariant_frames = order_invariant
        self.patch_embed = nn.Linear(3 * patch * patch, width)
        self.cls = nn.Parameter(torch.randn(width))
        self.frame_weight = nn.Parameter(torch.randn(frames))
        self.drop = nn.Dropout(0.5)
        self.visual_proj = nn.Linear(width, embed, bias=False)
        self.word = nn.Embedding(97, self.text_width)
        self.text_proj = nn.Linear(self.text_width, embed, bias=False)
        self.scale = nn.Parameter(torch.tensor(2.0))

    def encode_frames(self, video: torch.Tensor) -> FrameFeatures:
        patches = rearrange(video, "b t c (h p) (w q) -> b t (h w) (c p q)", p=self.patch, q=self.patch)
        tokens = self.patch_embed(patches)  # (B, T, P-1, D)
        if not self.frame_order_invariant_frames:  # a running mean over time mixes frames
            tokens = tokens.cumsum(1) / torch.arange(1, tokens.shape[1] + 1, device=tokens.device).view(1, -1, 1, 1)
        cls = self.cls.expand(*tokens.shape[:2], 1, -1) + tokens.mean(2, keepdim=True)
        return {"tokens": torch.cat([cls, tokens], dim=2)}  # (B, T, P, D)

    def aggregate(self, features: FrameFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = features["tokens"]
        weights = torch.softmax(self.frame_weight, 0).view(1, -1, 1)
        pooled = self.drop((tokens[:, :, 0] * weights).sum(1))  # order-dependent (B, D)
        return self.visual_proj(pooled), tokens

    def encode_text(self, text: TextInput) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.word(text["input_ids"])  # (B, L, Dt)
        mask = text["attention_mask"].unsqueeze(-1).float()
        pooled = (emb * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.text_proj(pooled), emb

    def tokenize(self, texts: list[str]) -> TextInput:
        ids = [[zlib.crc32(w.encode()) % 96 + 1 for w in t.lower().split()][:10] or [1] for t in texts]
        length = max(len(i) for i in ids)
        input_ids = torch.tensor([i + [0] * (length - len(i)) for i in ids], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": (input_ids > 0).long()}

    def logit_scale(self) -> torch.Tensor:
        return self.scale.exp()

    def visual_projection_weight(self) -> torch.Tensor:
        return self.visual_proj.weight  # (E, D)


if (("backbone", FAKE)) not in registry:
    registry.add("backbone", FAKE, FakeBackbone)
    registry.add("backbone", FAKE_MIXING, lambda: FakeBackbone(order_invariant=False))


def fake_batch(batch_size: int = 4, frames: int = 4, image: int = 8, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    verbs = ["pushing", "pulling", "opening", "closing", "lifting", "dropping"]
    return {
        "video_input": torch.randint(0, 256, (batch_size, frames, 3, image, image), generator=g, dtype=torch.uint8),
        "text_input": [f"{verbs[i % 6]} box {i}" for i in range(batch_size)],
        "action_antonym_text_input": [f"{verbs[(i + 1) % 6]} box {i}" for i in range(batch_size)],
        "object_shuffled_text_input": [f"{verbs[i % 6]} cup {i}" for i in range(batch_size)],
        "state_change_saliency_flag": torch.tensor([i % 2 == 0 for i in range(batch_size)]),
        "idx": torch.arange(batch_size),
    }
