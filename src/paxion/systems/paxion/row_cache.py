"""The least-recently-used store behind the frozen text and video feature caches.

A batch asks for one row per key; only the keys it lacks are computed, once each even when repeated in
the batch, in one call; then the batch's keys are refreshed, the new rows inserted and the oldest rows
evicted beyond ``capacity``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Hashable, Sequence


class RowCache:
    """keys -> rows; ``compute(first_positions)`` returns the rows of the missing keys, in order."""

    def __init__(self, capacity: int, what: str) -> None:
        if capacity < 0:
            raise ValueError(f"{what} cache capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._rows: OrderedDict[Hashable, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        self._rows.clear()

    def fetch(self, keys: Sequence[Hashable], compute: Callable[[list[int]], Sequence[Any]]) -> list[Any]:
        """The row of every key; ``compute`` gets the batch position of the first holder of each missing key."""
        missing = list(dict.fromkeys(k for k in keys if k not in self._rows))  # unique, in order
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        fresh: dict[Hashable, Any] = {}
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}  # key -> first position holding it
            fresh = dict(zip(missing, compute([first[k] for k in missing])))
        rows = [fresh[k] if k in fresh else self._rows[k] for k in keys]
        for key, row in zip(keys, rows):  # refresh recency, insert the new rows, then evict the oldest
            self._rows[key] = row
            self._rows.move_to_end(key)
        while len(self._rows) > self.capacity:
            self._rows.popitem(last=False)
        return rows
