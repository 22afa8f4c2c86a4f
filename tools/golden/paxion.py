"""Golden files for Paxion on InternVideo (Knowledge Patcher, Patch & Fuse), produced by the ORIGINAL code.

Original: https://github.com/MikeWangWZHL/Paxion at commit 9369d924a598c4519bfc466e01f80a4977d4c423
(its ``src/`` holds the vendored InternVideo code this script builds the backbone with).

Environment: a virtual environment of its own, never the project's:
    python3 -m venv venv-pax && venv-pax/bin/pip install torch==2.14.1 torchvision==0.29.1 \
        transformers==4.26.0 einops einops-exts timm ftfy regex omegaconf easydict scipy "setuptools<81"
Command (from this repository's root; ``--original`` is the Paxion checkout's ``src`` folder):
    venv-pax/bin/python tools/golden/paxion.py --original /path/to/Paxion/src --out tests/golden/paxion

What it writes (about 0.8 MB):
* ``internvideo_tiny.ckpt``: a small random InternVideo of the project's ``internvideo_tiny`` sizes, built
  with the original classes, in the release container ``{"state_dict": {"clip." + key: fp16}}`` plus a
  non-``clip.`` entry the loader must discard;
* ``kp.pth`` / ``pf.pth``: a Knowledge Patcher and a Patch & Fuse model (original ``PatchAndFuseInternVideo``)
  in the release layout ``{"model": {...}, "config", "epoch"}`` without ``vl_backbone.*``;
* ``golden.pt``: the CLIP tokenizer's ids for :data:`common.AWKWARD_TEXTS` at full size (77, truncate=True,
  as the original Paxion calls it), and the small models' outputs from raw text and fixed uint8 clips.

Harness choices (not changes to the original): the LAVIS names the original imports are one-process
stand-ins (``common.install_lavis_stand_ins``); the original ``build_model`` only knows the L/14 and
B/16 widths, so the small backbone is built with the same ``VideoIntern`` / ``VisionTransformer``
classes at explicit sizes; the small text tower has a 64-id vocabulary, so the original tokenizer's
ids (context 16, truncate=True) are folded with the project's documented test-size rule (padding 0,
SOT -> 62, EOT -> 63, any other id i -> 1 + i % 61); parameters the original initialises to zero
(extractor outputs, temporal CLS, balance, DPE bias) are re-drawn so that their paths count.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

REPO = "MikeWangWZHL/Paxion"
COMMIT = "9369d924a598c4519bfc466e01f80a4977d4c423"
SEED = 0
FRAMES, IMAGE, PATCH = 4, 32, 8
VISION = {"width": 64, "layers": 4, "heads": 4, "return_list": [2, 3]}
TEXT = {"width": 32, "layers": 2, "heads": 2, "context": 16, "vocab": 64}
EMBED = 32
PATCHER = {"depth": 1, "dim_head": 16, "heads": 2, "num_latents": 16, "ff_mult": 2.0}
FUSER = {"dim_head": 16, "heads": 2, "ff_mult": 2.0}
CAPTIONS = ["a person picks up a cup from the table", "Café crème brûlée 🎉", "人が箱を開ける"]
ANTONYMS = ["a person puts down a cup on the table", "", "the quick brown fox jumps over the lazy dog " * 3]
SALIENT = [True, False, True]


def fold(ids: torch.Tensor, pad: torch.Tensor, vocab: int) -> torch.Tensor:
    """Full CLIP ids -> the small vocabulary (the project's test-size rule, see the module docstring)."""
    folded = 1 + ids.long() % (vocab - 3)
    folded = torch.where(ids == 49406, vocab - 2, folded)
    folded = torch.where(ids == 49407, vocab - 1, folded)
    return folded.masked_fill(pad, 0)


def build_backbone(original: object) -> torch.nn.Module:
    """A small ``VideoIntern`` from the original classes (its ``build_model`` hardcodes L/14 or B/16)."""
    from InternVideo.clip_utils import utils as vision_factories
    from InternVideo.clip_utils.model import VideoIntern
    from InternVideo.clip_utils.utils.clip_vit_only_global import VisionTransformer

    def vit_only_global_tiny(pretrained: bool = False, **kw: object) -> torch.nn.Module:
        return VisionTransformer(
            input_resolution=IMAGE, patch_size=PATCH, width=VISION["width"], layers=VISION["layers"],
            heads=VISION["heads"], output_dim=EMBED, n_layers=len(VISION["return_list"]), **kw,
        ).eval()

    vision_factories.vit_only_global_tiny = vit_only_global_tiny
    torch.manual_seed(SEED)
    model = VideoIntern(
        EMBED, VISION["width"], TEXT["context"], TEXT["vocab"], TEXT["width"], TEXT["heads"], TEXT["layers"],
        n_layers=len(VISION["return_list"]), n_dim=VISION["width"], n_head=VISION["heads"],
        mlp_dropout=[0.5] * len(VISION["return_list"]), t_size=FRAMES, backbone="vit_only_global_tiny",
        return_list=VISION["return_list"],
    )
    zero_init = ["visual.transformer.temporal_cls_token", "visual.transformer.balance"]
    for j in range(len(VISION["return_list"])):
        zero_init += [f"visual.transformer.dpe.{j}.bias"]
        zero_init += [f"visual.transformer.dec.{j}.{n}" for n in
                      ("attn.out_proj.weight", "attn.out_proj.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")]
    common.redraw_zero_init_(model, zero_init, SEED + 1, std=0.2)
    return model.eval()


def build_patch_and_fuse(models: object, backbone: torch.nn.Module, fuser: bool) -> torch.nn.Module:
    """The original ``PatchAndFuseInternVideo`` (KP-Perceiver with temporal embedding; + xattn fuser)."""
    import InternVideo

    class SmallVocabPatchAndFuse(models.PatchAndFuseInternVideo):
        def tokenize(self, text, **kwargs):
            ids, pad = InternVideo.tokenize(text, context_length=TEXT["context"], truncate=True,
                                            return_special_tokens_mask=True)
            return fold(ids, pad, TEXT["vocab"])

    perceiver = dict(dim=EMBED, k_v_dim=VISION["width"], **PATCHER)
    perceiver["ff_mult"] = int(perceiver["ff_mult"])
    kwargs = {
        "vision_perceiver_config": perceiver, "if_add_temporal_emebdding": True, "temp_emb_drop_out": 0.1,
        "num_frms": FRAMES, "state_change_filtering_for_FDM": True,
    }
    if fuser:
        kwargs.update(
            objectives=[models.VTC], loss_weighting=[1.0], if_as_knowledge_fuser=True, knowledge_fuser_type="xattn",
            knowledge_fuser_config={"dim": EMBED, "k_v_dim": EMBED, "dim_head": FUSER["dim_head"],
                                    "heads": FUSER["heads"], "ff_mult": int(FUSER["ff_mult"])},
            train_knowledge_fuser_jointly=True,
        )
    else:
        kwargs.update(objectives=[models.VTC, models.VAC, models.ATM], loss_weighting=[1.0, 1.0, 0.4])
    return SmallVocabPatchAndFuse(backbone, **kwargs).eval()


def release_file(model: torch.nn.Module, temp: float) -> dict[str, object]:
    with torch.no_grad():
        model.temp.fill_(temp)
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("vl_backbone.")}
    return {"model": state, "config": {"arch": "patch_and_fuse_internvideo"}, "epoch": 0}


