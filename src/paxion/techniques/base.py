"""Training and evaluation techniques the runner switches on by config, for any model.

A technique is a registered class (registry kind ``"technique"``) with a ``Config`` dataclass; an
experiment lists the ones it uses in a top-level ``techniques:`` mapping (name -> settings), applied
in that order::

    techniques:
      iwo: {sample_low: 0.0, sample_high: 0.6, loss_ratio: 0.5}
      weight_patching: {ratio: 0.5}
      swa: {start: 2, end: 22}

The runner calls three hooks, each a no-op unless a technique overrides it:

* ``wrap_train_step(step, backward)`` -> the training step to call (IWO adds a pass at interpolated weights);
* ``eval_context(model)`` -> a context manager around final/test evaluation (weight patching);
* ``on_epoch_end(model, epoch)`` after each training epoch (SWA).

Techniques that interpolate need a *reference state dict* θ0 in the model's own key space:
``reference: model`` asks the model (``model.reference_state_dict()``, e.g. Open-VCLIP's original
CLIP), ``reference: initial`` snapshots the trainable parameters when the run starts (any model,
Paxion included), any other value is a file: a state dict in the model's key space (bare, or under
``model_state`` / ``model`` / ``state_dict``), or a file in a release's own layout that the model's
converter reads (``model.reference_from_file(path)``: Open-VCLIP takes an OpenAI CLIP file, its
``swa_*.pth`` release or a SlowFast ``checkpoint_epoch_*.pyth``).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from paxion.backbones.safe_load import torch_load
from paxion.registry import registry

logger = logging.getLogger(__name__)

StepFn = Callable[[nn.Module, dict], tuple[torch.Tensor, dict[str, torch.Tensor]]]
BackwardFn = Callable[[torch.Tensor], None]
State = dict[str, torch.Tensor]


class Technique:
    """Base class: every hook is a no-op. ``cfg`` is the technique's dataclass, ``experiment`` the whole config."""

    def __init__(self, cfg: Any, experiment: DictConfig, model: nn.Module) -> None:
        self.cfg = cfg
        self.experiment = experiment

    def wrap_train_step(self, step: StepFn, backward: BackwardFn) -> StepFn:
        return step

    @contextlib.contextmanager
    def eval_context(self, model: nn.Module) -> Iterator[None]:
        yield

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        return None


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def reference_state(model: nn.Module, source: str) -> State:
    """θ0 in ``model``'s state-dict key space, fp32 copies on the model's device (see the module docstring)."""
    model = unwrap(model)
    params = dict(model.named_parameters())
    own = model.state_dict()
    if source == "model":
        getter = getattr(model, "reference_state_dict", None)
        if not callable(getter):
            raise ValueError(
                f"technique reference 'model': {type(model).__name__} has no reference_state_dict(); "
                "use reference: initial or a state-dict file"
            )
        state = getter()
    elif source == "initial":
        state = {name: p.detach() for name, p in params.items() if p.requires_grad}
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"technique reference file '{source}' not found")
        state = reference_file(model, path)
    unknown = [key for key in state if key not in own]
    if unknown:
        raise KeyError(f"reference state ({source}) key '{unknown[0]}' is not in the model's state dict")
    if not state:
        raise ValueError(f"reference state ({source}) is empty: nothing to interpolate")
    return {key: value.detach().to(own[key].device, torch.float32).clone() for key, value in state.items()}


def reference_file(model: nn.Module, path: Path) -> State:
    """A reference file's tensors in ``model``'s key space: its converter's reading if it has one, else a state dict."""
    convert = getattr(model, "reference_from_file", None)
    if callable(convert):
        return convert(str(path))
    raw = torch_load(path)
    for wrapper in ("model_state", "model", "state_dict"):
        if isinstance(raw, dict) and isinstance(raw.get(wrapper), dict):
            return raw[wrapper]
    return raw


def live_tensors(model: nn.Module, keys: list[str]) -> dict[str, torch.Tensor]:
    """The model's own parameter/buffer tensors for ``keys`` (edited in place by interpolation)."""
    own = unwrap(model).state_dict(keep_vars=True)
    return {key: own[key] for key in keys}


@torch.no_grad()
def interpolate_(model: nn.Module, reference: State, ratio: float) -> State:
    """In place θ <- ratio·θ0 + (1 - ratio)·θ on the keys of ``reference``; returns exact copies to restore."""
    tensors = live_tensors(model, list(reference))
    saved = {key: t.detach().clone() for key, t in tensors.items()}
    for key, tensor in tensors.items():
        mixed = reference[key] * ratio + tensor.detach().float() * (1.0 - ratio)
        tensor.data.copy_(mixed.to(tensor.dtype))
    return saved


@torch.no_grad()
def restore_(model: nn.Module, saved: State) -> None:
    """Put back the tensors :func:`interpolate_` returned, bit for bit."""
    for key, tensor in live_tensors(model, list(saved)).items():
        tensor.data.copy_(saved[key])


class TechniqueSet:
    """The configured techniques, composed in config order."""

    def __init__(self, techniques: list[Technique]) -> None:
        self.techniques = techniques

    def wrap_train_step(self, step: StepFn, backward: BackwardFn) -> StepFn:
        for technique in self.techniques:
            step = technique.wrap_train_step(step, backward)
        return step

    @contextlib.contextmanager
    def eval_context(self, model: nn.Module) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for technique in self.techniques:
                stack.enter_context(technique.eval_context(model))
            yield

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        for technique in self.techniques:
            technique.on_epoch_end(model, epoch)

    def __len__(self) -> int:
        return len(self.techniques)


def build_techniques(experiment: DictConfig, model: nn.Module) -> TechniqueSet:
    """The techniques under ``techniques:`` (none when the section is absent or empty)."""
    section = OmegaConf.select(experiment, "techniques", default=None) if experiment is not None else None
    built: list[Technique] = []
    for name in (section or {}).keys():
        cls = registry.get("technique", str(name))
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls.Config), section[name]))
        built.append(cls(cfg, experiment, model))
        logger.info("technique %s: %s", name, cfg)
    return TechniqueSet(built)
