"""Measure the exporter's memory and CPU under a realistic load, to size the k8s resources.

Not a test: it prints figures (docs/kubernetes.md quotes them). It runs the real
``celery-queue-exporter`` command as a subprocess, with the same kind of configuration file the
Kubernetes bundle mounts, against:

* a private redis-server on a spare port holding ``--redis-queues`` queues (4 priority steps,
  ``--messages`` messages per queue spread over the steps, published by Celery itself so the
  stored messages are real Celery messages);
* the machine's RabbitMQ (127.0.0.1:5672, management API on 15672) with ``--rabbitmq-queues``
  uniquely named priority queues (x-max-priority 9) holding ``--messages`` messages each; they
  are deleted at the end (only those this script declared);
* with events on (``--events``): one real Celery worker per broker (prefork, 2 processes,
  ``-E``) and a producer publishing ``--rate`` tasks per second to each broker for the whole
  run, so the exporter decodes a steady stream of task and worker events.

Prometheus is played by a loop scraping /metrics every ``--scrape-interval`` seconds (the
bundle's ServiceMonitor scrapes every 30 s; a shorter interval here errs on the heavy side).
After ``--warmup`` seconds it samples the exporter's RSS every second for ``--duration``
seconds and reads its CPU time from /proc (all threads). It prints the RSS (steady and peak,
VmHWM), the average CPU in millicores over the run and the busiest 10 s window.

``--tracker-worst-case`` instead measures, in this process, the memory the event tracker holds
at its bound: events.max_tracked_tasks (100,000) tasks in flight (sent, never started) under
500 task names and 50 queues.

Usage: .venv/bin/python bench/bench_k8s_resources.py [--events] [--duration 120]
       .venv/bin/python bench/bench_k8s_resources.py --tracker-worst-case
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testsupport.net import free_port, http_ok  # noqa: E402
from testsupport.processes import proc_status, stop_process  # noqa: E402
from testsupport.rabbitmq import delete_rabbitmq_objects  # noqa: E402
from testsupport.redis_server import RedisServer  # noqa: E402
from testsupport.waiting import ServiceError, wait_for  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime, all threads


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    values = proc_status(pid, "VmRSS", "VmHWM")
    return values["VmRSS"], values["VmHWM"]


def celery_app(broker_url: str):
    from celery import Celery

    app = Celery("bench", broker=broker_url, set_as_current=False)
    app.conf.update(task_create_missing_queues=True, broker_connection_retry_on_startup=True)
    return app


def fill_queues(broker_url: str, queues: list[str], messages: int, rabbitmq: bool) -> None:
    """Publish ``messages`` real Celery messages to each queue, priorities 0..9."""
    from kombu import Exchange, Queue

    app = celery_app(broker_url)
    with app.producer_or_acquire() as producer:
        for name in queues:
            arguments = {"x-max-priority": 9} if rabbitmq else None
            queue = Queue(name, Exchange(name), routing_key=name, queue_arguments=arguments)
            queue.declare(channel=producer.channel)
            for index in range(messages):
                app.send_task(
                    "bench.never_run",
                    args=(index,),
                    queue=queue,
                    priority=index % 10,
                    producer=producer,
                )


def start_worker(broker_url: str, queue: str, log_dir: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=f"{APPS}{os.pathsep}{ROOT}",
        CQE_BROKER_URL=broker_url,
        CQE_QUEUE=queue,
        CQE_INSTALL="1",
    )
    log = open(log_dir / f"worker-{queue}.log", "wb")  # noqa: SIM115 - lives with the worker
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "events_app",
            "worker",
            "-P",
            "prefork",
            "-c",
            "2",
            "-E",
            "-Q",
            queue,
            "-n",
            f"bench-{queue}@%h",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "WARNING",
        ],  # fmt: skip
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def produce(broker_url: str, queue: str, rate: float, stop: threading.Event) -> None:
    """Publish events.ok tasks at ``rate`` per second, mixed priorities, until ``stop``."""
    sys.path[:0] = [str(APPS)]
    os.environ.update(CQE_BROKER_URL=broker_url, CQE_QUEUE=queue)
    from events_app import make_app

    from celery_queue_exporter.instrumentation import install

    app = make_app(broker_url, queue)
    install(app)
    interval = 1.0 / rate
    sent = 0
    started = time.monotonic()
    with app.producer_or_acquire() as producer:
        while not stop.is_set():
            app.send_task(
                "events.ok", args=(sent,), queue=queue, priority=sent % 10, producer=producer
            )
            sent += 1
            delay = started + sent * interval - time.monotonic()
            if delay > 0:
                stop.wait(delay)


def tracker_worst_case() -> None:
    """RSS the event tracker adds when it holds max_tracked_tasks tasks."""
    from celery_queue_exporter.brokers.redis.priority import step_levels
    from celery_queue_exporter.config import EventSettings
    from celery_queue_exporter.events.tracker import EventTracker

    settings = EventSettings()
    before = memory_kib(os.getpid())[0]
    tracker = EventTracker("redis", settings, priority_level=step_levels([0, 3, 6, 9]))
    now = time.time()
    batch = []
    for index in range(settings.max_tracked_tasks):
        batch.append(
            {
                "type": "task-sent",
                "uuid": uuid.uuid4().hex,
                "name": f"app.tasks.t{index % 500}",
                "queue": f"q{index % 50}",
                "timestamp": now,
                "hostname": "producer",
            }
        )
        if len(batch) == 1000:
            tracker.handle(batch)
            batch = []
    added = (memory_kib(os.getpid())[0] - before) / 1024
    print(f"tracker: {settings.max_tracked_tasks} tasks in flight, 500 names x 50 queues: ")
    print(f"  +{added:.1f} MiB RSS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-queues", type=int, default=100)
    parser.add_argument("--rabbitmq-queues", type=int, default=30)
    parser.add_argument("--messages", type=int, default=50, help="messages per queue")
    parser.add_argument("--events", action="store_true", help="workers, producers and --events")
    parser.add_argument("--rate", type=float, default=20.0, help="tasks/s per broker (events)")
    parser.add_argument("--no-rabbitmq", action="store_true", help="Redis only")
    parser.add_argument("--scrape-interval", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--tracker-worst-case", action="store_true")
    args = parser.parse_args()
    if args.tracker_worst_case:
        tracker_worst_case()
        return 0

    tag = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="cqe-bench-k8s-"))
    redis_server = RedisServer(workdir=workdir)
    processes: list[subprocess.Popen] = []
    workers: list[subprocess.Popen] = []
    rabbit_queues: list[str] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        redis_server.start()
        redis_url = redis_server.url
        redis_queues = [f"bench-{tag}-{i}" for i in range(args.redis_queues)]
        fill_queues(redis_url, redis_queues, args.messages, rabbitmq=False)
        brokers = [{"name": "redis", "url": redis_url}]
        rabbit_url = "amqp://guest:guest@127.0.0.1:5672//"
        if not args.no_rabbitmq:
            rabbit_queues = [f"cqe-bench-{tag}-{i}" for i in range(args.rabbitmq_queues)]
            fill_queues(rabbit_url, rabbit_queues, args.messages, rabbitmq=True)
            brokers.append({"name": "rabbitmq", "url": "amqp://guest@127.0.0.1:5672//",
                            "password_env": "BENCH_RABBITMQ_PASSWORD"})  # fmt: skip
        if args.events:
            live = [(redis_url, f"bench-{tag}-live")]
            if not args.no_rabbitmq:
                live.append((rabbit_url, f"cqe-bench-{tag}-live"))
                rabbit_queues.append(f"cqe-bench-{tag}-live")
            for url, queue in live:
                workers.append(start_worker(url, queue, workdir))
                processes.append(workers[-1])
                thread = threading.Thread(
                    target=produce, args=(url, queue, args.rate, stop), daemon=True
                )
                thread.start()
                threads.append(thread)

        port = free_port()
        config = {"port": port, "host": "127.0.0.1", "brokers": brokers, "log_level": "WARNING"}
        if args.events:
            config["events"] = {"enabled": True}
        (workdir / "exporter.yaml").write_text(yaml.safe_dump(config))
        env = dict(os.environ, BENCH_RABBITMQ_PASSWORD="guest", PYTHONDONTWRITEBYTECODE="1")
        exporter = subprocess.Popen(
            [sys.executable, "-m", "celery_queue_exporter", "--config", str(workdir / "exporter.yaml")],  # noqa: E501
            cwd=ROOT, env=env, stderr=open(workdir / "exporter.log", "wb"),  # noqa: SIM115
        )  # fmt: skip
        processes.append(exporter)
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: http_ok(url, timeout=5), 30, "the exporter", error=SystemExit)

        def scrape_loop() -> None:
            while not stop.is_set():
                started = time.monotonic()
                reply = requests.get(url, timeout=30)
                scrapes.append((time.monotonic() - started, len(reply.content)))
                stop.wait(max(0.0, args.scrape_interval - (time.monotonic() - started)))

        scrapes: list[tuple[float, int]] = []
        scraper = threading.Thread(target=scrape_loop, daemon=True)
        scraper.start()
        threads.append(scraper)
        time.sleep(args.warmup)

        rss: list[int] = []
        cpu = [(time.monotonic(), cpu_seconds(exporter.pid))]
        end = time.monotonic() + args.duration
        while time.monotonic() < end:
            time.sleep(1.0)
            rss.append(memory_kib(exporter.pid)[0])
            cpu.append((time.monotonic(), cpu_seconds(exporter.pid)))
            if exporter.poll() is not None:
                raise SystemExit(f"exporter exited: {(workdir / 'exporter.log').read_text()}")
        peak_kib = memory_kib(exporter.pid)[1]
        total = (cpu[-1][1] - cpu[0][1]) / (cpu[-1][0] - cpu[0][0])
        windows = [
            (cpu[i + 10][1] - cpu[i][1]) / (cpu[i + 10][0] - cpu[i][0])
            for i in range(0, len(cpu) - 10)
        ]
        samples = requests.get(url, timeout=30).text.count("\n")
        durations = sorted(d for d, _ in scrapes)
        events = ""
        if args.events:
            for line in requests.get(url, timeout=30).text.splitlines():
                if line.startswith("celery_events_received_total{"):
                    events += " " + line
        where = f"redis {args.redis_queues} queues"
        if not args.no_rabbitmq:
            where += f", rabbitmq {args.rabbitmq_queues} queues"
        load = f" at {args.rate:g} tasks/s per broker" if args.events else ""
        median = durations[len(durations) // 2] * 1000
        print(f"brokers: {where}, {args.messages} messages per queue, events {args.events}{load}")
        print(f"exposition: {samples} lines; scrapes: {len(durations)}, median {median:.0f} ms,")
        print(f"  max {durations[-1] * 1000:.0f} ms")
        print(f"RSS: median {sorted(rss)[len(rss) // 2] / 1024:.1f} MiB,")
        print(f"  max sampled {max(rss) / 1024:.1f} MiB, peak (VmHWM) {peak_kib / 1024:.1f} MiB")
        print(f"CPU: average {total * 1000:.0f} millicores over {args.duration:g} s,")
        print(f"  busiest 10 s window {max(windows) * 1000:.0f} millicores")
        if events:
            print("events:" + events)
    except ServiceError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        for process in reversed(processes):
            stop_process(process, timeout=15)
            if process in workers:  # their own session: end the pool children too
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
        redis_server.stop()
        if rabbit_queues:
            # Each queue has a direct exchange of the same name (fill_queues declares both).
            for error in delete_rabbitmq_objects(rabbit_url, rabbit_queues, rabbit_queues):
                print(f"clean-up: {error}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
