"""The series budget of the event metrics: how long a label value may be, and how many series
(and samples) the task metrics of all brokers may hold together.

Why: events come from anyone who can publish on the broker. The per-axis caps (task names,
queue names, exception names, workers) bound each label alone, but not their product
(task × queue × outcome × exception), and not the length of a value: 500 task names of 10 kB
once made one scrape 274 MB (issue 24). Here:

* every label value taken from an event (task, queue, exception, worker) and every task id is
  cut by :func:`cut` to ``events.max_label_length`` characters, the cut ending in ``~`` and 8
  hex digits of a hash of the whole value, so two long names sharing a prefix stay two series;
* :class:`SeriesBudget` admits a new series of a family only while the family holds fewer than
  ``events.max_series_per_family`` series and the task metrics of the whole exporter fewer
  than ``events.max_event_samples`` samples (a histogram series costs its buckets + 3). A
  series refused is observed under its family's ``(other)`` labels instead (always kept, one
  per broker and priority level), and the tracker counts it in
  ``celery_event_series_dropped_total``.

Series are never given back: the counters they hold must not reset while the exporter runs.
"""

from __future__ import annotations

import hashlib
import threading

#: Separates the kept prefix of a cut value from its hash.
CUT_MARK = "~"
#: Hex digits of the hash that ends a cut value.
HASH_DIGITS = 8


def cut(value: str, limit: int) -> str:
    """``value`` when at most ``limit`` characters, else its first ``limit - 9`` characters,
    ``~`` and 8 hex digits of its BLAKE2b hash: exactly ``limit`` characters, the same for the
    same value in every process (a label stays put across restarts)."""
    if len(value) <= limit:
        return value
    digest = hashlib.blake2b(
        value.encode("utf-8", "surrogatepass"), digest_size=HASH_DIGITS // 2
    ).hexdigest()
    return value[: limit - HASH_DIGITS - len(CUT_MARK)] + CUT_MARK + digest


class SeriesBudget:
    """Series and samples handed out to the task metrics of every broker's tracker (each
    tracker asks under its own lock; this one guards the shared counts)."""

    def __init__(self, per_family: int, samples: int) -> None:
        self.per_family = per_family
        self.samples = samples
        self._lock = threading.Lock()
        self._families: dict[str, int] = {}
        self._used = 0

    def admit(self, family: str, cost: int) -> bool:
        """Take one series of ``family`` costing ``cost`` samples; False when over budget."""
        with self._lock:
            held = self._families.get(family, 0)
            if held >= self.per_family or self._used + cost > self.samples:
                return False
            self._families[family] = held + 1
            self._used += cost
            return True

    @property
    def used(self) -> int:
        """Samples handed out so far."""
        with self._lock:
            return self._used
