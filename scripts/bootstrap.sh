#!/usr/bin/env bash
# Install (and for the tests, start) what one use of this repository needs, on Debian 12.
#
# Usage: bash scripts/bootstrap.sh [--for PIECES] [--install-only]
#   PIECES: comma-separated, default "test"
#   run    .venv with the package (pinned by requirements/lock.txt): running the exporter
#   redis  redis-server, started on 127.0.0.1:6379 when nothing answers there
#   demo   what scripts/demo.sh runs (it starts its own services): redis-server,
#          rabbitmq-server, prometheus, make, .venv with the package
#   test   everything the tests and docs use: the demo's packages plus openssl, Node.js/npm
#          (tests/node), jq, faketime (libfaketime: a skewed producer), prometheus-alertmanager (amtool and a real Alertmanager for the
#          inhibition rules, tests/test_alertmanager.py); .venv with the test extra; Redis on 6379 and RabbitMQ (management
#          API on 15672) started on 127.0.0.1 only when they do not answer; debootstrap and a
#          Debian 13 root with RabbitMQ 4.0 (5682, management 15682) and Redis 8 (6389), started
#          the same way (scripts/debian13-brokers.sh; the root is cached as a tarball)
# --install-only: install the pieces, start no service (scripts/fresh-debian-check.sh installs
#   with the network, then runs the tests without it).
#
# Idempotent and quick when nothing changed: a Debian package is installed only when missing,
# .venv only when requirements/lock.txt or pyproject.toml changed since its last install
# (a stamp keyed on both), tests/node only when its lock file changed; a service is started
# only when its port does not answer, and nothing is ever stopped. Run as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

PIECES=test
INSTALL_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --for) PIECES=${2:?--for needs run, redis, demo or test}; shift 2 ;;
    --for=*) PIECES=${1#--for=}; shift ;;
    --install-only) INSTALL_ONLY=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bootstrap: unknown option $1" >&2; exit 2 ;;
  esac
done
want() { [[ ",$PIECES," == *",$1,"* ]]; }
for piece in ${PIECES//,/ }; do
  case "$piece" in
    run|redis|demo|test) ;;
    *) echo "bootstrap: unknown piece '$piece' (run, redis, demo, test)" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
log() { echo "bootstrap: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }

# --- Debian packages ----------------------------------------------------------------------------
need_pkgs=()
need() {  # need PACKAGE TEST...: PACKAGE is installed when the test command fails
  local package=$1; shift
  "$@" >/dev/null 2>&1 || need_pkgs+=("$package")
}
has() { command -v "$1"; }
need python3-venv python3 -c 'import venv, ensurepip'
if want redis || want demo || want test; then need redis-server has redis-server; fi
if want demo || want test; then
  need rabbitmq-server test -x /usr/lib/rabbitmq/bin/rabbitmq-server
  need prometheus test -x /usr/bin/prometheus  # promtool comes with it
  need make has make  # `make demo`
fi
if want test; then
  need openssl has openssl  # test certificates
  need nodejs has node      # schema checks (tests/node)
  need npm has npm
  need jq has jq            # the Grafana import snippet (docs/dashboards.md)
  need iproute2 has ss      # tests/test_rabbitmq_loopback.py reads `ss -ltnp`
  need faketime has faketime  # a producer with a skewed clock (tests/test_oncall_scenarios.py)
  # amtool + the Alertmanager the inhibition rules are tested with (tests/test_alertmanager.py);
  # Debian 12 ships 0.25.0, the version the generated alertmanager config is checked against.
  need prometheus-alertmanager test -x /usr/bin/prometheus-alertmanager
  # RabbitMQ 4.0 and Redis 8 come from a Debian 13 root (scripts/debian13-brokers.sh).
  need debootstrap has debootstrap
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  # Debian's prometheus, prometheus-alertmanager and rabbitmq-server packages start their
  # services through systemd; where there is none (containers) that is a no-op, and the tests
  # start what they need (on their own ports: the Alertmanager test never uses 9093).
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need_pkgs[@]}" >/dev/null
fi

