"""The ``celery-queue-exporter`` command: load configuration, build collectors, serve."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .brokers import Inspector
from .collector import QueueCollector
from .config import BrokerConfig, ConfigError, ExporterConfig
from .config.load import load_config
from .config.urls import redact_urls_in
from .exposition import render_text
from .server import MetricsServer
from .static_labels import StaticLabelRegistry
from .urgency import levels_source

log = logging.getLogger("celery_queue_exporter")

#: The longest SIGTERM/SIGINT takes to end the process, whatever the brokers do (Kubernetes
#: gives 30 s by default): state file, then HTTP (server.SHUTDOWN_GRACE_SECONDS), then closing
#: the brokers' connections within what is left; an inspection still in flight is abandoned.
SHUTDOWN_SECONDS = 4.0


def make_inspector(broker: BrokerConfig, timeout_seconds: float) -> Inspector:
    """One inspector per broker, from its transport."""
    return broker.transport.inspector(broker, timeout_seconds)


class Exporter:
    """The running exporter: a registry with the queue collector (and event collectors)."""

    def __init__(self, config: ExporterConfig) -> None:
        self.config = config
        self.registry = StaticLabelRegistry(config.static_labels)
        inspectors = [make_inspector(b, config.scrape_timeout_seconds) for b in config.brokers]
        self.queues = QueueCollector(
            inspectors, config.scrape_timeout_seconds, config.urgency_memory_seconds
        )
        self.registry.register(self.queues)
        self.events = None
        if config.events and not config.once:  # one scrape cannot wait for events
            from .events.collector import EventCollector

            self.events = EventCollector(config.brokers, config.event_settings)
            for tracker in self.events.trackers:
                source = levels_source(tracker)
                if source is not None:  # tasks received per level mark levels in use
                    self.queues.use_levels_in_use(tracker.broker, source)
                # Head ages corrected by their producer's clock offset (events/clock.py).
                self.queues.use_clock_offsets(tracker.broker, tracker.clock_offset)
                # Levels of queues the broker gives only a total for (RabbitMQ 3.12.7+, 4.x).
                self.queues.use_level_estimates(tracker.broker, tracker.waiting_levels)
            self.registry.register(self.events)
            self.events.start()
        for extra in (ProcessCollector, PlatformCollector, GCCollector):
            extra(registry=self.registry)

    def scrape_once(self) -> tuple[bytes, bool]:
        """One exposition and whether every broker answered."""
        text = render_text(self.registry.collect())
        return text, all(result.error is None for result in self.queues.last_results)

    def save_state(self) -> None:
        """Write the events state file now (shutdown writes it before anything else)."""
        if self.events is not None and self.events.state is not None:
            self.events.state.save()

    def close(self, consumer_timeout: float = 5.0) -> None:
        if self.events is not None:
            self.events.close(consumer_timeout)
        self.queues.close()

    def close_within(self, seconds: float) -> bool:
        """close() on a daemon thread, waiting at most ``seconds``; False when it did not end
        in time (a broker connection hanging on close). Event consumers get half of it, so
        the final state file write fits in the rest."""
        closer = threading.Thread(
            target=self.close, args=(max(0.0, seconds) / 2,), name="shutdown", daemon=True
        )
        closer.start()
        closer.join(max(0.0, seconds))
        return not closer.is_alive()


def config_error(exc: ConfigError) -> int:
    """One line on stderr and exit status 2; URLs with credentials are redacted even when the
    text came from elsewhere (the user's Celery module, a library)."""
    message = redact_urls_in(str(exc))
    print(f"celery-queue-exporter: configuration error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(list(argv) if argv is not None else None)
    except ConfigError as exc:
        return config_error(exc)
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        exporter = Exporter(config)
    except ConfigError as exc:
        return config_error(exc)

    if config.once:
        text, all_up = exporter.scrape_once()
        sys.stdout.write(text.decode())
        exporter.close()
        return 0 if all_up else 1

    try:
        server = MetricsServer(exporter.registry, config)
    except OSError as exc:
        print(
            f"celery-queue-exporter: cannot listen on {config.host}:{config.port}: {exc}",
            file=sys.stderr,
        )
        exporter.close()
        return 2
    server.start()
    for broker in config.brokers:
        log.info("watching %s broker %s at %s", broker.transport.name, broker.name, broker.safe_url)
    scheme = "https" if config.tls_cert_file else "http"
    log.info("serving %s://%s:%d/metrics", scheme, config.host, server.port)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    log.info("shutting down")
    shutdown(exporter, server)
    return 0  # not reached: shutdown() ends the process


def shutdown(exporter: Exporter, server: MetricsServer) -> None:
    """End the process within SHUTDOWN_SECONDS: state file first, then scrapes in flight
    answered (or 503), then broker connections closed in the time left. Threads stuck on a
    hung broker (an inspection waiting for a blackholed peer) are abandoned, not awaited:
    os._exit skips the interpreter's join of the inspection pools' threads."""
    deadline = time.monotonic() + SHUTDOWN_SECONDS
    try:
        exporter.save_state()
    except Exception:  # a state file must never keep the process alive
        log.exception("writing the events state file at shutdown failed")
    try:
        server.stop()
    except Exception:  # a bug here must not keep the process alive either
        log.exception("stopping the HTTP server failed")
    if not exporter.close_within(deadline - time.monotonic()):
        log.warning("broker connections did not close within %gs: abandoned", SHUTDOWN_SECONDS)
    log.info("stopped")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
