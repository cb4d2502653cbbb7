"""Build and scrape a real exporter in-process, the way the CLI does."""

from __future__ import annotations

from celery_queue_exporter.cli import Exporter
from celery_queue_exporter.config.load import load_config
from celery_queue_exporter.server import MetricsServer
from testsupport.exposition import parse_exposition


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
