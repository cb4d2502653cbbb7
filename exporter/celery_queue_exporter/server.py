"""The HTTP side: ``/metrics``, a landing page at ``/``, ``/healthz``; optional TLS.

One selector thread accepts connections and reads request heads without blocking (TLS
handshakes included); only a complete request head is handed to a small fixed pool of handler
threads. So an idle or slow client costs a socket and a few bytes, never a thread, and cannot
delay Prometheus behind it. A client that has not sent a complete head within
CLIENT_TIMEOUT_SECONDS of connecting (a whole-request deadline, not one per read) is closed
quietly: one log line a minute at most says how many were. GET and HEAD only (HEAD without a
body, and HEAD /metrics does not inspect brokers); any other method gets 405 with ``Allow``.
Each response closes its connection. ``/metrics`` is rendered by exposition.py within the
scrape window of deadline.py (Prometheus' X-Prometheus-Scrape-Timeout-Seconds).
"""

from __future__ import annotations

import contextlib
import html
import logging
import resource
import selectors
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from . import __version__
from .config import ExporterConfig
from .config.urls import request_path
from .deadline import SCRAPE_TIMEOUT_HEADER, budget_from_header
from .exposition import CONTENT_TYPE, render_text
from .shared_render import SharedRender

log = logging.getLogger(__name__)

#: Seconds a client gets from connecting to a complete request head (TLS handshake included),
#: and again to read the whole response.
CLIENT_TIMEOUT_SECONDS = 10.0
#: Connections the kernel queues before the exporter accepts them (a burst of scrapers).
LISTEN_BACKLOG = 128
#: Threads that build responses; scrapes of one broker share one inspection (collector.py), so a
#: few threads serve any number of scrapers.
HANDLER_THREADS = 8
#: A request head larger than this is not a scrape: the connection is closed.
MAX_HEAD_BYTES = 16 * 1024
#: Connections still sending their head; past it the oldest is closed for the newest.
MAX_PENDING_CONNECTIONS = 4096
#: The idle-client log line is written at most this often.
IDLE_LOG_INTERVAL_SECONDS = 60.0
#: At shutdown, scrapes in flight get this long to finish; the rest are answered 503 at once
#: (a scrape waiting for a hung broker is not awaited: issue 24, bounded shutdown).
SHUTDOWN_GRACE_SECONDS = 1.0
ALLOWED_METHODS = ("GET", "HEAD")

TEXT = "text/plain; charset=utf-8"