def main() -> None:
    args = common.paxion_checkout(__doc__, COMMIT)
    import InternVideo
    import models

    torch.set_grad_enabled(False)
    out: dict[str, torch.Tensor] = {}
    ids, pad = InternVideo.tokenize(common.AWKWARD_TEXTS, truncate=True, return_special_tokens_mask=True)
    out["tokenizer.input_ids"], out["tokenizer.padding"] = ids, pad

    backbone = build_backbone(models)
    state = common.round_to_half_(backbone)
    container = {"state_dict": {"clip." + k: v for k, v in state.items()}}
    container["state_dict"]["caption_decoder.weight"] = torch.zeros(2, 2)  # a non-clip entry, to be discarded
    torch.save(container, args.out / "internvideo_tiny.ckpt")

    kp = build_patch_and_fuse(models, backbone, fuser=False)
    torch.save(release_file(kp, 0.05), args.out / "kp.pth")
    pf = build_patch_and_fuse(models, backbone, fuser=True)
    pf.load_state_dict(kp.state_dict(), strict=False)  # Patch & Fuse starts from the trained KP
    torch.save(release_file(pf, 0.04), args.out / "pf.pth")

    texts = CAPTIONS + ANTONYMS
    tokens = kp.tokenize(texts)
    out["small.input_ids"] = tokens
    text_pooled, text_tokens = kp.encode_text_backbone(tokens, return_all_feats=True)
    out["backbone.text_pooled"], out["backbone.text_tokens"] = text_pooled, text_tokens

    video_u8 = common.fixed_video(len(CAPTIONS), FRAMES, IMAGE, SEED + 2)
    video = common.normalize_clip(video_u8)
    for name, clip in (("", video), ("_reversed", video.flip(1))):
        pooled, frame_tokens = kp.encode_video_backbone(clip, return_all_feats=True)
        out[f"backbone.video_pooled{name}"] = pooled
        if not name:  # the reversed clip's tokens are these, flipped in time (frames never mix in the ViT)
            out["backbone.video_tokens"] = rearrange(frame_tokens, "p b t d -> b t p d")
        out[f"kp.latents{name}"] = kp.encode_video(clip)[1]
        out[f"pf.fused{name}"] = pf.encode_video(clip)[1]

    text = F.normalize(text_pooled, dim=-1)
    for name in ("", "_reversed"):
        sim = torch.einsum("bqd,nd->bqn", F.normalize(out[f"kp.latents{name}"], dim=-1), text)
        out[f"kp.logits{name}"] = sim.max(dim=1).values / kp.temp  # (B, N): max over latents / temp
        out[f"pf.logits{name}"] = F.normalize(out[f"pf.fused{name}"], dim=-1) @ text.T / pf.temp
    samples = {
        "video_input": video, "text_input": CAPTIONS, "action_antonym_text_input": ANTONYMS,
        "state_change_saliency_flag": torch.tensor(SALIENT),
    }
    total, parts = kp(samples)
    out["kp.loss"], out["kp.loss_vtc"], out["kp.loss_atm"] = total, parts[models.VTC], parts[models.ATM]
    total, parts = pf(samples)
    out["pf.loss"] = total

    meta = {
        "repo": REPO, "commit": common.checked_commit(args.original, args.commit), "script": "tools/golden/paxion.py",
        "command": "python tools/golden/paxion.py --original <Paxion>/src --out tests/golden/paxion",
        "packages": common.packages(["torch", "transformers", "timm", "ftfy", "regex", "einops", "einops-exts"]),
    }
    extra = {
        "texts": common.AWKWARD_TEXTS, "captions": CAPTIONS, "antonyms": ANTONYMS, "salient": SALIENT,
        "video": video_u8, "patcher": PATCHER, "fuser": FUSER, "temps": {"kp": 0.05, "pf": 0.04},
    }
    common.save_golden(args.out / "golden.pt", meta, out, extra)
    for key, value in sorted(out.items()):
        print(f"{key:32s} {tuple(value.shape)} {value.dtype}")


if __name__ == "__main__":
    main()
