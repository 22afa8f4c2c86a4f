"""Video-text pre-training of a whole backbone: how the embedded default's foundation model is made.

* model ``backbone_pretrain``: a registered backbone with nothing frozen, trained with a CLIP-style
  symmetric contrastive loss on its pooled video and text vectors. Clips that share a caption are all
  positives of each other (SynthAction has 48 single-object captions, so a batch holds repeats);
* dataset ``synthaction_objects``: SynthAction's ActionBench-SSv2 files with the caption taken from
  another annotation field, by default ``object_caption`` ("a red circle"). With
  ``frame_sampling: single`` each training clip is one random frame (Singularity-style), so the model
  learns shapes and colours but nothing about motion, and its text tower never sees an action word:
  action words keep distinct random embeddings, which the frozen text tower needs for the Knowledge
  Patcher to tell a caption from its antonym;
* task ``video_text_pretrain``: validation = object recognition, each clip against every distinct
  caption of the split (``v2t_r1``, ``t2v_r1``; ``agg_metrics`` = their mean).

:func:`export_backbone` (``python -m paxion.assets backbone CKPT``) writes the backbone of a checkpoint
saved with ``run.save_full_model: true`` as a plain safetensors state dict, the file that
``model.backbone_ckpt`` loads.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from paxion.engine import dist
from paxion.backbones import synth  # noqa: F401  (registers internvideo_synth*)
from paxion.backbones.base import VideoTextBackbone
from paxion.config import section
from paxion.data.annotations import read_json_list
from paxion.data.collate import collate
from paxion.data.synthetic.annotations import position_words
from paxion.data.synthetic.scenes import object_phrase
from paxion.data.text import build_text_processor
from paxion.data.datasets.actionbench import ActionBenchSSv2
from paxion.registry import registry
from paxion.systems.paxion.scoring import normalize
from paxion.tasks.base import BaseTask, Batch, TaskConfig

logger = logging.getLogger(__name__)
BACKBONE_PREFIX = "backbone."
VISION_PREFIXES = ("visual",)  # visual.*, visual_ln_post, visual_proj


@registry.register("dataset", "synthaction_objects")
class SynthActionObjects(ActionBenchSSv2):
    """SynthAction train/val with ``text`` read from ``caption_field`` of each annotation item."""

    @dataclass
    class Config(ActionBenchSSv2.Config):
        caption_field: str = "object_caption"
        # True: each object phrase gets where the object is in the frame drawn ("a red circle at top left",
        # from the annotation's object_positions), so the model learns where objects are, still not motion
        position_words: bool = False
        position_words_fraction: float = 1.0  # share of the clips (fixed per clip id) that get them; others plain

    name = "synthaction_objects"
    splits = ("train", "val")

    def _load_train_val(self, root: Path, split: str) -> list[dict[str, Any]]:
        records = super()._load_train_val(root, split)
        path = root / ("validation.json" if split == "val" else "train.json")
        key = self.cfg.caption_field
        items = read_json_list(path)
        if items and key not in items[0]:
            raise KeyError(f"{path}: no caption field '{key}'; fields: {sorted(items[0])}")
        by_id = {str(item["id"]): item for item in items}
        for record in records:
            record["text"] = by_id[record["video_id"]][key]
        if self.cfg.position_words:  # processed here: the base class processes only the record's own texts
            share = self.cfg.position_words_fraction
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"position_words_fraction: {share} is not in [0, 1]")
            proc = build_text_processor(self.cfg.text_processor, self.cfg.text_prompt, self.cfg.max_words)
            for record in records:
                frame_captions = _positioned_captions(by_id[record["video_id"]], path)
                if zlib.crc32(record["video_id"].encode()) % 1000 < share * 1000:
                    record["frame_texts"] = [proc(t) for t in frame_captions]
        return records


def _positioned_captions(item: dict[str, Any], path: Path) -> list[str]:
    """One caption per frame: "a red circle at top left" (and "a blue square at middle right")."""
    tracks, objects = item.get("object_positions"), item.get("objects")
    if not tracks or not objects:
        raise KeyError(f"{path}[id {item.get('id')}]: position_words needs 'object_positions' and 'objects' "
                       "(SynthAction written by this version of the generator)")
    phrases = [object_phrase(shape, colour) for shape, colour in objects]
    return [" and ".join(f"a {p} at {position_words(x, y)}" for p, (x, y) in zip(phrases, frame)) for frame in tracks]


@dataclass
class PretrainModelConfig:
    arch: str = "backbone_pretrain"
    backbone: str = "internvideo_synth"  # registered backbone name
    backbone_ckpt: Optional[str] = None  # start from these weights (plain safetensors/.pth state dict)
    max_logit_scale: float = 100.0  # CLIP's clamp
    # all: every text weight trains | projection: the text transformer stays at its random init and only
    # its output projection trains (LiT-style, reversed). Measured on SynthAction: a text tower trained on
    # object captions learns to ignore the other words, so a frozen copy gives a caption and its action
    # antonym nearly the same vector and the Knowledge Patcher cannot separate them (AA 51 % vs 70 %).
    text_trainable: str = "all"
    gather_with_grad: bool = True  # other ranks' gathered features carry gradients (CLIP's full-batch loss)

    def __post_init__(self) -> None:
        if self.text_trainable not in ("all", "projection"):
            raise ValueError(f"model.text_trainable: '{self.text_trainable}' is not one of ['all', 'projection']")


@registry.register("model", "backbone_pretrain")
class BackbonePretrainModel(nn.Module):
    Config = PretrainModelConfig

    def __init__(self, cfg: PretrainModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone: VideoTextBackbone = registry.get("backbone", cfg.backbone)()
        if cfg.backbone_ckpt:
            from paxion.systems.paxion.weights import load_backbone_weights

            load_backbone_weights(self.backbone, cfg.backbone_ckpt)
        # The temperature trains as a parameter of this model, not the backbone's own: InternVideo saves
        # its ``logit_scale_param`` as ``logit_scale``, which checkpoint loading cannot match to the
        # parameter name. ``export_backbone`` writes the trained value back under the backbone's key.
        self.logit_scale = nn.Parameter(torch.log(self.backbone.logit_scale().detach().clone()))
        for name, param in self.backbone.named_parameters():
            if name == "logit_scale_param":
                param.requires_grad_(False)
            elif cfg.text_trainable == "projection" and _is_text_weight(name):
                param.requires_grad_(False)
        pre = self.backbone.preprocess
        self.register_buffer("pixel_mean", torch.tensor(pre.mean).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pre.std).view(1, 1, 3, 1, 1), persistent=False)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, C, H, W) -> normalised (B, E)."""
        x = (video.to(self.pixel_mean.device).float() / 255.0 - self.pixel_mean) / self.pixel_std
        pooled, _ = self.backbone.encode_video(x)
        return normalize(pooled)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """N strings -> normalised (N, E)."""
        tokens = {k: v.to(self.pixel_mean.device) for k, v in self.backbone.tokenize(list(texts)).items()}
        pooled, _ = self.backbone.encode_text(tokens)
        return normalize(pooled)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        video = self.encode_video(batch["video_input"])  # (B, E)
        text = self.encode_text(batch["text_input"])  # (B, E)
        ids = caption_ids(batch["text_input"]).to(video.device)  # (B,)
        scale = self.logit_scale.exp().clamp(max=self.cfg.max_logit_scale)
        loss = multi_positive_contrastive(video, text, ids, scale, self.cfg.gather_with_grad)
        return {"loss": loss, "vtc": loss.detach(), "logit_scale": scale.detach()}


