"""Build and scrape a real exporter in-process, the way the CLI does."""

from __future__ import annotations

from collections.abc import Callable

from celery_queue_exporter.cli import Exporter
from celery_queue_exporter.config.load import load_config
from celery_queue_exporter.server import MetricsServer
from testsupport.exposition import parse_exposition
from testsupport.waiting import wait_for


def build_exporter(*args: str, environ: dict[str, str] | None = None) -> Exporter:
    """An Exporter configured exactly as `celery-queue-exporter ARGS` would be."""
    return Exporter(load_config(list(args), environ=environ or {}))


def scrape(exporter: Exporter) -> dict:
    """One scrape, parsed into {(sample name, labels): value}."""
    text, _ = exporter.scrape_once()
    return parse_exposition(text.decode())


def scrape_text(exporter: Exporter) -> str:
    text, _ = exporter.scrape_once()
    return text.decode()


def serve_exporter(*args: str) -> tuple[Exporter, MetricsServer]:
    """An exporter serving HTTP on a spare loopback port (stop the server, then close it)."""
    exporter = build_exporter(*args, "--port", "0", "--host", "127.0.0.1")
    server = MetricsServer(exporter.registry, exporter.config)
    server.start()
    return exporter, server


def scrape_until(
    exporter: Exporter,
    predicate: Callable[[dict], bool],
    what: str,
    timeout: float = 20.0,
    show: Callable[[dict], object] | None = None,
) -> dict:
    """Scrape until ``predicate(samples)`` holds and return those samples.

    Broker statistics lag (the management API refreshes every 5 s), so tests wait for the figures
    they expect instead of sleeping. On timeout the error names ``what`` and, through ``show``,
    what the last scrape held, so that a failure in CI says which figure was wrong.
    """
    last: dict = {}

    def attempt() -> dict | None:
        nonlocal last
        last = scrape(exporter)
        return last if predicate(last) else None

    try:
        return wait_for(attempt, timeout=timeout, interval=0.5, what=what)
    except AssertionError as timed_out:
        seen = show(last) if show is not None else f"{len(last)} samples"
        raise AssertionError(f"{timed_out}; the last scrape held {seen!r}") from None
