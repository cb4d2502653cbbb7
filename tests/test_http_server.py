"""The HTTP server (issue 12 points 7-9) with a private redis-server behind it: GET and HEAD
only, a listen backlog of 128, a fixed number of threads whatever the clients do, and idle or
trickling clients closed at one whole-request deadline with one log line, never a traceback."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading
import time

import pytest
import requests
from test_exporter_service import _make_cert

from celery_queue_exporter import server as http
from testsupport.exporter import serve_exporter
from testsupport.exposition import parse_exposition, sample_value
from testsupport.http import connect, exchange
from testsupport.services import missing_service

pytestmark = pytest.mark.redis


def eval_calls(redis_server) -> int:
    stats = redis_server.client().info("commandstats")
    return int(stats.get("cmdstat_eval_ro", {}).get("calls", 0))


@pytest.fixture
def served(redis_server):
    redis_server.client().config_resetstat()
    exporter, server = serve_exporter("--broker-url", f"r={redis_server.url}", "--queue", "jobs")
    yield server
    server.stop()
    exporter.close()


def test_get_and_head_only_head_without_body_others_405_without_inspecting(redis_server, served):
    port = served.port
    head = exchange(port, "HEAD", "/metrics")
    assert (head.status, head.body) == (200, b"")
    assert head.headers["content-type"].startswith("text/plain; version=0.0.4")
    for method in ("POST", "PUT", "DELETE", "TRACE", "OPTIONS", "PATCH", "CONNECT", "BREW"):
        refused = exchange(port, method, "/metrics")
        assert (refused.status, refused.headers["allow"]) == (405, "GET, HEAD"), method
        assert refused.body == b"method not allowed: use GET or HEAD\n"
    assert eval_calls(redis_server) == 0  # neither HEAD nor a refused method read the broker

    got = exchange(port, "GET", "/metrics")
    assert got.status == 200
    assert sample_value(parse_exposition(got.body.decode()), "celery_broker_up", broker="r") == 1
    assert eval_calls(redis_server) == 1
    for path, body in (("/", None), ("/healthz", b"ok\n"), ("/nope", b"not found: try /metrics\n")):
        full, bare = exchange(port, "GET", path), exchange(port, "HEAD", path)
        assert bare.status == full.status and bare.body == b""
        assert (
            bare.headers["content-length"] == full.headers["content-length"] == str(len(full.body))
        )
        assert body is None or full.body == body
    assert eval_calls(redis_server) == 1

    sock = connect(port)
    sock.sendall(b"hello there\r\n\r\n")
    assert sock.recv(100).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    sock.close()


def test_listen_backlog_is_128(served):
    listing = subprocess.run(
        ["ss", "-ltnH", f"sport = :{served.port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    # State Recv-Q Send-Q ...: for a listening socket Send-Q is the backlog.
    assert listing[0] == "LISTEN" and listing[2] == "128"


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return False


def test_idle_and_trickling_clients_hold_no_thread_and_are_closed_quietly(
    served, monkeypatch, caplog
):
    """50 clients that send nothing and 50 that send a header line every 0.3 s: a scrape is
    answered at once while they wait, the thread count stays fixed, all 100 are closed at the
    whole-request deadline (1.5 s here), with one INFO line and no traceback."""
    monkeypatch.setattr(http, "CLIENT_TIMEOUT_SECONDS", 1.5)
    caplog.set_level(logging.DEBUG, logger="celery_queue_exporter")
    assert exchange(served.port, "GET", "/metrics").status == 200
    threads_before = threading.active_count()

    idle = [connect(served.port, timeout=5) for _ in range(50)]
    trickling = [connect(served.port, timeout=5) for _ in range(50)]
    for sock in trickling:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
    started = time.monotonic()
    answered = exchange(served.port, "GET", "/metrics")
    assert answered.status == 200 and time.monotonic() - started < 1.0
    assert threading.active_count() <= threads_before + http.HANDLER_THREADS
    while time.monotonic() - started < 1.2:
        for sock in trickling:
            sock.sendall(b"X-Slow: 1\r\n")  # bytes keep coming, the deadline does not move
        time.sleep(0.3)
    for sock in idle + trickling:
        sock.settimeout(3)
    assert [closed_by_server(sock) for sock in idle + trickling] == [True] * 100
    assert time.monotonic() - started < 1.5 + 1.0
    assert threading.active_count() <= threads_before + http.HANDLER_THREADS

    # A second burst inside the minute: closed too, and no second line.
    again = [connect(served.port, timeout=5) for _ in range(10)]
    assert [closed_by_server(sock) for sock in again] == [True] * 10
    for sock in idle + trickling + again:
        sock.close()
    server_lines = [
        r for r in caplog.records if r.name == "celery_queue_exporter.server" and r.levelno >= 20
    ]
    assert [r.getMessage() for r in server_lines] == [
        "closed 100 HTTP connection(s) that sent no complete request within 1.5s, or the "
        f"oldest waiting ones past {http._pending_limit()} (this line: at most once a minute)"
    ]
    assert not any(r.exc_info for r in caplog.records)
    assert "Traceback" not in caplog.text


def test_a_request_head_over_16_kib_is_closed_at_once(served):
    sock = connect(served.port, timeout=5)
    started = time.monotonic()
    sock.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * (http.MAX_HEAD_BYTES + 1))
    assert closed_by_server(sock)
    assert time.monotonic() - started < 1.0  # not at the 10 s deadline
    sock.close()


def test_tls_clients_that_never_finish_the_handshake_are_closed_quietly(
    redis_server, tmp_path, monkeypatch, caplog
):
    """Over TLS the handshake is read by the selector thread too: 20 silent clients and 20
    that stop inside their ClientHello hold no thread, an HTTPS scrape is answered meanwhile,
    and all 40 are closed at the deadline without a traceback."""
    if shutil.which("openssl") is None:
        missing_service("openssl is needed to make test certificates")
    monkeypatch.setattr(http, "CLIENT_TIMEOUT_SECONDS", 1.5)
    caplog.set_level(logging.DEBUG, logger="celery_queue_exporter")
    key, cert = _make_cert(tmp_path, "server")
    exporter, server = serve_exporter(
        "--broker-url", f"r={redis_server.url}", "--queue", "jobs",
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
    )  # fmt: skip
    try:
        threads_before = threading.active_count()
        silent = [connect(server.port, timeout=5) for _ in range(20)]
        partial = [connect(server.port, timeout=5) for _ in range(20)]
        for sock in partial:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's start
        started = time.monotonic()
        response = requests.get(
            f"https://127.0.0.1:{server.port}/metrics", verify=str(cert), timeout=5
        )
        assert response.status_code == 200 and time.monotonic() - started < 1.0
        assert 'celery_broker_up{broker="r"} 1.0' in response.text
        assert threading.active_count() <= threads_before + http.HANDLER_THREADS
        assert [closed_by_server(sock) for sock in silent + partial] == [True] * 40
        assert time.monotonic() - started < 1.5 + 1.0
    finally:
        server.stop()
        exporter.close()
    assert not any(r.exc_info for r in caplog.records)
    assert "Traceback" not in caplog.text
