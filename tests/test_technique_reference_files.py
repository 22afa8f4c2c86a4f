"""A technique's ``reference:`` file in a release's own layout, read by the model's converter.

Open-VCLIP's θ0 can be an OpenAI CLIP file (TorchScript archive or plain state dict), the
``swa_*.pth`` release, a SlowFast ``checkpoint_epoch_*.pyth`` or a state dict of the model itself;
all give the same tensors in the model's key space, as stored (no fp16 round trip).
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from test_openvclip import FakeCfgNode, _holder_tree
from torch import nn

from paxion.backbones.base import CheckpointError
from paxion.systems.openvclip import OpenVCLIP, OpenVCLIPModelConfig
from paxion.techniques import build_techniques
from paxion.techniques.base import reference_state

PREFIX = "backbone.model."


def tiny_system() -> OpenVCLIP:
    torch.manual_seed(0)
    return OpenVCLIP(OpenVCLIPModelConfig(backbone="tiny", num_frames=4)).eval()


@pytest.fixture(scope="module")
def clip_state() -> dict[str, torch.Tensor]:
    """Other weights than the system's own, in OpenAI CLIP key space, fp16-exact (so the JIT file holds them too)."""
    torch.manual_seed(5)
    state = {k[len(PREFIX):]: v for k, v in tiny_system().state_dict().items() if k.startswith(PREFIX)}
    return {k: (torch.randn_like(v) * 0.1).half().float() for k, v in state.items()}


def release_files(folder, clip_state) -> dict[str, str]:
    files = {
        "openai_state_dict": folder / "ViT-tiny-state.pt",
        "openai_jit": folder / "ViT-tiny.pt",
        "release_swa": folder / "swa_2_22.pth",
        "slowfast_pyth": folder / "checkpoint_epoch_00004.pyth",
        "model_key_space": folder / "theta0.pth",
    }
    torch.save(clip_state, files["openai_state_dict"])
    torch.jit.script(_holder_tree(clip_state, text_layers=2)).save(str(files["openai_jit"]))
    torch.save({"model_state": {"model." + k: v for k, v in clip_state.items()}}, files["release_swa"])
    ddp = {"module.model." + k: v for k, v in clip_state.items()}
    torch.save({"epoch": 4, "model_state": ddp, "optimizer_state": {}, "cfg": FakeCfgNode(A=1)}, files["slowfast_pyth"])
    torch.save({PREFIX + k: v for k, v in clip_state.items()}, files["model_key_space"])
    return {name: str(path) for name, path in files.items()}


@pytest.mark.parametrize("layout", ["openai_state_dict", "openai_jit", "release_swa", "slowfast_pyth", "model_key_space"])
def test_every_layout_gives_the_same_reference(layout, clip_state, tmp_path):
    path = release_files(tmp_path, clip_state)[layout]
    model = tiny_system()
    reference = reference_state(model, path)
    assert set(reference) == {PREFIX + k for k in clip_state}
    for key, value in clip_state.items():
        assert torch.equal(reference[PREFIX + key], value), key
    own = model.state_dict()[PREFIX + "visual.proj"]
    assert not torch.equal(own, clip_state["visual.proj"])  # the reference is the file's, not the model's


def test_techniques_take_a_release_file_from_the_config(clip_state, tmp_path):
    path = release_files(tmp_path, clip_state)["slowfast_pyth"]
    model = tiny_system()
    section = {"iwo": {"reference": path}, "weight_patching": {"reference": path, "ratio": 1.0},
               "swa": {"start": 0, "end": 1, "reference": path}}
    experiment = OmegaConf.create({"run": {"max_epoch": 1, "output_dir": str(tmp_path)}, "techniques": section})
    techniques = build_techniques(experiment, model)
    iwo, patching = techniques.techniques[0], techniques.techniques[1]
    assert torch.equal(iwo.reference[PREFIX + "text_projection"], clip_state["text_projection"])
    with techniques.eval_context(model):  # ratio 1: the model holds θ0 exactly
        assert torch.equal(model.state_dict()[PREFIX + "ln_final.weight"], clip_state["ln_final.weight"])
    assert not torch.equal(model.state_dict()[PREFIX + "ln_final.weight"], clip_state["ln_final.weight"])
    assert torch.equal(patching.reference[PREFIX + "visual.conv1.weight"], clip_state["visual.conv1.weight"])


def test_a_file_of_another_model_is_refused_by_name(tmp_path):
    torch.save({"model_state": {"encoder.layer.0.weight": torch.zeros(2)}}, tmp_path / "bert.pth")
    with pytest.raises(CheckpointError, match="bert.pth.*encoder.layer.0.weight"):
        reference_state(tiny_system(), str(tmp_path / "bert.pth"))


def test_models_without_a_converter_read_wrapped_state_dicts(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2))
    theta0 = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    torch.save({"model_state": theta0}, tmp_path / "wrapped.pth")
    reference = reference_state(model, str(tmp_path / "wrapped.pth"))
    assert all(torch.equal(reference[k], v) for k, v in theta0.items())
