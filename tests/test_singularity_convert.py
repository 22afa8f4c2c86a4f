"""Singularity system checkpoints: full-size layouts vs the manifest, official containers, temporal flags."""

from __future__ import annotations

import json
import re
from pathlib import Path

import paxion.backbones.singularity
import pytest
import torch
from omegaconf import OmegaConf

from paxion.backbones.base import CheckpointError
from paxion.backbones.singularity.beit import relative_position_index
from paxion.backbones.singularity.convert import MLM_HEAD_KEYS
from paxion.systems.singularity import SingularityQA, SingularityRetrieval
from paxion.systems.singularity.config import SingularityQAConfig, SingularityRetrievalConfig
from paxion.systems.singularity.convert import QA_DROPPED
from singularity_fixtures import single_thread  # noqa: F401  (autouse fixture)

LAYOUT = json.loads(Path(paxion.backbones.singularity.__file__).with_name("official_layout.json").read_text())
TEMPORAL = {"add_temporal_embed": True, "temporal_encoder": True}


def expand(entries: list[dict]) -> dict[str, tuple[tuple[int, ...], str]]:
    layout = {}
    for entry in entries:
        lo, hi = entry.get("i", (0, 0))
        for i in range(lo, hi + 1):
            layout[entry["key"].replace("{i}", str(i))] = (tuple(entry["shape"]), entry.get("dtype", "float32"))
    return layout


def shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def floats(layout: dict) -> dict[str, tuple[int, ...]]:
    return {k: s for k, (s, dtype) in layout.items() if dtype == "float32"}


# ----------------------------------------------------------------------------------------- full size


def test_full_size_temporal_retrieval_equals_the_original_layout() -> None:
    with torch.device("meta"):
        model = SingularityRetrieval(SingularityRetrievalConfig(num_frames=8, **TEMPORAL))
    expected = floats(expand(LAYOUT["paxion_model"]["entries"]))  # the original model class, 8 frames
    assert shapes(model.state_dict()) == expected
    assert sum(v.numel() for v in model.state_dict().values()) == LAYOUT["paxion_model"]["num_elements_float"]
    assert sum(p.numel() for p in model.parameters()) == 216_324_035


def test_full_size_pretraining_model_equals_the_release_layout() -> None:
    with torch.device("meta"):
        cfg = SingularityRetrievalConfig(num_frames=4, objectives=["itc", "itm", "mlm"], **TEMPORAL)
        model = SingularityRetrieval(cfg)
    manifest = LAYOUT["checkpoint_model_entry"]
    release = floats(expand(manifest["entries"]))
    ours = {re.sub(r"^text_encoder\.", "text_encoder.bert.", k): s for k, s in shapes(model.state_dict()).items()}
    ours = {re.sub(r"^mlm_head\.", "text_encoder.cls.", k): s for k, s in ours.items()}
    assert ours == release
    assert sum(v.numel() for v in model.state_dict().values()) == manifest["num_elements_float"]


def test_full_size_qa_model_counts() -> None:
    with torch.device("meta"):
        model = SingularityQA(SingularityQAConfig())
    state = model.state_dict()
    decoder = [k for k in state if k.startswith("text_decoder.bert.encoder.layer.")]
    assert {int(k.split(".")[4]) for k in decoder} == {0, 1, 2}
    assert all(f"text_decoder.bert.encoder.layer.{i}.crossattention.self.key.weight" in state for i in range(3))
    assert not any(k in state for k in QA_DROPPED)
    assert state["text_decoder.cls.predictions.decoder.weight"].shape == (30522, 768)


# ----------------------------------------------------------------------------------------- tiny files


def release_state(seed: int, temporal: bool, frames: int) -> dict[str, torch.Tensor]:
    """A tiny pre-training model's weights in the release layout (bert-nested text, MLM head, buffers)."""
    torch.manual_seed(seed)
    flags = TEMPORAL if temporal else {}
    cfg = SingularityRetrievalConfig(size="tiny", num_frames=frames, objectives=["itc", "itm", "mlm"], **flags)
    model = SingularityRetrieval(cfg)
    with torch.no_grad():
        model.temporal_embeddings.normal_()
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # no zero biases: a dropped key would show
    state = {}
    for key, value in model.state_dict().items():
        key = re.sub(r"^mlm_head\.", "text_encoder.cls.", re.sub(r"^text_encoder\.", "text_encoder.bert.", key))
        state[key] = value.clone()
    w = model.widths
    for i in range(w.vision_layers):
        prefix = f"vision_encoder.encoder.layer.{i}.attention.attention.relative_position_bias."
        state[prefix + "relative_position_index"] = relative_position_index(2, 2, torch.device("cpu"))
    state["text_encoder.bert.embeddings.position_ids"] = torch.arange(w.max_positions)[None]
    return state


