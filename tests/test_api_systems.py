"""Every system from Python: load_model(config, checkpoint=<release-layout file>) -> helper, and the helper's
result equals what the config + task path computes for the same model, weights and clip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import paxion
from paxion.api import asset
from paxion.backbones.openvclip import build_openvclip_backbone
from paxion.backbones.timesformer.convert import official_key_names
from paxion.tasks import protocol
from paxion.tasks.action_recognition import ActionRecognitionTask
from paxion.tasks.actionbench import ActionBenchTask
from paxion.tasks.mcqa import MultiChoiceQATask
from paxion.tasks.qa import AnswerRankingQATask
from paxion.tasks.qa_classification import QAClassificationTask
from paxion.tasks.retrieval import RetrievalTask
from paxion.techniques import build_techniques
from singularity_fixtures import single_thread  # noqa: F401  (autouse: tiny tensors on one thread)
from test_singularity_convert import official_config, release_state, save

CLIP = asset("demo_clip.mp4")
CAPTIONS = ["Green square falling", "Green square rising", "Purple circle falling"]


def _task(cls, **task):  # noqa: ANN001, ANN202
    cfg = OmegaConf.create({"task": OmegaConf.structured(cls.Config(**task)), "datasets": {"x": {}},
                            "run": {"train_splits": [], "evaluate": True}})
    return cls(cfg)


def _actionbench(model, video: torch.Tensor, caption: str, negative: str, pairs: bool) -> dict[str, torch.Tensor]:
    """The ActionBench task's probe probabilities (1, 2) for one clip, correct candidate first."""
    task = _task(ActionBenchTask, use_pair_scorer=pairs, probes=["action_antonym", "video_reversal"])
    batch = {"video_input": video, "idx": torch.tensor([0]), "text_input": [caption],
             "action_antonym_text_input": [negative]}
    return task.eval_step(model, batch)


def _probe_equality(model, video: torch.Tensor, scorers: dict[str, bool]) -> None:
    captions = paxion.score_captions(model, video, CAPTIONS[:2])
    reversal = paxion.score_reversal(model, video, CAPTIONS[0])
    assert sorted(captions.scorers) == sorted(scorers)
    for name, pairs in scorers.items():
        task = _actionbench(model, video, CAPTIONS[0], CAPTIONS[1], pairs)
        assert getattr(captions, name) == pytest.approx(task["action_antonym_scores"][0].tolist(), abs=1e-6), name
        assert getattr(reversal, name) == pytest.approx(task["video_reversal_scores"][0].tolist(), abs=1e-6), name
        assert sum(getattr(captions, name)) == pytest.approx(1, abs=1e-5)


def _retrieval_equality(model, videos: torch.Tensor, texts: list[str], **task_cfg) -> paxion.Retrieval:
    """retrieve() == the retrieval task's re-ranked matrices (both directions) for the same clips."""
    found = paxion.retrieve(model, videos, texts, k=2, batch_size=2, k_test=task_cfg.get("k_test", 128))
    task = _task(RetrievalTask, **task_cfg)
    out = task.eval_step(model, {"video_input": videos, "idx": torch.arange(len(videos)),
                                 "text_idx": torch.arange(len(videos))})
    video = {"embed": out["video"], **protocol.unprefixed(out, "video")}
    text = protocol.encode_texts(model, texts, 256, "retrieval")
    sim = task.similarity_matrix(model, video, text)
    if task_cfg.get("rerank_all"):
        from paxion.tasks import alpro_metrics

        v2t = alpro_metrics.all_pair_scores(model.score_pairs, video, text, 1024, model.device)
        t2v = v2t.t()
    else:
        v2t = task.rerank(model, sim, video, text, "v2t")
        t2v = task.rerank(model, sim.t().contiguous(), text, video, "t2v")
    torch.testing.assert_close(found.v2t, v2t, rtol=0, atol=1e-6)
    torch.testing.assert_close(found.t2v, t2v, rtol=0, atol=1e-6)
    return found


def _clips(preprocess, count: int = 3) -> torch.Tensor:
    """The demo clip, its reversal and a frame-shuffled copy: (count, T, C, S, S) uint8."""
    clip = preprocess(CLIP)
    views = [clip, clip.flip(1), clip[:, torch.randperm(clip.shape[1], generator=torch.Generator().manual_seed(0))]]
    return torch.cat(views[:count])


# ------------------------------------------------------------------------------------------------ Singularity


@pytest.fixture(scope="module")
def singularity(tmp_path_factory):
    path = tmp_path_factory.mktemp("singularity") / "singularity_17m.pth"
    save(path, release_state(seed=4, temporal=False, frames=1), official_config(False))
    return path


