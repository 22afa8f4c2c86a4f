"""Frozen LLM block: reference maths, gradients, no mask / no positions, LLaMA files in both layouts, attaching."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from paxion.modules import llama_weights
from paxion.modules.frozen_llm_block import BeforeModule, FrozenLLMBlock, FrozenLLMBlockConfig
from paxion.modules.llama_weights import LLaMAWeightsError, meta_to_hf_rows, read_llama_layers

D, D_LLM, HEADS = 24, 32, 4
CFG = FrozenLLMBlockConfig(enable=True, d_llm=D_LLM, n_heads=HEADS, multiple_of=16, first_layer=1)


def _block(seed: int = 0, **kw: object) -> FrozenLLMBlock:
    torch.manual_seed(seed)
    cfg = FrozenLLMBlockConfig(**{**CFG.__dict__, **kw})
    block = FrozenLLMBlock(D, cfg)
    with torch.no_grad():  # non-trivial norm weights, so a wrong norm order shows (random blocks only)
        for name, p in block.llm.named_parameters() if not cfg.weights else ():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return block


def _reference(block: FrozenLLMBlock, x: torch.Tensor) -> torch.Tensor:
    """LLaMA's layer written out with an explicit float32 softmax, no mask, no rotary."""

    def rms(t: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps) * w

    h = block.m1(x)
    b, n, d = h.shape
    for layer in block.llm.layers:
        a = layer.attention
        y = rms(h, layer.attention_norm.weight, 1e-6)
        q, k, v = (t.view(b, n, HEADS, d // HEADS).transpose(1, 2) for t in (a.wq(y), a.wk(y), a.wv(y)))
        att = (q @ k.transpose(-1, -2) / math.sqrt(d // HEADS)).float().softmax(-1)
        h = h + a.wo((att @ v).transpose(1, 2).reshape(b, n, d))
        ff = layer.feed_forward
        z = rms(h, layer.ffn_norm.weight, 1e-6)
        h = h + ff.w2(F.silu(ff.w1(z)) * ff.w3(z))
    return block.m2(rms(h, block.llm.norm.weight, 1e-6))


@pytest.mark.parametrize("layers", [1, 2])
def test_matches_reference(layers: int) -> None:
    block = _block(num_layers=layers)
    x = torch.randn(2, 9, D)
    torch.testing.assert_close(block(x), _reference(block, x), atol=1e-5, rtol=1e-5)
    assert block(x).dtype == torch.float32
    assert CFG.ffn_hidden == 16 * math.ceil(int(2 * 4 * D_LLM / 3) / 16)
    assert FrozenLLMBlockConfig().ffn_hidden == 11008  # LLaMA-7B


def test_gradients_reach_m1_m2_and_below_but_not_the_llm() -> None:
    block = _block()
    x = torch.randn(2, 5, D, requires_grad=True)
    block(x).square().sum().backward()
    assert block.m1.weight.grad is not None and block.m1.weight.grad.abs().sum() > 0
    assert block.m2.weight.grad is not None and block.m2.weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0  # flows through the frozen block
    assert all(p.grad is None and not p.requires_grad for p in block.llm.parameters())
    trainable = sum(p.numel() for p in block.parameters() if p.requires_grad)
    assert trainable == 2 * D * D_LLM
    per_layer = 4 * D_LLM**2 + 3 * D_LLM * CFG.ffn_hidden + 2 * D_LLM
    assert block.frozen_parameters() == per_layer + D_LLM


def test_permutation_equivariant_and_no_causal_mask() -> None:
    block = _block().eval()
    x = torch.randn(1, 8, D)
    perm = torch.randperm(8)
    torch.testing.assert_close(block(x[:, perm]), block(x)[:, perm], atol=1e-5, rtol=1e-5)
    edited = x.clone()
    edited[:, -1] += 3.0  # the last token must change the first output (no causal mask)
    assert (block(edited)[:, 0] - block(x)[:, 0]).abs().max() > 1e-4


def test_autocast_keeps_float32_attention_and_output() -> None:
    block = _block()
    x = torch.randn(1, 6, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inner = block.llm(block.m1(x))
        out = block(x)
    assert inner.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), block(x), atol=5e-2, rtol=5e-2)


# ---------------------------------------------------------------------------------------- LLaMA files


def _llama_state(n_layers: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A whole tiny LLaMA in Meta's names (embeddings and output included)."""
    g = torch.Generator().manual_seed(seed)
    hidden = CFG.ffn_hidden
    shapes = {"attention.wq.weight": (D_LLM, D_LLM), "attention.wk.weight": (D_LLM, D_LLM),
              "attention.wv.weight": (D_LLM, D_LLM), "attention.wo.weight": (D_LLM, D_LLM),
              "feed_forward.w1.weight": (hidden, D_LLM), "feed_forward.w2.weight": (D_LLM, hidden),
              "feed_forward.w3.weight": (hidden, D_LLM), "attention_norm.weight": (D_LLM,),
              "ffn_norm.weight": (D_LLM,)}
    state = {f"layers.{i}.{k}": torch.randn(s, generator=g) for i in range(n_layers) for k, s in shapes.items()}
    state.update({"tok_embeddings.weight": torch.randn(50, D_LLM, generator=g), "norm.weight": torch.rand(D_LLM),
                  "output.weight": torch.randn(50, D_LLM, generator=g)})
    return state


def _to_hf(meta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    inverse = {v: k for k, v in llama_weights.HF_SUFFIXES.items()}
    out = {"model.embed_tokens.weight": meta["tok_embeddings.weight"], "model.norm.weight": meta["norm.weight"],
           "lm_head.weight": meta["output.weight"]}
    for key, value in meta.items():
        if key.startswith("layers."):
            _, i, suffix = key.split(".", 2)
            if suffix.endswith(("wq.weight", "wk.weight")):
                value = meta_to_hf_rows(value, HEADS)
            out[f"model.layers.{i}.{llama_weights.HF_SUFFIXES[suffix]}"] = value.contiguous()
    assert set(inverse) == set(llama_weights.HF_SUFFIXES.values())
    return out


def _expected(meta: dict[str, torch.Tensor], layers: list[int]) -> dict[str, torch.Tensor]:
    suffixes = llama_weights.META_SUFFIXES
    return {f"layers.{j}.{s}": meta[f"layers.{i}.{s}"] for j, i in enumerate(layers) for s in suffixes}


def test_meta_consolidated_pth(tmp_path: Path) -> None:
    meta = _llama_state()
    torch.save(meta, tmp_path / "consolidated.00.pth")
    got = read_llama_layers(tmp_path, [1, 2], "meta")
    assert got.keys() == _expected(meta, [1, 2]).keys()
    assert all(torch.equal(got[k], v) for k, v in _expected(meta, [1, 2]).items())
    block = _block(num_layers=2, weights=str(tmp_path))  # loads at construction, layers 1 and 2
    assert torch.equal(block.llm.layers[0].attention.wq.weight, meta["layers.1.attention.wq.weight"])
    assert torch.equal(block.llm.norm.weight, torch.ones(D_LLM))  # the final norm is never loaded (original)
    assert not any(p.requires_grad for p in block.llm.parameters())


def test_meta_model_parallel_shards_are_concatenated(tmp_path: Path) -> None:
    meta = _llama_state()
    for rank in range(2):
        shard = {}
        for key, value in meta.items():
            dim = llama_weights.SHARD_DIM.get(key.split(".")[-2])
            shard[key] = value if dim is None or value.ndim < 2 else value.chunk(2, dim=dim)[rank].clone()
        torch.save(shard, tmp_path / f"consolidated.0{rank}.pth")
    got = read_llama_layers(tmp_path, [2])
    assert all(torch.equal(got[k], v) for k, v in _expected(meta, [2]).items())


def test_hf_sharded_safetensors_reads_only_selected_tensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meta = _llama_state()
    hf = _to_hf(meta)
    names = sorted(hf)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for file, keys in shards.items():
        save_file({k: hf[k] for k in keys}, str(tmp_path / file))
    weight_map = {k: f for f, keys in shards.items() for k in keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": HEADS}))
    read: list[str] = []
    real_safe_open = __import__("safetensors").safe_open

    class Recording:
        def __init__(self, *a: object, **k: object) -> None:
            self.inner = real_safe_open(*a, **k)

        def __enter__(self) -> "Recording":
            self.f = self.inner.__enter__()
            return self

        def __exit__(self, *exc: object) -> None:
            self.inner.__exit__(*exc)

        def keys(self) -> list[str]:
            return list(self.f.keys())

        def get_tensor(self, name: str) -> torch.Tensor:
            read.append(name)
            return self.f.get_tensor(name)

    monkeypatch.setattr("safetensors.safe_open", Recording)
    got = read_llama_layers(tmp_path, [1], "hf", final_norm=True)
    assert sorted(read) == sorted([*(llama_weights.hf_name(1, s) for s in llama_weights.META_SUFFIXES),
                                   "model.norm.weight"])
    expected = {**_expected(meta, [1]), "norm.weight": meta["norm.weight"]}
    assert got.keys() == expected.keys() and all(torch.equal(got[k], v) for k, v in expected.items())


def test_both_layouts_give_the_same_block(tmp_path: Path) -> None:
    meta = _llama_state(seed=4)
    torch.save(meta, tmp_path / "meta.pth")
    save_file(_to_hf(meta), str(tmp_path / "model.safetensors"))
    a = _block(seed=1, weights=str(tmp_path / "meta.pth"))
    b = _block(seed=1, weights=str(tmp_path / "model.safetensors"))
    x = torch.randn(2, 5, D)
    assert torch.equal(a(x), b(x))


def test_layout_errors_name_the_file(tmp_path: Path) -> None:
    torch.save(_llama_state(n_layers=2), tmp_path / "meta.pth")
    with pytest.raises(LLaMAWeightsError, match="layers.5"):
        read_llama_layers(tmp_path / "meta.pth", [5])
    with pytest.raises(LLaMAWeightsError, match="hf' requested"):
        read_llama_layers(tmp_path / "meta.pth", [0], "hf")
    with pytest.raises(ValueError, match="do not fit"):
        _block(d_llm=48, n_heads=4, weights=str(tmp_path / "meta.pth"), first_layer=0)


# ---------------------------------------------------------------------------------------- attaching


def test_attaches_to_a_paxion_models_patcher_input() -> None:
    from paxion_fakes import FAKE, fake_batch

    from paxion.systems.paxion.model import PaxionConfig, PaxionModel
    from paxion.systems.paxion.patcher import PatcherConfig

    torch.manual_seed(0)
    model = PaxionModel(PaxionConfig(backbone=FAKE, patcher=PatcherConfig(heads=2, dim_head=8, num_latents=3),
                                     objectives=["vtc"]))
    before = sum(p.numel() for p in model.parameters() if p.requires_grad)
    width = model.backbone.vision_width
    block = FrozenLLMBlock(width, FrozenLLMBlockConfig(enable=True, d_llm=D_LLM, n_heads=HEADS, multiple_of=16))
    model.patcher = BeforeModule(block, model.patcher)
    model.freeze()
    block.freeze()  # the model's freeze() re-enables the whole patcher
    after = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert after == before + 2 * width * D_LLM
    model.train()
    model(fake_batch(4))["loss"].backward()
    assert block.m1.weight.grad is not None and block.m1.weight.grad.abs().sum() > 0
    assert block.m2.weight.grad is not None and block.m2.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in block.llm.parameters())
    assert all(p.grad is None for p in model.backbone.parameters())


def test_technique_attaches_a_block_to_a_paxion_model_by_config() -> None:
    from paxion.config import load_config
    from paxion.registry import registry
    from paxion.techniques import build_techniques

    cfg_path = Path(__file__).resolve().parents[1] / "configs/train/actionbench/synthaction/kp_perceiver_vtc.yaml"
    block = ["d_llm=32", "n_heads=4", "multiple_of=16", "first_layer=0"]
    cfg = load_config(cfg_path, ["model.backbone=internvideo_tiny", "model.backbone_ckpt=null", "model.pretrained=null",
                                 *(f"techniques.frozen_llm_block.{kv}" for kv in block)])
    torch.manual_seed(0)
    model = registry.get("task", cfg.task.name)(cfg).build_model()
    keys_before = set(model.state_dict())
    trainable_before = sum(p.numel() for p in model.parameters() if p.requires_grad)
    techniques = build_techniques(cfg, model)
    assert len(techniques) == 1
    width = model.backbone.vision_width
    assert keys_before < set(model.state_dict())  # patcher keys unchanged, the block's added under llm_block.
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable_before + 2 * width * 32
    pre = model.backbone.preprocess
    model.train()
    model(fake_batch_for(pre.num_frames, pre.image_size))["loss"].backward()
    assert model.llm_block.m1.weight.grad is not None and model.llm_block.m1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.llm_block.llm.parameters())


def fake_batch_for(frames: int, image: int) -> dict:
    from paxion_fakes import fake_batch

    return fake_batch(4, frames, image)


def test_hf_pytorch_bin_folder(tmp_path: Path) -> None:
    meta = _llama_state(seed=6)
    torch.save(_to_hf(meta), tmp_path / "pytorch_model.bin")
    got = read_llama_layers(tmp_path, [0], n_heads=HEADS)
    assert all(torch.equal(got[k], v) for k, v in _expected(meta, [0]).items())