def official_config(temporal: bool) -> OmegaConf:
    encoder = {"enable": temporal, "num_layers": 2}
    return OmegaConf.create({"add_temporal_embed": temporal, "temporal_vision_encoder": encoder,
                             "video_input": {"num_frames": 4}})


def save(path: Path, state: dict, config) -> str:
    torch.save({"model": state, "optimizer": {}, "scheduler": {}, "scaler": {}, "config": config, "epoch": 3}, path)
    return str(path)


def test_pretrained_release_into_retrieval_accounts_for_every_key(tmp_path: Path) -> None:
    state = release_state(1, temporal=True, frames=4)
    path = save(tmp_path / "singularity_temporal_17m.pth", state, official_config(True))
    model = SingularityRetrieval(SingularityRetrievalConfig(size="tiny", num_frames=1, pretrained=path, **TEMPORAL))
    loaded = model.state_dict()
    assert torch.equal(loaded["text_encoder.encoder.layer.3.crossattention.self.key.weight"],
                       state["text_encoder.bert.encoder.layer.3.crossattention.self.key.weight"])
    assert torch.equal(loaded["temporal_embeddings"], state["temporal_embeddings"][:, :1])  # 4 rows cut to 1
    assert torch.equal(loaded["temporal_vision_encoder.layer.1.output.dense.bias"],
                       state["temporal_vision_encoder.layer.1.output.dense.bias"])


def test_report_lists_exactly_the_mlm_head_as_ignored(tmp_path: Path) -> None:
    from paxion.systems.singularity.convert import load_checkpoint

    state = release_state(1, temporal=False, frames=1)
    path = save(tmp_path / "singularity_17m.pth", state, official_config(False))
    model = SingularityRetrieval(SingularityRetrievalConfig(size="tiny", num_frames=4))
    report = load_checkpoint(model, path)
    assert sorted(report.unexpected) == sorted("mlm_head." + k[len("text_encoder.cls."):] for k in MLM_HEAD_KEYS)
    assert set(report.loaded) == set(model.state_dict()) and report.missing == []
    assert torch.equal(model.temporal_embeddings[:, :1], state["temporal_embeddings"])  # 1 -> 4 rows, zeros after
    assert torch.count_nonzero(model.temporal_embeddings[:, 1:]) == 0


def test_pretrained_release_initialises_the_qa_decoder_from_encoder_layers(tmp_path: Path) -> None:
    from paxion.systems.singularity.convert import load_checkpoint

    state = release_state(2, temporal=False, frames=1)
    path = save(tmp_path / "singularity_5m.pth", state, official_config(False))
    model = SingularityQA(SingularityQAConfig(size="tiny"))
    report = load_checkpoint(model, path)
    assert sorted(report.unexpected) == sorted(QA_DROPPED) and set(report.loaded) == set(model.state_dict())
    loaded, fusion = model.state_dict(), model.widths.fusion_layer
    for j in range(model.widths.text_layers - fusion):
        for name in ("attention.self.query.weight", "crossattention.self.value.bias", "output.LayerNorm.weight"):
            assert torch.equal(loaded[f"text_decoder.bert.encoder.layer.{j}.{name}"],
                               state[f"text_encoder.bert.encoder.layer.{fusion + j}.{name}"])
            assert torch.equal(loaded[f"text_encoder.encoder.layer.{fusion + j}.{name}"],
                               state[f"text_encoder.bert.encoder.layer.{fusion + j}.{name}"])
    assert torch.equal(loaded["text_decoder.bert.embeddings.word_embeddings.weight"],
                       state["text_encoder.bert.embeddings.word_embeddings.weight"])
    assert torch.equal(loaded["text_decoder.cls.predictions.transform.dense.weight"],
                       state["text_encoder.cls.predictions.transform.dense.weight"])
    decoder = model.text_decoder
    assert decoder.cls.predictions.decoder.weight is decoder.bert.embeddings.word_embeddings.weight