def _is_text_weight(name: str) -> bool:
    """A text-tower weight other than the output projection (InternVideo / CLIP parameter names)."""
    return not name.startswith(VISION_PREFIXES) and name not in ("text_projection", "logit_scale_param")


def caption_ids(texts: Sequence[str]) -> torch.Tensor:
    """A stable integer per caption string (equal strings, equal ids, on every process)."""
    return torch.tensor([zlib.crc32(t.encode()) for t in texts], dtype=torch.int64)


def multi_positive_contrastive(
    video: torch.Tensor, text: torch.Tensor, ids: torch.Tensor, scale: torch.Tensor, with_grad: bool = True
) -> torch.Tensor:
    """Symmetric InfoNCE where every pair with the same caption id is a positive -> scalar.

    video, text (B, E) normalised; ids (B,). Targets spread evenly over the positives, so two clips
    of "a red circle" are not pushed apart as CLIP's one-hot targets would.
    """
    all_video = dist.gather_features(video, with_grad=with_grad)  # (W * B, E)
    all_text = dist.gather_features(text, with_grad=with_grad)  # (W * B, E)
    all_ids = dist.gather_features(ids)  # (W * B,)
    positives = (ids[:, None] == all_ids[None, :]).float()  # (B, W * B)
    targets = positives / positives.sum(dim=1, keepdim=True)
    v2t = scale * video @ all_text.t()  # (B, W * B)
    t2v = scale * text @ all_video.t()  # (B, W * B)
    loss_v2t = -(targets * F.log_softmax(v2t.float(), dim=1)).sum(dim=1).mean()
    loss_t2v = -(targets * F.log_softmax(t2v.float(), dim=1)).sum(dim=1).mean()
    return (loss_v2t + loss_t2v) / 2


