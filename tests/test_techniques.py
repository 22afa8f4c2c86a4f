"""Techniques: IWO (gradient identity, exact restore), weight patching ratios, SWA means, config section."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from paxion.config import ConfigError, load_config
from paxion.registry import registry
from paxion.techniques import build_techniques
from paxion.techniques.base import interpolate_, reference_state, restore_
from paxion.techniques.swa import average_states, epoch_from_name
from paxion.tools.swa import main as swa_main


class TwoLayer(nn.Module):
    """A model with a reference state dict on its first layer only (like CLIP keys vs extra heads)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(4, 3)
        self.head = nn.Linear(3, 2)
        self.theta0 = {k: torch.randn_like(v) for k, v in self.body.state_dict().items()}

    def reference_state_dict(self) -> dict[str, torch.Tensor]:
        return {f"body.{k}": v for k, v in self.theta0.items()}

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        logits = self.head(torch.tanh(self.body(batch["x"])))
        return {"loss": nn.functional.cross_entropy(logits, batch["y"])}


def step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
    out = model(batch)
    return out["loss"], {}


def batch() -> dict:
    gen = torch.Generator().manual_seed(1)
    return {"x": torch.randn(8, 4, generator=gen), "y": torch.randint(0, 2, (8,), generator=gen)}


def experiment(techniques: dict, tmp_path=None) -> OmegaConf:
    run = {"max_epoch": 3, "output_dir": str(tmp_path or ".")}
    return OmegaConf.create({"run": run, "techniques": techniques})


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def iwo_step(model: nn.Module, **knobs) -> dict:
    cfg = registry.get("technique", "iwo").Config(**knobs)
    technique = registry.get("technique", "iwo")(cfg, experiment({}), model)
    wrapped = technique.wrap_train_step(step, lambda loss: loss.backward())
    loss, logs = wrapped(model, batch())
    loss.backward()  # the runner's backward of the plain loss
    return logs


def test_iwo_at_alpha_zero_is_one_plus_lambda_times_the_plain_gradient():
    plain = TwoLayer()
    step(plain, batch())[0].backward()
    model = TwoLayer()
    logs = iwo_step(model, sample_low=0.0, sample_high=0.0, loss_ratio=0.5)
    assert float(logs["iwo_alpha"]) == 0.0
    for name, grad in grads(model).items():
        torch.testing.assert_close(grad, 1.5 * grads(plain)[name], rtol=1e-6, atol=1e-7)


def test_iwo_gradient_is_plain_plus_lambda_times_gradient_at_interpolated_weights():
    model = TwoLayer()
    torch.manual_seed(5)
    logs = iwo_step(model, sample_low=0.2, sample_high=0.7, loss_ratio=0.5)
    alpha = float(logs["iwo_alpha"])
    assert 0.2 <= alpha <= 0.7
    # by hand: the gradient at θα (reference keys only), scaled by λ, plus the plain gradient
    at_alpha = TwoLayer()
    with torch.no_grad():
        for key, value in at_alpha.reference_state_dict().items():
            param = at_alpha.get_parameter(key)
            param.copy_(value * alpha + param * (1 - alpha))
    step(at_alpha, batch())[0].backward()
    plain = TwoLayer()
    step(plain, batch())[0].backward()
    for name, grad in grads(model).items():
        expected = grads(plain)[name] + 0.5 * grads(at_alpha)[name]
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logs["iwo_loss"], step(at_alpha, batch())[0].detach())


def test_iwo_restores_weights_bit_exactly():
    model = TwoLayer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    iwo_step(model, sample_low=0.3, sample_high=0.9, loss_ratio=1.0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_interpolation_touches_only_reference_keys():
    model = TwoLayer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reference = reference_state(model, "model")
    saved = interpolate_(model, reference, 0.25)
    assert torch.equal(model.head.weight, before["head.weight"])
    torch.testing.assert_close(model.body.weight, 0.25 * reference["body.weight"] + 0.75 * before["body.weight"])
    restore_(model, saved)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0])
