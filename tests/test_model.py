"""PaxionModel: what trains, one-pass reversal == two passes, precision, errors."""

from __future__ import annotations

import pytest
import torch

from paxion.systems.paxion.fuser import FuserConfig
from paxion.systems.paxion.model import PaxionConfig, PaxionModel
from paxion.systems.paxion.patcher import PatcherConfig
from paxion_fakes import FAKE, FAKE_MIXING, fake_batch

SMALL = PatcherConfig(heads=2, dim_head=8, num_latents=3)


def _model(backbone: str = FAKE, **kw: object) -> PaxionModel:
    torch.manual_seed(0)
    return PaxionModel(PaxionConfig(backbone=backbone, patcher=kw.pop("patcher", SMALL), **kw))


def _batch(model: PaxionModel, size: int = 4) -> dict:
    pre = model.backbone.preprocess
    batch = fake_batch(size, pre.num_frames, pre.image_size)
    batch["candidates"] = [[f"q{i}? answer {k}" for k in range(5)] for i in range(size)]
    batch["action_antonym_candidates"] = [[f"q{i}? reverse {k}" for k in range(i % 3)] for i in range(size)]
    batch["answer"] = torch.arange(size) % 5
    return batch


COMBOS = [
    dict(objectives=["vtc"]),
    dict(objectives=["vtc", "vac"]),
    dict(objectives=["vtc", "vac", "atm"]),
    dict(objectives=["vtc", "atm"], state_change_filtering_for_atm=False),
    dict(objectives=["vtc"], fuser=FuserConfig(name="xattn", heads=2, dim_head=8)),
    dict(objectives=["vtc"], fuser=FuserConfig(name="gated_xattn", heads=2, dim_head=8)),
    dict(objectives=["vtc"], fuser=FuserConfig(name="side_tuning")),
    dict(objectives=["vtc"], patcher=PatcherConfig(name="transformer", heads=2), use_temporal_embedding=False),
    dict(objectives=["mcqa"]),
    dict(objectives=["mcqa", "vac"]),
    dict(objectives=["mcqa"], fuser=FuserConfig(name="xattn", heads=2, dim_head=8)),
]


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "-".join(c["objectives"]) + ("-" + c["fuser"].name if "fuser" in c else "") + ("-tf" if "patcher" in c else ""))
def test_one_step_changes_only_trainable_parts(combo: dict) -> None:
    model = _model(**combo).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=0.5)
    out = model(_batch(model))
    assert set(out) >= {"loss"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    opt.step()
    after = model.state_dict()
    for key, value in before.items():
        changed = not torch.equal(value, after[key])
        if key.startswith("backbone.") or key == "patcher.proj.weight":
            assert not changed, f"frozen {key} changed"
    changed_keys = {k for k in before if not torch.equal(before[k], after[k])}
    assert "temp" in changed_keys
    assert all(k.startswith(("patcher.", "fuser.", "temp")) for k in changed_keys)
    if model.fuser is not None:
        assert any(k.startswith("fuser.") for k in changed_keys)
    if model.cfg.fuser.name == "gated_xattn":  # zero gates: the fused vector ignores the patcher at first
        assert {"fuser.attn_gate", "fuser.ff_gate"} <= changed_keys
    else:
        assert any(k.startswith("patcher.") for k in changed_keys)
    assert all(p.grad is None for p in model.backbone.parameters())


@pytest.mark.parametrize("backbone", ["internvideo_tiny", "clipvip_tiny", "singularity_tiny", FAKE_MIXING])
def test_one_pass_reversal_equals_two_passes(backbone: str) -> None:
    model = _model(backbone, fuser=FuserConfig(name="xattn", heads=2, dim_head=8), objectives=["vtc"]).eval()
    video = _batch(model, 3)["video_input"]
    with torch.no_grad():
        both = model.encode_video(video, with_reversed=True)
        fwd, rev = model.encode_video(video), model.encode_video(video.flip(1))
    for name in ("pooled", "latents", "fused"):
        joint = getattr(both, name)
        torch.testing.assert_close(joint[:3], getattr(fwd, name), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(joint[3:], getattr(rev, name), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(both.latents[:3], both.latents[3:])  # the temporal embedding sees the order


def test_real_tiny_backbones_train_a_step() -> None:
    for backbone in ("internvideo_tiny", "clipvip_tiny", "singularity_tiny"):
        model = _model(backbone).train()
        out = model(_batch(model, 3))
        out["loss"].backward()
        assert set(out) == {"vtc", "atm", "loss"}
        assert model.patcher.vision_perceiver.latents.grad is not None
        assert all(p.grad is None for p in model.backbone.parameters())


def test_backbone_mode_controls_backbone_dropout() -> None:
    assert _model().train().backbone.training  # the original's quirk: frozen but in train mode
    frozen = _model(backbone_mode="eval").train()
    assert not frozen.backbone.training and frozen.patcher.training


def test_bf16_autocast_forward_and_backward() -> None:
    model = _model(fuser=FuserConfig(name="xattn", heads=2, dim_head=8), objectives=["vtc"]).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_batch(model))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and model.temp.grad is not None


def test_atm_ignores_non_salient_clips() -> None:
    model = _model(objectives=["atm"]).eval()
    batch = _batch(model)
    batch["state_change_saliency_flag"] = torch.zeros(4, dtype=torch.bool)
    assert model(batch)["atm"].item() == 0.0


def test_clear_errors() -> None:
    model = _model()
    batch = _batch(model)
    del batch["action_antonym_text_input"]
    with pytest.raises(KeyError, match="action_antonym_text_input"):
        model(batch)
    with pytest.raises(TypeError, match="uint8"):
        model.encode_video(torch.zeros(1, 4, 3, 8, 8))
    with pytest.raises(ValueError, match="objectives"):
        PaxionConfig(objectives=["vtc", "dvdm"])
    with pytest.raises(ValueError, match="fuser"):
        PaxionConfig(objectives=["vtc", "atm"], fuser=FuserConfig(name="xattn"))


class _HostReadFails(torch.Tensor):
    """An ``answer`` that stands for a device tensor: reading it back on the host would be a sync."""

    def tolist(self):  # type: ignore[override]
        raise AssertionError("answer read back on the host (a device-to-host sync per step)")

    def item(self):  # type: ignore[override]
        raise AssertionError("answer read back on the host (a device-to-host sync per step)")


def test_mcqa_vac_candidates_come_from_the_host_answer_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from paxion.systems.paxion import losses
    from paxion.data.collate import collate

    model = _model(objectives=["mcqa", "vac"]).eval()
    batch = _batch(model)
    answers = batch["answer"].tolist()
    samples = [{"video": v, "idx": i, "answer": a} for i, (v, a) in enumerate(zip(batch["video_input"], answers))]
    assert collate(samples)["answer_list"] == answers
    seen: list[list[list[str]]] = []
    scored = model.candidate_logits

    def record(enc, candidates, module):
        seen.append(candidates)
        return scored(enc, candidates, module)

    monkeypatch.setattr(model, "candidate_logits", record)
    fallback = model(batch)["loss"]  # a hand-built batch: CPU answers, read on the host for free
    with_list = {**batch, "answer": batch["answer"].as_subclass(_HostReadFails), "answer_list": answers}
    loss = model(with_list)["loss"].as_subclass(torch.Tensor)
    assert torch.equal(loss, fallback)
    assert seen[0] == seen[1]
    for cands, ants, ans, got in zip(batch["candidates"], batch["action_antonym_candidates"], answers, seen[1]):
        assert len(got) == 10 and got == cands + losses.pad_antonym_choices(list(ants), cands, ans)
    with pytest.raises(ValueError, match="answer_list"):
        model({**batch, "answer_list": [0]})
