"""What the benchmarks share: timing by median of repeats. (Private services come from
bench/loadtest/services.py.)"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """Median, minimum and 90th percentile of ``repeat`` timed calls, after one warm-up call
    (connections, caches)."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times), times[0], times[max(0, int(len(times) * 0.9) - 1)]
