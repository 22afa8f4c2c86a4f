"""ALPRO's metric formats (planted matrices), its every-pair retrieval protocol, QA classification and data."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from paxion.data.annotations import AnnotationError
from paxion.data.synthetic.alpro_formats import generate_alpro, videos_dir
from paxion.tasks.metrics import first_hit_ranks
from paxion.registry import registry
from paxion.systems.alpro import Alpro, AlproConfig
from paxion.tasks import alpro_metrics
from paxion.tasks.qa_classification import QAClassificationTask, collate_qa
from paxion.tasks.retrieval import RetrievalTask

# text x video scores; ground truth on the diagonal; no ties
T2V = torch.tensor([
    [0.90, 0.10, 0.20, 0.30],
    [0.50, 0.40, 0.60, 0.05],
    [0.30, 0.20, 0.25, 0.00],
    [0.95, 0.80, 0.70, 0.10],
])


def _sorted_ranks(scores: torch.Tensor) -> torch.Tensor:
    """The original's way: sort each row descending and find the diagonal ground truth (0-based)."""
    order = scores.argsort(dim=1, descending=True)
    return (order == torch.arange(len(scores))[:, None]).float().argmax(1)


def test_planted_matrix_gives_alpros_exact_numbers() -> None:
    gt = torch.eye(4, dtype=torch.bool)
    t2v, v2t = first_hit_ranks(T2V, gt), first_hit_ranks(T2V.t(), gt)
    assert torch.equal(t2v, _sorted_ranks(T2V)) and torch.equal(v2t, _sorted_ranks(T2V.t()))
    found = alpro_metrics.retrieval_metrics(v2t, t2v)
    assert found == {
        "text2video": {"r1": 25.0, "r5": 100.0, "r10": 100.0, "medianR": 2.5, "meanR": 2.5},  # ranks 1,3,2,4
        "video2text": {"r1": 0.0, "r5": 100.0, "r10": 100.0, "medianR": 2.0, "meanR": 2.25},  # ranks 2,2,3,2
    }


def test_qa_metrics_exact_with_empty_types_and_out_of_vocabulary() -> None:
    predicted = ["left", "up", "dog", "man", "down"]
    answers = ["left", "up", "cat", "man", "zebra"]  # "zebra" is outside ans2label: never predicted
    types = ["what", "what", "what", "who", "where"]
    found = alpro_metrics.qa_metrics(predicted, answers, types)
    assert found == {
        "overall_acc": 60.0, "what_acc": 66.67, "who_acc": 100.0, "how_acc": 0, "where_acc": 0.0, "when_acc": 0,
        "ratios": {"what_ratio": [60.0, 3], "who_ratio": [20.0, 1], "how_ratio": [0.0, 0],
                   "where_ratio": [20.0, 1], "when_ratio": [0.0, 0]},
    }
    assert sum(v[0] for v in found["ratios"].values()) == 100.0
    with pytest.raises(ValueError, match="why"):
        alpro_metrics.qa_metrics(["a"], ["a"], ["why"])


def _task(cls, **task):  # noqa: ANN001, ANN202
    cfg = OmegaConf.create({"task": OmegaConf.structured(cls.Config(**task)), "datasets": {"x": {}},
                            "run": {"train_splits": [], "evaluate": True}})
    return cls(cfg)


def _tiny(**kw) -> Alpro:
    torch.manual_seed(0)
    return Alpro(AlproConfig(size="tiny", num_frames=2, **kw)).eval()


TEXTS = ["a red circle moves left", "a red circle moves right", "a blue square", "green cross rising"]