def test_temporal_checkpoint_is_refused_by_a_single_frame_model(tmp_path: Path) -> None:
    path = save(tmp_path / "singularity_temporal_17m.pth", release_state(3, True, 4), official_config(True))
    with pytest.raises(CheckpointError, match=r"temporal Singularity checkpoint.*model\.temporal_encoder=true"):
        SingularityRetrieval(SingularityRetrievalConfig(size="tiny", pretrained=path))
    with pytest.raises(CheckpointError, match=r"model\.add_temporal_embed=true"):
        SingularityRetrieval(SingularityRetrievalConfig(size="tiny", temporal_encoder=True, pretrained=path))
    # our own checkpoint: the flags come from the stored config, even when no temporal key is in the file
    ours = SingularityRetrieval(SingularityRetrievalConfig(size="tiny", add_temporal_embed=True)).state_dict()
    yaml = OmegaConf.to_yaml(OmegaConf.create({"model": {"arch": "singularity_retrieval", "add_temporal_embed": True,
                                                         "temporal_encoder": False}}))
    torch.save({"model": ours, "config": yaml, "epoch": 1}, tmp_path / "best.pth")
    with pytest.raises(CheckpointError, match=r"best\.pth.*model\.add_temporal_embed=true"):
        SingularityRetrieval(SingularityRetrievalConfig(size="tiny", pretrained=str(tmp_path / "best.pth")))
    model = SingularityRetrieval(SingularityRetrievalConfig(size="tiny", add_temporal_embed=True,
                                                            pretrained=str(tmp_path / "best.pth")))
    assert torch.equal(model.state_dict()["itm_head.weight"], ours["itm_head.weight"])


def test_single_frame_release_starts_a_temporal_model_with_fresh_temporal_encoder(tmp_path: Path) -> None:
    from paxion.systems.singularity.convert import load_checkpoint

    path = save(tmp_path / "singularity_17m.pth", release_state(4, False, 1), official_config(False))
    model = SingularityRetrieval(SingularityRetrievalConfig(size="tiny", num_frames=4, **TEMPORAL))
    report = load_checkpoint(model, path)
    assert report.missing == sorted(k for k in model.state_dict() if k.startswith("temporal_vision_encoder."))
    assert len(report.missing) == 32


def test_finetuned_container_round_trip_gives_identical_scores(tmp_path: Path) -> None:
    torch.manual_seed(5)
    source = SingularityRetrieval(SingularityRetrievalConfig(size="tiny", num_frames=4, **TEMPORAL)).eval()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    state = dict(source.state_dict())
    state["vision_encoder.encoder.layer.0.attention.attention.relative_position_bias.relative_position_index"] = (
        relative_position_index(2, 2, torch.device("cpu")))
    state["text_encoder.embeddings.position_ids"] = torch.arange(64)[None]
    path = save(tmp_path / "ckpt_best.pth", state, official_config(True))
    with torch.device("meta"):
        meta = SingularityRetrieval(SingularityRetrievalConfig(size="tiny", num_frames=4, **TEMPORAL))
    from paxion.systems.singularity.convert import load_checkpoint

    load_checkpoint(meta, path)
    meta.eval()
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    vs, vt = source.encode_video_for_retrieval(video), meta.encode_video_for_retrieval(video)
    ts, tt = source.encode_text_for_retrieval(["a", "b c"]), meta.encode_text_for_retrieval(["a", "b c"])
    assert torch.equal(vs["embed"], vt["embed"]) and torch.equal(source.score_pairs(vs, ts), meta.score_pairs(vt, tt))


