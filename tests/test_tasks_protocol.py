"""Tasks over any model through the protocol: planted scores -> exact retrieval / QA / MC metrics."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from paxion.backbones.base import Preprocess
from paxion.tasks import protocol
from paxion.tasks.mcqa import MultiChoiceQATask
from paxion.tasks.qa import AnswerRankingQATask
from paxion.tasks.retrieval import RetrievalTask

# planted ITC similarity (video x caption) and ITM re-ranking scores; captions i <-> video i
ITC = torch.tensor([[0.9, 0.1, 0.5, 0.2], [0.8, 0.3, 0.4, 0.1], [0.1, 0.2, 0.3, 0.6], [0.7, 0.6, 0.45, 0.4]])
ITM = torch.tensor([[5.0, 0.0, 9.0, 0.0], [1.0, 8.0, 2.0, 0.0], [0.0, 0.0, 7.0, 1.0], [2.0, 3.0, 0.0, 0.0]])


class PlantedModel(torch.nn.Module):
    """Video i's embed is row i of ``itc`` and captions are one-hot, so the dot product is ``itc``;
    ``score_pairs`` looks the pair up in ``itm``. No Paxion parts at all."""

    cfg = SimpleNamespace(arch="planted")
    preprocess = Preprocess(num_frames=1, image_size=8)
    num_frames_test = 4

    def __init__(self, itc: torch.Tensor, itm: torch.Tensor | None = None) -> None:
        super().__init__()
        self.itc, self.itm = itc, itm
        if itm is None:
            self.score_pairs = None  # no re-ranker

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def encode_video_for_retrieval(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = video[:, 0, 0, 0, 0].long()  # the test writes the video's row id into pixel (0, 0)
        return {"embed": self.itc[rows], "row": rows}

    def encode_text_for_retrieval(self, texts: list[str]) -> dict[str, torch.Tensor]:
        cols = torch.tensor([int(t) for t in texts])
        return {"embed": torch.eye(self.itc.shape[1])[cols], "col": cols}

    def score_pairs(self, video: dict[str, torch.Tensor], text: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.itm[video["row"], text["col"]]


def _cfg(name: str, **task) -> OmegaConf:
    return OmegaConf.create({"task": {"name": name, **task}, "datasets": {"planted": {}},
                             "run": {"train_splits": [], "evaluate": True}})


def _retrieval(model: PlantedModel, text_idx: list[int], **task) -> tuple[RetrievalTask, dict]:
    cfg = _cfg("retrieval", **task)
    cfg.task = OmegaConf.merge(OmegaConf.structured(RetrievalTask.Config), cfg.task)
    rt = RetrievalTask(cfg)
    rt.model = model
    num_videos, num_texts = len(text_idx), model.itc.shape[1]
    rt.datasets["test"] = SimpleNamespace(texts=[str(i) for i in range(num_texts)])
    video = torch.zeros(num_videos, 1, 3, 2, 2, dtype=torch.uint8)
    video[:, 0, 0, 0, 0] = torch.arange(num_videos, dtype=torch.uint8)
    batch = {"video_input": video, "idx": torch.arange(num_videos), "text_idx": torch.tensor(text_idx)}
    return rt, rt.eval_step(model, batch)


def test_require_names_method_and_arch() -> None:
    with pytest.raises(protocol.MissingCapability, match="'rank_answers'.*model.arch 'planted'"):
        protocol.require(PlantedModel(ITC), "rank_answers", task="answer_ranking_qa")
    assert protocol.require(PlantedModel(ITC, ITM), "score_pairs", task="retrieval")
    assert not protocol.provides(PlantedModel(ITC), "score_pairs")
    assert protocol.eval_num_frames(PlantedModel(ITC)) == 4


def test_singularity_reranked_metrics_exact(tmp_path: Path) -> None:
    rt, out = _retrieval(PlantedModel(ITC, ITM), [0, 1, 2, 3], metric_format="singularity", k_test=2)
    assert set(out) == {"idx", "text_idx", "video", "video.row"}
    m = rt.compute_metrics(out, "test", tmp_path)
    # ITC ranks: v2t [0, 2, 1, 3], t2v [0, 1, 3, 1]
    # re-ranked (top 2 by ITC, rest -100): v2t [1, 3, 0, 3], t2v [0, 0, 3, 1]
    assert m["test_emb/txt_r1"] == 25.0 and m["test_emb/img_r1"] == 25.0
    assert m["test_emb/txt_r5"] == m["test_emb/img_r10"] == 100.0
    assert m["test_emb/r_mean"] == 75.0
    assert m["test/txt_r1"] == 25.0 and m["test/img_r1"] == 50.0
    assert m["test/img_r_mean"] == 83.33 and m["test/txt_r_mean"] == 75.0
    assert m["test/r_mean"] == 79.17 == m["agg_metrics"]


def test_reranked_matrix_is_filled_with_minus_100() -> None:
    rt, out = _retrieval(PlantedModel(ITC, ITM), [0, 1, 2, 3], k_test=2)
    model = rt.model
    video = {"embed": out["video"], "row": out["video.row"]}
    text = model.encode_text_for_retrieval(["0", "1", "2", "3"])
    got = rt.rerank(model, ITC.clone(), video, text, "v2t")
    expected = torch.tensor([[5.0, -100, 9, -100], [1, -100, 2, -100], [-100, -100, 7, 1], [2, 3, -100, -100]])
    assert torch.equal(got, expected)


def _brute(scores: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Rank of the best GT: candidates above it, ties counted against it."""
    best = np.where(gt, scores, -np.inf).max(1, keepdims=True)
    return ((scores >= best) & ~gt).sum(1)


