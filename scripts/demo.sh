#!/usr/bin/env bash
# One-command demo (`make demo`): Redis, RabbitMQ, Celery workers with a mixed-priority
# workload on both brokers, the exporter with Celery events, and Prometheus with the generated
# alerts and recording rules. Prints where to look; Ctrl-C stops everything it started.
#
# What it starts, and only that (each in its own process group, tracked by PID):
#   * Redis: the machine's on 127.0.0.1:6379 (or $DEMO_REDIS_PORT) is used when it answers,
#     else a private redis-server on a spare port (temporary directory, no persistence);
#   * RabbitMQ: the machine's node on 5672 (guest, management API on 15672) is used when it
#     answers, else a private node on spare ports (temporary directory, its own Erlang cookie);
#   * Prometheus (/usr/bin/prometheus) on 9090, or a spare port when 9090 is taken, with
#     temporary storage;
#   * the exporter, two Celery workers (one per broker) and a producer.
# The machine's Redis and RabbitMQ are never stopped; on exit the demo deletes only the queues
# it created there (names start with "cqe-demo-").
#
# Missing packages (redis-server, rabbitmq-server, prometheus) and .venv are installed by
# `scripts/bootstrap.sh --for demo`, which starts no service: only the demo does, as above.
#
# Options: --smoke  start everything, wait until Prometheus scrapes the exporter and both
#                   brokers are up, print the addresses, then stop (used by tests/test_e2e.py).
#          --private  start a private Redis and RabbitMQ even when the machine has them.
#          --shipped-rules  load the committed rules unchanged (thresholds of 15 min and 1,000
#                   messages: nothing fires within a demo); by default the demo renders the
#                   same rules through `python -m monitoring.generate` with demo thresholds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SMOKE=0
PRIVATE=0
SHIPPED_RULES=0
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    --private) PRIVATE=1 ;;
    --shipped-rules) SHIPPED_RULES=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "demo: unknown option $arg" >&2; exit 2 ;;
  esac
done

log() { echo "demo: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }
spare_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then log "timed out waiting for $what"; return 1; fi
    sleep 0.5
  done
}

# --- install what is missing (no service is started here) ------------------------------------
bash scripts/bootstrap.sh --for demo
PY="$ROOT/.venv/bin/python"

# --- bookkeeping: everything started is a process group leader in PIDS -----------------------
WORKDIR=$(mktemp -d /tmp/cqe-demo-XXXXXX)
TAG=$(basename "$WORKDIR" | sed 's/^cqe-demo-//' | tr 'A-Z' 'a-z')
log "working directory $WORKDIR"
PIDS=()
NAMES=()
SHARED_RABBITMQ=0
SHARED_REDIS=0

start() {  # start NAME COMMAND... : own session, output to $WORKDIR/NAME.log
  local name=$1; shift
  setsid "$@" >"$WORKDIR/$name.log" 2>&1 < /dev/null &
  PIDS+=($!)
  NAMES+=("$name")
  log "started $name (pid $!)"  # as it happens: whoever runs the demo can clean up after it
}