def test_singularity_retrieval_from_a_release_file(singularity):
    model, preprocess, tokenizer = paxion.load_model("train/synthaction/singularity_ret", checkpoint=singularity)
    assert type(model).__name__ == "SingularityRetrieval" and not model.training
    assert (preprocess.num_frames, preprocess.frame_sampling) == (4, "segments")  # num_frames_test, segment middles
    assert tokenizer(CAPTIONS)["input_ids"].shape == (3, model.cfg.max_txt_l)
    video = preprocess(CLIP)
    _probe_equality(model, video, {"itc": False, "itm": True})
    found = _retrieval_equality(model, _clips(preprocess), CAPTIONS, metric_format="singularity", k_test=2)
    assert found.texts_for(0).names[0] in CAPTIONS and len(found.videos_for(1).names) == 2
    assert (found.v2t == -100).sum() == 3  # k_test 2 of 3 texts re-ranked per video, as the task
    mc = paxion.answer(model, video, "what happens?", candidates=CAPTIONS)  # multiple choice by ITM
    task = _task(MultiChoiceQATask)
    out = task.eval_step(model, {"video_input": video, "idx": torch.tensor([0]), "candidates": [CAPTIONS],
                                 "answer": torch.tensor([0])})
    assert mc.scores == pytest.approx(sorted(out["scores"][0].tolist(), reverse=True), abs=1e-6)
    assert mc.names[0] == CAPTIONS[int(out["pred"][0])]


def test_singularity_qa_ranks_its_answer_list(singularity, tmp_path):
    # an empty data root: no answer-list file, whatever the working directory holds
    model, preprocess, tokenizer = paxion.load_model("train/synthaction/singularity_qa", checkpoint=singularity,
                                                     overrides=[f"paths.data_root={tmp_path}"])
    assert tokenizer is not None and type(model).__name__ == "SingularityQA"
    video = preprocess(CLIP)
    answers = ["falling", "rising", "green", "square"]
    found = paxion.answer(model, video, "what does the square do?", candidates=answers, k=4)
    task = _task(AnswerRankingQATask, k_test=128)
    task.datasets = {"test": type("D", (), {"answer_list": answers})()}
    out = task.eval_step(model, {"video_input": video, "idx": torch.tensor([0]), "answer_text": ["falling"],
                                 "question_input": ["what does the square do?"]})
    assert found.names[0] == answers[int(out["pred"][0])] and sum(found.scores) == pytest.approx(1, abs=1e-5)
    with pytest.raises(TypeError, match="no video-text scoring"):
        paxion.score_captions(model, video, CAPTIONS)
    with pytest.raises(ValueError, match="candidates"):
        paxion.answer(model, video, "what?")


# ------------------------------------------------------------------------------------------------ ALPRO


def _alpro_release(path: Path, **kw) -> Path:
    from paxion.systems.alpro import Alpro, AlproConfig

    torch.manual_seed(5)
    source = Alpro(AlproConfig(size="tiny", num_frames=8, **kw))
    sd = source.state_dict()
    torch.save({"model": dict(zip(official_key_names(sd), sd.values()))}, path)
    return path


def test_alpro_retrieval_vtc_and_vtm(tmp_path):
    path = _alpro_release(tmp_path / "ft_msrvtt_ret.pt")
    model, preprocess, tokenizer = paxion.load_model("train/synthaction/alpro_ret", checkpoint=path)
    assert type(model).__name__ == "Alpro" and tokenizer(CAPTIONS[0])["input_ids"].shape[0] == 1
    _probe_equality(model, preprocess(CLIP), {"vtc": False, "vtm": True})
    _retrieval_equality(model, _clips(preprocess), CAPTIONS, metric_format="alpro", rerank_all=True)


def test_alpro_qa_classifies_over_ans2label(tmp_path):
    cfg = paxion.api.loading.load_config(paxion.api.CONFIG_ROOT / "train/synthaction/alpro_qa.yaml")
    count = cfg.model.num_answers
    path = _alpro_release(tmp_path / "ft_msrvtt_qa.pt", objectives=["qa"], num_answers=count)
    model, preprocess, _ = paxion.load_model("train/synthaction/alpro_qa", checkpoint=path)
    names = [f"answer{i}" for i in range(count)]
    model.answer_names = names  # what load_model reads from the dataset's train_ans2label.json
    video = preprocess(CLIP)
    found = paxion.answer(model, video, "what moves?", k=3)
    task = _task(QAClassificationTask)
    out = task.eval_step(model, {"video_input": video, "idx": torch.tensor([0]), "answer_text": ["x"],
                                 "question_input": ["what moves?"]})
    assert found.names[0] == names[int(out["pred"][0])]
    chosen = paxion.answer(model, video, "what moves?", candidates=names[:2])
    assert sorted(chosen.names) == names[:2] and sum(chosen.scores) == pytest.approx(1, abs=1e-5)
    with pytest.raises(TypeError, match="no trained VTC / VTM head"):
        paxion.score_captions(model, video, CAPTIONS)


# ------------------------------------------------------------------------------------------------ Open-VCLIP


