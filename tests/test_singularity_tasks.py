"""Singularity-format data (retrieval, paragraph, multi-video GT, QA, MC) and SynthAction in those formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from paxion.data.annotations import AnnotationError
from paxion.data.datasets.singularity import answers_with_weights, pre_text, question_type
from paxion.data.synthetic.singularity_formats import ANN, VIDEOS, generate_singularity
from paxion.registry import registry
from paxion.tasks.common import collate_with_extras


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_singularity(tmp_path_factory.mktemp("sing"), seed=0, num_train_pairs=4, num_test_pairs=3,
                                frames=8, size=32, workers=1)


def _builder(name: str, root: Path, **cfg):
    return registry.get("dataset", name)({"ann_root": str(root / ANN), "videos": str(root / VIDEOS), **cfg})


def test_pre_text_matches_the_original_cleaning() -> None:
    assert pre_text("A man's Car-wash, (fast)!  <person> / ok.") == "a mans car wash fast person ok"
    assert answers_with_weights(["a", "b", "a", "a"]) == (["a", "b"], [0.75, 0.25])
    assert question_type({}, "what is it") == "what" and question_type({"type": 3}, "what") == "3"


def test_synthetic_twins_differ_only_in_the_action(synth: Path) -> None:
    ret = json.loads((synth / ANN / "synth_ret_test.json").read_text())
    assert len(ret) == 6 and all(len(item["caption"]) == 2 for item in ret)
    first, twin = ret[0]["caption"][0], ret[1]["caption"][0]
    assert first != twin and first.split()[1:3] == twin.split()[1:3]  # same object words
    qa = json.loads((synth / ANN / "synth_qa_test.json").read_text())
    assert qa[0]["question"] == qa[1]["question"] and qa[0]["answer"] != qa[1]["answer"]
    answers = json.loads((synth / ANN / "synth_qa_answer_list.json").read_text())
    assert {q["answer"] for q in qa} <= set(answers)
    for item in json.loads((synth / ANN / "synth_mc_test.json").read_text()):
        assert len(item["caption"]) == 5 and 0 <= item["answer"] < 5


def test_retrieval_eval_has_one_sample_per_video_and_all_its_captions(synth: Path) -> None:
    builder = _builder("singularity_retrieval", synth, train_file="synth_ret_train.json",
                       test_file="synth_ret_test.json")
    test = builder.build("test", num_frames=4, image_size=32, training=False)
    assert len(test) == 6 and len(test.texts) == 12
    assert [test[i]["text_ids"] for i in range(2)] == [[0, 1], [2, 3]]
    assert test[0]["video"].shape == (4, 3, 32, 32) and test[0]["video"].dtype == torch.uint8
    train = builder.build("train", num_frames=1, image_size=32, training=True)
    assert len(train) == 16  # 8 videos x 2 captions, positives grouped by video
    batch = collate_with_extras([train[0], train[1], train[2]])
    assert batch["video_input"].shape == (3, 1, 3, 32, 32)
    assert batch["video_idx"].tolist() == [0, 0, 1] and len(batch["text_input"]) == 3


def test_paragraph_and_multi_video_ground_truth(tmp_path: Path, synth: Path) -> None:
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "para.json").write_text(json.dumps([{"video": "1.mp4", "caption": ["A man runs.", "He stops"]},
                                               {"video": "2.mp4", "caption": ["x"]}]))
    (ann / "ssv2.json").write_text(json.dumps([{"video": ["1.mp4", "2.mp4"], "caption": "Moving [something] up"},
                                               {"video": ["3.mp4"], "caption": "b"}]))
    videos = str(synth / VIDEOS)
    para = registry.get("dataset", "singularity_retrieval")(
        {"ann_root": str(ann), "videos": videos, "val_file": "para.json", "paragraph": True}).load("val")
    assert para.texts == ["a man runs he stops", "x"] and [r["text_ids"] for r in para.records] == [[0], [1]]
    multi = registry.get("dataset", "singularity_retrieval")(
        {"ann_root": str(ann), "videos": videos, "val_file": "ssv2.json", "train_file": "ssv2.json",
         "multi_vision_gt": True})
    val = multi.load("val")
    assert val.texts == ["moving [something] up", "b"] and [r["text_idx"] for r in val.records] == [0, 0, 1]
    assert [r["video_idx"] for r in multi.load("train").records] == [0, 0, 1]  # positives: same caption
    (ann / "bad.json").write_text(json.dumps([{"video": "1.mp4"}]))
    bad = registry.get("dataset", "singularity_retrieval")({"ann_root": str(ann), "videos": videos,
                                                            "val_file": "bad.json"})
    with pytest.raises(AnnotationError, match=r"bad.json\[item 0\]: missing field 'caption'"):
        bad.load("val")


def test_qa_and_mc_samples(synth: Path) -> None:
    qa = _builder("singularity_qa", synth, train_file="synth_qa_train.json", test_file="synth_qa_test.json",
                  answer_list="synth_qa_answer_list.json")
    test = qa.build("test", num_frames=4, image_size=32, training=False)
    assert "left" in test.answer_list and test[0]["answer_text"] in test.answer_list
    assert test[0]["question_type"] in ("direction", "rotation", "change")
    batch = collate_with_extras([s for s in (qa.build("train", num_frames=1, image_size=32, training=True)[i]
                                             for i in range(2))])
    assert batch["answer_input"][0] and batch["answer_weights"][0] == [1.0]
    mc = _builder("singularity_mc", synth, test_file="synth_mc_test.json").build(
        "test", num_frames=4, image_size=32, training=False)
    batch = collate_with_extras([mc[0], mc[1]])
    assert len(batch["candidates"][0]) == 5 and batch["answer"].dtype == torch.int64


def test_named_datasets_use_the_original_file_names() -> None:
    assert registry.get("dataset", "didemo_ret")().cfg.paragraph
    assert registry.get("dataset", "ssv2_template_ret")().cfg.val_file == "ssv2_ret_template_val_small.json"
    assert registry.get("dataset", "msrvtt_qa")().cfg.answer_list == "msrvtt_qa_answer_list.json"
    assert registry.get("dataset", "msrvtt_mc")().splits == ("test",)


def _tiny_retrieval(**cfg):
    from paxion.systems.singularity.config import SingularityRetrievalConfig

    torch.manual_seed(0)
    return registry.get("model", "singularity_retrieval")(SingularityRetrievalConfig(size="tiny", **cfg)).eval()


def test_tiny_singularity_reranks_through_the_retrieval_task(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from paxion.tasks.retrieval import RetrievalTask

    model = _tiny_retrieval(num_frames=1, num_frames_test=2)
    cfg = OmegaConf.create({"task": OmegaConf.structured(RetrievalTask.Config(metric_format="singularity", k_test=2)),
                            "datasets": {"x": {}}, "run": {"train_splits": [], "evaluate": True}})
    task = RetrievalTask(cfg)
    task.model = model
    texts = ["a red circle moves left", "a red circle moves right", "a blue square", "green cross rising"]
    task.datasets["test"] = SimpleNamespace(texts=texts)
    video = torch.randint(0, 255, (3, 2, 3, 32, 32), dtype=torch.uint8)
    out = task.eval_step(model, {"video_input": video, "idx": torch.arange(3), "text_idx": torch.tensor([0, 1, 3])})
    metrics = task.compute_metrics(out, "test", tmp_path)
    assert {"test/r_mean", "test_emb/r_mean", "test/img_r1"} <= set(metrics)
    state = {"embed": out["video"], **{k[6:]: v for k, v in out.items() if k.startswith("video.")}}
    text = model.encode_text_for_retrieval(texts)
    with torch.no_grad():
        sim = model.retrieval_similarity(state["embed"], text["embed"])  # (3, 4)
        reranked = task.rerank(model, sim, state, text, "v2t")
        top = sim.topk(2, dim=1).indices
        for i in range(3):
            pairs = model.score_pairs({k: v[[i, i]] for k, v in state.items()}, {k: v[top[i]] for k, v in text.items()})
            torch.testing.assert_close(reranked[i, top[i]], pairs.float(), rtol=1e-4, atol=1e-5)
    assert int((reranked == -100).sum()) == 3 * 2


@pytest.mark.slow
def test_two_process_singularity_evaluation_equals_one_process(synth: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    config = repo / "configs/train/synthaction/singularity_ret.yaml"

    def args(out: str) -> list[str]:
        return ["--cfg-path", str(config), f"paths.data_root={synth}", f"paths.output_root={tmp_path / out}",
                "run.evaluate=true", "run.batch_size_eval=2", "task.k_test=3"]

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo / "src")}
    one = subprocess.run([sys.executable, str(repo / "src/evaluate.py"), *args("one")], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_port=29541", str(repo / "src/evaluate.py"), *args("two")],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    found = [json.loads(next((tmp_path / out).rglob("test_output.json")).read_text()) for out in ("one", "two")]
    keys = [k for k in found[0] if k.startswith("test")]
    assert len(keys) == 18 and found[0]["num_samples"] == found[1]["num_samples"] == 6
    assert {k: found[0][k] for k in keys} == {k: found[1][k] for k in keys}


SINGULARITY_CONFIGS = sorted(p.relative_to(Path(__file__).resolve().parents[1] / "configs").as_posix()
                             for p in (Path(__file__).resolve().parents[1] / "configs").rglob("singularity*.yaml"))


@pytest.mark.parametrize("path", [p for p in SINGULARITY_CONFIGS if not p.startswith("backbones/")])
def test_singularity_config_builds_its_task_and_a_tiny_model(path: str) -> None:
    from paxion.config import load_config

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs" / path, ["model.size=tiny", "model.pretrained=null"])
    task = registry.get("task", cfg.task.name)(cfg)
    model = task.build_model()
    assert model.cfg.arch == cfg.model.arch and model.num_frames_test == cfg.model.num_frames_test
    builder = registry.get("dataset", task.dataset_name())
    assert set(cfg.run.test_splits + cfg.run.valid_splits) <= set(builder(cfg.datasets[task.dataset_name()]).splits)


def test_tiny_singularity_qa_and_mc_through_the_tasks(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from paxion.systems.singularity.config import SingularityQAConfig
    from paxion.tasks.mcqa import MultiChoiceQATask
    from paxion.tasks.qa import AnswerRankingQATask

    def make(cls, **task):  # noqa: ANN001, ANN202
        cfg = OmegaConf.create({"task": OmegaConf.structured(cls.Config(**task)), "datasets": {"x": {}},
                                "run": {"train_splits": [], "evaluate": True}})
        return cls(cfg)

    torch.manual_seed(0)
    qa_model = registry.get("model", "singularity_qa")(SingularityQAConfig(size="tiny", num_frames_test=2)).eval()
    video = torch.randint(0, 255, (3, 2, 3, 32, 32), dtype=torch.uint8)
    qa = make(AnswerRankingQATask, k_test=2)
    answers = ["left", "right", "up"]
    qa.datasets["test"] = SimpleNamespace(answer_list=answers)
    out = qa.eval_step(qa_model, {"video_input": video, "idx": torch.arange(3), "answer_text": ["left", "up", "x"],
                                  "question_input": ["which way does it move"] * 3,
                                  "question_type": ["direction"] * 3})
    with torch.no_grad():
        state = qa_model.encode_video_for_retrieval(video)
        expected = qa_model.rank_answers(state, ["which way does it move"] * 3, answers, 2).argmax(-1)
    assert torch.equal(out["pred"], expected)
    metrics = qa.compute_metrics(out, "test", tmp_path)
    correct = [answers[p] == a for p, a in zip(expected.tolist(), ["left", "up", "x"])]
    assert metrics["overall"] == round(100 * sum(correct) / 3, 2) == metrics["direction"]

    model = _tiny_retrieval(num_frames=1, num_frames_test=2)
    mc = make(MultiChoiceQATask, metric_format="singularity")
    cands = [["a red circle", "a blue square", "up"], ["x", "y", "z"], ["left", "right", "down"]]
    out = mc.eval_step(model, {"video_input": video, "idx": torch.arange(3), "candidates": cands,
                               "answer": torch.tensor([0, 1, 2])})
    with torch.no_grad():
        direct = model.score_candidates(model.encode_video_for_retrieval(video), cands)  # (3, 3)
    assert torch.equal(out["pred"], direct.argmax(-1))


def test_segments_sampling_is_singularitys_rand_and_middle(synth: Path) -> None:
    from paxion.data.video import load_clip
    from paxion.data.video.sampling import sample_indices

    assert sample_indices(0, 15, 4, "segments").tolist() == [1, 5, 9, 13]  # middle of [0,3], [4,7], ...
    assert sample_indices(0, 1, 4, "segments").tolist() == [0, 1, 1, 1]  # short clip: padded with the last
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):  # rand: within each segment, never its last frame
        picked = sample_indices(0, 15, 4, "segments", training=True, generator=gen)
        assert all(4 * i <= int(p) <= 4 * i + 2 for i, p in enumerate(picked))
    fallback = sample_indices(0, 4, 4, "segments", training=True, generator=gen)  # a 1-frame segment exists
    assert fallback.tolist() == sorted(set(fallback.tolist())) and len(fallback) == 4
    _, indices = load_clip(synth / VIDEOS / "1.mp4", 4, strategy="segments")  # 8 frames, frame 0 included
    assert indices.tolist() == [0, 2, 4, 6]


def test_didemo_reads_only_the_first_30_seconds(tmp_path: Path) -> None:
    from paxion.data.synthetic.generate import encode_mp4

    # 40 s at 1 fps; frame i has grey level 6 i, so a decoded frame tells its index
    levels = (np.arange(40) * 6).astype(np.uint8)
    encode_mp4(tmp_path / "long.mp4", np.broadcast_to(levels[:, None, None, None], (40, 32, 32, 3)).copy(), fps=1)
    (tmp_path / "test.json").write_text(json.dumps([{"video": "long.mp4", "caption": ["a", "b"]}]))
    paths = {"ann_root": str(tmp_path), "videos": str(tmp_path), "test_file": "test.json"}
    builder = registry.get("dataset", "didemo_ret")({**paths, "train_file": None, "val_file": None})
    assert builder.cfg.max_seconds == 30.0

    def decoded_indices(b) -> list[int]:
        video = b.build("test", num_frames=4, image_size=32, training=False)[0]["video"]  # (T, C, H, W)
        return (video.float().mean((1, 2, 3)) / 6).round().long().tolist()

    # evaluation "middle" over frames 0..30 (the window), not 0..39 (the file)
    assert decoded_indices(builder) == [3, 10, 18, 26]
    whole = registry.get("dataset", "didemo_ret")({**paths, "train_file": None, "val_file": None, "max_seconds": None})
    assert decoded_indices(whole) == [4, 14, 24, 34]
    with pytest.raises(ValueError, match="max_seconds"):
        registry.get("dataset", "didemo_ret")({**paths, "max_seconds": 0})