@pytest.mark.parametrize("rerank_all", [True, False])
def test_retrieval_task_alpro_protocol_and_format(tmp_path: Path, rerank_all: bool) -> None:
    model = _tiny()
    task = _task(RetrievalTask, metric_format="alpro", rerank_all=rerank_all, k_test=2)
    task.model = model
    task.datasets["test"] = SimpleNamespace(texts=TEXTS)
    video = torch.randint(0, 255, (3, 2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = task.eval_step(model, {"video_input": video, "idx": torch.arange(3), "text_idx": torch.tensor([0, 1, 3])})
    metrics = task.compute_metrics(out, "test", tmp_path)
    written = json.loads((tmp_path / "result" / "test_retrieval_alpro.json").read_text())
    assert written["split"] == "test" and set(written["text2video"]) == {"r1", "r5", "r10", "medianR", "meanR"}
    assert metrics["test/text2video/meanR"] == written["text2video"]["meanR"]
    state = {"embed": out["video"], **{k[6:]: v for k, v in out.items() if k.startswith("video.")}}
    text = model.encode_text_for_retrieval(TEXTS)
    if rerank_all:  # every pair by softmax(VTM)[1], directly
        full = torch.stack([model.score_pairs({k: v[[i] * 4] for k, v in state.items()}, text) for i in range(3)])
        gt = torch.zeros(3, 4, dtype=torch.bool)
        gt[[0, 1, 2], [0, 1, 3]] = True
        expected = alpro_metrics.retrieval_metrics(first_hit_ranks(full, gt), first_hit_ranks(full.t()[gt.any(0)],
                                                                                               gt.t()[gt.any(0)]))
        assert {k: written[k] for k in ("text2video", "video2text")} == expected


def test_all_pair_scores_fills_every_cell() -> None:
    video = {"embed": torch.arange(3.0)[:, None]}
    text = {"embed": torch.arange(4.0)[:, None] * 10}
    scores = alpro_metrics.all_pair_scores(lambda v, t: (v["embed"] + t["embed"]).squeeze(1), video, text, 5,
                                           torch.device("cpu"))
    torch.testing.assert_close(scores, torch.arange(3.0)[:, None] + torch.arange(4.0)[None] * 10)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("alpro")
    generate_alpro(out, seed=0, num_train_pairs=4, num_test_pairs=3, frames=8, size=32, workers=1)
    return out


def _builder(name: str, synth: Path, sub: str, **cfg):  # noqa: ANN202
    return registry.get("dataset", name)({"txt_dir": str(synth / "alpro" / sub / "txt"),
                                          "videos": str(videos_dir(synth)), **cfg})


def test_alpro_jsonl_builders(synth: Path) -> None:
    ret = _builder("alpro_retrieval", synth, "ret")
    test = ret.build("test", num_frames=2, image_size=32, training=False)
    assert len(test) == 6 and len(test.texts) == 12 and test[1]["text_ids"] == [2, 3]
    train = ret.build("train", num_frames=2, image_size=32, training=True)
    assert [train.records[i]["video_idx"] for i in range(4)] == [0, 0, 1, 1]
    qa = _builder("alpro_qa", synth, "qa")
    val = qa.build("val", num_frames=2, image_size=32, training=False)
    sample = val[0]
    assert sample["answer_type"] in alpro_metrics.QA_TYPES and sample["video"].shape == (2, 3, 32, 32)
    batch = collate_qa([val[0], val[1]])
    assert batch["label"].dtype == torch.int64 and len(batch["question_input"]) == 2
    assert val.ans2label and all(r["label"] == val.ans2label.get(r["answer_text"], -100) for r in val.records)
    train_qa = qa.build("train", num_frames=2, image_size=32, training=True)  # through the random augmentation
    assert type(train_qa).__name__ == "AugmentedClips" and train_qa.ans2label == val.ans2label
    assert train_qa[0]["video"].shape == (2, 3, 32, 32) and train_qa[0]["video"].dtype == torch.uint8
    webvid = _builder("alpro_webvid", synth, "webvid", train_file="train.csv", val_file="val.csv")
    assert len(webvid.load("train").records) == 8
    (synth / "bad.jsonl").write_text('{"question": "q", "answer": "a", "video_id": "1", "answer_type": "why"}\n')
    bad = registry.get("dataset", "alpro_qa")({"txt_dir": str(synth / "alpro" / "qa" / "txt"), "videos": "x",
                                              "val_file": str(synth / "bad.jsonl")})
    with pytest.raises(AnnotationError, match="bad.jsonl:1"):
        bad.load("val")


def test_qa_classification_task_end_to_end(synth: Path, tmp_path: Path) -> None:
    qa = _builder("alpro_qa", synth, "qa")
    val = qa.build("val", num_frames=2, image_size=32, training=False)
    model = _tiny(objectives=["qa"], num_answers=len(val.ans2label))
    task = _task(QAClassificationTask)
    task.datasets["val"] = val
    batch = collate_qa([val[i] for i in range(4)])
    batch["answer_text"][3] = "never-an-answer"  # out of vocabulary: must count as wrong
    out = task.eval_step(model, batch)
    expected = model.answer_logits(batch["video_input"], batch["question_input"]).argmax(-1)
    assert torch.equal(out["pred"], expected)
    metrics = task.compute_metrics(out, "val", tmp_path)
    labels = {v: k for k, v in val.ans2label.items()}
    correct = [labels[int(p)] == a for p, a in zip(expected, batch["answer_text"])]
    assert metrics["val/overall_acc"] == round(100 * sum(correct) / 4, 2) == metrics["agg_metrics"]
    written = json.loads((tmp_path / "result" / "val_qa_alpro.json").read_text())
    assert written["split"] == "val" and set(written["ratios"]) == {f"{t}_ratio" for t in alpro_metrics.QA_TYPES}


def test_temporal_consistent_randaugment() -> None:
    from paxion.data.randaugment import OPS, TemporalConsistentRandomAugment

    frame = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    shifted = OPS["TranslateX"](frame, 5)  # OpenCV's forward map x - 5: content 5 pixels left, grey fill
    assert torch.equal(shifted[..., :11], frame[..., 5:]) and shifted[..., 11:].eq(128).all()
    sheared = OPS["ShearX"](frame, 5)
    assert torch.equal(sheared[:, :, 0], frame[:, :, 0])  # row 0 does not move
    assert torch.equal(OPS["HorizontalFlip"](frame, 5), frame.flip(-1))
    for name in ("Contrast", "Brightness", "Sharpness"):  # factor 1.0 at M=5, as the original
        assert torch.equal(OPS[name](frame, 5), frame)
    aug = TemporalConsistentRandomAugment()
    clip = frame.repeat(4, 1, 1, 1)
    changed = 0
    for seed in range(10):
        out = aug(clip, torch.Generator().manual_seed(seed))
        assert all(torch.equal(out[0], out[i]) for i in range(1, 4))  # the same ops on every frame
        changed += int(not torch.equal(out, clip))
    assert changed > 0
    with pytest.raises(ValueError, match="Blur"):
        TemporalConsistentRandomAugment(augs=["Blur"])


REPO = Path(__file__).resolve().parents[1]


def _is_alpro_system(path: Path) -> bool:
    """ALPRO's own experiments (model.arch alpro); Paxion's configs over ALPRO's towers are tested elsewhere."""
    from paxion.config import load_config

    if "alpro" not in path.as_posix() or path.name.startswith("_"):
        return False
    return (load_config(path).get("model") or {}).get("arch") == "alpro"


ALPRO_CONFIGS = sorted(p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml")
                       if _is_alpro_system(p))


@pytest.mark.parametrize("path", ALPRO_CONFIGS)
def test_alpro_config_builds_its_task_and_a_tiny_model(path: str) -> None:
    from paxion.config import load_config

    cfg = load_config(REPO / "configs" / path, ["model.size=tiny", "model.pretrained=null",
                                                "model.prompter_checkpoint=null", "model.prompts.entities=[a,b]"])
    task = registry.get("task", cfg.task.name)(cfg)
    model = task.build_model()
    assert model.cfg.arch == "alpro" and model.preprocess.num_frames == cfg.model.num_frames
    builder = registry.get("dataset", task.dataset_name())
    assert set(cfg.run.test_splits + cfg.run.valid_splits + cfg.run.train_splits) <= set(
        builder(cfg.datasets[task.dataset_name()]).splits)
    registry.get("lr_schedule", cfg.run.lr_sched)  # ALPRO's warmup-linear schedules are registered


def test_alpro_linear_schedule_warms_up_then_decays_to_zero() -> None:
    from paxion.systems.alpro.schedule import WarmupLinearSchedule

    run = SimpleNamespace(init_lr=1.0, min_lr=0.0, warmup_lr=-1.0, warmup_steps=0, max_epoch=2)
    param = torch.nn.Parameter(torch.zeros(1))
    sched = WarmupLinearSchedule(torch.optim.SGD([param], lr=1.0), run, iters_per_epoch=10, ratio=0.1)
    lrs = [sched.lr_at(e, i) for e in range(2) for i in range(10)]
    assert sched.warmup == 2 and lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[-1] == 0.0 and all(a >= b for a, b in zip(lrs[1:], lrs[2:]))  # linear decay after warmup
    assert lrs[10] == pytest.approx((20 - 11) / 18)