def test_weight_patching_ratios(ratio):
    model = TwoLayer()
    fine_tuned = {k: v.clone() for k, v in model.state_dict().items()}
    theta0 = model.reference_state_dict()
    techniques = build_techniques(experiment({"weight_patching": {"ratio": ratio}}), model)
    with techniques.eval_context(model):
        expected = {0.0: fine_tuned["body.weight"], 1.0: theta0["body.weight"]}.get(
            ratio, (theta0["body.weight"] + fine_tuned["body.weight"]) / 2
        )
        torch.testing.assert_close(model.body.weight.detach(), expected, rtol=0, atol=1e-7)
        assert torch.equal(model.head.weight, fine_tuned["head.weight"])
    assert all(torch.equal(v, fine_tuned[k]) for k, v in model.state_dict().items())


def test_initial_reference_serves_models_without_one():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].requires_grad_(False)  # frozen part: not in the snapshot
    reference = reference_state(model, "initial")
    assert sorted(reference) == ["1.bias", "1.weight"]
    with pytest.raises(ValueError, match="reference_state_dict"):
        reference_state(model, "model")


def planted(value: float) -> dict[str, torch.Tensor]:
    return {"model.w": torch.full((2, 3), value), "model.b": torch.tensor([value, 2 * value]), "steps": torch.tensor(7)}


def test_average_states_is_the_exact_mean():
    states = [planted(1.0), planted(2.0), planted(6.0)]
    average = average_states(states)
    assert torch.equal(average["model.w"], torch.full((2, 3), 3.0))
    assert torch.equal(average["model.b"], torch.tensor([3.0, 6.0]))
    assert torch.equal(average["steps"], torch.tensor(7))
    with pytest.raises(KeyError, match="differ"):
        average_states([planted(1.0), {"model.w": torch.zeros(2, 3)}])


def test_swa_tool_averages_the_epoch_window(tmp_path):
    for epoch, value in [(1, 100.0), (2, 1.0), (3, 2.0), (4, 6.0), (5, -50.0)]:
        torch.save({"epoch": epoch, "model_state": planted(value)}, tmp_path / f"checkpoint_epoch_{epoch:05d}.pyth")
    assert epoch_from_name(tmp_path / "checkpoint_epoch_00004.pyth") == 4
    assert epoch_from_name("out/checkpoint_3.pth") == 4  # the runner's file after its 0-based epoch 3
    assert swa_main([str(tmp_path), "--start", "2", "--end", "4"]) == 0
    result = torch.load(tmp_path / "swa_2_4.pth", weights_only=True)
    assert set(result) == {"model_state"}
    assert torch.equal(result["model_state"]["model.w"], torch.full((2, 3), 3.0))  # epochs 1 and 5 skipped
    assert swa_main([str(tmp_path), "--start", "30", "--end", "40"]) == 1


def test_swa_runner_option_averages_epochs_in_memory(tmp_path):
    model = TwoLayer()
    techniques = build_techniques(experiment({"swa": {"start": 2, "end": 3}}, tmp_path), model)
    seen = []
    for epoch, value in enumerate([10.0, 1.0, 3.0]):  # epochs 1, 2, 3 in the original's numbering
        with torch.no_grad():
            model.body.weight.fill_(value)
        seen.append(value)
        techniques.on_epoch_end(model, epoch)
    assert torch.equal(model.body.weight, torch.full((3, 4), 2.0))  # mean of epochs 2 and 3, applied
    saved = torch.load(tmp_path / "swa_2_3.pth", weights_only=True)["model_state"]
    assert torch.equal(saved["body.weight"], torch.full((3, 4), 2.0))


