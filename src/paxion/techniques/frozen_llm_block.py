"""A frozen LLM block on the token input of any submodule of any model, switched on by config.

    techniques:
      frozen_llm_block: {target: patcher, d_llm: 4096, n_heads: 32, first_layer: 15, weights: ...}

The block (:class:`paxion.modules.frozen_llm_block.FrozenLLMBlock`: M1 -> frozen LLaMA layer(s) ->
RMSNorm -> M2) is registered on the model under ``name`` (its state-dict prefix; the target's own keys
do not change) and runs through a forward pre-hook on the first positional input of ``target``, tokens
(B, ..., D) of width ``dim`` (default: the model's ``backbone.vision_width``). For a Paxion model,
``target: patcher`` puts it between the frozen backbone and the Knowledge Patcher, where gradients
reach M1 and M2. VideoMAE's classifier has the block built in (``model.llm_block``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import DictConfig
from torch import nn

from paxion.modules.frozen_llm_block import FrozenLLMBlock, FrozenLLMBlockConfig, apply_to_tokens
from paxion.registry import registry
from paxion.techniques.base import Technique, unwrap

logger = logging.getLogger(__name__)


@dataclass
class FrozenLLMBlockTechniqueConfig(FrozenLLMBlockConfig):
    enable: bool = True
    target: str = "patcher"  # dotted submodule path; its first positional input is the token tensor
    dim: Optional[int] = None  # token width D; None: the model's backbone.vision_width
    name: str = "llm_block"  # attribute (state-dict prefix) of the block on the model


@registry.register("technique", "frozen_llm_block")
class FrozenLLMBlockTechnique(Technique):
    Config = FrozenLLMBlockTechniqueConfig

    def __init__(self, cfg: FrozenLLMBlockTechniqueConfig, experiment: DictConfig, model: nn.Module) -> None:
        super().__init__(cfg, experiment, model)
        inner = unwrap(model)
        try:
            target = inner.get_submodule(cfg.target)
        except AttributeError:
            name = type(inner).__name__
            raise ValueError(f"frozen_llm_block: model {name} has no submodule '{cfg.target}'") from None
        dim = cfg.dim or getattr(getattr(inner, "backbone", None), "vision_width", None)
        if not dim:
            raise ValueError(f"frozen_llm_block: set 'dim' (the token width of '{cfg.target}'s input)")
        if hasattr(inner, cfg.name):
            raise ValueError(f"frozen_llm_block: the model already has an attribute '{cfg.name}'")
        fields = {f.name for f in dataclasses.fields(FrozenLLMBlockConfig)}
        block_cfg = FrozenLLMBlockConfig(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in fields})
        device = next(inner.parameters()).device
        self.block = FrozenLLMBlock(int(dim), block_cfg).to(device)
        inner.add_module(cfg.name, self.block)
        target.register_forward_pre_hook(self._hook)
        logger.info("frozen_llm_block on the input of '%s' (D %d, d_llm %d, layers %s): %d trainable, %d frozen",
                    cfg.target, dim, cfg.d_llm, block_cfg.layer_indices, 2 * int(dim) * cfg.d_llm,
                    self.block.frozen_parameters())

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (apply_to_tokens(self.block, args[0]), *args[1:])
