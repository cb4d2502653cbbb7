"""What every broker's event consumer shares: one daemon thread, a subscription that is
re-established forever, and the counting of interruptions. Broker packages supply how to
connect and read (``_consume``) and how to let go (``_disconnect``)."""

from __future__ import annotations

import logging
import threading

from ..config.model import BrokerConfig
from .tracker import EventTracker

log = logging.getLogger(__name__)

#: Pauses between reconnection attempts: at once after losing a working subscription, then
#: backing off to one attempt every 5 s while the broker stays away.
RECONNECT_DELAYS = (0.0, 0.2, 0.5, 1.0, 2.0, 5.0)


class EventConsumerThread:
    """One thread consuming one broker's Celery events into ``tracker``."""

    def __init__(self, broker: BrokerConfig, tracker: EventTracker) -> None:
        self.broker = broker
        self.tracker = tracker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Set whenever a subscription is confirmed (tests wait on it).
        self.subscribed = threading.Event()
        #: The last refusal logged (each different one is logged once, until subscribed).
        self._refused: str | None = None

    # --- what a broker package provides -----------------------------------------------------

    def _consume(self) -> None:
        """Connect, subscribe (then call ``_subscribed``) and feed the tracker until
        ``stopping``; raise on any failure."""
        raise NotImplementedError

    def _disconnect(self) -> None:
        """Let go of the connection (called in the consumer's thread; must not raise)."""

    def _interrupt(self) -> None:
        """Wake a blocked read so ``stop`` takes effect at once (called from another thread)."""

    def _interruption_reason(self) -> str:
        """Why a working subscription was lost, for celery_event_stream_interruptions_total."""
        return "disconnected"

    def _refusal(self, exc: BaseException) -> str | None:
        """When ``exc`` is the broker refusing the exporter (a permission, an ACL), the line
        to log: which permission is missing and where it is documented; None otherwise."""
        return None

    # --- shared -----------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _subscribed(self) -> None:
        self.tracker.set_consumer_up(True)
        self.subscribed.set()
        self._refused = None

    def _down(self) -> None:
        self.tracker.set_consumer_up(False)
        self.subscribed.clear()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"events-{self.broker.name}", daemon=True
        )
        self._thread.start()

    def stopping_soon(self) -> None:
        """Ask the thread to stop without waiting (several consumers stop in parallel)."""
        self._stop.set()
        self._interrupt()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping_soon()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception as exc:  # any failure: count, reconnect, never die
                was_up = self.subscribed.is_set()
                self._down()
                self._disconnect()
                if self._stop.is_set():
                    break
                if was_up:
                    reason = self._interruption_reason()
                    self.tracker.count_interruption(reason)
                    log.warning(
                        "events from %s interrupted (%s): %s: %s; reconnecting",
                        self.broker.name,
                        reason,
                        type(exc).__name__,
                        exc,
                    )
                    attempt = 0  # reconnect at once after losing a working subscription
                elif (refusal := self._refusal(exc)) is not None:
                    # A permission does not come back by retrying: say once what is missing
                    # (retries go on quietly, so granting it is picked up without a restart).
                    if refusal != self._refused:
                        log.error("events from %s: %s", self.broker.name, refusal)
                        self._refused = refusal
                else:
                    log.debug("events from %s: cannot subscribe: %r", self.broker.name, exc)
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                if delay:
                    self._stop.wait(delay)
            else:
                self._disconnect()
        self._down()
        self._disconnect()
