#!/usr/bin/env bash
# Install and start everything the exporter and its tests need, on a fresh Debian machine.
# Idempotent: installs only what is missing, starts only services that are not already
# answering, and never stops anything. Run as root (or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_pkgs=()
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v rabbitmq-server >/dev/null 2>&1 || need_pkgs+=(rabbitmq-server)
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)  # test certificates
command -v npm >/dev/null 2>&1 || need_pkgs+=(nodejs npm)  # schema checks (tests/node)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  # Debian's prometheus package would start a server on :9090 through systemd; on machines
  # without systemd that is a no-op, and the tests start their own on spare ports.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need_pkgs[@]}" >/dev/null
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }

if ! port_open 6379; then
  echo "bootstrap: starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/celery-queue-exporter-redis.log
fi

# The management plugin gives per-priority counts and unacked counts (see README).
if ! grep -qs rabbitmq_management /etc/rabbitmq/enabled_plugins; then
  echo "bootstrap: enabling the RabbitMQ management plugin"
  $SUDO rabbitmq-plugins enable --offline rabbitmq_management >/dev/null
  if port_open 5672; then
    $SUDO rabbitmq-plugins enable rabbitmq_management >/dev/null || true
  fi
fi
if ! port_open 5672; then
  echo "bootstrap: starting rabbitmq-server"
  $SUDO rabbitmq-server -detached
fi
for _ in $(seq 1 60); do
  port_open 5672 && port_open 15672 && break
  sleep 1
done
port_open 6379 || { echo "bootstrap: redis did not come up on 6379" >&2; exit 1; }
port_open 5672 || { echo "bootstrap: rabbitmq did not come up on 5672" >&2; exit 1; }
if ! port_open 15672; then
  echo "bootstrap: RabbitMQ management API not answering on 15672" >&2
  # Tests need it; a plain run of the exporter falls back to AMQP.
  if [ "${CI:-}" = "true" ]; then exit 1; fi
fi
command -v kubectl >/dev/null 2>&1 || echo "bootstrap: warning: kubectl not found;" \
  "the k8s manifest tests need it (kubectl kustomize)" >&2

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import celery_queue_exporter, pytest, grafanalib' >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.installed
fi
# Node.js tools the tests run offline (tests/node/package.json, pinned by its lock file).
if [ ! -d tests/node/node_modules ] || [ tests/node/package-lock.json -nt tests/node/node_modules ]; then
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch tests/node/node_modules
fi
echo "bootstrap: ready"