# --- Python: .venv pinned by the lock -----------------------------------------------------------
LOCK=requirements/lock.txt
EXTRAS=""
if want test; then EXTRAS=test; fi
if want run || want demo || want test; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  key=$(cat "$LOCK" pyproject.toml | sha256sum | cut -d' ' -f1)
  stamp_ok() { [ "$(cat ".venv/.installed-$1" 2>/dev/null)" = "$key" ]; }
  # A venv installed for the tests serves every piece, and any install serves run and demo.
  installed() {
    stamp_ok test && return 0
    if [ -n "$EXTRAS" ]; then stamp_ok "$EXTRAS"; else stamp_ok base; fi
  }
  if ! installed; then
    log "installing the package${EXTRAS:+ with [$EXTRAS]} into .venv (versions from $LOCK)"
    .venv/bin/python -m pip install -q -c "$LOCK" pip
    .venv/bin/python -m pip install -q -c "$LOCK" -e ".${EXTRAS:+[$EXTRAS]}"
    echo "$key" >".venv/.installed-${EXTRAS:-base}"
  fi
fi

# --- Node.js tools the tests run offline (tests/node/package.json, pinned by its lock) ----------
if want test; then
  if [ ! -d tests/node/node_modules ] \
     || [ tests/node/package-lock.json -nt tests/node/node_modules ]; then
    log "installing tests/node (npm ci)"
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    touch tests/node/node_modules
  fi
fi

# --- services: only for the tests (run.sh asks for redis itself when it watches the default) -----
if want test; then
  # The Debian 13 root (RabbitMQ 4.0, Redis 8): built once with the network, then unpacked from
  # its cached tarball (/var/cache/celery-queue-exporter) without it.
  $SUDO bash scripts/debian13-brokers.sh build
fi
if [ "$INSTALL_ONLY" = 1 ]; then
  log "installed (${PIECES}); no service started (--install-only)"
  exit 0
fi
if want redis || want test; then
  if ! port_open 6379; then
    log "starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp --logfile /tmp/celery-queue-exporter-redis.log
  fi
  for _ in $(seq 1 20); do port_open 6379 && break; sleep 0.5; done
  port_open 6379 || { log "redis did not come up on 6379"; exit 1; }
fi

if want test; then
  # The management plugin gives per-priority counts and unacked counts (see README).
  if ! grep -qs rabbitmq_management /etc/rabbitmq/enabled_plugins; then
    log "enabling the RabbitMQ management plugin"
    $SUDO rabbitmq-plugins enable --offline rabbitmq_management >/dev/null
    if port_open 5672; then
      $SUDO rabbitmq-plugins enable rabbitmq_management >/dev/null || true
    fi
  fi
  if ! port_open 5672; then
    # Only a node this script starts is configured: a running one is left as it is.
    $SUDO bash scripts/rabbitmq-loopback.sh /etc/rabbitmq
    log "starting rabbitmq-server (127.0.0.1 only: 5672, 15672, 25672, epmd 4369)"
    $SUDO rabbitmq-server -detached
  fi
  for _ in $(seq 1 60); do
    port_open 5672 && port_open 15672 && break
    sleep 1
  done
  port_open 5672 || { log "rabbitmq did not come up on 5672"; exit 1; }
  if ! port_open 15672; then
    log "RabbitMQ management API not answering on 15672"
    # Tests need it; a plain run of the exporter falls back to AMQP.
    if [ "${CI:-}" = "true" ]; then exit 1; fi
  fi
fi
if want test; then
  # RabbitMQ 4.0 (AMQP 5682, management 15682) and Redis 8 (6389), beside the Debian 12 ones;
  # started only when their ports do not answer, never stopped here.
  $SUDO bash scripts/debian13-brokers.sh start
fi
log "ready (${PIECES})"
