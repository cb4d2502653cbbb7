"""The ``celery-queue-exporter`` command: load configuration, build collectors, serve."""

from __future__ import annotations

import logging
import signal
import sys
import threading
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
            self.registry.register(self.events)
            self.events.start()
        for extra in (ProcessCollector, PlatformCollector, GCCollector):
            extra(registry=self.registry)

    def scrape_once(self) -> tuple[bytes, bool]:
        """One exposition and whether every broker answered."""
        text = render_text(self.registry.collect())
        return text, all(result.error is None for result in self.queues.last_results)

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
        self.queues.close()


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
    server.stop()
    exporter.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