@dataclass
class PretrainTaskConfig(TaskConfig):
    name: str = "video_text_pretrain"


@registry.register("task", "video_text_pretrain")
class VideoTextPretrainTask(BaseTask):
    Config = PretrainTaskConfig

    def build_model(self) -> nn.Module:
        if self.cfg.model is None or self.cfg.model.arch != "backbone_pretrain":
            raise ValueError("task 'video_text_pretrain' needs model.arch: backbone_pretrain")
        return BackbonePretrainModel(section(self.cfg, "model"))

    def build_datasets(self, model: nn.Module, splits: list[str]) -> dict[str, Dataset]:
        names = list(self.cfg.datasets.keys()) if self.cfg.datasets else []
        if len(names) != 1:
            raise ValueError(f"task 'video_text_pretrain' needs exactly one entry under 'datasets:', got {names}")
        pre = getattr(model, "module", model).backbone.preprocess
        builder = registry.get("dataset", names[0])(section(self.cfg, f"datasets.{names[0]}"))
        train = set(self.cfg.run.train_splits) if not self.cfg.run.evaluate else set()
        return {
            s: builder.build(s, num_frames=pre.num_frames, image_size=pre.image_size, training=s in train)
            for s in splits
        }

    def collate_fn(self) -> Optional[Callable[[list[Any]], Batch]]:
        return collate

    def train_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = model(batch)
        return out["loss"], {k: v.detach() for k, v in out.items()}

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: Batch) -> dict[str, Any]:
        inner = getattr(model, "module", model)
        return {
            "idx": batch["idx"],
            "video": inner.encode_video(batch["video_input"]),  # (B, E)
            "text": inner.encode_text(batch["text_input"]),  # (B, E)
            "caption": list(batch["text_input"]),
        }

    def compute_metrics(self, outputs: dict[str, Any], split: str, output_dir: Path) -> dict[str, float]:
        """Recall@1 of each clip against the distinct captions of the split, and of each caption against the clips."""
        captions = outputs["caption"]
        distinct = sorted(set(captions))
        row = {c: i for i, c in enumerate(distinct)}
        target = torch.tensor([row[c] for c in captions])  # (N,)
        text = torch.stack([outputs["text"][captions.index(c)] for c in distinct])  # (K, E)
        sim = outputs["video"] @ text.t()  # (N, K)
        v2t = (sim.argmax(dim=1) == target).float().mean().item()
        best_clip = sim.argmax(dim=0)  # (K,) the clip each caption ranks first
        t2v = (target[best_clip] == torch.arange(len(distinct))).float().mean().item()
        logger.info("object recognition %s: v2t R@1 %.3f, t2v R@1 %.3f over %d captions",
                    split, v2t, t2v, len(distinct))
        return {"v2t_r1": v2t, "t2v_r1": t2v, "agg_metrics": (v2t + t2v) / 2,
                "num_captions": len(distinct), "num_samples": len(captions)}


def export_backbone(ckpt_path: str | Path, out_path: str | Path, backbone: str = "internvideo_synth") -> Path:
    """The backbone of a full-model training checkpoint -> a plain safetensors state dict (checked by loading)."""
    from safetensors.torch import save_file

    from paxion.engine.checkpoint import load_checkpoint

    state = load_checkpoint(ckpt_path)["model"]
    weights = {k[len(BACKBONE_PREFIX):]: v.contiguous() for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}
    if "logit_scale" in state and "logit_scale" in weights:  # the temperature trained outside the backbone
        weights["logit_scale"] = state["logit_scale"].clone()
    model = registry.get("backbone", backbone)()
    model.load_state_dict(weights, strict=True)  # the exact key set, or a clear error before writing
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out), metadata={"backbone": backbone, "source": Path(ckpt_path).name})
    logger.info("exported %d backbone tensors to %s (%.2f MB)", len(weights), out, out.stat().st_size / 2**20)
    return out
