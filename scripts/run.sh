#!/usr/bin/env bash
# Run the exporter: installs only what running it needs (.venv with the package, pinned by
# requirements/lock.txt), then execs it with the arguments given.
# Example: bash scripts/run.sh --broker-url redis://localhost:6379/0 --port 9818
#
# With no broker given (no --broker-url/--config, no CELERY_EXPORTER_BROKER_URL/_CONFIG) it
# watches the default redis://localhost:6379/0 and, when nothing answers there, installs and
# starts a local redis-server on 127.0.0.1:6379 (the one service it can need). A broker you
# name is never started for you: when a local one does not answer, it says so and runs anyway
# (celery_broker_up is 0 until the broker comes up). RabbitMQ, Prometheus and the test tools
# come with scripts/test.sh and scripts/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }

named_broker=0
[ -n "${CELERY_EXPORTER_BROKER_URL:-}${CELERY_EXPORTER_CONFIG:-}" ] && named_broker=1
local_ports=()
expect_url=0
for arg in "$@"; do
  url=""
  if [ "$expect_url" = 1 ]; then url=$arg; expect_url=0; fi
  case "$arg" in
    --broker-url) named_broker=1; expect_url=1 ;;
    --broker-url=*) named_broker=1; url=${arg#--broker-url=} ;;
    --config|--config=*) named_broker=1 ;;
  esac
  url=${url#*=}  # NAME=URL
  # A Redis or RabbitMQ on this machine: remember its port to say when it is down.
  if [[ "$url" =~ ^(redis|rediss|amqp|amqps)://([^@/]*@)?(localhost|127\.0\.0\.1)(:([0-9]+))? ]]; then
    port=${BASH_REMATCH[5]}
    if [ -z "$port" ]; then
      case "${BASH_REMATCH[1]}" in redis*) port=6379 ;; amqp) port=5672 ;; amqps) port=5671 ;; esac
    fi
    local_ports+=("$port")
  fi
done

pieces=run
if [ "$named_broker" = 0 ] && ! port_open 6379; then
  echo "run: nothing answers on localhost:6379 (the default broker); starting a local Redis" >&2
  pieces=run,redis
fi
bash scripts/bootstrap.sh --for "$pieces"
for port in "${local_ports[@]}"; do
  port_open "$port" || echo "run: note: nothing answers on 127.0.0.1:$port;" \
    "the exporter reports that broker down (celery_broker_up 0) until it does" >&2
done
exec .venv/bin/celery-queue-exporter "$@"
