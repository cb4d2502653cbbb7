"""Lower-bound message age without an enqueue stamp.

Without ``install(app)`` a Celery message does not say when it was published. What the exporter
can see is the message at the head of each level: if the same message is still at the head on
a later scrape, it has waited at least that long. The first sighting counts as age 0, so the
value is a lower bound (it also restarts at 0 when the exporter restarts).
"""

from __future__ import annotations


class HeadTracker:
    """Remembers, per key, which message was at the head and when it was first seen there.

    Holds one entry per watched non-empty level, so its size is bounded by the configuration.
    """

    def __init__(self) -> None:
        self._heads: dict[str | bytes, tuple[str, float]] = {}

    def observe(self, key: str | bytes, identity: str, now: float) -> float:
        """Record that ``identity`` is at the head of ``key``; return how long it has been."""
        seen = self._heads.get(key)
        if seen is not None and seen[0] == identity:
            return max(0.0, now - seen[1])
        self._heads[key] = (identity, now)
        return 0.0

    def forget_except(self, keys: set[str] | set[bytes]) -> None:
        """Drop levels that were empty (or no longer watched) in this scrape."""
        for key in list(self._heads):
            if key not in keys:
                del self._heads[key]

    def __len__(self) -> int:
        return len(self._heads)
