"""The model zoo: short names for the released models, the frozen backbones, and every experiment config.

A zoo entry names a config (its ``model:`` section builds the model) and the release file the config
expects under ``paths.ckpt_root``; ``load_model(name, checkpoint=...)`` takes that file from anywhere.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Optional

from paxion.config import CONFIG_ROOT, read_layers
from paxion.registry import registry

CONFIG_STAGES = ("train", "eval", "pretrain")  # configs/<stage>/... hold complete experiments
BACKBONE_PREFIX = "backbone/"  # zoo names of the frozen backbones: backbone/<registered name>

PRESETS = {
    "embedded_default": "Paxion | shipped tiny InternVideo-architecture model (SynthAction, 8 frames of 32 px) "
                        "+ shipped Knowledge Patcher (VTC + DVDM) | no file needed",
}


@dataclass(frozen=True)
class ZooEntry:
    config: str  # configs/<config>.yaml
    system: str
    backbone: str
    task: str
    release: str  # file under paths.ckpt_root that model.pretrained (or release_ckpt) reads

    def describe(self) -> str:
        return f"{self.system} | {self.backbone} | {self.task} | {self.release} (config {self.config})"


PAF = "PatchAndFuse"
ZOO: dict[str, ZooEntry] = {
    "paxion_actionbench_ssv2": ZooEntry("eval/actionbench/ssv2/patcher", "Paxion", "InternVideo-MM-L-14",
                                        "ActionBench-SSv2 Patch & Fuse",
                                        f"{PAF}/ActionBench/actionbench_ssv2_patch_and_fuse.pth"),
    "paxion_actionbench_ego4d": ZooEntry("eval/actionbench/ego4d/patcher", "Paxion", "InternVideo-MM-L-14",
                                         "ActionBench-Ego4D Patch & Fuse",
                                         f"{PAF}/ActionBench/actionbench_ego4d_patch_and_fuse.pth"),
    "paxion_ssv2_label": ZooEntry("eval/downstream/ssv2_label/patch_and_fuse", "Paxion", "InternVideo-MM-L-14",
                                  "SSv2-label retrieval", f"{PAF}/downstream_tasks/ssv2_label_patch_and_fuse.pth"),
    "paxion_ssv2_template": ZooEntry("eval/downstream/ssv2_template/patch_and_fuse", "Paxion",
                                     "InternVideo-MM-L-14", "SSv2-template retrieval",
                                     f"{PAF}/downstream_tasks/ssv2_template_patch_and_fuse.pth"),
    "paxion_nextqa": ZooEntry("eval/downstream/nextqa/patch_and_fuse", "Paxion", "InternVideo-MM-L-14",
                              "NExT-QA multiple choice", f"{PAF}/downstream_tasks/nextqa_patch_and_fuse.pth"),
    "singularity_17m": ZooEntry("train/msrvtt/singularity_ret", "Singularity", "BEiT-B/16 + BERT-base",
                                "pre-trained (zero-shot retrieval, ITC + ITM)", "singularity/singularity_17m.pth"),
    "singularity_temporal_17m": ZooEntry("train/msrvtt/singularity_temporal_ret", "Singularity-temporal",
                                         "BEiT-B/16 + BERT-base + 2-layer temporal encoder",
                                         "pre-trained (zero-shot retrieval, ITC + ITM)",
                                         "singularity/singularity_temporal_17m.pth"),
    **{f"singularity_ret_{name}": ZooEntry(f"eval/{name}/singularity_ret", "Singularity", "BEiT-B/16 + BERT-base",
                                           f"{label} retrieval (ITC + ITM)",
                                           f"singularity/ft_{name}_ret/ckpt_best.pth")
       for name, label in (("msrvtt", "MSRVTT"), ("didemo", "DiDeMo"), ("anet", "ActivityNet Captions"),
                           ("ssv2_label", "SSv2-label"), ("ssv2_template", "SSv2-template"))},
    **{f"singularity_qa_{name}": ZooEntry(f"eval/{name}/singularity_qa", "Singularity", "BEiT-B/16 + BERT-base",
                                          f"{label} open-ended QA (answer ranking)",
                                          f"singularity/ft_{name}_qa/ckpt_best.pth")
       for name, label in (("msrvtt", "MSRVTT-QA"), ("anet", "ActivityNet-QA"))},
    "alpro_pretrained": ZooEntry("train/msrvtt/alpro_ret", "ALPRO", "TimeSformer-B/16 + BERT-base",
                                 "pre-trained (zero-shot retrieval, VTC + VTM)", "alpro/alpro_pretrained_ckpt.pt"),
    "alpro_ret_msrvtt": ZooEntry("eval/msrvtt/alpro_ret", "ALPRO", "TimeSformer-B/16 + BERT-base",
                                 "MSRVTT retrieval (VTC + VTM)", "alpro/ft_msrvtt_ret.pt"),
    "alpro_ret_didemo": ZooEntry("eval/didemo/alpro_ret", "ALPRO", "TimeSformer-B/16 + BERT-base",
                                 "DiDeMo retrieval (VTC + VTM)", "alpro/ft_didemo_ret.pt"),
    "alpro_qa_msrvtt": ZooEntry("eval/msrvtt/alpro_qa", "ALPRO", "TimeSformer-B/16 + BERT-base",
                                "MSRVTT-QA (classifier over ans2label)", "alpro/ft_msrvtt_qa.pt"),
    "alpro_qa_msvd": ZooEntry("eval/msvd/alpro_qa", "ALPRO", "TimeSformer-B/16 + BERT-base",
                              "MSVD-QA (classifier over ans2label)", "alpro/ft_msvd_qa.pt"),
    "openvclip_b16": ZooEntry("eval/openvclip/ucf101_full", "Open-VCLIP", "CLIP ViT-B/16 + temporal attention",
                              "zero-shot action recognition (weight patching 0.5)",
                              "openvclip/openvclip-b16/swa_2_22.pth"),
    **{f"videomae_{size}_ssv2": ZooEntry(f"train/ssv2/videomae_{size}", "VideoMAE", f"VideoMAE {label}",
                                         "SSv2 action recognition (174 classes)",
                                         f"videomae/videomae_ssv2_{size.replace('_', '')}.pth")
       for size, label in (("vit_s", "ViT-S/16"), ("vit_b", "ViT-B/16"))},
    **{f"videomae_{size}_llama_ssv2": ZooEntry(f"train/ssv2/videomae_{size}_llama", "VideoMAE + frozen LLM block",
                                               f"VideoMAE {label} + LLaMA-7B layer 15",
                                               "SSv2 action recognition (174 classes)",
                                               "your fine-tuned run's best.pth (save_full_model: true)")
       for size, label in (("vit_s", "ViT-S/16"), ("vit_b", "ViT-B/16"))},
}


def backbone_names() -> list[str]:
    return [BACKBONE_PREFIX + name for name in registry.names("backbone")]


def config_names() -> list[str]:
    """Every experiment config of a source checkout (``configs/<stage>/...``, fragments ``_*.yaml`` left out)."""
    names = []
    if CONFIG_ROOT.is_dir():
        for stage in CONFIG_STAGES:
            for path in sorted((CONFIG_ROOT / stage).rglob("*.yaml")):
                if not path.name.startswith("_") and any("model" in layer for _, layer in read_layers(path)):
                    names.append(path.relative_to(CONFIG_ROOT).with_suffix("").as_posix())
    return names


def describe(name: str) -> str:
    if name in PRESETS:
        return PRESETS[name]
    if name in ZOO:
        return ZOO[name].describe()
    if name.startswith(BACKBONE_PREFIX):
        return (f"frozen backbone {name[len(BACKBONE_PREFIX):]} (video-text scoring only) | "
                "checkpoint: the backbone's official file")
    return f"experiment config configs/{name}.yaml"


def list_models(pattern: Optional[str] = None) -> dict[str, str]:
    """Names :func:`paxion.load_model` accepts, each with a one-line description, in zoo order: the presets,
    the released models (``system | backbone | task | release file under paths.ckpt_root (config)``), the
    frozen backbones (``backbone/<name>``), then every experiment config of a source checkout.

    ``pattern``: a shell-style pattern (``"singularity*"``, ``"*_qa_*"``) or, without wildcards, a substring.
    """
    names = [*PRESETS, *ZOO, *backbone_names(), *config_names()]
    if pattern:
        wild = any(c in pattern for c in "*?[")
        names = [n for n in names if (fnmatch.fnmatchcase(n, pattern) if wild else pattern in n)]
    return {name: describe(name) for name in names}


def zoo_config(name: str) -> Optional[str]:
    """The config a zoo short name stands for (None for other names)."""
    entry = ZOO.get(name)
    return entry.config if entry else None
