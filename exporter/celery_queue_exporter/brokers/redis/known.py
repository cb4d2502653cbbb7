"""Queues whose kombu binding vanished, kept watched while they still matter.

A binding (``_kombu.binding.<exchange>``) can go while its queue's lists live on: evicted under
``allkeys-*``, or flushed while a long-lived producer keeps pushing (kombu declares a queue once
per process, so the binding never comes back). Discovery alone would then stop watching the very
queue that is losing messages. A queue seen bound once stays watched while its lists hold
messages, and for ``unbound_queue_retention_seconds`` after the last time it was bound or held
any; meanwhile it is flagged unbound (``celery_queue_unbound``). Memory is bounded by the
queues seen bound: a queue is forgotten when it is neither bound nor retained.
"""

from __future__ import annotations

from collections.abc import Iterable


class KnownQueues:
    """The queues seen in binding sets, and when each last showed signs of life."""

    def __init__(self, retention_seconds: float) -> None:
        self.retention_seconds = retention_seconds
        #: Queue -> last time it was bound or held messages (clock of the inspector).
        self._last_alive: dict[str, float] = {}
        self._bound: set[str] = set()
        #: Watched queues that held messages at the last read.
        self._holding: set[str] = set()

    def bindings_read(self, bound: Iterable[str], now: float) -> None:
        """A fresh read of the binding sets: every queue in it is alive now. Unbound queues are
        judged after their depths are read (:meth:`depths_read`): messages keep them."""
        self._bound = set(bound)
        for queue in self._bound:
            self._last_alive[queue] = now

    def depths_read(self, depths: dict[str, int], now: float) -> None:
        """Depths of watched queues (all levels together): a queue holding messages is
        alive."""
        self._holding = {queue for queue, depth in depths.items() if depth > 0}
        for queue in self._holding:
            if queue in self._last_alive:
                self._last_alive[queue] = now

    def expire(self, now: float) -> None:
        """Forget unbound queues that held no messages at the last read and showed no sign of
        life for longer than the retention (before choosing the queues to watch: a gap in
        scrapes longer than the retention does not drop a queue nobody looked at)."""
        expired = [
            queue
            for queue, alive in self._last_alive.items()
            if queue not in self._bound
            and queue not in self._holding
            and now - alive > self.retention_seconds
        ]
        for queue in expired:
            del self._last_alive[queue]

    def retained(self) -> list[str]:
        """Queues seen bound before, not bound now, still kept watched."""
        return sorted(queue for queue in self._last_alive if queue not in self._bound)

    def unbound(self, queue: str) -> bool:
        """True when ``queue`` was seen bound and its binding is gone now."""
        return queue in self._last_alive and queue not in self._bound
