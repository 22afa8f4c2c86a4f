"""Open-vocabulary classification: template classifier, view ensembles, final line, protocols, model, data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from paxion.data.annotations import AnnotationError
from paxion.data.datasets.openvclip_lists import clip_indices, read_index_to_class, read_label_list
from paxion.systems.openvclip import OpenVCLIP, OpenVCLIPModelConfig
from paxion.systems.openvclip.objectives import OPENVCLIP_TEMPLATES, class_prompts, soft_cross_entropy
from paxion.tasks.open_vocab import (
    ensemble_views,
    final_line,
    protocol_summary,
    template_classifier,
    topk_accuracy,
)


@pytest.fixture(scope="module")
def model() -> OpenVCLIP:
    torch.manual_seed(0)
    return OpenVCLIP(OpenVCLIPModelConfig(backbone="tiny", num_frames=4)).eval()


def test_28_templates_and_template_major_prompts():
    assert len(OPENVCLIP_TEMPLATES) == 28 and OPENVCLIP_TEMPLATES[0] == "a photo of {}."
    prompts = class_prompts(["jumping", "diving"], OPENVCLIP_TEMPLATES[:2])
    assert prompts == ["a photo of jumping.", "a photo of diving.", "a photo of a person jumping.",
                       "a photo of a person diving."]


def test_template_classifier_rows_are_unit_norm_ensembles(model):
    names = ["push ups", "juggling balls", "archery"]
    classifier = template_classifier(model.encode_text_for_retrieval, names, OPENVCLIP_TEMPLATES)
    assert classifier.shape == (3, model.backbone.embed_dim)
    torch.testing.assert_close(classifier.norm(dim=-1), torch.ones(3))
    # by hand for one class: normalise each template's embedding, average, normalise
    per_template = torch.nn.functional.normalize(
        model.text_embeddings([t.format("archery") for t in OPENVCLIP_TEMPLATES]), dim=-1
    )
    expected = torch.nn.functional.normalize(per_template.mean(0), dim=-1)
    torch.testing.assert_close(classifier[2], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.build_classifier(names), classifier)


def test_planted_views_sum_gives_hand_computed_top1_top5():
    # 2 videos x 3 temporal views, 6 classes; video 0 has label 2, video 1 label 5
    logits = torch.tensor([
        [0.0, 1.0, 3.0, 0.0, 0.0, 0.0],  # v0 view0
        [0.0, 4.0, 0.0, 0.0, 0.0, 0.0],  # v1 view0
        [0.0, 2.0, 1.0, 0.0, 0.0, 0.1],  # v0 view1
        [0.0, 0.0, 0.0, 3.0, 0.0, 0.0],  # v1 view1
        [0.0, 1.5, 0.0, 0.0, 0.0, 0.0],  # v0 view2
        [1.0, 0.0, 0.0, 0.0, 0.0, 0.2],  # v1 view2
    ])
    video_index = torch.tensor([0, 1, 0, 1, 0, 1])
    labels = torch.tensor([2, 5, 2, 5, 2, 5])
    videos, summed, video_labels = ensemble_views(logits, video_index, labels, "sum")
    assert videos.tolist() == [0, 1] and video_labels.tolist() == [2, 5]
    # v0 sums: class1 4.5, class2 4.0 -> top-1 wrong (1), top-5 right; v1: class1 4, class3 3, class0 1,
    # class5 0.2, classes 2/4 0 -> label 5 is 4th: top-1 wrong, top-5 right
    assert summed[0].tolist() == pytest.approx([0.0, 4.5, 4.0, 0.0, 0.0, 0.1])
    assert topk_accuracy(summed, video_labels, 1) == 0.0
    assert topk_accuracy(summed, video_labels, 5) == 100.0
    assert topk_accuracy(summed, video_labels, 2) == 50.0
    _, maxed, _ = ensemble_views(logits, video_index, labels, "max")
    assert maxed[0].tolist() == pytest.approx([0.0, 2.0, 3.0, 0.0, 0.0, 0.1])  # max: v0 right at top-1
    assert topk_accuracy(maxed, video_labels, 1) == 50.0


def test_final_line_is_the_original_json_with_strings():
    line = final_line(83.456, 97.0)
    assert line == {"split": "test_final", "top1_acc": "83.46", "top5_acc": "97.00"}
    assert json.loads(json.dumps(line))["top1_acc"] == "83.46"


def test_protocol_mean_and_std_over_planted_splits():
    per_split = {
        "split1": {"top1_acc": "80.00", "top5_acc": "95.00"},
        "split2": {"top1_acc": 82.0, "top5_acc": 96.0},
        "split3": {"top1_acc": 84.0, "top5_acc": 97.0},
    }
    summary = protocol_summary(per_split)
    assert summary["top1_acc_mean"] == pytest.approx(82.0)
    assert summary["top1_acc_std"] == pytest.approx(math.sqrt(8 / 3))  # population std of 80, 82, 84
    assert summary["top5_acc_mean"] == pytest.approx(96.0)
    assert summary["splits"] == ["split1", "split2", "split3"]
    with pytest.raises(ValueError):
        protocol_summary({})


def test_model_trains_only_visual_and_logit_scale(model):
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("backbone.model.visual.", "backbone.model.logit_scale")) for n in trainable)
    assert "backbone.model.logit_scale" in trainable
    reference = model.reference_state_dict()
    assert set(reference) == {k for k in model.state_dict() if k.startswith("backbone.model.")}


def test_forward_loss_is_cross_entropy_of_frame_averaged_logits(model):
    model.set_class_names(["a", "b", "c"])
    video = torch.randint(0, 255, (2, 4, 3, 32, 32), dtype=torch.uint8)
    label = torch.tensor([0, 2])
    out = model({"video": model.normalize_video(video), "label": label})
    logits = model.classify(video)
    assert logits.shape == (2, 3)
    torch.testing.assert_close(out["loss"], torch.nn.functional.cross_entropy(logits, label))
    soft = torch.nn.functional.one_hot(label, 3).float()
    torch.testing.assert_close(soft_cross_entropy(logits, soft), out["loss"])
    # frame averaging: logits equal scale x mean over frames of the per-frame cosines
    with torch.no_grad():
        frames = torch.nn.functional.normalize(model.frame_embeddings(model.normalize_video(video)), dim=-1)
    expected = model.zero_shot_logit_scale() * (frames @ model.classifier.t()).mean(1)
    torch.testing.assert_close(logits, expected)
    embed = model.encode_video_for_retrieval(video)["embed"]
    scale = model.zero_shot_logit_scale()
    torch.testing.assert_close(model.retrieval_similarity(embed, model.classifier) * scale, logits)


def test_label_db_readers(tmp_path):
    index = tmp_path / "index2cls.json"
    index.write_text(json.dumps({"1": "diving", "0": "archery"}))
    assert read_index_to_class(index) == ["archery", "diving"]
    index.write_text(json.dumps({"0": "archery", "2": "diving"}))
    with pytest.raises(AnnotationError, match="without gaps"):
        read_index_to_class(index)
    lists = tmp_path / "test.csv"
    lists.write_text("val/archery/a b.mp4,0\nval/diving/x.mp4,1\n")
    assert read_label_list(lists, ",", 2) == [("val/archery/a b.mp4", 0), ("val/diving/x.mp4", 1)]
    lists.write_text("val/archery/a.mp4 0\n")
    with pytest.raises(AnnotationError, match="test.csv:1"):
        read_label_list(lists, ",", 2)
    lists.write_text("val/archery/a.mp4,5\n")
    with pytest.raises(AnnotationError, match="label 5"):
        read_label_list(lists, ",", 2)


def test_clip_span_indices():
    # 8 frames x stride 16 at 30 fps in a 30 fps video of 300 frames starting at 10: 10, 28, ..., 137
    idx = clip_indices(300, 8 * 16, 8, 10.0)
    assert idx[0] == 10 and idx[-1] == 137 and len(idx) == 8
    assert clip_indices(20, 128, 8, 0.0).max() == 19  # short video: clamped to its last frame


def test_paxion_style_model_without_frames_uses_pooled_embedding():
    torch.manual_seed(0)
    cfg = OpenVCLIPModelConfig(backbone="internvideo_tiny", num_frames=4,
                               trainable=["visual.", "visual_ln_post.", "visual_proj", "logit_scale"])
    model = OpenVCLIP(cfg).eval()
    pre = model.preprocess
    video = torch.randint(0, 255, (2, pre.num_frames, 3, pre.image_size, pre.image_size), dtype=torch.uint8)
    assert model.encode_video_for_retrieval(video)["embed"].shape == (2, 1, model.backbone.embed_dim)
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("backbone.transformer."))


def test_protocol_tool_reads_final_lines(tmp_path, capsys):
    from paxion.tools.open_vocab_protocol import main

    runs = []
    for i, (top1, top5) in enumerate([(80.0, 95.0), (82.0, 96.0), (84.0, 97.0)]):
        run = tmp_path / f"split{i + 1}"
        (run / "result").mkdir(parents=True)
        (run / "result" / "test_openvclip.json").write_text(json.dumps(final_line(top1, top5)))
        runs.append(str(run))
    assert main(runs + ["--output", str(tmp_path / "summary.json")]) == 0
    assert "82.00 ± 1.63" in capsys.readouterr().out
    assert json.loads((tmp_path / "summary.json").read_text())["top5_acc_mean"] == pytest.approx(96.0)
    assert main([str(tmp_path / "absent")]) == 1


# ----------------------------------------------------------------------------- SynthAction, end to end

CONFIG = Path(__file__).resolve().parents[1] / "configs/train/synthaction_openvclip/internvideo_synth.yaml"
TINY_MODEL = ["model.backbone=tiny", "model.num_frames=4", "model.trainable=[visual.,logit_scale]"]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from paxion.data.synthetic.generate import generate
    from paxion.data.synthetic.openvclip_label_db import write_label_db

    root = tmp_path_factory.mktemp("openvclip_synth")
    generate(root, seed=0, num_train=20, num_val=0, num_test=20, workers=1)
    write_label_db(root)
    return root


def test_synthaction_label_databases_split_classes(synth_root):
    db = synth_root / "SynthAction/openvclip_label_db"
    seen, unseen, full = (read_index_to_class(db / s / "index2cls.json") for s in ("seen", "unseen", "full"))
    assert len(seen) == len(unseen) == 10 and len(full) == 20
    assert not set(seen) & set(unseen) and set(seen) | set(unseen) == set(full)
    rows = read_label_list(db / "seen" / "train.csv", ",", 10)
    assert len(rows) == 10 and all(path.endswith(".mp4") for path, _ in rows)


def test_corrupt_clip_is_replaced_and_reported(synth_root, tmp_path):
    from paxion.registry import registry

    db = synth_root / "SynthAction/openvclip_label_db/unseen"
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "broken.mp4").write_bytes(b"not a video")
    first, label = read_label_list(db / "test.csv", ",", 10)[0]
    source = synth_root / "SSv2/video_clips/clips_downsampled_5fps_downsized_224x224" / first
    (videos / "good.mp4").write_bytes(source.read_bytes())
    (tmp_path / "test.csv").write_text(f"broken.mp4,{label}\ngood.mp4,{label}\n")
    builder_cls = registry.get("dataset", "openvclip_label_db")
    cfg = builder_cls.Config(ann_root=str(tmp_path), videos=str(videos), index_to_class=str(db / "index2cls.json"),
                             sampling_rate=1, target_fps=5.0, test_num_segment=3)
    dataset = builder_cls(cfg).build("test", num_frames=4, image_size=32, training=False)
    assert len(dataset) == 6 and dataset.class_names == read_index_to_class(db / "index2cls.json")
    sample = dataset[0]
    assert sample["video"].shape == (4, 3, 32, 32) and sample["label"] == label
    assert len(sample["skipped_videos"]) == 1 and "broken.mp4" in sample["skipped_videos"][0]["path"]
    cfg.strict = True
    with pytest.raises(Exception, match="broken.mp4"):
        builder_cls(cfg).build("test", num_frames=4, image_size=32, training=False)[0]


@pytest.mark.slow
def test_train_with_iwo_then_zero_shot_with_patching(synth_root, tmp_path):
    from paxion.cli.evaluate import main as evaluate_main
    from paxion.cli.train import main as train_main

    common = ["--cfg-path", str(CONFIG), f"paths.data_root={synth_root}", *TINY_MODEL, "run.batch_size_train=5"]
    train_dir = tmp_path / "train"
    train_main(common + [f"run.output_dir={train_dir}", "run.max_epoch=2", "techniques.iwo.reference=model",
                         "techniques.swa.start=1", "techniques.swa.end=2", "techniques.swa.apply=false"])
    line = json.loads((train_dir / "result" / "test_openvclip.json").read_text())
    assert line["split"] == "test_final" and isinstance(line["top1_acc"], str)
    assert (train_dir / "swa_1_2.pth").is_file()
    log = [json.loads(x) for x in (train_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("iwo_alpha" in r and 0.0 <= r["iwo_alpha"] <= 0.6 for r in log)
    unseen = synth_root / "SynthAction/openvclip_label_db/unseen"
    zero_shot = common + ["run.evaluate=true", f"datasets.openvclip_label_db.ann_root={unseen}",
                          f"datasets.openvclip_label_db.index_to_class={unseen / 'index2cls.json'}"]
    fine_tuned = evaluate_main(zero_shot + [f"run.output_dir={tmp_path / 'ft'}",
                                            f"run.load_ckpt_path={train_dir / 'latest.pth'}"])["test"]
    patched = evaluate_main(zero_shot + [f"run.output_dir={tmp_path / 'r1'}",
                                         f"run.load_ckpt_path={train_dir / 'latest.pth'}",
                                         "techniques.weight_patching.ratio=1.0"])["test"]
    original = evaluate_main(zero_shot + [f"run.output_dir={tmp_path / 'orig'}"])["test"]
    assert fine_tuned["num_videos"] == 10
    assert patched["top1_acc"] == original["top1_acc"] and patched["top5_acc"] == original["top5_acc"]


OPENVCLIP_CONFIGS = sorted(
    p for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")
    if ("openvclip" in p.parts[-2] or p.name.startswith("openvclip"))
    and not p.name.startswith("_") and p.parent.name not in ("datasets", "backbones")  # layers, not experiments
    and "actionbench" not in p.parts  # ActionBench probes of the release: tests/test_probe_systems.py
)


@pytest.mark.parametrize("path", OPENVCLIP_CONFIGS, ids=lambda p: p.name)
def test_openvclip_configs_build_model_and_techniques_at_tiny_size(path):
    from paxion.config import load_config
    from paxion.registry import registry
    from paxion.techniques import build_techniques

    cfg = load_config(path, ["model.backbone=tiny", "model.clip_ckpt=null", "model.release_ckpt=null",
                             "model.num_frames=4", "model.trainable=[visual.,logit_scale]"])
    model = registry.get("task", cfg.task.name)(cfg).build_model()
    techniques = build_techniques(cfg, model)
    assert cfg.model.arch == "openvclip" and cfg.run.agg_metric == "top1_acc"
    assert len(techniques) == len(cfg.techniques or {})