def test_reranked_multi_gt_equals_brute_force(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    itc, itm = torch.rand(12, 5, generator=gen), torch.rand(12, 5, generator=gen) * 10
    text_idx = [i % 5 for i in range(12)]  # captions have 2-3 videos each (SSv2-style multi-GT)
    rt, out = _retrieval(PlantedModel(itc, itm), text_idx, metric_format="singularity", k_test=3)
    m = rt.compute_metrics(out, "test", tmp_path)
    gt = np.zeros((12, 5), dtype=bool)
    gt[np.arange(12), text_idx] = True
    x = np.full((12, 5), -100.0)
    for i in range(12):
        top = np.argsort(-itc[i].numpy())[:3]
        x[i, top] = itm[i, top].numpy()
    xt = np.full((5, 12), -100.0)
    for j in range(5):
        top = np.argsort(-itc[:, j].numpy())[:3]
        xt[j, top] = itm[top, j].numpy()
    v2t, t2v = _brute(x, gt), _brute(xt, gt.T)
    assert m["test/txt_r1"] == round(100 * float((v2t < 1).mean()), 2)
    assert m["test/img_r1"] == round(100 * float((t2v < 1).mean()), 2)
    assert m["test/img_r5"] == round(100 * float((t2v < 5).mean()), 2)
    emb = _brute(itc.t().numpy(), gt.T)
    assert m["test_emb/img_r1"] == round(100 * float((emb < 1).mean()), 2)


def test_no_reranker_gives_equal_sections_and_paxion_keys(tmp_path: Path) -> None:
    rt, out = _retrieval(PlantedModel(ITC), [0, 1, 2, 3], metric_format="singularity")
    m = rt.compute_metrics(out, "test", tmp_path)
    assert m["test/r_mean"] == m["test_emb/r_mean"] == 75.0
    rt, out = _retrieval(PlantedModel(ITC, ITM), [0, 1, 2, 3], k_test=0)
    m = rt.compute_metrics(out, "test", tmp_path)
    assert m["v2t_r1"] == 25.0 and m["t2v_meanr"] == pytest.approx((1 + 2 + 4 + 2) / 4)


def test_several_captions_per_video(tmp_path: Path) -> None:
    rt, out = _retrieval(PlantedModel(ITC), [0, 1, 2, 3], metric_format="singularity")
    out["text_ids"] = [[0], [1, 3], [2], [3]]  # caption 3 belongs to videos 1 and 3
    assert rt.gt_pairs(out).tolist() == [[0, 0], [1, 1], [1, 3], [2, 2], [3, 3]]
    m = rt.compute_metrics(out, "test", tmp_path)
    # v2t ranks [0, 2 (best GT t1 0.3 < t0, t2), 1, 3]; t2v ranks [0, 1, 3, 1 (best GT v3 0.4 < v2 0.6)]
    assert m["test/txt_r1"] == 25.0 and m["test/img_r1"] == 25.0
    out["text_ids"] = [[0], [1], [2], []]
    with pytest.raises(ValueError, match="ground-truth"):
        rt.compute_metrics(out, "test", tmp_path)


class PlantedQA(PlantedModel):
    def rank_answers(self, video, questions, answer_list, k):  # noqa: ANN001, ANN201
        scores = torch.zeros(len(questions), len(answer_list))
        for i, q in enumerate(questions):  # the question names the answer to pick
            scores[i, answer_list.index(q.split()[-1])] = 1.0
        return scores

    def score_candidates(self, video, candidates):  # noqa: ANN001, ANN201
        return torch.stack([torch.tensor([float(c.endswith("*")) for c in cands]) for cands in candidates])


def test_answer_ranking_qa_overall_and_per_type(tmp_path: Path) -> None:
    cfg = _cfg("answer_ranking_qa")
    cfg.task = OmegaConf.merge(OmegaConf.structured(AnswerRankingQATask.Config), cfg.task)
    task = AnswerRankingQATask(cfg)
    task.datasets["val"] = SimpleNamespace(answer_list=["left", "right", "up", "down"])
    model = PlantedQA(ITC)
    batch = {"video_input": torch.zeros(4, 1, 3, 2, 2, dtype=torch.uint8), "idx": torch.arange(4),
             "question_input": ["pick left", "pick right", "pick up", "pick down"],
             "answer_text": ["left", "up", "up", "sideways"], "question_type": ["what", "what", "how", "how"]}
    out = task.eval_step(model, batch)
    m = task.compute_metrics(out, "val", tmp_path)
    assert m["overall"] == 50.0 and m["what"] == 50.0 and m["how"] == 50.0 and m["agg_metrics"] == 50.0
    assert (tmp_path / "result" / "val_qa_predictions.jsonl").read_text().count("\n") == 4


def test_multiple_choice_through_score_candidates(tmp_path: Path) -> None:
    cfg = _cfg("multi_choice_qa", metric_format="singularity")
    cfg.task = OmegaConf.merge(OmegaConf.structured(MultiChoiceQATask.Config), cfg.task)
    task = MultiChoiceQATask(cfg)
    batch = {"video_input": torch.zeros(3, 1, 3, 2, 2, dtype=torch.uint8), "idx": torch.arange(3),
             "candidates": [["a*", "b", "c"], ["a", "b*", "c"], ["a", "b", "c*"]], "answer": torch.tensor([0, 1, 0])}
    m = task.compute_metrics(task.eval_step(PlantedQA(ITC), batch), "test", tmp_path)
    assert m["test"] == 66.67 == m["agg_metrics"]
    with pytest.raises(protocol.MissingCapability, match="score_candidates"):
        task.eval_step(PlantedModel(ITC), batch)
