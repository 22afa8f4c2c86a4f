"""Open-VCLIP's story in miniature on a CPU: seen/unseen action classes, plain vs IWO, SWA, weight patching.

    python benchmarks/openvclip_demo.py [--epochs 6] [--out .cache/paxion/openvclip_demo]

1. SynthAction (400 training, 200 test clips of 8 x 32^2) and its seen/unseen label databases (10 + 10
   action classes) under .cache/paxion/synthaction_openvclip (made once);
2. the shipped tiny InternVideo fine-tuned on the *seen* classes as a 28-template prompt classifier,
   plain and with IWO (alpha ~ U(0, 0.6), loss ratio 0.5), each also averaged over its last epochs (SWA);
3. every weight set patched towards the shipped model at r = 0, 0.25, 0.5, 0.75, 1 (r = 1 is the shipped
   model itself) and scored zero-shot on the *unseen* classes and closed-set on the *seen* ones
   (test clips, 3 temporal views summed), top-1 %, with the task's own classifier / ensemble functions
   on clips decoded once (the runner path of the same evaluation is configs/.../internvideo_synth.yaml
   with run.evaluate=true);
4. the table (stdout and <out>/table.md), the results (<out>/results.json) and the sweep plot
   (<out>/patching_sweep.png).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/train/synthaction_openvclip/internvideo_synth.yaml"
RATIOS = (0.0, 0.25, 0.5, 0.75, 1.0)
IWO = ["techniques.iwo.reference=model", "techniques.iwo.sample_low=0.0", "techniques.iwo.sample_high=0.6",
       "techniques.iwo.loss_ratio=0.5"]


def ensure_data(data_root: Path) -> None:
    from paxion.data.synthetic.generate import generate, load_specs
    from paxion.data.synthetic.openvclip_label_db import write_label_db

    if load_specs(data_root) is None:
        generate(data_root, seed=0, num_train=400, num_val=0, num_test=200)
    write_label_db(data_root)


def train(name: str, out: Path, data_root: Path, epochs: int, extra: list[str]) -> Path:
    from paxion.cli.train import main

    run_dir = out / name
    swa = [f"techniques.swa.start={max(1, epochs // 2)}", f"techniques.swa.end={epochs}", "techniques.swa.apply=false"]
    main(["--cfg-path", str(CONFIG), f"paths.data_root={data_root}", f"run.output_dir={run_dir}",
          f"run.max_epoch={epochs}", "run.test_splits=[]", *swa, *extra])
    return run_dir


def load_model(weights: dict[str, str], data_root: Path):
    """The demo's Open-VCLIP model with fine-tuned weights: a runner checkpoint or an SWA state file."""
    from paxion.engine.checkpoint import load_checkpoint, load_model_weights
    from paxion.config import load_config, section
    from paxion.registry import registry

    cfg = load_config(CONFIG, [f"paths.data_root={data_root}"])
    model = registry.get("model", "openvclip")(section(cfg, "model")).eval()
    if "runner" in weights:
        load_model_weights(model, load_checkpoint(weights["runner"])["model"], source=weights["runner"])
    else:
        model.load_state_file(weights["state"])
    return model, cfg


def test_views(cfg, classes: str, data_root: Path, model) -> tuple[list[str], list[dict]]:
    """Class names and every test view of a class set, decoded once (3 temporal views per clip)."""
    from paxion.config import section
    from paxion.registry import registry

    db = data_root / "SynthAction/openvclip_label_db" / classes
    ds_cfg = section(cfg, "datasets.openvclip_label_db")
    ds_cfg.ann_root, ds_cfg.index_to_class = str(db), str(db / "index2cls.json")
    builder = registry.get("dataset", "openvclip_label_db")(ds_cfg)
    pre = model.preprocess
    dataset = builder.build("test", num_frames=pre.num_frames, image_size=pre.image_size, training=False)
    return dataset.class_names, [dataset[i] for i in range(len(dataset))]


@torch.no_grad()
def top1(model, names: list[str], views: list[dict], ratio: float) -> float:
    """Zero-shot / closed-set top-1 % with the weights patched at ``ratio``: the task's own functions."""
    from paxion.tasks.open_vocab import ensemble_views, template_classifier, topk_accuracy
    from paxion.techniques.base import interpolate_, restore_

    saved = interpolate_(model, model.reference_state_dict(), ratio)
    try:
        classifier = template_classifier(model.encode_text_for_retrieval, names, model.templates)
        video = torch.stack([v["video"] for v in views])
        embeds = torch.cat([model.encode_video_for_retrieval(chunk)["embed"] for chunk in video.split(64)])
        logits = model.zero_shot_logit_scale() * model.retrieval_similarity(embeds, classifier)
        index = torch.tensor([v["video_index"] for v in views])
        labels = torch.tensor([v["label"] for v in views])
        _, summed, video_labels = ensemble_views(logits, index, labels, "sum")
        return topk_accuracy(summed, video_labels, 1)
    finally:
        restore_(model, saved)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
    for ax, classes, title in ((axes[0], "unseen", "zero-shot, unseen classes"), (axes[1], "seen", "closed-set, seen")):
        for name, row in results.items():
            ax.plot(RATIOS, [row[classes][str(r)] for r in RATIOS], marker="o", label=name)
        ax.set_title(title)
        ax.set_xlabel("patching ratio r (0 fine-tuned, 1 shipped model)")
        ax.set_ylabel("top-1 %")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(results: dict) -> str:
    head = "| weights | " + " | ".join(f"r={r:g} unseen / seen" for r in RATIOS) + " |"
    lines = [head, "|" + "---|" * (len(RATIOS) + 1)]
    for name, row in results.items():
        cells = [f"{row['unseen'][str(r)]:.1f} / {row['seen'][str(r)]:.1f}" for r in RATIOS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / ".cache/paxion/openvclip_demo")
    parser.add_argument("--data-root", type=Path, default=REPO / ".cache/paxion/synthaction_openvclip")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    logging.disable(logging.INFO)
    ensure_data(args.data_root)
    runs = {"plain": train("plain", args.out, args.data_root, args.epochs, []),
            "IWO": train("iwo", args.out, args.data_root, args.epochs, IWO)}
    start = max(1, args.epochs // 2)
    weight_sets = {}
    for name, run_dir in runs.items():
        weight_sets[name] = {"runner": str(run_dir / "latest.pth")}
        weight_sets[f"{name} + SWA {start}-{args.epochs}"] = {"state": str(run_dir / f"swa_{start}_{args.epochs}.pth")}
    results: dict = {}
    views: dict = {}
    for name, weights in weight_sets.items():
        model, cfg = load_model(weights, args.data_root)
        results[name] = {}
        for classes in ("unseen", "seen"):
            if classes not in views:
                views[classes] = test_views(cfg, classes, args.data_root, model)
            names, clips = views[classes]
            results[name][classes] = {str(r): top1(model, names, clips, r) for r in RATIOS}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    text = table(results)
    (args.out / "table.md").write_text(text + "\n")
    plot(results, args.out / "patching_sweep.png")
    print(text)
    print(f"\nplot: {args.out / 'patching_sweep.png'}")


if __name__ == "__main__":
    main()
