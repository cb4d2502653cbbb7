#!/usr/bin/env bash
# Every figure of issue 25's table in one run, each beside its floor (and the anchors when
# installed: bench/anchors.py), the version under test and, with BEFORE, an older one:
#   git archive REV | tar -x -C /tmp/before && bash bench/issue25.sh /tmp/before
# Redis 1k and 5k queues x 10 levels (floor: one EVAL_RO of all lengths), RabbitMQ 200 queues
# on a private node with rabbitmq_prometheus (floor: the plugin's own request; the management-
# only scrape is the code path of a version without prometheus_url), and single events per
# CPU-second. Prints the load average before and after: ratios are the figures, milliseconds
# depend on the machine. Not a test: nothing asserts on time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
BEFORE=${1:-}
before=()
[ -n "$BEFORE" ] && before=(--before "$BEFORE")
echo "== $(date -u +%FT%TZ) $(git rev-parse --short HEAD), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== Redis, 1,000 queues x 10 levels"
$PY bench/bench_redis_scrape.py --queues 1000 --repeat 20 "${before[@]}"
echo "== Redis, 5,000 queues x 10 levels"
$PY bench/bench_redis_scrape.py --queues 5000 --repeat 8 "${before[@]}"
echo "== RabbitMQ, 200 queues, rabbitmq_prometheus beside the management API"
$PY bench/bench_rabbitmq_plugin.py --queues 200
echo "== Celery events, single (non-batched), 15,000 per second for 6 s"
$PY bench/bench_events.py --seconds 6 --rates 15000 --batches 1 --tasks 0
echo "== done, load: $(cut -d' ' -f1-3 /proc/loadavg)"