cleanup() {
  trap - EXIT INT TERM
  log "stopping what the demo started"
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM -- "-${PIDS[$i]}" 2>/dev/null || true
  done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    local waited=0
    while kill -0 "${PIDS[$i]}" 2>/dev/null && [ $waited -lt 60 ]; do sleep 0.5; waited=$((waited + 1)); done
    kill -KILL -- "-${PIDS[$i]}" 2>/dev/null || true
    log "stopped ${NAMES[$i]} (pid ${PIDS[$i]})"
  done
  if [ "$SHARED_RABBITMQ" = 1 ] || [ "$SHARED_REDIS" = 1 ]; then
    "$PY" - "$TAG" "$SHARED_REDIS" "$SHARED_RABBITMQ" "$REDIS_PORT" <<'EOF' || log "could not delete the demo queues"
import sys
tag, redis_shared, rabbit_shared = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
prefix = f"cqe-demo-{tag}-"
if redis_shared:
    import redis
    client = redis.Redis(host="127.0.0.1", port=int(sys.argv[4]))
    keys = list(client.scan_iter(match=f"{prefix}*"))
    for key in client.scan_iter(match="_kombu.binding*"):  # binding and binding_permanent
        if client.type(key) != b"set":
            continue  # _kombu.binding_deadlines is kombu's own sorted set
        for member in client.smembers(key):
            if prefix.encode() in member:
                client.srem(key, member)
    if keys:
        client.delete(*keys)
if rabbit_shared:
    import requests
    auth = ("guest", "guest")
    for kind in ("queues", "exchanges"):  # Celery declares a direct exchange per queue
        api = f"http://127.0.0.1:15672/api/{kind}/%2F"
        for item in requests.get(api, auth=auth, timeout=10).json():
            if item["name"].startswith(prefix):
                requests.delete(f"{api}/{item['name']}", auth=auth, timeout=10)
EOF
  fi
  rm -rf "$WORKDIR"
  log "done"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Redis ------------------------------------------------------------------------------------
MACHINE_REDIS_PORT=${DEMO_REDIS_PORT:-6379}
if [ "$PRIVATE" = 0 ] && port_open "$MACHINE_REDIS_PORT" && command -v redis-cli >/dev/null 2>&1 \
   && [ "$(redis-cli -p "$MACHINE_REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; then
  REDIS_PORT=$MACHINE_REDIS_PORT
  SHARED_REDIS=1
  log "using the machine's Redis on 127.0.0.1:$REDIS_PORT (not stopped at the end)"
else
  REDIS_PORT=$(spare_port)
  start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORKDIR"
  wait_for 20 "redis-server" port_open "$REDIS_PORT"
  log "started redis-server on 127.0.0.1:$REDIS_PORT"
fi
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

# --- RabbitMQ ---------------------------------------------------------------------------------
if [ "$PRIVATE" = 0 ] && port_open 5672 && port_open 15672; then
  AMQP_PORT=5672
  MGMT_PORT=15672
  SHARED_RABBITMQ=1
  log "using the machine's RabbitMQ on 127.0.0.1:5672 (not stopped at the end)"
else
  AMQP_PORT=$(spare_port)
  MGMT_PORT=$(spare_port)
  DIST_PORT=$(spare_port)
  RMQ="$WORKDIR/rabbitmq"
  mkdir -p "$RMQ/mnesia" "$RMQ/log" "$RMQ/home"
  cat >"$RMQ/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
loopback_users = none
disk_free_limit.absolute = 1MB
management.tcp.port = $MGMT_PORT
management.tcp.ip = 127.0.0.1
EOF
  echo "[rabbitmq_management]." >"$RMQ/enabled_plugins"
  : >"$RMQ/rabbitmq-env.conf"
  RABBITMQ_SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
  [ -x "$RABBITMQ_SERVER" ] || RABBITMQ_SERVER=$(command -v rabbitmq-server)
  start rabbitmq env HOME="$RMQ/home" RABBITMQ_NODENAME="cqe-demo-$TAG@localhost" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$AMQP_PORT" \
    RABBITMQ_DIST_PORT="$DIST_PORT" RABBITMQ_MNESIA_BASE="$RMQ/mnesia" \
    RABBITMQ_LOG_BASE="$RMQ/log" RABBITMQ_CONFIG_FILE="$RMQ/rabbitmq.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ/enabled_plugins" \
    RABBITMQ_CONF_ENV_FILE="$RMQ/rabbitmq-env.conf" ERL_EPMD_ADDRESS=127.0.0.1 \
    ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}" "$RABBITMQ_SERVER"
  log "starting a private RabbitMQ node (takes a few seconds)"
  wait_for 120 "RabbitMQ" port_open "$AMQP_PORT"
  wait_for 120 "the RabbitMQ management API" port_open "$MGMT_PORT"
  log "started RabbitMQ on 127.0.0.1:$AMQP_PORT (management API on $MGMT_PORT)"
fi
AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT//"

# --- the demo's Celery app --------------------------------------------------------------------
PREFIX="cqe-demo-$TAG"
cat >"$WORKDIR/demo_app.py" <<'EOF'
"""The demo's Celery app: one work queue and one nobody consumes, priorities 0..9."""
import os
import random
import time

from celery import Celery
from kombu import Queue

from celery_queue_exporter.instrumentation import install

PREFIX = os.environ["DEMO_PREFIX"]


def make_app(url):
    app = Celery("demo", broker=url, set_as_current=False)
    app.conf.update(
        task_queues=[
            Queue(name, routing_key=name, queue_arguments={"x-max-priority": 9})
            for name in (f"{PREFIX}-work", f"{PREFIX}-idle")
        ],
        task_default_queue=f"{PREFIX}-work",
        task_send_sent_event=True,
        worker_send_task_events=True,
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
    )
    install(app)  # publish stamps: exact ages and per-priority waits
    return app


app = make_app(os.environ.get("DEMO_BROKER_URL", "redis://127.0.0.1:6379/0"))


@app.task(name="demo.work")
def work(seconds):
    time.sleep(seconds)
    if random.random() < 0.05:
        raise RuntimeError("a demo failure (5% of tasks)")
EOF
cat >"$WORKDIR/producer.py" <<'EOF'
"""Publish a mixed-priority workload to both brokers until stopped."""
import itertools
import os
import time

from demo_app import PREFIX, make_app

apps = {"redis": make_app(os.environ["DEMO_REDIS_URL"]),
        "rabbitmq": make_app(os.environ["DEMO_AMQP_URL"])}
# Redis serves priority 0 first, RabbitMQ the highest number.
urgent = {"redis": 0, "rabbitmq": 9}
least = {"redis": 9, "rabbitmq": 0}
for tick in itertools.count():
    for name, app in apps.items():
        try:
            # An urgent task twice a second; every 10 s a burst of 15 least-urgent and 5
            # normal tasks that the worker (concurrency 1) needs ~4 s to clear: urgent tasks
            # overtake the burst. Every 5 s a task for the queue nobody consumes.
            app.send_task("demo.work", args=(0.1,), queue=f"{PREFIX}-work", priority=urgent[name])
            if tick % 20 == 0:
                for index in range(20):
                    priority = least[name] if index < 15 else 5
                    app.send_task("demo.work", args=(0.2,), queue=f"{PREFIX}-work",
                                  priority=priority)
            if tick % 10 == 0:
                app.send_task("demo.work", args=(0.1,), queue=f"{PREFIX}-idle", priority=tick % 10)
        except Exception as exc:  # a broker restart: keep going
            print(f"producer: {name}: {exc}", flush=True)
    time.sleep(0.5)
EOF

# --- monitoring: rules (through the generator) and Prometheus ---------------------------------
if [ "$SHIPPED_RULES" = 1 ]; then
  RULES="$ROOT/alerts/celery-queue-exporter.rules.yaml"
else
  "$PY" - "$WORKDIR/monitoring.yaml" <<'EOF'
import sys

import yaml

from monitoring import config

# The shipped config with demo thresholds: alerts fire within a minute or two.
data = config.load()
data["recording"]["interval"] = "5s"
data["recording"]["window"] = "1m"
for name, settings in data["alerts"].items():
    settings["for"] = "30s"
data["alerts"]["CeleryQueueBacklogHigh"]["messages"] = 20
data["alerts"]["CeleryQueueMessageWaitingTooLong"]["seconds"] = 60
data["alerts"]["CeleryPriorityStarvation"].update(seconds=60, window="1m")
with open(sys.argv[1], "w") as handle:
    yaml.safe_dump(data, handle, sort_keys=False)
EOF
  "$PY" -m monitoring.generate --config "$WORKDIR/monitoring.yaml" --out "$WORKDIR/generated" \
    >/dev/null
  RULES="$WORKDIR/generated/alerts/celery-queue-exporter.rules.yaml"
fi

EXPORTER_PORT=9818
port_open "$EXPORTER_PORT" && EXPORTER_PORT=$(spare_port)
PROM_PORT=9090
port_open "$PROM_PORT" && PROM_PORT=$(spare_port)

cat >"$WORKDIR/exporter.yaml" <<EOF
host: 127.0.0.1
port: $EXPORTER_PORT
events:
  enabled: true
  heartbeat_timeout_seconds: 30
brokers:
  - name: demo-redis
    url: $REDIS_URL
    queues: [$PREFIX-work, $PREFIX-idle]
  - name: demo-rabbitmq
    url: amqp://guest@127.0.0.1:$AMQP_PORT//
    password_env: DEMO_RABBITMQ_PASSWORD
    management_url: http://127.0.0.1:$MGMT_PORT
    queues: [$PREFIX-work, $PREFIX-idle]
EOF
cat >"$WORKDIR/prometheus.yml" <<EOF
global: {scrape_interval: 5s, evaluation_interval: 5s}
rule_files: ["$RULES"]
scrape_configs:
  - job_name: celery-queue-exporter
    static_configs: [{targets: ["127.0.0.1:$EXPORTER_PORT"]}]
EOF

# Declare the queues (with x-max-priority on RabbitMQ) before the exporter looks for them.
for url in "$REDIS_URL" "$AMQP_URL"; do
  DEMO_PREFIX="$PREFIX" DEMO_BROKER_URL="$url" PYTHONPATH="$WORKDIR:$ROOT" "$PY" -c '
from demo_app import app
with app.connection_for_write() as connection:
    for queue in app.conf.task_queues:
        queue.bind(connection.default_channel).declare()
'
done

start exporter env DEMO_RABBITMQ_PASSWORD=guest "$PY" -m celery_queue_exporter --config "$WORKDIR/exporter.yaml"
start prometheus /usr/bin/prometheus --config.file="$WORKDIR/prometheus.yml" \
  --storage.tsdb.path="$WORKDIR/tsdb" --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn
for name in redis rabbitmq; do
  url=$REDIS_URL; [ $name = rabbitmq ] && url=$AMQP_URL
  start "worker-$name" env DEMO_PREFIX="$PREFIX" DEMO_BROKER_URL="$url" \
    PYTHONPATH="$WORKDIR:$ROOT" "$PY" -m celery -A demo_app worker -P prefork -c 1 -E \
    -Q "$PREFIX-work" -n "demo-$name@%h" --without-gossip --without-mingle -l WARNING
done
start producer env DEMO_PREFIX="$PREFIX" DEMO_REDIS_URL="$REDIS_URL" DEMO_AMQP_URL="$AMQP_URL" \
  PYTHONPATH="$WORKDIR:$ROOT" "$PY" "$WORKDIR/producer.py"

wait_for 30 "the exporter" port_open "$EXPORTER_PORT"
wait_for 60 "Prometheus" port_open "$PROM_PORT"

up_in_prometheus() {
  "$PY" - "$PROM_PORT" <<'EOF'
import sys

import requests

base = f"http://127.0.0.1:{sys.argv[1]}/api/v1/query"
for expr in ('up{job="celery-queue-exporter"}', 'min(celery_broker_up{job="celery-queue-exporter"})',
             'count(celery_broker_up{job="celery-queue-exporter"})'):
    result = requests.get(base, params={"query": expr}, timeout=5).json()["data"]["result"]
    if not result:
        sys.exit(1)
    value = float(result[0]["value"][1])
    if value != (2 if expr.startswith("count") else 1):
        sys.exit(1)
EOF
}
wait_for 90 "Prometheus to scrape the exporter with both brokers up" up_in_prometheus

cat <<EOF

celery-queue-exporter demo is running (Ctrl-C stops everything it started).

  metrics               http://127.0.0.1:$EXPORTER_PORT/metrics
  Prometheus targets    http://127.0.0.1:$PROM_PORT/targets
  alerts                http://127.0.0.1:$PROM_PORT/alerts
  rules                 http://127.0.0.1:$PROM_PORT/rules
  waiting per priority  http://127.0.0.1:$PROM_PORT/graph?g0.expr=celery_queue_messages&g0.tab=0

Brokers: Redis $REDIS_URL, RabbitMQ amqp://127.0.0.1:$AMQP_PORT// (management :$MGMT_PORT).
Queues: $PREFIX-work (a worker on each broker; urgent tasks overtake the backlog) and
$PREFIX-idle (no worker: CeleryQueueNoConsumers and, past 20 messages, CeleryQueueBacklogHigh
fire within a few minutes with the demo thresholds).
Rules: $RULES
Logs: $WORKDIR/*.log
Started (pid): $(for i in "${!PIDS[@]}"; do printf '%s=%s ' "${NAMES[$i]}" "${PIDS[$i]}"; done)
EOF

if [ "$SMOKE" = 1 ]; then
  log "smoke run: everything answered; stopping"
  exit 0
fi
while true; do
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      log "${NAMES[$i]} exited; see $WORKDIR/${NAMES[$i]}.log"
      tail -n 20 "$WORKDIR/${NAMES[$i]}.log" >&2 || true
      exit 1
    fi
  done
  sleep 2
done
