"""Clock offset of every host the exporter hears from (issue 21: skew-proof ages and waits).

Source: every Celery event carries its emitter's ``time.time()`` in ``timestamp`` (worker
heartbeats every 2 s, task events from workers, task-sent from producers with
``task_send_sent_event``). The exporter notes when it received the event on its own clock.
Transit (broker, batching, the consumer thread) only ever *adds* delay, so

    timestamp - received = offset - transit <= offset

and the largest ``timestamp - received`` over a sliding window is the tightest estimate: the
host's offset minus the fastest transit of the window (milliseconds on a healthy broker). A
second source needs no producer events: a worker's task-info event carries the producer's
publish stamp (``attempt_at``, producer clock) and is sent when the worker received the message
(its ``timestamp``, worker clock, corrected by the worker's own estimate); the message waited
in between, so it is one more sample of the same kind for the *producer's* host.

Sign: **offset = host clock - exporter clock**; positive means the host is ahead. A stamp
``s`` taken on the host is ``s - offset`` on the exporter's clock.

The window is a few buckets of the maximum per host, so a clock that was stepped (ntpdate,
a VM resumed) is followed within one window and an old maximum does not stick forever. Hosts
are keyed by the part after ``@`` of a Celery node name (``celery@web1``, ``gen42@web1``: one
clock per machine), at most ``max_hosts`` of them (first come; a host silent for a whole window
is forgotten and frees its place), so memory and series stay bounded.
"""

from __future__ import annotations

import math
from typing import Any

#: Default sliding window (seconds) and how many buckets it is cut into.
DEFAULT_WINDOW_SECONDS = 300.0
DEFAULT_BUCKETS = 5


def host_of(nodename: Any) -> str | None:
    """The machine part of a Celery node name (``celery@web1`` -> ``web1``); the name itself
    when it has no ``@``; None when it is not a non-empty string."""
    if not isinstance(nodename, str) or not nodename:
        return None
    host = nodename.rpartition("@")[2]
    return host or None


class ClockOffsets:
    """Sliding-window maximum of ``stamp - received`` per host: an estimate of each host's
    clock offset against the exporter's. Not thread-safe: the tracker calls it under its lock."""

    def __init__(
        self,
        max_hosts: int,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        buckets: int = DEFAULT_BUCKETS,
    ) -> None:
        if max_hosts < 0 or window_seconds <= 0 or buckets < 1:
            raise ValueError("max_hosts >= 0, window_seconds > 0 and buckets >= 1 are required")
        self.max_hosts = max_hosts
        self.window_seconds = window_seconds
        self.bucket_seconds = window_seconds / buckets
        self.buckets = buckets
        #: host -> {bucket index: max(stamp - received) seen in that bucket}
        self._hosts: dict[str, dict[int, float]] = {}
        #: Samples of hosts beyond max_hosts, not estimated.
        self.hosts_dropped = 0
        #: Bucket of the last sweep for silent hosts: at most one sweep per bucket, so a flood
        #: of made-up host names costs O(1) per event, not a sweep each.
        self._swept: int | None = None
        #: host -> (first live bucket, offset): offset() is asked for twice per task-started,
        #: and the answer only moves when a bucket changes or the window slides.
        self._offsets: dict[str, tuple[int, float | None]] = {}

    def observe(self, host: str | None, stamp: Any, received: float) -> None:
        """One sample: ``stamp`` taken on ``host``'s clock, ``received`` on the exporter's."""
        # Fast path (every event): a known host whose bucket already holds a larger sample
        # changes nothing. A non-finite sample either takes the slow path (NaN, +inf) or is
        # dropped here as it would be there (-inf).
        buckets = self._hosts.get(host)  # type: ignore[arg-type]
        if buckets is not None and type(stamp) is float:
            held = buckets.get(int(received // self.bucket_seconds))
            if held is not None and stamp - received <= held:
                return
        if host is None or isinstance(stamp, bool) or not isinstance(stamp, int | float):
            return
        sample = float(stamp) - received
        if not math.isfinite(sample):
            return
        buckets = self._hosts.get(host)
        if buckets is None:
            if len(self._hosts) >= self.max_hosts:
                self._sweep(received)
            if len(self._hosts) >= self.max_hosts:
                self.hosts_dropped += 1
                return
            buckets = self._hosts[host] = {}
        index = int(received // self.bucket_seconds)
        held = buckets.get(index)
        if held is None or sample > held:
            buckets[index] = sample
            self._offsets.pop(host, None)
            if len(buckets) > self.buckets:
                for old in sorted(buckets)[: len(buckets) - self.buckets]:
                    del buckets[old]

    def _live(self, buckets: dict[int, float], now: float) -> list[float]:
        first = int(now // self.bucket_seconds) - self.buckets + 1
        return [value for index, value in buckets.items() if index >= first]

    def _sweep(self, now: float) -> None:
        index = int(now // self.bucket_seconds)
        if self._swept != index:
            self._swept = index
            self._expire(now)

    def _expire(self, now: float) -> None:
        for host in [h for h, b in self._hosts.items() if not self._live(b, now)]:
            del self._hosts[host]
            self._offsets.pop(host, None)

    def offset(self, host: str | None, now: float) -> float | None:
        """``host``'s estimated offset (host clock - exporter clock), None when unknown."""
        buckets = self._hosts.get(host) if host is not None else None
        if not buckets:
            return None
        first = int(now // self.bucket_seconds) - self.buckets + 1
        cached = self._offsets.get(host)  # type: ignore[arg-type]
        if cached is not None and cached[0] == first:
            return cached[1]
        live = [value for index, value in buckets.items() if index >= first]
        offset = max(live) if live else None
        self._offsets[host] = (first, offset)  # type: ignore[index]
        return offset

    def offsets(self, now: float) -> dict[str, float]:
        """{host: offset} of every host heard from within the window; forgets the others."""
        self._expire(now)
        out = {}
        for host, buckets in self._hosts.items():
            live = self._live(buckets, now)
            if live:
                out[host] = max(live)
        return out

    def to_exporter_clock(self, host: str | None, stamp: float, now: float) -> float:
        """``stamp`` (taken on ``host``) on the exporter's clock: ``stamp - offset`` when the
        offset is known, ``stamp`` unchanged otherwise."""
        offset = self.offset(host, now)
        return stamp if offset is None else stamp - offset
