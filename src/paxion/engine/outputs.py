"""Evaluation outputs across ranks: each rank's per-sample outputs, merged so that every sample counts once.

A task's ``eval_step`` returns a dict of tensors (first dim = batch) or lists, with an ``idx`` entry;
:func:`concat_outputs` joins one rank's batches, :func:`unique_by_idx` merges the gathered ranks, keeps
each ``idx`` once (padding duplicates) and sorts by it.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch


def concat_outputs(chunks: list[dict[str, Any]], split: str) -> Optional[dict[str, Any]]:
    """This rank's eval outputs as CPU tensors (floats as float32) or lists; None for an empty shard."""
    if not chunks:
        return None
    out: dict[str, Any] = {}
    for key in chunks[0]:
        values = [c[key] for c in chunks]
        if torch.is_tensor(values[0]):
            t = torch.cat(values).cpu()  # (N_rank, ...)
            out[key] = t.float() if t.is_floating_point() else t
        else:
            out[key] = [x for v in values for x in v]
    if "idx" not in out:
        raise KeyError(f"eval_step outputs for split '{split}' lack the required 'idx' entry: {sorted(out)}")
    return out


def unique_by_idx(parts: list[dict[str, Any]], split: str) -> dict[str, Any]:
    """Merge the ranks' outputs, keep each ``idx`` once and sort by it."""
    if not parts:
        raise ValueError(f"split '{split}' produced no evaluation outputs (empty dataset?)")
    merged = {
        key: torch.cat([p[key] for p in parts])
        if torch.is_tensor(parts[0][key])
        else [x for p in parts for x in p[key]]
        for key in parts[0]
    }
    _, first = np.unique(merged["idx"].numpy(), return_index=True)  # sorted unique idx, first occurrence
    keep = torch.from_numpy(first)
    return {k: v[keep] if torch.is_tensor(v) else [v[i] for i in first] for k, v in merged.items()}
