"""Samples -> a batch with the original's keys (docs/DESIGN.md "Data")."""

from __future__ import annotations

from typing import Any

import torch

# sample key -> batch key; lists of python objects stay lists
_LIST_KEYS = {
    "text": "text_input",
    "action_antonym_text": "action_antonym_text_input",
    "object_shuffled_text": "object_shuffled_text_input",
    "video_id": "video_id",
    "template": "template",
    "candidates": "candidates",
    "action_antonym_candidates": "action_antonym_candidates",
    "question_type": "question_type",
}
_TENSOR_KEYS = {
    "idx": torch.int64,
    "answer": torch.int64,
    "text_idx": torch.int64,
    "state_change_saliency_flag": torch.bool,
}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """-> ``video_input`` uint8 (B, T, C, H, W), ``idx`` int64 (B,), texts as lists, ``skipped_videos`` flat.

    ``answer`` also comes as ``answer_list`` (list[int]), which stays on the host when the runner moves tensors.
    """
    if not samples:
        raise ValueError("collate: empty list of samples")
    keys = set(samples[0])
    for i, s in enumerate(samples[1:], start=1):
        if set(s) != keys:
            raise ValueError(f"collate: sample {i} has keys {sorted(s)}, sample 0 has {sorted(keys)}")
    unknown = keys - set(_LIST_KEYS) - set(_TENSOR_KEYS) - {"video", "skipped_videos"}
    if unknown:
        raise ValueError(f"collate: unknown sample keys {sorted(unknown)}")
    batch: dict[str, Any] = {"video_input": torch.stack([s["video"] for s in samples])}  # (B, T, C, H, W)
    for key, dtype in _TENSOR_KEYS.items():
        if key in keys:
            batch[key] = torch.tensor([s[key] for s in samples], dtype=dtype)  # (B,)
    if "answer" in keys:  # host copy: the model builds MCQA candidate strings from it without a device sync
        batch["answer_list"] = [int(s["answer"]) for s in samples]
    for key, out in _LIST_KEYS.items():
        if key in keys:
            batch[out] = [s[key] for s in samples]
    batch["skipped_videos"] = [entry for s in samples for entry in s.get("skipped_videos", ())]
    return batch
