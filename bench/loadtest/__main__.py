"""``python -m bench.loadtest``: run the priority load test and write its report.

Default run (7 to 8 minutes on 2 cores) and the one in docs/priority-loadtest.md::

    .venv/bin/python -m bench.loadtest

CI smoke run (under 2 minutes, into a scratch directory)::

    .venv/bin/python -m bench.loadtest --quick --out-dir /tmp/loadtest

``--from-raw FILE`` re-renders a report from a raw data file without running anything.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from celery_queue_exporter.config import redact_url
from testsupport.rabbitmq import rabbitmq_available

from . import services
from .report import render
from .runner import Runner, read_raw, write_raw
from .workload import make_plan

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadtest",
        description="Priority load test: Redis' emulated priorities vs RabbitMQ x-max-priority, "
        "with real workers, read through the exporter's metrics.",
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="CI smoke run: fewer setups, short phases (< 2 min)")
    add("--brokers", default="redis,rabbitmq", help="comma-separated: redis, rabbitmq")
    add("--rabbitmq-url", default=DEFAULT_RABBITMQ_URL, help="AMQP URL of the RabbitMQ to use")
    add("--workers", type=int, default=2, help="Celery worker processes (default 2)")
    add("--concurrency", type=int, default=4, help="prefork children per worker (default 4)")
    add("--duration", type=float, default=0.5, help="seconds each task sleeps (default 0.5)")
    add("--phase-seconds", type=float, help="length of each load phase (default 7, quick 2)")
    add(
        "--load-factors",
        default="0.5,1,1.5,2",
        help="offered load per phase as multiples of capacity (default 0.5,1,1.5,2)",
    )
    add("--starvation-seconds", type=float, help="urgent stream length (default 20, quick 5)")
    add("--seed", type=int, default=8, help="seed of the class sequence (default 8)")
    add("--out-dir", type=Path, help="write report.md, img/ and raw.json.gz here")
    add("--report", type=Path, help="report path (default docs/priority-loadtest.md)")
    add("--img-dir", type=Path, help="plot directory (default docs/img)")
    add("--raw", type=Path, help="raw data path (default docs/data/priority-loadtest.json.gz)")
    add("--context", help="what else ran on the machine, for the report")
    add("--from-raw", type=Path, help="only re-render the report from this raw data file")
    return parser


def command_line(args: argparse.Namespace, argv: list[str]) -> str:
    shown = []
    skip = False
    for index, item in enumerate(argv):
        if skip:
            skip = False
            continue
        if item == "--context":  # prose for the report, not part of reproducing the run
            skip = True
            continue
        if item.startswith("--context="):
            continue
        if item == "--rabbitmq-url" and index + 1 < len(argv):
            shown += [item, redact_url(argv[index + 1])]
            skip = True
            continue
        shown.append(item)
    return " ".join([".venv/bin/python -m bench.loadtest", *map(shlex.quote, shown)])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.out_dir is not None:
        report = args.report or args.out_dir / "report.md"
        img_dir = args.img_dir or args.out_dir / "img"
        raw = args.raw or args.out_dir / "raw.json.gz"
    else:
        report = args.report or ROOT / "docs" / "priority-loadtest.md"
        img_dir = args.img_dir or ROOT / "docs" / "img"
        raw = args.raw or ROOT / "docs" / "data" / "priority-loadtest.json.gz"

    if args.from_raw is not None:
        data = read_raw(args.from_raw)
        command = data["meta"].get("command", "")
    else:
        brokers = tuple(b.strip() for b in args.brokers.split(",") if b.strip())
        unknown = set(brokers) - {"redis", "rabbitmq"}
        if unknown or not brokers:
            print(f"loadtest: unknown broker(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        if "rabbitmq" in brokers and not rabbitmq_available(args.rabbitmq_url):
            print(
                f"loadtest: RabbitMQ does not answer at {redact_url(args.rabbitmq_url)} "
                "(run scripts/bootstrap.sh, or pass --brokers redis)",
                file=sys.stderr,
            )
            return 2
        plan = make_plan(
            brokers,
            quick=args.quick,
            workers=args.workers,
            concurrency=args.concurrency,
            duration=args.duration,
            phase_seconds=args.phase_seconds,
            load_factors=tuple(float(f) for f in args.load_factors.split(",")),
            starvation_seconds=args.starvation_seconds,
            seed=args.seed,
        )
        command = command_line(args, argv)
        work_dir = Path(tempfile.mkdtemp(prefix="cqe-loadtest-"))
        try:
            data = Runner(plan, args.rabbitmq_url, work_dir).run()
        except services.ServiceError as exc:
            print(f"loadtest: {exc} (worker and exporter logs kept in {work_dir})", file=sys.stderr)
            return 1
        shutil.rmtree(work_dir, ignore_errors=True)
        data["meta"]["command"] = command
        data["meta"]["context"] = args.context
        raw.parent.mkdir(parents=True, exist_ok=True)
        write_raw(data, raw)

    report.parent.mkdir(parents=True, exist_ok=True)
    context = args.context or data["meta"].get("context")
    text = render(data, img_dir, report, command, context=context)
    report.write_text(text, encoding="utf-8")
    print(f"loadtest: report {report}, raw data {raw}, plots in {img_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
