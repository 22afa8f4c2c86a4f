"""A frozen transformer block of a pre-trained LLM as a visual encoding layer (LM4VisualEncoding).

    tokens (B, N, D) -> M1: Linear(D -> d_llm, no bias)                      trainable
                     -> L x LLaMA block: h = x + Attn(RMSNorm(x))             frozen
                                         out = h + W2(silu(W1 h') * W3 h'),  h' = RMSNorm(h)
                     -> RMSNorm -> float32                                    frozen (never loaded: ones)
                     -> M2: Linear(d_llm -> D, no bias)                       trainable

The LLaMA block is used without rotary embedding, causal mask or KV cache, so it is a plain
bidirectional set operator: permuting the tokens permutes the output. Attention goes through SDPA;
with ``attention_fp32`` its inputs are cast to float32 and autocast is off for it, which keeps the
original's float32 softmax under bf16/fp16 training.

The frozen parameters keep ``requires_grad=False``, so the optimizer (trainable parameters only)
never sees them, while gradients still flow *through* the block into M1 and the encoder below it.
They are parameters of the model and appear in its ``state_dict``; a run that must store them in its
checkpoints sets ``run.save_full_model: true`` (the LLaMA configs do), as the original saves them.

Which LLM layers: ``first_layer`` .. ``first_layer + num_layers - 1`` of the checkpoint named by
``weights`` (see :mod:`paxion.modules.llama_weights`). The original's video (SSv2) config loads
LLaMA-7B layer 15 (``first_layer: 15, n_layers: 16``: one block); its image config loads the last
layer, 31 (called "the 32nd" by the authors). Both are one config value here.

:class:`FrozenLLMBlock` runs on (B, N, D) tokens; :class:`BeforeModule` runs it on the token input of
any module (e.g. a Knowledge Patcher reading a backbone's (B, T, P, D) tokens), and the technique
``frozen_llm_block`` (``paxion.techniques.frozen_llm_block``) attaches it to any model by config.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


@dataclass
class FrozenLLMBlockConfig:
    """Defaults: LLaMA-7B, one block from layer 15, after the encoder's last block (the video recipe)."""

    enable: bool = False
    d_llm: int = 4096
    n_heads: int = 32
    multiple_of: int = 256  # FFN hidden = multiple_of-rounded int(2 * 4 * d_llm / 3) (11008 for 4096)
    hidden_dim: Optional[int] = None  # explicit FFN width (HF ``intermediate_size``); None: LLaMA's rule
    norm_eps: float = 1e-6  # LLaMA-7B params.json
    first_layer: int = 15  # LLM layer index of the first block; image config of the original: 31
    num_layers: int = 1
    insert_after: int = -1  # encoder block index after which it runs; -1: after the last block
    weights: Optional[str] = None  # LLM checkpoint: Meta consolidated .pth, HF .safetensors/.bin, or a folder
    weights_layout: str = "auto"  # auto | meta | hf
    load_final_norm: bool = False  # original: the wrapper's final RMSNorm is never loaded (stays ones)
    attention_fp32: bool = True  # SDPA in float32 under autocast (the original's float32 softmax)
    freeze: bool = True

    def __post_init__(self) -> None:
        if self.d_llm % self.n_heads:
            raise ValueError(f"d_llm {self.d_llm} is not divisible by n_heads {self.n_heads}")
        if self.num_layers < 1 or self.first_layer < 0:
            raise ValueError(f"need num_layers >= 1 and first_layer >= 0, got {self.num_layers}, {self.first_layer}")
        if self.weights_layout not in ("auto", "meta", "hf"):
            raise ValueError(f"weights_layout: '{self.weights_layout}' is not one of ['auto', 'meta', 'hf']")

    @property
    def ffn_hidden(self) -> int:
        if self.hidden_dim is not None:
            return self.hidden_dim
        hidden = int(2 * 4 * self.d_llm / 3)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)

    @property
    def layer_indices(self) -> list[int]:
        return list(range(self.first_layer, self.first_layer + self.num_layers))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class Attention(nn.Module):
    """Multi-head self-attention with LLaMA's names (wq, wk, wv, wo), no bias, no rotary, no mask."""

    def __init__(self, dim: int, n_heads: int, fp32: bool) -> None:
        super().__init__()
        self.n_heads, self.fp32 = n_heads, fp32
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        heads = self.n_heads
        q, k, v = (w(x).view(b, n, heads, d // heads).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
        if self.fp32:  # (B, H, N, d_h) each, attention in float32 whatever autocast says
            no_autocast = (torch.autocast(x.device.type, enabled=False) if x.device.type in ("cpu", "cuda")
                           else contextlib.nullcontext())  # meta (FLOP counting) has no autocast
            with no_autocast:
                out = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(v.dtype)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.wo(out.transpose(1, 2).reshape(b, n, d))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class LLaMABlock(nn.Module):
    """One decoder layer of LLaMA, parameter names as Meta's ``layers.N.*``."""

    def __init__(self, cfg: FrozenLLMBlockConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg.d_llm, cfg.n_heads, cfg.attention_fp32)
        self.feed_forward = FeedForward(cfg.d_llm, cfg.ffn_hidden)
        self.attention_norm = RMSNorm(cfg.d_llm, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.d_llm, cfg.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x))
        return h + self.feed_forward(self.ffn_norm(h))


class LLaMAStack(nn.Module):
    """``num_layers`` LLaMA blocks and a final RMSNorm; float32 output."""

    def __init__(self, cfg: FrozenLLMBlockConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(LLaMABlock(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.d_llm, cfg.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).float()


class FrozenLLMBlock(nn.Module):
    """M1 -> frozen LLaMA block(s) -> RMSNorm -> M2 on (B, N, D) tokens of width ``dim``."""

    def __init__(self, dim: int, cfg: FrozenLLMBlockConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.m1 = nn.Linear(dim, cfg.d_llm, bias=False)
        self.llm = LLaMAStack(cfg)
        self.m2 = nn.Linear(cfg.d_llm, dim, bias=False)
        self.reset_parameters()
        if cfg.weights:
            self.load_llm_weights(cfg.weights, cfg.weights_layout)
        self.freeze()

    def reset_parameters(self) -> None:
        """Truncated normal (std 0.02) for every linear, as the original's ViT init; RMSNorm weights one."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)

    def freeze(self) -> None:
        """The LLM part stops training (``cfg.freeze``); M1 and M2 always train. Call again after any
        ``requires_grad_(True)`` on a parent module."""
        self.llm.requires_grad_(not self.cfg.freeze)

    def load_llm_weights(self, path: str, layout: str = "auto") -> list[str]:
        """Copy layers ``cfg.layer_indices`` (and, with ``load_final_norm``, the LLM's final norm) from ``path``."""
        from paxion.modules.llama_weights import read_llama_layers

        tensors = read_llama_layers(
            path, self.cfg.layer_indices, layout, final_norm=self.cfg.load_final_norm, n_heads=self.cfg.n_heads
        )
        own = self.llm.state_dict()
        bad = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in tensors.items() if v.shape != own[k].shape]
        if bad:
            raise ValueError(f"{path}: LLM tensors do not fit the block (check d_llm, n_heads, hidden_dim): {bad[:5]}")
        missing = sorted(set(own) - set(tensors) - ({"norm.weight"} if not self.cfg.load_final_norm else set()))
        if missing:
            raise ValueError(f"{path}: LLM layers {self.cfg.layer_indices} lack {missing[:5]}")
        with torch.no_grad():
            for key, value in tensors.items():
                own[key].copy_(value.to(own[key].dtype))
        logger.info("frozen LLM block: %d tensors of layers %s from %s", len(tensors), self.cfg.layer_indices, path)
        return sorted(tensors)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D); the LLM's float32 output goes through M2 in M2's dtype under autocast."""
        return self.m2(self.llm(self.m1(tokens)))

    def frozen_parameters(self) -> int:
        return sum(p.numel() for p in self.llm.parameters())


def build_frozen_llm_block(dim: int, cfg: FrozenLLMBlockConfig) -> Optional[FrozenLLMBlock]:
    """The block for tokens of width ``dim``, or None when ``cfg.enable`` is false."""
    return FrozenLLMBlock(dim, cfg) if cfg.enable else None


def apply_to_tokens(block: FrozenLLMBlock, tokens: torch.Tensor) -> torch.Tensor:
    """(B, ..., D) -> same shape and dtype: the block over all tokens of a sample as one sequence."""
    flat = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])  # (B, N, D)
    return block(flat).to(tokens.dtype).reshape(tokens.shape)


class BeforeModule(nn.Module):
    """Runs a :class:`FrozenLLMBlock` on the first argument of ``inner`` (tokens (B, ..., D)), then ``inner``.

    Attaches the block to any encoder's token output without touching the encoder: e.g. a Paxion
    model's patcher reads backbone tokens (B, T, P, D), which are flattened to (B, T*P, D) for the block.
    """

    def __init__(self, block: FrozenLLMBlock, inner: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.inner = inner

    def forward(self, tokens: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return self.inner(apply_to_tokens(self.block, tokens), *args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # the wrapped module's attributes (out_dim, ...)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)
