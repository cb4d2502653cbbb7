"""Benchmark: concurrent scrapers against broker commands, and 1,500 slow clients against
threads, memory and the log (issue 12, points 7 and 8). Loopback only, bounded in time.

Not a test: it prints figures (docs/reliability.md quotes them). It runs the real command
(``python -m celery_queue_exporter``) against a private redis-server on a spare port:

* scrapers: for N concurrent scrapers, N connections are opened, then N ``GET /metrics`` are
  sent at once; Redis' ``INFO commandstats`` counts the EVAL_RO calls (one per inspection) and
  every answer is checked for ``celery_broker_up 1``. Once with Redis answering at full speed,
  once with Redis paused for 0.1 s (CLIENT PAUSE) as each round starts: a slow inspection.
* slow clients: N connections that send nothing (half) or a header line every second (half);
  while they are held, the exporter's threads (/proc/PID/status), RSS and the latency of a real
  scrape are sampled; at the end, the exporter's stderr is searched for tracebacks.

Usage: .venv/bin/python bench/bench_http_clients.py [--slow-clients 1500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from testsupport.http import connect, exchange, read_response, request_bytes  # noqa: E402
from testsupport.net import free_port, port_open  # noqa: E402
from testsupport.processes import proc_status  # noqa: E402
from testsupport.redis_server import RedisServer  # noqa: E402
from testsupport.waiting import wait_for  # noqa: E402

CLIENT_TIMEOUT = 10.0  # the server's whole-request deadline (server.CLIENT_TIMEOUT_SECONDS)


def eval_calls(redis: RedisServer) -> int:
    stats = redis.client().info("commandstats")
    return int(stats.get("cmdstat_eval_ro", {}).get("calls", 0))


def scrapers(port: int, redis: RedisServer, counts: list[int], rounds: int, pause_ms: int) -> list:
    rows = []
    for count in counts:
        before = eval_calls(redis)
        up_zero = 0
        started = time.monotonic()
        for _ in range(rounds):
            sockets = [connect(port) for _ in range(count)]
            if pause_ms:
                redis.client().execute_command("CLIENT", "PAUSE", str(pause_ms), "ALL")
            for sock in sockets:
                sock.sendall(request_bytes("GET", "/metrics"))
            for sock in sockets:
                body = read_response(sock).body
                up_zero += b'celery_broker_up{broker="r"} 1.0' not in body
        rows.append(
            {
                "scrapers": count,
                "inspection_delay_ms": pause_ms,
                "rounds": rounds,
                "eval_ro_per_round": (eval_calls(redis) - before) / rounds,
                "answers_without_up_1": up_zero,
                "seconds_per_round": round((time.monotonic() - started) / rounds, 3),
            }
        )
    return rows


def slow_clients(port: int, pid: int, count: int) -> dict:
    idle, trickling = [], []
    base = proc_status(pid, "Threads", "VmRSS")
    started = time.monotonic()
    for index in range(count):
        sock = connect(port, timeout=30)
        (idle if index % 2 else trickling).append(sock)
    for sock in trickling:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
    opened = time.monotonic() - started
    peak = dict(base)
    latencies = []
    while time.monotonic() - started < CLIENT_TIMEOUT - 1:
        status = proc_status(pid, "Threads", "VmRSS")
        peak = {k: max(peak[k], status[k]) for k in peak}
        t0 = time.monotonic()
        assert exchange(port, "GET", "/metrics").status == 200
        latencies.append(time.monotonic() - t0)
        for sock in trickling:
            with contextlib.suppress(OSError):
                sock.sendall(b"X-Slow: 1\r\n")
        time.sleep(1)
    closed = 0
    for sock in idle + trickling:
        sock.settimeout(CLIENT_TIMEOUT + 5)
        with contextlib.suppress(OSError):
            closed += sock.recv(1) == b""
        sock.close()
    return {
        "slow_clients": count,
        "seconds_to_open_them": round(opened, 2),
        "threads_before": base["Threads"],
        "threads_peak": peak["Threads"],
        "rss_mib_before": round(base["VmRSS"] / 1024, 1),
        "rss_mib_peak": round(peak["VmRSS"] / 1024, 1),
        "scrape_seconds_max_while_held": round(max(latencies), 3),
        "closed_by_the_server": closed,
        "seconds_until_all_closed": round(time.monotonic() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow-clients", type=int, default=1500)
    parser.add_argument("--scrapers", default="1,10,50,200")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    counts = [int(n) for n in args.scrapers.split(",")]

    with RedisServer() as redis, tempfile.TemporaryFile("w+") as stderr:
        client = redis.client()
        client.sadd("_kombu.binding.jobs", "jobs\x06\x16\x06\x16jobs")
        client.lpush("jobs", *["{}"] * 10)
        port = free_port()
        exporter = subprocess.Popen(
            [sys.executable, "-m", "celery_queue_exporter", "--broker-url", f"r={redis.url}",
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        try:
            wait_for(lambda: port_open(port), timeout=30, what="exporter listening")
            results = {
                "scrapers": scrapers(port, redis, counts, args.rounds, 0)
                + scrapers(port, redis, counts, args.rounds, 100),
                "slow_clients": slow_clients(port, exporter.pid, args.slow_clients),
            }
        finally:
            exporter.terminate()
            exporter.wait(timeout=30)
        stderr.seek(0)
        log = stderr.read()
    results["exporter_log"] = {
        "lines": len(log.splitlines()),
        "tracebacks": log.count("Traceback"),
        "bytes": len(log.encode()),
    }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    raise SystemExit(main())