def test_openvclip_zero_shot_with_weight_patching(tmp_path):
    torch.manual_seed(0)
    source = build_openvclip_backbone("tiny")
    release = {k: v.clone() + 0.01 for k, v in source.state_dict().items()}  # "model.*": the release layout
    path = tmp_path / "swa_2_22.pth"
    torch.save({"model_state": release}, path)
    overrides = ["model.backbone=tiny", "model.clip_ckpt=null"]
    torch.manual_seed(1)
    model, preprocess, tokenizer = paxion.load_model("openvclip_b16", checkpoint=path, overrides=overrides)
    assert tokenizer is not None and preprocess.num_frames == 8
    classes = ["falling", "rising", "spinning"]
    found = paxion.classify(model, CLIP, class_names=classes, k=3)
    # the config + task path: the same build, the config's weight patching entered, the task's logits
    cfg = paxion.api.loading.load_config(paxion.api.CONFIG_ROOT / "eval/openvclip/ucf101_full.yaml",
                                         [*overrides, f"model.release_ckpt={path}"])
    torch.manual_seed(1)
    reference = paxion.registry.get("model", "openvclip")(paxion.api.loading.section(cfg, "model")).eval()
    patched = build_techniques(cfg, reference)
    with patched.eval_context(reference), torch.no_grad():
        reference.set_class_names(classes)
        logits = reference.classify(preprocess(CLIP))[0]
        unpatched = paxion.registry.get("model", "openvclip")(paxion.api.loading.section(cfg, "model")).eval()
    assert found.scores == pytest.approx(sorted(logits.softmax(-1).tolist(), reverse=True), abs=1e-6)
    assert found.names[0] == classes[int(logits.argmax())]
    assert not torch.equal(next(model.parameters()), next(unpatched.parameters())), "weight patching applied"
    _probe_equality(model, preprocess(CLIP), {"similarity": False})


# ------------------------------------------------------------------------------------------------ VideoMAE


def test_videomae_llm_block_classifier_closed_set(tmp_path):
    overrides = ["model.llm_block.weights=null"]
    model, preprocess, tokenizer = paxion.load_model("train/synthaction_actions/vit_mini_llm", overrides=overrides)
    assert tokenizer is None and model.llm_block is not None
    state = {k: v.clone() + 0.01 for k, v in model.state_dict().items()}
    encoder = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    llm = {re.sub(r"^llm_block\.m(\d)\.", r"llama_dim_mapper\1.", k).replace("llm_block.llm.", "llama."): v
           for k, v in state.items() if k.startswith("llm_block.")}
    path = tmp_path / "best.pth"
    torch.save({"model": {**encoder, **llm}}, path)  # the original's fine-tuned layout
    model, preprocess, _ = paxion.load_model("train/synthaction_actions/vit_mini_llm", checkpoint=path,
                                             overrides=overrides)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    names = [f"action {i}" for i in range(model.cfg.num_classes)]
    found = paxion.classify(model, CLIP, class_names=names, k=5)
    task = _task(ActionRecognitionTask)
    video = preprocess(CLIP)
    out = task.eval_step(model, {"video_input": video, "idx": torch.tensor([0]), "label": torch.tensor([0]),
                                 "video_index": torch.tensor([0]), "view": torch.tensor([0])})
    probs = out["logits"][0].softmax(-1)
    assert found.scores == pytest.approx(probs.topk(5).values.tolist(), abs=1e-6) and len(found.names) == 5
    with pytest.raises(TypeError, match="no video-text scoring"):
        paxion.score_captions(model, video, CAPTIONS)
    with pytest.raises(TypeError, match="cannot answer"):
        paxion.answer(model, video, "what?")


# ------------------------------------------------------------------------------------------------ backbones


def test_frozen_backbone_scores_as_paxions_backbone_module():
    model, preprocess, tokenizer = paxion.load_model("backbone/internvideo_synth_pretrained")
    embedded = paxion.load_model("embedded_default")
    video = preprocess(CLIP)
    ours = paxion.score_captions(model, video, CAPTIONS)
    theirs = paxion.score_captions(embedded.model, video, CAPTIONS)
    assert ours.similarity == pytest.approx(theirs.backbone, abs=1e-6) and ours.patcher is None
    _probe_equality(model, video, {"similarity": False})
    assert torch.equal(tokenizer(CAPTIONS)["input_ids"], embedded.tokenizer(CAPTIONS)["input_ids"])
    with pytest.raises(TypeError, match="classify"):
        paxion.classify(model, video, ["a", "b"])


def test_list_models_pattern_and_zoo_release_files():
    found = paxion.list_models("singularity_ret_*")
    assert "singularity_ret_msrvtt" in found and "singularity/ft_msrvtt_ret/ckpt_best.pth" in found[
        "singularity_ret_msrvtt"]
    assert all(name.startswith("singularity_ret_") for name in found)
    assert "backbone/internvideo_mm_l14" in paxion.list_models("backbone/")
    for name, entry in paxion.api.ZOO.items():  # each zoo line names the file its config reads
        cfg = paxion.api.loading.load_config(paxion.api.CONFIG_ROOT / f"{entry.config}.yaml",
                                             ["paths.ckpt_root=CKPT"])
        files = {str(cfg.model.get(k)) for k in ("pretrained", "release_ckpt") if cfg.model.get(k)}
        assert f"CKPT/{entry.release}" in files or "your" in entry.release, name
