"""Action recognition: multi-view merge on planted logits, recipe pieces, the classifier system, list data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from paxion.engine.checkpoint import model_state
from paxion.config import RunConfig
from paxion.data.annotations import AnnotationError
from paxion.data.datasets.ssv2_list import collate_actions, read_list
from paxion.modules.frozen_llm_block import FrozenLLMBlockConfig
from paxion.engine.optim import build_optimizer, build_schedule
from paxion.systems.videomae.model import VideoMAEClassifier, VideoMAEClassifierConfig
from paxion.systems.videomae.objectives import MixupConfig, mix_batch, random_erasing, smooth_one_hot
from paxion.tasks.action_recognition import merge_views, topk_correct

TINY_BLOCK = FrozenLLMBlockConfig(enable=True, d_llm=16, n_heads=2, multiple_of=8)


def _model(block: bool = False, **kw: object) -> VideoMAEClassifier:
    torch.manual_seed(0)
    kw.setdefault("llm_block", TINY_BLOCK if block else FrozenLLMBlockConfig())
    cfg = VideoMAEClassifierConfig(encoder="videomae_vit_tiny", num_classes=6, num_frames=4, image_size=32, **kw)
    return VideoMAEClassifier(cfg)


# ---------------------------------------------------------------------------------------- multi-view merge


def test_merge_of_planted_views_gives_hand_computed_top1_top5() -> None:
    # 2 clips x 2 temporal x 3 crops, 7 classes; view logits are log-probabilities so softmax returns them
    probs = {
        0: [[.40, .30, .10, .10, .05, .03, .02]] * 3 + [[.10, .50, .20, .10, .05, .03, .02]] * 3,  # mean: class 1
        1: [[.05, .05, .05, .05, .10, .30, .40]] * 6,  # label 2: 6th best of 7 -> wrong at top-5 as well
    }
    logits, clip, view, label = [], [], [], []
    for c, rows in probs.items():
        for v, p in enumerate(rows):
            logits.append(torch.tensor(p).log())
            clip.append(c)
            view.append([v // 3, v % 3])
            label.append([1, 2][c])
    # a duplicate of clip 0's first view with different logits (distributed padding): must be ignored
    logits.append(torch.tensor([0.97, .005, .005, .005, .005, .005, .005]).log())
    clip.append(0)
    view.append([0, 0])
    label.append(1)
    clips, merged, labels = merge_views(
        torch.stack(logits), torch.tensor(clip), torch.tensor(view), torch.tensor(label)
    )
    assert clips.tolist() == [0, 1] and labels.tolist() == [1, 2]
    expected0 = torch.tensor([.25, .40, .15, .10, .05, .03, .02])
    torch.testing.assert_close(merged[0], expected0)
    assert topk_correct(merged, labels, 1).tolist() == [True, False]
    assert topk_correct(merged, labels, 5).tolist() == [True, False]
    # clip 1: label 2 ties with classes 0, 1, 3 at 0.05 -> top-5 holds 6, 5, 4 and two of the tied ones
    assert topk_correct(merged[1:], torch.tensor([6]), 1).tolist() == [True]


def test_task_metrics_single_view_and_merged(tmp_path: Path) -> None:
    from paxion.config import load_config
    from paxion.tasks.action_recognition import ActionRecognitionTask

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs/train/synthaction_actions/vit_mini.yaml",
                      [f"run.output_dir={tmp_path}"])
    task = ActionRecognitionTask(cfg)
    clip0 = [[.40, .30, .10, .10, .05, .03, .02]] * 3 + [[.10, .50, .20, .10, .05, .03, .02]] * 3
    clip1 = [[.04, .05, .03, .06, .10, .30, .42]] * 6  # label 2 is the least likely class: wrong at top-5
    outputs = {"idx": torch.arange(12), "logits": torch.tensor(clip0 + clip1).log(),
               "label": torch.tensor([1] * 6 + [2] * 6), "video_index": torch.tensor([0] * 6 + [1] * 6),
               "view": torch.tensor([[v // 3, v % 3] for v in range(6)] * 2)}
    metrics = task.compute_metrics(outputs, "test", tmp_path)
    assert metrics["acc1"] == pytest.approx(100 * 3 / 12) and metrics["acc5"] == pytest.approx(50.0)
    assert metrics["final_top1"] == pytest.approx(50.0) and metrics["final_top5"] == pytest.approx(50.0)
    assert metrics["agg_metrics"] == metrics["final_top1"] and metrics["num_videos"] == 2
    single = {k: v[[0, 6]] for k, v in outputs.items()}
    single["view"] = torch.zeros(2, 2, dtype=torch.long)
    metrics = task.compute_metrics(single, "val", tmp_path)
    assert "final_top1" not in metrics and metrics["acc1"] == 0.0 and metrics["agg_metrics"] == 0.0


# ---------------------------------------------------------------------------------------- recipe pieces


def test_layer_decay_groups_and_optimizer_hook() -> None:
    model = _model(block=True, layer_decay=0.5)
    groups = model.optimizer_param_groups(0.05)
    depth = model.encoder.num_layers()  # 2
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["encoder.patch_embed.proj.weight"]["lr_scale"] == 0.5 ** (depth + 1)
    assert by_name["encoder.blocks.0.attn.qkv.weight"]["lr_scale"] == 0.5 ** depth
    assert by_name["encoder.blocks.1.mlp.fc1.weight"]["lr_scale"] == 0.5 ** (depth - 1)
    assert by_name["encoder.head.weight"]["lr_scale"] == 1.0 and by_name["llm_block.m1.weight"]["lr_scale"] == 1.0
    assert by_name["encoder.blocks.0.attn.q_bias"]["weight_decay"] == 0.0
    assert by_name["encoder.blocks.0.norm1.weight"]["weight_decay"] == 0.0
    assert by_name["encoder.blocks.0.attn.qkv.weight"]["weight_decay"] == 0.05
    assert not any(n.startswith("llm_block.llm.") for n in by_name)  # frozen: never optimised
    run = RunConfig(init_lr=1e-3, weight_decay=0.05, lr_sched="warmup_cosine", max_epoch=2)
    optimizer = build_optimizer(model, run)
    build_schedule(optimizer, run, iters_per_epoch=4).step(0, 0)
    lrs = {n: g["lr"] for g in optimizer.param_groups for n in g["names"]}
    assert lrs["encoder.patch_embed.proj.weight"] == pytest.approx(1e-3 * 0.5 ** 3)
    assert lrs["encoder.head.bias"] == pytest.approx(1e-3)


def test_label_smoothing_and_mixup_targets() -> None:
    labels = torch.tensor([0, 3, 1, 2])
    smooth = smooth_one_hot(labels, 5, 0.1)
    assert smooth[1, 3] == pytest.approx(0.92) and smooth[1, 0] == pytest.approx(0.02)
    video = torch.arange(4.0).view(4, 1, 1, 1, 1).expand(4, 2, 3, 8, 8).contiguous()
    only_mixup = MixupConfig(mixup_alpha=0.8, cutmix_alpha=0.0)
    mixed, targets, lam = mix_batch(video, labels, 5, 0.1, only_mixup, np.random.default_rng(0))
    assert torch.allclose(mixed[0], torch.full_like(mixed[0], 3 * (1 - lam)))  # sample 0 blended with sample 3
    torch.testing.assert_close(targets, lam * smooth + (1 - lam) * smooth.flip(0))
    assert torch.allclose(targets.sum(1), torch.ones(4))
    only_cutmix = MixupConfig(mixup_alpha=0.0, cutmix_alpha=1.0)
    mixed, targets, lam = mix_batch(video, labels, 5, 0.0, only_cutmix, np.random.default_rng(1))
    pasted = (mixed[0] == 3).float().mean().item()  # share of sample 0 replaced by sample 3, same in every frame
    assert pasted == pytest.approx(1 - lam) and torch.equal(mixed[0, 0], mixed[0, 1])
    assert targets[0, 0] == pytest.approx(lam) and targets[0, 2] == pytest.approx(1 - lam)
    with pytest.raises(ValueError, match="even batch"):
        mix_batch(video[:3], labels[:3], 5, 0.1, only_mixup)


def test_random_erasing_per_frame() -> None:
    video = torch.zeros(3, 4, 3, 16, 16)
    assert torch.equal(random_erasing(video, 0.0), video)
    torch.manual_seed(0)
    erased = random_erasing(video, 1.0)
    changed = (erased != 0).flatten(2).any(-1)  # (B, T): every frame erased
    assert changed.all()
    area = (erased[:, :, 0] != 0).float().mean((-1, -2))
    assert (area >= 0.02 * 0.5).all() and (area <= 1 / 3 + 0.1).all()
    assert not torch.equal(erased[0, 0] != 0, erased[0, 1] != 0)  # boxes drawn per frame


# ---------------------------------------------------------------------------------------- the classifier


def test_classifier_forward_classify_and_frozen_block_saved() -> None:
    model = _model(block=True)
    video = torch.randint(0, 256, (4, 4, 3, 32, 32), dtype=torch.uint8)
    batch = {"video_input": video, "label": torch.tensor([0, 1, 2, 3])}
    model.train()
    out = model(batch)
    out["loss"].backward()
    assert model.llm_block.m1.weight.grad is not None and model.encoder.blocks[0].attn.qkv.weight.grad is not None
    assert all(p.grad is None for p in model.llm_block.llm.parameters())
    model.eval()
    assert model.classify(batch["video_input"]).shape == (4, 6)
    counts = model.parameter_counts()
    assert counts["frozen"] == model.llm_block.frozen_parameters() > 0
    full = model_state(model, full=True)
    assert any(k.startswith("llm_block.llm.layers.0.attention.wq") for k in full)  # run.save_full_model: true
    assert not any(k.startswith("llm_block.llm.") for k in model_state(model, full=False))


def test_block_inserted_after_a_chosen_encoder_block() -> None:
    model = _model(block=True, llm_block=FrozenLLMBlockConfig(**{**TINY_BLOCK.__dict__, "insert_after": 0})).eval()
    assert model.insert_after == 0
    calls: list[int] = []
    model.encoder.blocks[1].register_forward_pre_hook(lambda m, a: calls.append(1))
    model.llm_block.register_forward_pre_hook(lambda m, a: calls.append(0))
    model.classify(torch.zeros(1, 4, 3, 32, 32, dtype=torch.uint8))
    assert calls == [0, 1]


def test_lm4visualencoding_finetuned_file_loads(tmp_path: Path) -> None:
    src = _model(block=True)
    original = {}
    for key, value in src.state_dict().items():
        key = key.replace("encoder.", "", 1) if key.startswith("encoder.") else key
        key = key.replace("llm_block.m1.", "llama_dim_mapper1.").replace("llm_block.m2.", "llama_dim_mapper2.")
        original[key.replace("llm_block.llm.", "llama.")] = value.clone()
    torch.save({"model": original, "epoch": 1}, tmp_path / "checkpoint-best.pth")
    torch.manual_seed(9)
    cfg = VideoMAEClassifierConfig(**{**src.cfg.__dict__, "pretrained": str(tmp_path / "checkpoint-best.pth")})
    dst = VideoMAEClassifier(cfg)
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(dst.eval().classify(video), src.eval().classify(video))


# ---------------------------------------------------------------------------------------- data


def test_list_reader_and_collate(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("a/1.webm 3\nb/2.webm 0\n")
    assert read_list(path, 174) == [("a/1.webm", 3), ("b/2.webm", 0)]
    path.write_text("a/1.webm 3\nbroken-line\n")
    with pytest.raises(AnnotationError, match=r"train.csv:2"):
        read_list(path, 174)
    path.write_text("a/1.webm 200\n")
    with pytest.raises(AnnotationError, match="label 200"):
        read_list(path, 174)
    samples = [{"video": torch.zeros(2, 4, 3, 8, 8, dtype=torch.uint8), "label": i, "idx": i, "video_index": i,
                "view": (0, 0), "skipped_videos": []} for i in range(3)]
    batch = collate_actions(samples)
    assert batch["video_input"].shape == (6, 4, 3, 8, 8) and batch["label"].tolist() == [0, 0, 1, 1, 2, 2]


# ---------------------------------------------------------------------------------------- real clips


@pytest.fixture(scope="module")
def synth_lists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from paxion.data.synthetic import generate
    from paxion.data.synthetic.action_lists import write_action_lists

    root = tmp_path_factory.mktemp("synth_actions")
    generate(root, seed=2, num_train=20, num_val=6, num_test=3, frames=8, size=32, workers=1)
    write_action_lists(root)
    return root


def test_synthaction_lists_and_views(synth_lists: Path) -> None:
    from paxion.data.datasets.ssv2_list import ActionList, ActionListConfig
    from paxion.data.synthetic import load_specs
    from paxion.data.synthetic.action_lists import LISTS, class_of, videos_dir

    specs = {s["id"]: s for s in load_specs(synth_lists)}
    rows = read_list(synth_lists / LISTS / "train.csv", 20)
    assert len(rows) == 20 and all(label == class_of(specs[int(p.split(".")[0])]["action"]) for p, label in rows)
    assert len({label for _, label in rows}) == 20  # balanced: every template once
    builder = ActionList(ActionListConfig(ann_root=str(synth_lists / LISTS), videos=str(videos_dir(synth_lists)),
                                          num_classes=20, num_sample=2, short_side_size=16))
    train = builder.build("train", num_frames=4, image_size=16, training=True)
    sample = train[(3, 77)]
    assert sample["video"].shape == (2, 4, 3, 16, 16) and sample["video"].dtype == torch.uint8
    assert torch.equal(train[(3, 77)]["video"], sample["video"])  # seeded: reproducible
    test = builder.build("test", num_frames=4, image_size=16, training=False)
    assert len(test) == 3 * 6
    views = {tuple(test[i]["view"]) for i in range(len(test)) if test[i]["video_index"] == 1}
    assert views == {(c, k) for c in range(2) for k in range(3)}
    # items are ordered (temporal view, crop, clip) as the original: item 9 = clip 0, temporal 1, crop 0
    assert test[9]["video_index"] == 0 and tuple(test[9]["view"]) == (1, 0)
    t0, t1 = test[0]["video"], test[9]["video"]
    assert t0.shape == (4, 3, 16, 16) and not torch.equal(t0, t1)


@pytest.mark.slow
def test_one_tiny_epoch_end_to_end(synth_lists: Path, tmp_path: Path) -> None:
    import json

    from paxion.data.synthetic.action_lists import LISTS, videos_dir
    from paxion.cli.train import main

    cfg = Path(__file__).resolve().parents[1] / "configs/train/synthaction_actions/vit_mini_llm.yaml"
    out = tmp_path / "run"
    main(["--cfg-path", str(cfg), f"datasets.action_list.ann_root={synth_lists / LISTS}",
          f"datasets.action_list.videos={videos_dir(synth_lists)}", "model.encoder=videomae_vit_tiny",
          "model.num_frames=4", f"run.output_dir={out}", "run.max_epoch=1", "run.batch_size_train=4",
          "run.num_workers=0", "run.warmup_steps=2", "model.mixup.prob=1.0", "model.random_erasing=0.25",
          "datasets.action_list.num_sample=2", "datasets.action_list.rand_augment=rand-m7-n4-mstd0.5-inc1"])
    test = json.loads((out / "result" / "test_output.json").read_text())
    assert test["num_videos"] == 3 and test["num_samples"] == 18 and 0 <= test["final_top1"] <= 100
    saved = torch.load(out / "latest.pth", weights_only=True)["model"]
    assert any(k.startswith("llm_block.llm.layers.0.") for k in saved)  # frozen block in the checkpoint


@pytest.mark.parametrize("name,dim,llama,decay", [
    ("videomae_vit_s", 384, False, 0.7), ("videomae_vit_s_llama", 384, True, 0.7),
    ("videomae_vit_b", 768, False, 0.75), ("videomae_vit_b_llama", 768, True, 0.75),
])
def test_ssv2_configs_build_full_size_on_meta(name: str, dim: int, llama: bool, decay: float) -> None:
    from paxion.config import load_config, section

    cfg = load_config(Path(__file__).resolve().parents[1] / f"configs/train/ssv2/{name}.yaml",
                      ["model.pretrained=null", "model.llm_block.weights=null"])
    with torch.device("meta"):
        model = VideoMAEClassifier(section(cfg, "model"))
    vit = 3 * 2 * 16 * 16 * dim + dim + 12 * (12 * dim * dim + 12 * dim) + 2 * dim + 174 * dim + 174
    llama_layer = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096
    counts = model.parameter_counts()
    assert counts["trainable"] == vit + (2 * dim * 4096 if llama else 0)
    assert counts["frozen"] == (llama_layer + 4096 if llama else 0)
    assert model.cfg.layer_decay == decay and (model.insert_after == 11 if llama else model.llm_block is None)
    assert cfg.run.save_full_model == llama