def test_bad_files_name_the_file_and_key(tmp_path: Path) -> None:
    state = release_state(6, False, 1)
    extra = save(tmp_path / "extra.pth", {**state, "text_encoder.bert.pooler.dense.weight": torch.zeros(2)},
                 official_config(False))
    with pytest.raises(CheckpointError, match=r"extra\.pth: unexpected key 'text_encoder\.pooler\.dense\.weight'"):
        SingularityRetrieval(SingularityRetrievalConfig(size="tiny", pretrained=extra))
    without = save(tmp_path / "missing.pth", {k: v for k, v in state.items() if k != "itm_head.bias"},
                   official_config(False))
    with pytest.raises(CheckpointError, match=r"missing\.pth: missing key 'itm_head\.bias'"):
        SingularityRetrieval(SingularityRetrievalConfig(size="tiny", pretrained=without))
    wrong = save(tmp_path / "wrong.pth", {**state, "text_proj.weight": torch.zeros(3, 3)}, official_config(False))
    with pytest.raises(CheckpointError, match=r"wrong\.pth.*'text_proj\.weight' has shape \(3, 3\)"):
        SingularityRetrieval(SingularityRetrievalConfig(size="tiny", pretrained=wrong))
    torch.save({"state_dict": state}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth: key 'model'"):
        SingularityRetrieval(SingularityRetrievalConfig(size="tiny", pretrained=str(tmp_path / "other.pth")))


def test_relative_position_tables_resample_for_a_larger_image(tmp_path: Path) -> None:
    path = save(tmp_path / "singularity_17m.pth", release_state(7, False, 1), official_config(False))
    cfg = SingularityRetrievalConfig(size="tiny", size_overrides={"image_size": 48}, pretrained=path)
    model = SingularityRetrieval(cfg)
    key = "vision_encoder.encoder.layer.0.attention.attention.relative_position_bias.relative_position_bias_table"
    table, original = model.state_dict()[key], release_state(7, False, 1)[key]
    assert torch.equal(table[-3:], original[-3:])  # the CLS rows are kept
    assert table.shape == (5 * 5 + 3, 4)
    video = torch.randint(0, 256, (1, 2, 3, 48, 48), dtype=torch.uint8)
    assert torch.isfinite(model.eval().encode_video_for_retrieval(video)["embed"]).all()


def test_finetuned_qa_container_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(8)
    source = SingularityQA(SingularityQAConfig(size="tiny")).eval()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    state = dict(source.state_dict())
    state["text_decoder.bert.embeddings.position_ids"] = torch.arange(64)[None]  # the original's buffers
    state["text_encoder.embeddings.position_ids"] = torch.arange(64)[None]
    path = save(tmp_path / "ckpt_best.pth", state, official_config(False))
    model = SingularityQA(SingularityQAConfig(size="tiny", pretrained=path)).eval()
    video = torch.randint(0, 256, (2, 1, 3, 32, 32), dtype=torch.uint8)
    answers, questions = ["left", "right", "up"], ["which way?", "what is it?"]
    expected = source.rank_answers(source.encode_video_for_retrieval(video), questions, answers, 2)
    assert torch.equal(model.rank_answers(model.encode_video_for_retrieval(video), questions, answers, 2), expected)
    with pytest.raises(CheckpointError, match=r"ret\.pth: unexpected key"):  # a retrieval file: not a QA model's
        SingularityQA(SingularityQAConfig(size="tiny", pretrained=save(
            tmp_path / "ret.pth", SingularityRetrieval(SingularityRetrievalConfig(size="tiny")).state_dict(),
            official_config(False))))


def test_our_trainable_only_checkpoint_loads_and_keeps_frozen_values(tmp_path: Path) -> None:
    from paxion.engine.checkpoint import model_state

    torch.manual_seed(9)
    source = SingularityRetrieval(SingularityRetrievalConfig(size="tiny"))
    assert not source.temporal_embeddings.requires_grad  # unused without add_temporal_embed: frozen for DDP
    state = model_state(source, full=False)
    assert "temporal_embeddings" not in state and "itm_head.weight" in state
    yaml = OmegaConf.to_yaml(OmegaConf.create({"model": {"arch": "singularity_retrieval", "add_temporal_embed": False,
                                                         "temporal_encoder": False}}))
    torch.save({"model": state, "config": yaml, "full_model": False}, tmp_path / "best.pth")
    model = SingularityRetrieval(SingularityRetrievalConfig(size="tiny", pretrained=str(tmp_path / "best.pth")))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    del state["itm_head.bias"]  # a trainable tensor missing is still an error
    torch.save({"model": state, "config": yaml}, tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match=r"cut\.pth: missing key 'itm_head\.bias'"):
        SingularityRetrieval(SingularityRetrievalConfig(size="tiny", pretrained=str(tmp_path / "cut.pth")))


@pytest.mark.parametrize("arch", ["singularity_retrieval", "singularity_qa"])
def test_model_layers_set_the_temporal_flags_together(tmp_path: Path, arch: str) -> None:
    from paxion.config import load_config, section

    layers = Path(__file__).resolve().parents[1] / "configs" / "backbones"
    expected = {"singularity_system_17m.yaml": (1, False), "singularity_system_temporal_17m.yaml": (4, True)}
    for name, (frames, temporal) in expected.items():
        experiment = tmp_path / f"{arch}_{name}"
        experiment.write_text(f"# test\nbases: [{layers / name}]\nmodel:\n  arch: {arch}\n")
        model_cfg = section(load_config(experiment), "model")
        assert (model_cfg.num_frames, model_cfg.add_temporal_embed, model_cfg.temporal_encoder) == (
            frames, temporal, temporal)
        assert model_cfg.pretrained.endswith(name.replace("_system", "").replace(".yaml", ".pth"))
