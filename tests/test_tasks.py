"""Tasks: ActionBench probes, retrieval ranks vs brute force, MCQA, and 2-process == 1-process evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from paxion.config import load_config
from paxion.registry import registry
from paxion_fakes import FAKE, fake_batch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def _task(config: str, *overrides: str):
    cfg = load_config(CONFIGS / config, [f"model.backbone={FAKE}", "model.backbone_ckpt=null", "model.pretrained=null",
                                         "model.patcher.heads=2", "model.patcher.dim_head=8", *overrides])
    task = registry.get("task", cfg.task.name)(cfg)
    torch.manual_seed(0)
    model = task.build_model().eval()
    task.model = model
    return task, model


def test_actionbench_probes_scores_metrics_and_predictions(tmp_path: Path) -> None:
    task, model = _task("eval/actionbench/synthaction/patcher.yaml")
    batch = fake_batch(4)
    out = task.eval_step(model, batch)
    assert set(out) == {"idx", "action_antonym_scores", "video_reversal_scores", "object_shuffle_scores"}
    with torch.no_grad():
        enc = model.encode_video(batch["video_input"], with_reversed=True)
        text = model.encode_text(batch["text_input"] + batch["action_antonym_text_input"])
        latents = enc.features("patcher")
        aa = model.paired_logits(latents[:4], torch.stack([text[:4], text[4:]], 1), "patcher").softmax(-1)
        vr = model.paired_logits(torch.stack([latents[:4], latents[4:]], 1), text[:4], "patcher").softmax(-1)
    torch.testing.assert_close(out["action_antonym_scores"], aa)
    torch.testing.assert_close(out["video_reversal_scores"], vr)
    metrics = task.compute_metrics(out, "val", tmp_path)
    aa_acc = (aa.argmax(1) == 0).float().mean().item()
    assert metrics["action_antonym_accuracy"] == pytest.approx(aa_acc)
    assert metrics["agg_metrics"] == pytest.approx(aa_acc + metrics["action_antonym_macro_f1"])
    rows = (tmp_path / "result" / "val_video_reversal_predictions.jsonl").read_text().splitlines()
    assert [json.loads(r)["idx"] for r in rows] == [0, 1, 2, 3]


def test_backbone_module_and_missing_probe_text() -> None:
    task, model = _task("eval/actionbench/synthaction/patcher.yaml", "task.eval_module=backbone")
    batch = fake_batch(3)
    out = task.eval_step(model, batch)
    with torch.no_grad():
        video = model.encode_video(batch["video_input"], use_patcher=False).features("backbone")
        text = model.encode_text(batch["text_input"] + batch["object_shuffled_text_input"])
    expected = (torch.einsum("bd,bkd->bk", video, torch.stack([text[:3], text[3:]], 1)) * model.backbone.logit_scale()).softmax(-1)
    torch.testing.assert_close(out["object_shuffle_scores"], expected)
    del batch["object_shuffled_text_input"]  # a split without object shuffles (ActionBench-SSv2 test)
    out = task.eval_step(model, batch)
    assert "object_shuffle_scores" not in out and "action_antonym_scores" in out


def test_video_reversal_near_ties_get_a_seeded_coin() -> None:
    task, _ = _task("eval/actionbench/synthaction/patcher.yaml")
    scores = torch.tensor([[0.5, 0.5]] * 200 + [[0.9, 0.1], [0.2, 0.8]])
    pred = task.predictions("video_reversal", scores)
    assert pred[-2:].tolist() == [0, 1]
    assert 60 < int(pred[:200].sum()) < 140  # a fair coin, not argmax (which would give all 0)
    assert torch.equal(pred, task.predictions("video_reversal", scores))  # seeded
    assert task.predictions("action_antonym", scores)[:200].sum() == 0


def _brute_rank(row: list[float], gt: set[int]) -> int:
    order = sorted(range(len(row)), key=lambda j: (-row[j], j in gt))
    return next(pos for pos, j in enumerate(order) if j in gt)


@pytest.mark.parametrize("module", ["patcher", "backbone"])
def test_retrieval_chunked_ranks_equal_brute_force(module: str) -> None:
    task, model = _task("eval/downstream/ssv2_template/backbone.yaml", f"task.eval_module={module}", "task.score_budget=16")
    texts = ["pushing box", "pulling box", "opening cup", "closing cup", "lifting pen"]
    task.datasets["val"] = SimpleNamespace(texts=texts)
    outs = []
    for seed in (0, 1):
        batch = fake_batch(5, seed=seed)
        batch["idx"] = batch["idx"] + 5 * seed
        batch["text_idx"] = torch.tensor([0, 0, 1, 2, 3]) if seed == 0 else torch.tensor([2, 2, 0, 1, 0])
        outs.append(task.eval_step(model, batch))
    outputs = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    metrics = task.compute_metrics(outputs, "val", Path("."))
    with torch.no_grad():
        logits = model.logits(outputs["video"], model.encode_text(texts), module).softmax(-1)  # (10, 5) v2t
        t2v = model.logits(outputs["video"], model.encode_text(texts), module).t().softmax(-1)  # (5, 10)
    text_idx = outputs["text_idx"].tolist()
    v2t_ranks = [_brute_rank(logits[i].tolist(), {text_idx[i]}) for i in range(10)]
    t2v_ranks = [_brute_rank(t2v[c].tolist(), {i for i in range(10) if text_idx[i] == c}) for c in range(4)]  # 4 has no video
    assert metrics["v2t_r1"] == pytest.approx(100 * sum(r < 1 for r in v2t_ranks) / 10)
    assert metrics["v2t_meanr"] == pytest.approx(sum(r + 1 for r in v2t_ranks) / 10)
    assert metrics["t2v_r1"] == pytest.approx(100 * sum(r < 1 for r in t2v_ranks) / 4)
    assert metrics["t2v_meanr"] == pytest.approx(sum(r + 1 for r in t2v_ranks) / 4)
    recalls = [metrics[f"{d}_r{k}"] for d in ("v2t", "t2v") for k in (1, 5, 10)]
    assert metrics["agg_metrics"] == pytest.approx(sum(recalls) / 6)


def test_mcqa_predictions_and_per_type_accuracy(tmp_path: Path) -> None:
    task, model = _task("eval/downstream/nextqa/backbone.yaml")
    batch = fake_batch(4)
    batch["candidates"] = [[f"q{i}? answer {k}" for k in range(5)] for i in range(4)]
    batch["answer"] = torch.tensor([0, 1, 2, 3])
    batch["question_type"] = ["CW", "TN", "CW", "TN"]
    out = task.eval_step(model, batch)
    assert out["scores"].shape == (4, 5) and torch.equal(out["pred"], out["scores"].argmax(1))
    metrics = task.compute_metrics(out, "val", tmp_path)
    correct = (out["pred"] == batch["answer"]).float()
    assert metrics["accuracy"] == pytest.approx(correct.mean().item())
    assert metrics["accuracy_CW"] == pytest.approx(correct[[0, 2]].mean().item())
    assert (tmp_path / "result" / "val_mcqa_predictions.jsonl").is_file()


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cache")
    from paxion.data.synthetic import generate

    generate(str(root / "synthaction"), seed=0, num_train=2, num_val=10, num_test=2, workers=1)
    return root


def _eval_args(root: Path, out: str) -> list[str]:
    return ["--cfg-path", str(CONFIGS / "eval/actionbench/synthaction/patcher.yaml"),
            f"paths.cache_root={root}", f"paths.output_root={root / out}", "run.batch_size_eval=3"]


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(synth_root: Path) -> None:
    from paxion.cli.evaluate import main

    main(_eval_args(synth_root, "one"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           str(REPO / "src" / "evaluate.py"), *_eval_args(synth_root, "two")]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    results = []
    for out in ("one", "two"):
        folder = synth_root / out / "eval" / "synthaction" / "patcher" / "result"
        metrics = json.loads((folder / "val_output.json").read_text())
        preds = [(folder / f"val_{p}_predictions.jsonl").read_text() for p in ("action_antonym", "video_reversal")]
        results.append(({k: v for k, v in metrics.items() if k.endswith(("accuracy", "macro_f1"))}, preds))
    assert results[0][0] and results[0][0] == pytest.approx(results[1][0])
    for one, two in zip(results[0][1], results[1][1]):
        rows1, rows2 = [json.loads(r) for r in one.splitlines()], [json.loads(r) for r in two.splitlines()]
        assert [r["idx"] for r in rows1] == [r["idx"] for r in rows2] == list(range(10))
        assert [r["pred"] for r in rows1] == [r["pred"] for r in rows2]
        for a, b in zip(rows1, rows2):
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
