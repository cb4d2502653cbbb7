"""Issue 12, point 4 (and the cheap-rejection part of point 10): a peer that answers one byte
every half second costs at most the scrape timeout for the whole call, then the fallback runs
and the next inspection is not stuck behind the previous one. The slow peers are fake servers
on local sockets; the AMQP fallback reads the shared RabbitMQ in a vhost of the test's own."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pika
import pytest
import redis

from celery_queue_exporter.brokers.rabbitmq.inspector import RabbitMQInspector
from celery_queue_exporter.brokers.redis.inspector import RedisInspector
from celery_queue_exporter.config.brokers import new_broker

TRICKLE_SECONDS = 0.5
TIMEOUT = 3.0  # the scrape timeout given to the inspectors


class FakeServer:
    """Accepts connections on a spare local port; ``serve(conn)`` talks to each one."""

    def __init__(self, serve: Callable[[socket.socket, threading.Event], None]) -> None:
        self.serve = serve
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            self.serve(conn, self.stop)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def trickle(conn: socket.socket, data: bytes, stop: threading.Event) -> None:
    """Send ``data`` one byte every TRICKLE_SECONDS (each read of the client gets a byte in
    time, so a per-read timeout never fires)."""
    for byte in data:
        if stop.wait(TRICKLE_SECONDS):
            return
        conn.sendall(bytes([byte]))


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk


def slow_body(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    conn.sendall(b"Content-Length: 9999\r\n\r\n")
    trickle(conn, b"[" + b" " * 9998, stop)


def slow_headers(conn: socket.socket, stop: threading.Event) -> None:
    _read_request(conn)
    trickle(conn, b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 9999, stop)


def slow_tls(conn: socket.socket, stop: threading.Event) -> None:
    """Reads the ClientHello, then sends a TLS handshake record header announcing 16 kB and
    its body one byte every half second (the TLS layer waits for the whole record)."""
    conn.recv(4096)
    trickle(conn, b"\x16\x03\x03\x40\x00" + b"\x00" * 9999, stop)


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def start(serve: Callable[[socket.socket, threading.Event], None]) -> FakeServer:
        servers.append(FakeServer(serve))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def vhost_queue(rabbitmq_vhost: str) -> tuple[str, str]:
    """(AMQP URL of the test's vhost, a queue in it holding 7 messages)."""
    url = f"amqp://guest:guest@127.0.0.1:5672/{rabbitmq_vhost}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare("jobs", durable=True)
    for n in range(7):
        channel.basic_publish("", "jobs", f"m{n}".encode())
    connection.close()
    return url, "jobs"


def _timed(call: Callable[[], object]) -> tuple[object, float]:
    started = time.monotonic()
    try:
        result: object = call()
    except Exception as exc:  # the failure is the result under test
        result = exc
    return result, time.monotonic() - started


@pytest.mark.rabbitmq
@pytest.mark.parametrize(
    ("serve", "scheme"),
    [(slow_body, "http"), (slow_headers, "http"), (slow_tls, "https")],
    ids=["body", "headers", "tls-handshake"],
)
def test_trickling_management_api_costs_its_share_then_amqp_answers(
    vhost_queue, fake_server, serve, scheme
):
    url, queue = vhost_queue
    api = fake_server(serve)
    config = new_broker(
        name="r", url=url, queues=[queue], management_url=f"{scheme}://127.0.0.1:{api.port}"
    )
    inspector = RabbitMQInspector(config, timeout_seconds=TIMEOUT)
    try:
        for _ in range(2):  # the next inspection is not stuck behind the previous one
            snapshot, took = _timed(inspector.inspect)
            assert not isinstance(snapshot, Exception), snapshot
            # auto mode: 0.45 x the timeout for the API (ended by the deadline, not by an
            # error of the peer's making), then AMQP answers.
            assert 0.45 * TIMEOUT - 0.1 < took < 0.45 * TIMEOUT + 1.0, took
            assert snapshot.management_api_up is False
            assert [(lv.queue, lv.priority, lv.messages) for lv in snapshot.levels] == [
                (queue, None, 7)
            ]
        assert api.connections == 2  # one request per inspection, each ended at its deadline
    finally:
        inspector.close()


@pytest.mark.rabbitmq
def test_trickling_management_api_in_always_mode_fails_within_the_timeout(vhost_queue, fake_server):
    url, queue = vhost_queue
    api = fake_server(slow_body)
    config = new_broker(
        name="r",
        url=url,
        queues=[queue],
        management="always",
        management_url=f"http://127.0.0.1:{api.port}",
    )
    inspector = RabbitMQInspector(config, timeout_seconds=TIMEOUT)
    try:
        error, took = _timed(inspector.inspect)
    finally:
        inspector.close()
    assert "did not answer within 2.7s" in str(error)
    assert 0.9 * TIMEOUT - 0.1 < took < TIMEOUT, took


@pytest.mark.rabbitmq
def test_x_max_priority_beyond_255_from_a_faulty_api_is_rejected_cheaply(vhost_queue, fake_server):
    url, queue = vhost_queue
    entry = {
        "name": queue,
        "arguments": {"x-max-priority": 5_000_000},
        "messages_ready": 7,
        "messages_unacknowledged": 0,
        "consumers": 0,
    }
    body = json.dumps([entry]).encode()

    def faulty(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        conn.sendall(head.encode() + b"\r\nConnection: close\r\n\r\n" + body)

    api = fake_server(faulty)
    config = new_broker(
        name="r", url=url, queues=[queue], management_url=f"http://127.0.0.1:{api.port}"
    )
    inspector = RabbitMQInspector(config, timeout_seconds=TIMEOUT)
    try:
        snapshot, took = _timed(inspector.inspect)
    finally:
        inspector.close()
    assert not isinstance(snapshot, Exception), snapshot
    assert took < 0.5, took
    assert snapshot.management_api_up is True
    assert snapshot.queues[queue].max_priority is None
    assert snapshot.urgency == []
    assert [(lv.queue, lv.priority, lv.messages) for lv in snapshot.levels] == [(queue, None, 7)]


def slow_redis(conn: socket.socket, stop: threading.Event) -> None:
    """Reads a command, then answers it one byte every half second, forever."""
    conn.recv(65536)
    trickle(conn, b"+" + b"O" * 9999, stop)


def test_trickling_redis_costs_at_most_the_timeout_per_inspection(fake_server):
    server = fake_server(slow_redis)
    config = new_broker(name="s", url=f"redis://127.0.0.1:{server.port}/0", queues=["jobs"])
    inspector = RedisInspector(config, timeout_seconds=TIMEOUT)
    try:
        for _ in range(2):
            error, took = _timed(inspector.inspect)
            assert isinstance(error, redis.TimeoutError), error
            assert "did not answer within 2.7s" in str(error)
            assert took < TIMEOUT, took
    finally:
        inspector.close()


def slow_amqp(conn: socket.socket, stop: threading.Event) -> None:
    """Reads the protocol header, then answers with a Connection.Start frame one byte every
    half second (the frame is valid; it just never completes in time)."""
    conn.recv(8)
    trickle(conn, b"\x01\x00\x00\x00\x00\x01\xf4\x00\x0a\x00\x0a" + b"\x00" * 489, stop)


def test_trickling_amqp_handshake_costs_at_most_the_timeout(fake_server):
    """AMQP was already bounded as a whole (pika's stack_timeout for the connection, its own
    timers for each call); this holds it to that."""
    server = fake_server(slow_amqp)
    config = new_broker(
        name="a", url=f"amqp://guest:guest@127.0.0.1:{server.port}//", queues=["jobs"],
        management="never",
    )  # fmt: skip
    inspector = RabbitMQInspector(config, timeout_seconds=TIMEOUT)
    try:
        for _ in range(2):
            error, took = _timed(inspector.inspect)
            assert "AMQP did not answer within 3s" in str(error), error
            assert took < TIMEOUT, took
    finally:
        inspector.close()


def test_connections_through_a_proxy_report_their_sockets_too():
    """With HTTP(S)_PROXY set, requests opens connections through a ProxyManager: it must use
    the deadline's connection classes as the direct path does, or a trickling proxy or API
    is unbounded again."""
    import requests

    from celery_queue_exporter.brokers.rabbitmq import http

    adapter = http.deadline_session(requests.Session()).get_adapter("https://api.invalid/")
    proxied = adapter.proxy_manager_for("http://127.0.0.1:3128")
    direct = adapter.poolmanager
    for manager in (direct, proxied):
        assert manager.pool_classes_by_scheme["http"].ConnectionCls is http._HTTPConnection
        assert manager.pool_classes_by_scheme["https"].ConnectionCls is http._HTTPSConnection
