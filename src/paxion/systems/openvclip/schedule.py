"""SlowFast's learning-rate policy ``cosine`` with linear warmup, as Open-VCLIP's recipe sets it.

At the fractional epoch ``e = epoch + it / iters_per_epoch``, with ``w`` warmup epochs
(``run.warmup_steps / iters_per_epoch``, the original's ``SOLVER.WARMUP_EPOCHS``) and the cosine
started after the warmup (``SOLVER.COSINE_AFTER_WARMUP: True`` in its config):
``cos(e) = min_lr + (init_lr - min_lr) * (1 + cos(pi * (e - w) / (max_epoch - w))) / 2``;
for ``e < w`` the rate rises linearly from ``warmup_lr`` (``SOLVER.WARMUP_START_LR``) to ``cos(w)``.
"""

from __future__ import annotations

import math

from paxion.engine.optim import _Schedule
from paxion.registry import registry


@registry.register("lr_schedule", "slowfast_cosine")
class SlowFastCosineSchedule(_Schedule):
    def cosine(self, epoch: float, warmup: float) -> float:
        progress = (epoch - warmup) / max(self.max_epoch - warmup, 1e-12)
        return self.min_lr + (self.init_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def lr_at(self, epoch: int, it: int) -> float:
        exact = epoch + it / self.iters_per_epoch
        warmup = self.warmup_steps / self.iters_per_epoch
        if exact < warmup:
            start = self.warmup_lr if self.warmup_lr >= 0 else 0.0
            return start + (self.cosine(warmup, warmup) - start) * exact / warmup
        return self.cosine(exact, warmup)