@dataclass
class Response:
    status: str
    content_type: str
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: HEAD /metrics: no scrape, so no length to announce.
    length_known: bool = True

    def encode(self, head_only: bool) -> bytes:
        lines = [f"HTTP/1.1 {self.status}", f"Content-Type: {self.content_type}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.length_known:
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    #: Monotonic time its first byte arrived: the start of its scrape window.
    arrived: float


def parse_head(head: bytes, arrived: float) -> Request | None:
    """The request line and headers; None when it is not HTTP/1.x."""
    lines = head.replace(b"\r\n", b"\n").decode("latin-1").split("\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return Request(parts[0], request_path(parts[1]), headers, arrived)


def landing_page(config: ExporterConfig) -> bytes:
    brokers = "".join(
        f"<li>{html.escape(b.name)} ({html.escape(b.transport.name)}, "
        f"{html.escape(b.safe_url)})</li>"
        for b in config.brokers
    )
    return (
        "<!doctype html><html><head><title>celery-queue-exporter</title></head><body>"
        f"<h1>celery-queue-exporter {html.escape(__version__)}</h1>"
        '<p><a href="/metrics">Metrics</a> &middot; <a href="/healthz">Health</a></p>'
        f"<h2>Brokers</h2><ul>{brokers}</ul></body></html>"
    ).encode()


class Routes:
    """What each path answers; knows nothing of sockets."""

    def __init__(self, registry: CollectorRegistry, config: ExporterConfig) -> None:
        self.registry = registry
        self.page = landing_page(config)
        #: Concurrent scrapes share one render (and one gzip) per round: shared_render.py.
        self.renderer = SharedRender(lambda: render_text(registry.collect()))

    def respond(self, request: Request) -> Response:
        if request.method not in ALLOWED_METHODS:
            return Response(
                "405 Method Not Allowed",
                TEXT,
                b"method not allowed: use GET or HEAD\n",
                [("Allow", ", ".join(ALLOWED_METHODS))],
            )
        if request.path == "/metrics":
            if request.method == "HEAD":  # headers only: no reason to read the brokers
                return Response("200 OK", CONTENT_TYPE, b"", length_known=False)
            return self.metrics(request)
        if request.path == "/healthz":
            return Response("200 OK", TEXT, b"ok\n")
        if request.path == "/":
            return Response("200 OK", "text/html; charset=utf-8", self.page)
        return Response("404 Not Found", TEXT, b"not found: try /metrics\n")

    def metrics(self, request: Request) -> Response:
        budget = budget_from_header(request.headers.get(SCRAPE_TIMEOUT_HEADER.lower()))
        rendered = self.renderer.get(request.arrived, budget)
        body, headers = rendered.body, []
        if "gzip" in request.headers.get("accept-encoding", ""):
            body = rendered.gzipped()
            headers.append(("Content-Encoding", "gzip"))
        return Response("200 OK", CONTENT_TYPE, body, headers)


BAD_REQUEST = Response("400 Bad Request", TEXT, b"bad request\n")
#: What a scrape still in flight past SHUTDOWN_GRACE_SECONDS gets at shutdown.
SHUTTING_DOWN = Response("503 Service Unavailable", TEXT, b"exporter shutting down\n")


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


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    accepted: float  # monotonic
    handshaking: bool
    first_byte: float | None = None
    buffer: bytearray = field(default_factory=bytearray)
    #: Set by whoever writes the one response: its handler thread, or stop() (a 503).
    claimed: bool = False


def _listener(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    sock = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def _pending_limit() -> int:
    """MAX_PENDING_CONNECTIONS, or fewer when the process may open fewer files."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_PENDING_CONNECTIONS
    return max(16, min(MAX_PENDING_CONNECTIONS, soft - 64 - HANDLER_THREADS))


def _send_all(sock: socket.socket, data: bytes, deadline: float) -> None:
    """sendall with one deadline for the whole response, so a client that reads slowly holds
    a handler thread at most CLIENT_TIMEOUT_SECONDS."""
    view = memoryview(data)
    while view:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("client did not read the response in time")
        sock.settimeout(remaining)
        sent = sock.send(view[:65536])
        view = view[sent:]


class MetricsServer:
    """Serves the routes on a background selector thread; ``port`` is the bound port."""

    def __init__(self, registry: CollectorRegistry, config: ExporterConfig) -> None:
        self.routes = Routes(registry, config)
        self._tls = tls_context(config)
        self._listen = _listener(config.host, config.port)
        self.port: int = self._listen.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listen, selectors.EVENT_READ, None)
        self._pending: dict[_Connection, None] = {}  # insertion order = accept order
        self._limit = _pending_limit()
        self._pool = ThreadPoolExecutor(max_workers=HANDLER_THREADS, thread_name_prefix="http")
        self._stopping = threading.Event()
        #: Connections handed to the handler pool and not yet answered and closed.
        self._active: set[_Connection] = set()
        self._active_lock = threading.Lock()
        self._idle_closed = 0
        self._next_idle_log = 0.0
        self._thread = threading.Thread(target=self._loop, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop accepting, give scrapes in flight ``grace`` seconds, answer the rest 503 and
        close them: bounded whatever the brokers do (a scrape stuck on a hung broker's
        inspection is not awaited)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)  # the selector wakes every 0.2 s
        for conn in list(self._pending):
            self._drop(conn)  # no complete request yet: a clean close
        self._selector.close()
        self._listen.close()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with self._active_lock:
                if not self._active:
                    break
            time.sleep(0.02)
        with self._active_lock:
            late = [conn for conn in self._active if not conn.claimed]
            for conn in late:
                conn.claimed = True
        for conn in late:
            with contextlib.suppress(OSError):
                conn.sock.setblocking(True)
                _send_all(conn.sock, SHUTTING_DOWN.encode(head_only=False), time.monotonic() + 0.5)
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            conn.sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- the selector thread ----------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                if key.data is None:
                    self._accept()
                else:
                    self._read(key.data)
            self._sweep(time.monotonic())

    def _accept(self) -> None:
        for _ in range(256):  # then let reads and the sweep run
            try:
                sock, _address = self._listen.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE and friends: make room, retry on the next event
                log.debug("accept failed: %s", exc)
                if self._pending:
                    self._drop(next(iter(self._pending)))
                return
            sock.setblocking(False)
            handshaking = self._tls is not None
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            conn = _Connection(sock, time.monotonic(), handshaking)
            if len(self._pending) >= self._limit:
                self._idle_closed += 1
                self._drop(next(iter(self._pending)))
            self._pending[conn] = None
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: _Connection) -> None:
        try:
            if conn.handshaking:
                conn.sock.do_handshake()  # type: ignore[attr-defined]
                conn.handshaking = False
                # It may have waited for EVENT_WRITE too; from now on only reads matter.
                self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
            while True:
                chunk = conn.sock.recv(65536)
                if not chunk:  # the client went away
                    self._drop(conn)
                    return
                if conn.first_byte is None:
                    conn.first_byte = time.monotonic()
                conn.buffer += chunk
                if b"\r\n\r\n" in conn.buffer or b"\n\n" in conn.buffer:
                    self._dispatch(conn)
                    return
                if len(conn.buffer) > MAX_HEAD_BYTES:
                    self._drop(conn)
                    return
        except (BlockingIOError, ssl.SSLWantReadError):
            return
        except ssl.SSLWantWriteError:  # rare: the handshake's reply did not fit the buffer
            self._selector.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
        except OSError as exc:  # resets, TLS failures (ssl.SSLError is an OSError)
            log.debug("connection dropped: %s", exc)
            self._drop(conn)

    def _dispatch(self, conn: _Connection) -> None:
        self._selector.unregister(conn.sock)
        del self._pending[conn]
        with self._active_lock:
            self._active.add(conn)
        self._pool.submit(self._handle, conn)

    def _claim(self, conn: _Connection) -> bool:
        """True when this handler may answer: stop() did not answer the client already."""
        with self._active_lock:
            if conn.claimed:
                return False
            conn.claimed = True
            return True

    def _drop(self, conn: _Connection) -> None:
        self._pending.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):  # not registered (any more)
            self._selector.unregister(conn.sock)
        conn.sock.close()

    def _sweep(self, now: float) -> None:
        """Close clients past their deadline (oldest first: dict order is accept order)."""
        while self._pending:
            conn = next(iter(self._pending))
            if now - conn.accepted < CLIENT_TIMEOUT_SECONDS:
                break
            self._idle_closed += 1
            self._drop(conn)
        if self._idle_closed and now >= self._next_idle_log:
            log.info(
                "closed %d HTTP connection(s) that sent no complete request within %gs, or the "
                "oldest waiting ones past %d (this line: at most once a minute)",
                self._idle_closed,
                CLIENT_TIMEOUT_SECONDS,
                self._limit,
            )
            self._idle_closed = 0
            self._next_idle_log = now + IDLE_LOG_INTERVAL_SECONDS

    # --- handler threads --------------------------------------------------------------------

    def _handle(self, conn: _Connection) -> None:
        head = bytes(conn.buffer).replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
        request = parse_head(head, conn.first_byte or conn.accepted)
        response = BAD_REQUEST if request is None else self._answer(request)
        if not self._claim(conn):
            return  # answered 503 and closed by stop()
        try:
            conn.sock.setblocking(True)
            deadline = time.monotonic() + CLIENT_TIMEOUT_SECONDS
            _send_all(
                conn.sock,
                response.encode(head_only=request is not None and request.method == "HEAD"),
                deadline,
            )
        except OSError as exc:  # the client left or read too slowly
            log.debug("could not answer a client: %s", exc)
        finally:
            conn.sock.close()
            with self._active_lock:
                self._active.discard(conn)

    def _answer(self, request: Request) -> Response:
        try:
            return self.routes.respond(request)
        except Exception:  # a bug must cost one request, not the server
            log.exception("error answering %s %s", request.method, request.path)
            return Response("500 Internal Server Error", TEXT, b"internal error\n")
