"""Golden files for CLIP-ViP (and Paxion's Knowledge Patcher on it), produced by the ORIGINAL code.

Original: https://github.com/MikeWangWZHL/Paxion at commit 9369d924a598c4519bfc466e01f80a4977d4c423;
CLIP-ViP is the copy of microsoft/XPretrain's ``CLIP-ViP/src`` vendored there as ``src/ClipViP/src``
(``VidCLIP``, ``CLIP_ViP.py``), which is where the project took it from; Paxion's
``PatchAndFuseClipVIP`` supplies the tokenizer call, the backbone forward and the checkpoint loader.

Environment: the same virtual environment as ``tools/golden/paxion.py``:
    python3 -m venv venv-pax && venv-pax/bin/pip install torch==2.14.1 torchvision==0.29.1 \
        transformers==4.26.0 einops einops-exts timm ftfy regex omegaconf easydict scipy "setuptools<81"
Command (from this repository's root; ``--original`` is the Paxion checkout's ``src`` folder):
    venv-pax/bin/python tools/golden/clipvip.py --original /path/to/Paxion/src --out tests/golden/clipvip

What it writes (about 0.3 MB):
* ``clipvip_tiny.pt``: a small random ``VidCLIP`` at the project's ``clipvip_tiny`` sizes in the release
  layout (flat ``clipmodel.*`` dict, fp16, with the ``position_ids`` buffers), loaded back through
  the original's ``_load_backbone`` (its shape-filtered loader, e2e_weights_path);
* ``kp.pth``: a Knowledge Patcher on it (``PatchAndFuseClipVIP``) in the Paxion release layout;
* ``golden.pt``: ids and masks of the HF fast CLIP tokenizer as the original calls it (``padding=True``, no
  truncation) for :data:`common.AWKWARD_TEXTS`, and the small models' outputs from raw text and fixed clips.

Harness choices (not changes to the original): the hub is unreachable, so
``CLIPTokenizerFast.from_pretrained("openai/clip-vit-base-patch32")`` is served from a local folder
whose ``vocab.json``/``merges.txt`` are the original CLIP BPE tables (``SimpleTokenizer.encoder`` and
``bpe_ranks`` of the vendored OpenAI tokenizer) with that repository's special tokens (pad = EOT,
model_max_length 77), converted to the fast tokenizer by transformers 4.26 itself; the small text
model has 64 ids, so its ids are folded with the project's documented test-size rule (SOT -> 62,
EOT and EOT padding -> 63, any other id i -> i % 62); the zero-initialised temporal embedding is re-drawn.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

REPO = "MikeWangWZHL/Paxion"
COMMIT = "9369d924a598c4519bfc466e01f80a4977d4c423"
SEED = 0
FRAMES, TEMPORAL_SIZE, VOCAB, EMBED = 4, 6, 64, 24
CLIP_CONFIG = {
    "projection_dim": EMBED,
    "text_config": {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                        "num_attention_heads": 2, "max_position_embeddings": 16, "hidden_act": "quick_gelu"},
    "vision_config": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                          "image_size": 32, "patch_size": 16, "hidden_act": "quick_gelu"},
}
VIP = {"type": "ViP", "temporal_size": TEMPORAL_SIZE, "if_use_temporal_embed": 1, "logit_scale_init_value": 4.60,
       "add_cls_num": 3}
PATCHER = {"depth": 1, "dim_head": 16, "heads": 2, "num_latents": 16, "ff_mult": 2.0}
CAPTIONS = ["a person picks up a cup from the table", "Café crème brûlée 🎉", "人が箱を開ける"]
ANTONYMS = ["a person puts down a cup on the table", "", "mojibake cafÃ© and UPPER MiXeD Case"]
SALIENT = [True, False, True]
SPECIALS = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>"}


def write_tokenizer_folder(folder: Path) -> None:
    """The CLIP BPE tables of the original's own OpenAI tokenizer, in the HF layout of openai/clip-vit-base-patch32."""
    from InternVideo.simple_tokenizer import SimpleTokenizer

    bpe = SimpleTokenizer()
    merges = [" ".join(pair) for pair, _ in sorted(bpe.bpe_ranks.items(), key=lambda item: item[1])]
    (folder / "vocab.json").write_text(json.dumps(bpe.encoder, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {**SPECIALS, "add_prefix_space": False, "errors": "replace", "do_lower_case": True,
              "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(SPECIALS), encoding="utf-8")


def fold(ids: torch.Tensor) -> torch.Tensor:
    folded = ids % (VOCAB - 2)
    folded = torch.where(ids == 49406, VOCAB - 2, folded)
    return torch.where(ids == 49407, VOCAB - 1, folded)


def build_backbone(models: object, work: Path, out: Path) -> torch.nn.Module:
    """Random VidCLIP -> release file -> the original's loader (``_load_backbone``) reads it back."""
    from ClipViP.src.modeling.VidCLIP import VidCLIP
    from easydict import EasyDict

    (work / "clip").mkdir()
    (work / "clip" / "config.json").write_text(json.dumps(CLIP_CONFIG))
    args = {"clip_config": str(work / "clip"), "clip_weights": "", "clip_vision_additional_config": VIP,
            "e2e_weights_path": str(out / "clipvip_tiny.pt")}
    torch.manual_seed(SEED)
    model = VidCLIP(EasyDict(args))
    common.redraw_zero_init_(model, ["clipmodel.vision_model.embeddings.temporal_embedding"], SEED + 1, std=0.5)
    with torch.no_grad():
        model.clipmodel.logit_scale.fill_(4.2)  # not the init value, so loading it counts
    state = common.round_to_half_(model)
    torch.save(state, out / "clipvip_tiny.pt")
    (work / "backbone.json").write_text(json.dumps(args))
    loaded = models.PatchAndFuseClipVIP._load_backbone({"backbone_config_json": str(work / "backbone.json")})
    for key, value in loaded.state_dict().items():  # the loader is shape-filtered and silent: check it took all
        assert torch.equal(value, state[key].to(value.dtype)), key
    return loaded.eval()


def main() -> None:
    args = common.paxion_checkout(__doc__, COMMIT)
    import models
    from transformers import CLIPTokenizerFast

    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "tokenizer").mkdir()
        write_tokenizer_folder(work / "tokenizer")
        local = CLIPTokenizerFast.from_pretrained(str(work / "tokenizer"), local_files_only=True)

        class OfflineTokenizer:
            @staticmethod
            def from_pretrained(name: str, **kw: object) -> CLIPTokenizerFast:
                assert name == "openai/clip-vit-base-patch32", name
                return local

        models.CLIPTokenizerFast = OfflineTokenizer
        backbone = build_backbone(models, work, args.out)

    class SmallVocabPatchAndFuse(models.PatchAndFuseClipVIP):
        def tokenize(self, text, **kwargs):
            tokens = super().tokenize(text)
            tokens["input_ids"] = fold(tokens["input_ids"])
            return tokens

    perceiver = dict(dim=EMBED, k_v_dim=CLIP_CONFIG["vision_config"]["hidden_size"], **PATCHER)
    perceiver["ff_mult"] = int(perceiver["ff_mult"])
    kp = SmallVocabPatchAndFuse(
        backbone, vision_perceiver_config=perceiver, objectives=[models.VTC, models.VAC, models.ATM],
        loss_weighting=[1.0, 1.0, 0.4], if_add_temporal_emebdding=True, temp_emb_drop_out=0.1, num_frms=FRAMES,
        state_change_filtering_for_FDM=True,
    ).eval()
    with torch.no_grad():
        kp.temp.fill_(0.05)
    state = {k: v.clone() for k, v in kp.state_dict().items() if not k.startswith("vl_backbone.")}
    torch.save({"model": state, "config": {"arch": "patch_and_fuse_clipvip"}, "epoch": 0}, args.out / "kp.pth")

    out: dict[str, torch.Tensor] = {}
    short = [t for t in common.AWKWARD_TEXTS if len(local(t)["input_ids"]) <= 77]
    overlong = [t for t in common.AWKWARD_TEXTS if t not in short]
    full = kp.tokenizer(short, padding=True, return_tensors="pt")  # the original's call, full vocabulary
    out["tokenizer.input_ids"], out["tokenizer.attention_mask"] = full["input_ids"], full["attention_mask"]
    out["tokenizer.overlong_lengths"] = torch.tensor([len(local(t)["input_ids"]) for t in overlong])

    texts = CAPTIONS + ANTONYMS
    tokens = kp.tokenize(texts)
    out["small.input_ids"], out["small.attention_mask"] = tokens["input_ids"], tokens["attention_mask"]
    text_pooled, text_tokens = kp.encode_text_backbone(tokens, return_all_feats=True)
    out["backbone.text_pooled"], out["backbone.text_tokens"] = text_pooled, text_tokens

    video_u8 = common.fixed_video(len(CAPTIONS), FRAMES, 32, SEED + 2)
    video = common.normalize_clip(video_u8)
    for name, clip in (("", video), ("_reversed", video.flip(1))):
        pooled, frame_tokens = kp.encode_video_backbone(clip, return_all_feats=True)
        out[f"backbone.video_pooled{name}"] = pooled
        out[f"backbone.video_tokens{name}"] = rearrange(frame_tokens, "p b t d -> b t p d")
        latents = kp.encode_video(clip)[1]
        out[f"kp.latents{name}"] = latents
        sim = torch.einsum("bqd,nd->bqn", F.normalize(latents, dim=-1), F.normalize(text_pooled, dim=-1))
        out[f"kp.logits{name}"] = sim.max(dim=1).values / kp.temp  # (B, N): max over latents / temp
    # the T=6 path (no temporal resampling) of the ViP embeddings
    six = common.normalize_clip(common.fixed_video(1, TEMPORAL_SIZE, 32, SEED + 3))
    out["backbone.video_pooled_t6"] = kp.encode_video_backbone(six)
    samples = {
        "video_input": video, "text_input": CAPTIONS, "action_antonym_text_input": ANTONYMS,
        "state_change_saliency_flag": torch.tensor(SALIENT),
    }
    total, parts = kp(samples)
    out["kp.loss"], out["kp.loss_vtc"], out["kp.loss_atm"] = total, parts[models.VTC], parts[models.ATM]

    meta = {
        "repo": REPO, "commit": common.checked_commit(args.original, args.commit), "script": "tools/golden/clipvip.py",
        "command": "python tools/golden/clipvip.py --original <Paxion>/src --out tests/golden/clipvip",
        "packages": common.packages(["torch", "transformers", "tokenizers", "einops", "einops-exts", "easydict"]),
    }
    extra = {
        "texts": short, "overlong_texts": overlong, "captions": CAPTIONS, "antonyms": ANTONYMS, "salient": SALIENT,
        "video": video_u8, "video_t6": common.fixed_video(1, TEMPORAL_SIZE, 32, SEED + 3), "patcher": PATCHER,
    }
    common.save_golden(args.out / "golden.pt", meta, out, extra)
    for key, value in sorted(out.items()):
        print(f"{key:32s} {tuple(value.shape)} {value.dtype}")


if __name__ == "__main__":
    main()
