"""Concurrent scrapes share one render and one gzip per inspection round (issue 25), counted
as work done (renders, gzips, Redis' own EVAL_RO calls), never as times."""

from __future__ import annotations

import gzip
import threading
import time

import pytest

from celery_queue_exporter.deadline import current_window
from celery_queue_exporter.shared_render import SharedRender
from testsupport.exporter import serve_exporter
from testsupport.exposition import parse_exposition, sample_value
from testsupport.http import connect, exchange, read_response, request_bytes
from testsupport.redis_server import RedisServer

SCRAPERS = 50


def eval_calls(server: RedisServer) -> int:
    stats = server.client().info("commandstats")
    return int(stats.get("cmdstat_eval_ro", {}).get("calls", 0))


@pytest.mark.redis
def test_50_concurrent_gzip_scrapes_cost_one_inspection_one_render_one_gzip(redis_server):
    """50 requests at once while Redis is paused for 0.1 s (so they overlap): one EVAL_RO,
    one render, one gzip; every answer is the same gzip of the same exact body. A scrape
    after they are answered gets a fresh inspection and render."""
    client = redis_server.client()
    client.sadd("_kombu.binding.alpha", "alpha\x06\x16\x06\x16alpha")
    client.lpush("alpha", *[f'{{"n": {n}}}' for n in range(7)])
    exporter, server = serve_exporter(
        "--broker-url", f"r={redis_server.url}", "--scrape-timeout", "5"
    )
    renderer = server.routes.renderer
    try:
        client.config_resetstat()
        sockets = [connect(server.port) for _ in range(SCRAPERS)]
        client.execute_command("CLIENT", "PAUSE", "100", "ALL")
        for sock in sockets:
            sock.sendall(request_bytes("GET", "/metrics", {"Accept-Encoding": "gzip"}))
        responses = [read_response(sock) for sock in sockets]
        assert [r.status for r in responses] == [200] * SCRAPERS
        assert {r.headers["content-encoding"] for r in responses} == {"gzip"}
        assert len({r.body for r in responses}) == 1
        samples = parse_exposition(gzip.decompress(responses[0].body).decode())
        assert sample_value(samples, "celery_queue_messages", broker="r", queue="alpha",
                            priority="0") == 7  # fmt: skip
        assert (eval_calls(redis_server), renderer.renders, renderer.gzips) == (1, 1, 1)

        plain = exchange(server.port, "GET", "/metrics")
        assert plain.status == 200 and "content-encoding" not in plain.headers
        assert (eval_calls(redis_server), renderer.renders, renderer.gzips) == (2, 2, 1)
    finally:
        server.stop()
        exporter.close()


def test_a_waiter_past_its_own_deadline_renders_alone():
    """Pure logic beside the real test above: a request that joins a render in flight stops
    waiting at its own deadline and renders with its own window; one that joins in time
    shares the leader's body."""
    release = threading.Event()
    windows = []

    def render() -> bytes:
        windows.append(current_window())
        number = len(windows)
        if number == 1:
            release.wait(5)
        return f"body {number}".encode()

    shared = SharedRender(render)
    results: dict[str, bytes] = {}
    leader = threading.Thread(
        target=lambda: results.__setitem__("leader", shared.get(time.monotonic(), None).body)
    )
    leader.start()
    while not windows:
        time.sleep(0.001)
    joined = threading.Thread(
        target=lambda: results.__setitem__("joined", shared.get(time.monotonic(), 10.0).body)
    )
    joined.start()
    arrived = time.monotonic()
    assert shared.get(arrived, 0.05).body == b"body 2"  # gave up waiting, rendered alone
    assert windows[1].arrived == arrived and windows[1].due == arrived + 0.05
    release.set()
    leader.join(5)
    joined.join(5)
    assert results == {"leader": b"body 1", "joined": b"body 1"}
    assert shared.renders == 2
