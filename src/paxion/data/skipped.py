"""The record of videos a run could not use: unreadable ones (replaced) and missing ones (left out).

Each file is counted once per split, whatever the number of reads: a clip is read again in every
epoch, an unreadable clip is also met as the replacement of the item before it, and every data loader
worker keeps its own state. ``skipped_videos.json`` holds one entry per (split, path):

    {"split", "dataset", "path", "error", "replaced_by", "kind": "unreadable" | "missing", "phases": [...]}
"""

from __future__ import annotations

from typing import Any, Iterable


def unique_paths(entries: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Entries keyed by (split, path), the first of each kept."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in entries:
        out.setdefault((str(entry.get("split")), str(entry["path"])), entry)
    return out


def missing_entries(datasets: Iterable[Any]) -> list[dict[str, Any]]:
    """The missing-file entries of every dataset that records them (``VideoDataset.missing_entries``)."""
    found = []
    for dataset in datasets:
        parts = getattr(dataset, "datasets", None) or [dataset]  # ConcatDataset: its parts
        for part in parts:
            entries = getattr(part, "missing_entries", None)
            if entries is not None:
                found.extend(entries())
    return found


class SkippedVideos:
    """All the skipped videos of a run, one entry per (split, path), in the order first met."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, entries: Iterable[dict[str, Any]], phase: str, kind: str, split: str) -> int:
        """Record ``entries`` met in ``phase`` (``split`` for those that do not name theirs); -> how many
        distinct files they are."""
        unique = unique_paths({"split": split, **entry} for entry in entries)
        for key, entry in unique.items():
            known = self.entries.setdefault(key, {**entry, "kind": kind, "phases": []})
            if phase not in known["phases"]:
                known["phases"].append(phase)
        return len(unique)

    def count(self, split: str, kind: str) -> int:
        return sum(1 for (s, _), e in self.entries.items() if s == split and e["kind"] == kind)

    def to_list(self) -> list[dict[str, Any]]:
        return list(self.entries.values())
