"""Flag state-change-salient clips (gates the ATM loss) with any registered backbone as the scorer.

    python ActionBench/state_change_saliency.py --data-root DATA --split val --backbone internvideo_mm_l14 \
        [--ckpt PATH] [--out FILE]

The original scored 8 frames with BLIP image-text cosines: first 4 frames = start, last 4 = end; keep
when |mean cos(start, text) - mean cos(end, text)| > 0.003 and cos(start, end) < 0.95. Here every
frame is encoded as a one-frame clip by the chosen backbone, so the thresholds may need retuning.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from omegaconf import OmegaConf

import paxion  # noqa: F401  (registers backbones and datasets)
from actionbench_tools import saliency_keep
from paxion.data.transforms import normalize
from paxion.registry import registry


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--backbone", default="internvideo_mm_l14")
    parser.add_argument("--ckpt", help="official backbone checkpoint")
    parser.add_argument("--out", type=Path, help="default: ann_root/state_change_heavy_instance_filtering_<split>.json")
    args = parser.parse_args()
    backbone = registry.get("backbone", args.backbone)()
    if args.ckpt:
        backbone.load_official_checkpoint(args.ckpt)
    backbone.eval()
    pre = backbone.preprocess
    cls = registry.get("dataset", "actionbench_ssv2")
    cfg = OmegaConf.to_object(OmegaConf.merge({"paths": {"data_root": args.data_root}},
                                              {"d": OmegaConf.structured(cls.Config)}).d)
    ds = cls(cfg).build(args.split, num_frames=8, image_size=pre.image_size, training=False)
    result = {}
    for i in range(len(ds)):
        s = ds[i]
        frames = rearrange(normalize(s["video"], pre.mean, pre.std), "t c h w -> t 1 c h w")
        video = F.normalize(backbone.encode_video(frames)[0], dim=-1)  # (8, E): one embedding per frame
        text = F.normalize(backbone.encode_text(backbone.tokenize([s["text"]]))[0], dim=-1)[0]  # (E,)
        sims = (video @ text).tolist()
        start_end = float(F.cosine_similarity(video[:4].mean(0), video[4:].mean(0), dim=0))
        keep = saliency_keep(sims[:4], sims[4:], start_end)
        result[s["video_id"]] = {"clip_uid": s["video_id"], "start_state_2_t": sims[:4], "end_state_2_t": sims[4:],
                                 "v_2_v_sim": start_end, "if_keep": keep}
    out = args.out or Path(cfg.ann_root) / f"state_change_heavy_instance_filtering_{args.split}.json"
    out.write_text(json.dumps(result))
    print(f"{sum(v['if_keep'] for v in result.values())} of {len(result)} clips salient -> {out}")


if __name__ == "__main__":
    main()
