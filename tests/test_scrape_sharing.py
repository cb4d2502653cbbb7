"""Scrapes share one inspection per broker and never wait past Prometheus' scrape timeout
(issue 12 point 7, issue 13 point 5), against private redis-servers.

Inspections are counted the way the broker sees them: Redis' own ``INFO commandstats`` (one
EVAL_RO per inspection of a database)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from celery_queue_exporter.brokers import Inspector
from celery_queue_exporter.collector import QueueCollector
from celery_queue_exporter.config.brokers import new_broker
from celery_queue_exporter.deadline import budget_from_header
from celery_queue_exporter.snapshot import BrokerSnapshot
from testsupport.exporter import serve_exporter
from testsupport.exposition import parse_exposition, sample_value
from testsupport.http import connect, exchange, read_response, request_bytes
from testsupport.redis_server import RedisServer
from testsupport.waiting import wait_for

SCRAPERS = 200


def eval_calls(server: RedisServer) -> int:
    stats = server.client().info("commandstats")
    return int(stats.get("cmdstat_eval_ro", {}).get("calls", 0))


def put_messages(server: RedisServer, db: int, queue: str, count: int) -> None:
    client = server.client(db)
    client.sadd("_kombu.binding." + queue, f"{queue}\x06\x16\x06\x16{queue}")
    client.lpush(queue, *[f'{{"n": {n}}}' for n in range(count)])


def serve_two(first: str, second: str):
    """Two brokers (NAME=URL) behind one server, each inspection bounded by 5 s."""
    return serve_exporter("--broker-url", first, "--broker-url", second, "--scrape-timeout", "5")


@pytest.mark.redis
def test_200_concurrent_scrapes_cost_one_inspection_per_broker_and_no_false_down(redis_server):
    """Each round: 200 connections open, Redis paused for 0.1 s (CLIENT PAUSE: a really slow
    broker), then 200 requests at once. Exactly one EVAL_RO per broker per round, and every
    answer has both brokers up with their exact depths."""
    put_messages(redis_server, 0, "alpha", 3)
    put_messages(redis_server, 1, "beta", 5)
    exporter, server = serve_two(f"a={redis_server.db_url(0)}", f"b={redis_server.db_url(1)}")
    control = redis_server.client()
    try:
        control.config_resetstat()
        for round_number in range(1, 4):
            sockets = [connect(server.port) for _ in range(SCRAPERS)]
            control.execute_command("CLIENT", "PAUSE", "100", "ALL")
            for sock in sockets:
                sock.sendall(request_bytes("GET", "/metrics"))
            responses = [read_response(sock) for sock in sockets]
            assert [r.status for r in responses] == [200] * SCRAPERS
            for response in responses:
                samples = parse_exposition(response.body.decode())
                assert sample_value(samples, "celery_broker_up", broker="a") == 1
                assert sample_value(samples, "celery_broker_up", broker="b") == 1
                assert sample_value(samples, "celery_queue_messages", broker="a", queue="alpha",
                                    priority="0") == 3  # fmt: skip
                assert sample_value(samples, "celery_queue_messages", broker="b", queue="beta",
                                    priority="0") == 5  # fmt: skip
                assert sample_value(samples, "celery_exporter_scrape_errors_total", broker="a") == 0
            # The pause really made the inspection slow, and all 200 shared it.
            duration = sample_value(samples, "celery_exporter_scrape_duration_seconds", broker="a")
            assert duration is not None and duration >= 0.05
            assert eval_calls(redis_server) == 2 * round_number
        # Scrapes one after another each get a fresh inspection.
        for _ in range(3):
            assert exchange(server.port, "GET", "/metrics").status == 200
        assert eval_calls(redis_server) == 2 * 3 + 2 * 3
    finally:
        server.stop()
        exporter.close()


@pytest.mark.redis
def test_hung_broker_costs_at_most_prometheus_timeout_and_never_the_other_broker(
    redis_server, caplog
):
    """A SIGSTOPped Redis with --scrape-timeout 5 and Prometheus' timeout 1 s: each scrape
    answers at the exporter's 0.9 s deadline (never its own 5 s), the hung broker down (still
    inspecting), the healthy one exact; the scrapes during the hang share one inspection (one
    error, one log line); the last good reading keeps its timestamp; after SIGCONT the broker
    is back."""
    caplog.set_level(logging.INFO, logger="celery_queue_exporter")
    put_messages(redis_server, 0, "alpha", 4)
    with RedisServer() as hung:
        put_messages(hung, 0, "gamma", 2)
        exporter, server = serve_two(f"ok={redis_server.url}", f"hung={hung.url}")
        header = {"X-Prometheus-Scrape-Timeout-Seconds": "1"}

        def scrape() -> tuple[dict, float]:
            started = time.monotonic()
            response = exchange(server.port, "GET", "/metrics", header)
            assert response.status == 200
            return parse_exposition(response.body.decode()), time.monotonic() - started

        try:
            samples, _ = scrape()
            assert sample_value(samples, "celery_broker_up", broker="hung") == 1
            good = sample_value(samples, "celery_broker_last_success_timestamp_seconds",
                                broker="hung")  # fmt: skip
            assert good is not None and abs(good - time.time()) < 5
            assert sample_value(samples, "celery_exporter_inspection_running_seconds",
                                broker="hung") == 0  # fmt: skip
            hung.client().config_resetstat()

            os.kill(hung.process.pid, signal.SIGSTOP)
            running = []
            for _ in range(3):
                samples, took = scrape()
                # The exporter answers at 0.9 s (its own figure is `running`, below); a wall
                # clock bound would measure the machine's load (1.03 s at load 10). What must
                # not happen is a wait for the exporter's own 5 s timeout.
                assert took < 2.5, f"scrape took {took:.2f}s: Prometheus' 1 s was not honoured"
                assert sample_value(samples, "celery_broker_up", broker="hung") == 0
                assert sample_value(samples, "celery_broker_up", broker="ok") == 1
                assert sample_value(samples, "celery_queue_messages", broker="ok",
                                    queue="alpha", priority="0") == 4  # fmt: skip
                assert sample_value(samples, "celery_queue_messages", broker="hung",
                                    queue="gamma", priority="0") is None  # fmt: skip
                assert sample_value(samples, "celery_exporter_scrape_errors_total",
                                    broker="hung") == 1  # fmt: skip
                assert sample_value(samples, "celery_broker_last_success_timestamp_seconds",
                                    broker="hung") == good  # fmt: skip
                running.append(sample_value(samples, "celery_exporter_inspection_running_seconds",
                                            broker="hung"))  # fmt: skip
            # One inspection, older at each scrape: 0.9 s (1 s minus the 10% margin) each.
            assert 0.85 <= running[0] < 1.0
            assert running == sorted(running) and running[2] - running[0] >= 1.7
            stuck = [r for r in caplog.records if "still running" in r.getMessage()]
            assert [r.getMessage().split(" after ")[0] for r in stuck] == [
                "broker hung: inspection still running"
            ]

            os.kill(hung.process.pid, signal.SIGCONT)
            # The one inspection in flight finishes: Redis ran exactly one EVAL_RO for the hang.
            wait_for(lambda: eval_calls(hung) == 1, timeout=10, what="the held EVAL_RO")
            samples = wait_for(
                lambda: (
                    (s := scrape()[0])
                    and sample_value(s, "celery_broker_up", broker="hung") == 1
                    and s
                ),
                timeout=10,
                what="hung broker back",
            )
            assert sample_value(samples, "celery_queue_messages", broker="hung", queue="gamma",
                                priority="0") == 2  # fmt: skip
            assert sample_value(samples, "celery_exporter_scrape_errors_total", broker="hung") == 1
            assert sample_value(samples, "celery_broker_last_success_timestamp_seconds",
                                broker="hung") > good  # fmt: skip
            assert "Traceback" not in caplog.text
        finally:
            if hung.process is not None:
                os.kill(hung.process.pid, signal.SIGCONT)
            server.stop()
            exporter.close()


@pytest.mark.parametrize(
    ("header", "budget"),
    [("10", 9.5), ("1", 0.9), (" 2.5 ", 2.25), ("0.2", 0.18), (None, None), ("abc", None),
     ("-1", None), ("0", None), ("nan", None), ("inf", None)],
)  # fmt: skip
def test_budget_from_prometheus_header(header, budget):
    """Pure logic beside the real-broker tests above: the margin is 10%, at most 0.5 s."""
    result = budget_from_header(header)
    assert result == (None if budget is None else pytest.approx(budget))


class _HeldInspector(Inspector):
    """Pure logic only (beside the real SIGSTOPped Redis above): an inspection that returns
    when the test says so, and counts how often it was started."""

    def setup(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def inspect(self) -> BrokerSnapshot:
        self.started += 1
        self.release.wait(30)
        return BrokerSnapshot()


def test_a_scrape_joining_an_overdue_inspection_does_not_wait_for_it_again():
    """--scrape-timeout 0.5: the first scrape waits 0.5 s; one joining after the inspection is
    already 0.5 s old answers at once (down, one error in all); when it ends, it is used."""
    inspector = _HeldInspector(new_broker(name="held", url="redis://127.0.0.1:1/0"), 0.5)
    collector = QueueCollector([inspector], timeout_seconds=0.5)
    try:
        started = time.monotonic()
        (first,) = collector.inspect_all()
        assert 0.5 <= time.monotonic() - started < 0.7
        assert first.snapshot is None and first.error.startswith("still inspecting after 0.5")
        started = time.monotonic()
        (second,) = collector.inspect_all()
        assert time.monotonic() - started < 0.05
        assert second.snapshot is None and second.running_seconds >= 0.5
        assert (inspector.started, collector._brokers[0].errors_total) == (1, 1)
        inspector.release.set()
        wait_for(lambda: collector._brokers[0].running is None, timeout=5, what="release")
        # It finished before this scrape arrived: a new inspection, which answers at once.
        (third,) = collector.inspect_all()
        assert third.snapshot == BrokerSnapshot() and inspector.started == 2
    finally:
        inspector.release.set()
        collector.close()
