"""The HTTP side: ``/metrics``, a landing page at ``/``, ``/healthz``; optional TLS.

A small WSGI app on a threading server from the standard library. ``/metrics`` is rendered by
celery_queue_exporter/exposition.py in the Prometheus text format (gzip when the client accepts it).
"""

from __future__ import annotations

import gzip
import html
import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry

from . import __version__
from .config import ExporterConfig
from .exposition import CONTENT_TYPE, render_text

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


#: Seconds a client gets for the TLS handshake, and then for each read of its request.
CLIENT_TIMEOUT_SECONDS = 10.0


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per connection; with TLS, the handshake runs in that thread too, so a client
    that connects and says nothing holds only its own thread, never the accept loop."""

    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(CLIENT_TIMEOUT_SECONDS)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()


class _QuietHandler(WSGIRequestHandler):
    timeout = CLIENT_TIMEOUT_SECONDS  # an idle client cannot hold its thread forever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)


def landing_page(config: ExporterConfig) -> bytes:
    brokers = "".join(
        f"<li>{html.escape(b.name)} ({html.escape(b.transport)}, {html.escape(b.safe_url)})</li>"
        for b in config.brokers
    )
    return (
        "<!doctype html><html><head><title>celery-queue-exporter</title></head><body>"
        f"<h1>celery-queue-exporter {html.escape(__version__)}</h1>"
        '<p><a href="/metrics">Metrics</a> &middot; <a href="/healthz">Health</a></p>'
        f"<h2>Brokers</h2><ul>{brokers}</ul></body></html>"
    ).encode()


def build_app(
    registry: CollectorRegistry, config: ExporterConfig
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    page = landing_page(config)

    def metrics(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = render_text(registry.collect())
        headers = [("Content-Type", CONTENT_TYPE)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [page]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics\n"]

    return app


def tls_context(config: ExporterConfig) -> ssl.SSLContext | None:
    if not config.tls_cert_file:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    if config.tls_client_ca_file:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=config.tls_client_ca_file)
    return context


class MetricsServer:
    """Serves the app on a background thread; ``port`` is the bound port (useful with 0)."""

    def __init__(self, registry: CollectorRegistry, config: ExporterConfig) -> None:
        self._server = make_server(
            config.host,
            config.port,
            build_app(registry, config),
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        self._server.tls = tls_context(config)
        self.port: int = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