def test_techniques_section_is_validated(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("techniques:\n  iwo: {sample_low: 0.1}\n  weight_patching: {ratio: 0.3}\n")
    cfg = load_config(path)
    assert list(cfg.techniques) == ["iwo", "weight_patching"]
    assert cfg.techniques.iwo.sample_high == 0.6 and cfg.techniques.iwo.loss_ratio == 0.5
    path.write_text("techniques:\n  iwo: {sample_lo: 0.1}\n")
    with pytest.raises(ConfigError, match="sample_lo"):
        load_config(path)
    path.write_text("techniques:\n  iwo: {sample_low: 0.8, sample_high: 0.2}\n")
    with pytest.raises(ConfigError, match="sample_low"):
        load_config(path)
    path.write_text("techniques:\n  mixup: {}\n")
    with pytest.raises(ConfigError, match="valid technique names"):
        load_config(path)


# ----------------------------------------------------------------------------- through the runner (toy task)


def _result(folder, split: str = "test") -> dict:
    return json.loads((folder / "result" / f"{split}_output.json").read_text())


def test_runner_iwo_swa_and_patching_on_the_toy_task(tmp_path):
    from conftest import toy_argv

    from paxion.engine.checkpoint import load_checkpoint
    from paxion.cli.train import main

    swa_dir, untrained_dir, patched_dir = tmp_path / "swa", tmp_path / "untrained", tmp_path / "patched"
    iwo = ["techniques.iwo.reference=initial", "techniques.iwo.sample_low=0.2", "techniques.iwo.sample_high=0.4"]
    main(toy_argv(swa_dir, *iwo, "techniques.swa.start=1", "techniques.swa.end=2", "run.valid_splits=[]",
                  "run.test_splits=[test]", save_after_every_epoch=True))
    log = [json.loads(line) for line in (swa_dir / "metrics.jsonl").read_text().splitlines()]
    alphas = [r["iwo_alpha"] for r in log if "iwo_alpha" in r]
    assert alphas and all(0.2 <= a <= 0.4 for a in alphas)
    averaged = torch.load(swa_dir / "swa_1_2.pth", weights_only=True)["model_state"]
    epochs = [load_checkpoint(swa_dir / f"checkpoint_{e}.pth")["model"] for e in (0, 1)]
    for key, value in epochs[0].items():  # runner checkpoint_{e}.pth holds epoch e + 1 of the original's count
        torch.testing.assert_close(averaged[key], (value + epochs[1][key]) / 2)
    assert swa_main([str(swa_dir), "--start", "1", "--end", "2", "--output", str(tmp_path / "tool")]) == 0
    from_tool = torch.load(tmp_path / "tool" / "swa_1_2.pth", weights_only=True)["model_state"]
    for key, value in epochs[0].items():  # the tool over the runner's files: the same window, the same mean
        torch.testing.assert_close(from_tool[key], averaged[key])
    # ratio 1 patches every trained weight back to its initial value: the untrained model's scores
    main(toy_argv(untrained_dir, "run.valid_splits=[]", "run.test_splits=[test]", max_epoch=0))
    main(toy_argv(patched_dir, "techniques.weight_patching.reference=initial", "techniques.weight_patching.ratio=1.0",
                  "run.valid_splits=[]", "run.test_splits=[test]"))
    untrained, patched = _result(untrained_dir), _result(patched_dir)
    numbers = [k for k, v in untrained.items() if isinstance(v, float) and k != "epoch"]
    assert numbers and all(patched[k] == pytest.approx(untrained[k], rel=1e-6) for k in numbers)


def test_iwo_on_a_paxion_model_interpolates_the_patcher_towards_its_start():
    from paxion_fakes import FAKE, fake_batch

    from paxion.systems.paxion.model import PaxionConfig, PaxionModel
    from paxion.systems.paxion.patcher import PatcherConfig

    torch.manual_seed(0)
    model = PaxionModel(PaxionConfig(backbone=FAKE, patcher=PatcherConfig(heads=2, dim_head=8, num_latents=3)))
    techniques = build_techniques(experiment({"iwo": {"reference": "initial", "sample_low": 0.5,
                                                      "sample_high": 0.5}}), model)
    reference = techniques.techniques[0].reference
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(reference) == trainable and trainable  # the patcher (and whatever else trains), never the backbone
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(1.0)  # "fine-tuned" away from the start
    before = {k: v.clone() for k, v in model.state_dict().items()}
    step = techniques.wrap_train_step(lambda m, b: (m(b)["loss"], {}), lambda loss: loss.backward())
    loss, logs = step(model, fake_batch())
    assert float(logs["iwo_alpha"]) == 0.5 and torch.isfinite(loss)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
