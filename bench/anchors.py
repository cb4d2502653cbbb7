"""Anchors: the exporters users compare against, run on the bench's own Redis in the same run
(issue 25: "bench/ prints each figure beside its floor and the anchors in one run").

* redis_exporter (oliver006; Debian 12 ships 1.45 as ``prometheus-redis-exporter``), with
  ``--check-keys 'queue-*'``: the length of every queue key, its closest figure to ours;
* celery-exporter (``celery-exporter`` on PATH, e.g. from PyPI).

Each is started on a free loopback port when installed, scraped with the same lean client as
ours (raw socket), and stopped; when one is not installed the bench says so and how to install
it. Not a test: nothing asserts on time.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from testsupport.http import exchange
from testsupport.net import free_port, port_open

START_TIMEOUT_SECONDS = 20.0
#: The lean client reads until the server closes: ask it to (Go's server keeps alive).
HEADERS = {"Accept-Encoding": "identity", "Connection": "close"}


def dechunk(body: bytes) -> bytes:
    """The payload of a chunked HTTP body."""
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2 :]
    return b"".join(out)


@dataclass(frozen=True)
class Anchor:
    """Another exporter: where to find it, how to start it against a Redis URL, how to get it."""

    name: str
    binaries: tuple[str, ...]
    install: str
    command: Callable[[str, str, int], list[str]]  # (binary, redis url, port) -> argv


@dataclass(frozen=True)
class AnchorResult:
    """One anchor's figures, or why there are none (``missing``)."""

    name: str
    median_seconds: float | None = None
    body_bytes: int | None = None
    series: int | None = None
    missing: str | None = None


ANCHORS = (
    Anchor(
        "redis_exporter",
        ("redis_exporter", "prometheus-redis-exporter"),
        "apt-get install prometheus-redis-exporter",
        lambda binary, url, port: [
            binary,
            "--redis.addr",
            url,
            "--web.listen-address",
            f"127.0.0.1:{port}",
            "--check-keys",
            "queue-*",
        ],
    ),
    Anchor(
        "celery-exporter",
        ("celery-exporter",),
        "pip install celery-exporter (in a virtualenv of its own)",
        lambda binary, url, port: [binary, "--broker-url", url, "--port", str(port)],
    ),
)


def measure(anchor: Anchor, redis_url: str, repeat: int = 10) -> AnchorResult:
    """Start ``anchor`` on a free loopback port, time ``repeat`` scrapes after a warm-up, stop
    it."""
    binary = next((found for b in anchor.binaries if (found := shutil.which(b))), None)
    if binary is None:
        return AnchorResult(anchor.name, missing=f"not installed: {anchor.install}")
    port = free_port()
    process = subprocess.Popen(
        anchor.command(binary, redis_url, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not port_open(port):
            if process.poll() is not None:
                return AnchorResult(anchor.name, missing=f"{binary} exited at start")
            if time.monotonic() > deadline:
                return AnchorResult(anchor.name, missing=f"{binary} did not listen in time")
            time.sleep(0.2)
        exchange(port, "GET", "/metrics", HEADERS)  # warm-up
        times = []
        body = b""
        for _ in range(repeat):
            started = time.perf_counter()
            response = exchange(port, "GET", "/metrics", HEADERS)
            times.append(time.perf_counter() - started)
            body = response.body
            if response.headers.get("transfer-encoding") == "chunked":
                body = dechunk(body)
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        return AnchorResult(anchor.name, statistics.median(times), len(body), series)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def run_anchors(redis_url: str, repeat: int = 10) -> list[AnchorResult]:
    """Every anchor against ``redis_url``, one after the other."""
    return [measure(anchor, redis_url, repeat) for anchor in ANCHORS]


def report(results: list[AnchorResult], floor: float, ours: float, our_bytes: int) -> list[str]:
    """Lines for the bench's output: each anchor beside the floor and our plain scrape."""
    lines = []
    for result in results:
        if result.missing is not None or result.median_seconds is None:
            lines.append(f"anchor {result.name}: {result.missing}")
            continue
        median = result.median_seconds
        lines.append(
            f"anchor {result.name}: median {median * 1000:.1f} ms ({median / floor:.2f}x floor; "
            f"ours {ours / median:.2f}x it), body {result.body_bytes:,} bytes "
            f"(ours {our_bytes / (result.body_bytes or 1):.1f}x), {result.series:,} series"
        )
    return lines
