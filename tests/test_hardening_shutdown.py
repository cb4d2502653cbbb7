"""Issue 24, point 3: SIGTERM ends the exporter within seconds whatever the brokers do.

The broker is blackholed: a listening socket that never accepts, so the kernel completes the
TCP handshake and the inspection then waits for an answer that never comes (the slow-peer
tests' fake servers at their most silent). The exporter runs as its own process with
``--scrape-timeout 40``; before, SIGTERM took 35 s and 42 of 50 scrapes in flight were closed
without an HTTP response."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from testsupport.net import free_port, http_ok
from testsupport.processes import stop_process
from testsupport.waiting import wait_for

#: The acceptance figure (Kubernetes' default grace is 30 s); cli.SHUTDOWN_SECONDS is 4 s.
MAX_EXIT_SECONDS = 5.0
SCRAPES = 20


def _scrape(port: int, results: list, index: int) -> None:
    """One raw scrape: the status line received, 'closed' for a clean close without a
    response, or the error."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        results[index] = data.split(b"\r\n", 1)[0].decode() if data else "closed"
    except OSError as exc:
        results[index] = f"{type(exc).__name__}"


@pytest.mark.subprocess
@pytest.mark.parametrize("events", [False, True], ids=["queues", "queues+events"])
def test_sigterm_with_a_blackholed_broker_and_scrape_timeout_40_exits_within_5s(tmp_path, events):
    blackhole = socket.create_server(("127.0.0.1", 0), backlog=128)  # never accept()ed
    broker = f"redis://127.0.0.1:{blackhole.getsockname()[1]}/0"
    port = free_port()
    state = tmp_path / "state.json"
    args = [sys.executable, "-m", "celery_queue_exporter", "--broker-url", broker,
            "--scrape-timeout", "40", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    if events:
        args += ["--events", "--events-state-file", str(state)]
    log = tmp_path / "exporter.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=os.environ)
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 30, what="serving")
        results: list = [None] * SCRAPES
        threads = [
            threading.Thread(target=_scrape, args=(port, results, i), daemon=True)
            for i in range(SCRAPES)
        ]
        for thread in threads:
            thread.start()
        time.sleep(2.0)  # every scrape is now waiting for the blackholed broker's inspection
        assert results == [None] * SCRAPES
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        took = time.monotonic() - started
        for thread in threads:
            thread.join(10)
        print(f"\nSIGTERM to exit, blackholed broker, events={events}: {took:.2f} s")
        assert code == 0
        assert took < MAX_EXIT_SECONDS
        # Every scrape in flight got a response: 503, the inspection being abandoned.
        assert results == ["HTTP/1.1 503 Service Unavailable"] * SCRAPES
        text = log.read_text()
        assert "shutting down" in text and "stopped" in text
        if events:  # the state was written (first) even though the broker never answered
            assert json.loads(state.read_text())["version"] == 1
    finally:
        stop_process(process)
        blackhole.close()
