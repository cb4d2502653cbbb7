#!/usr/bin/env bash
# RabbitMQ 4.0 and Redis 8 from Debian 13 (trixie), beside this Debian 12 machine's own brokers:
# the broker generation a migration lands on today, for the tests (issue 23).
#
# Usage (root): bash scripts/debian13-brokers.sh build|start|stop|status
#   build   make the Debian 13 root (debootstrap --variant=minbase trixie, then rabbitmq-server and
#           redis-server with apt inside; no service starts from a package) and cache it as a
#           tarball; with the root or the tarball already there it needs no network (seconds).
#   start   build when needed, then start both brokers in the root on loopback ports of their own
#           (below), each only when its port does not answer; a port answered by something this
#           script did not start is an error, never touched.
#   stop    stop what `start` started, by the pids it recorded (nothing else), unmount the root.
#   status  print the endpoints and whether each answers.
#
# Endpoints (127.0.0.1 only, never the host's 5672/15672/25672/4369/6379):
#   RabbitMQ 4.0: node rabbit4@localhost, AMQP 5682, management 15682, distribution 25682,
#                 its own epmd on 4370 (ERL_EPMD_PORT); guest/guest
#   Redis 8:      6389
# testsupport/debian13.py knows the same endpoints.
#
# Environment: CQE_DEBIAN13_CACHE (default /var/cache/celery-queue-exporter): the tarball;
#   CQE_DEBIAN13_ROOT (default /var/lib/celery-queue-exporter/debian13-root): the unpacked root.
set -euo pipefail

CACHE=${CQE_DEBIAN13_CACHE:-/var/cache/celery-queue-exporter}
ROOT=${CQE_DEBIAN13_ROOT:-/var/lib/celery-queue-exporter/debian13-root}
# Bump when the recipe below changes: an older tarball is then rebuilt, never reused.
RECIPE=1
TARBALL=$CACHE/debian13-brokers-r$RECIPE.tar
RUN=/run/celery-queue-exporter-debian13   # what `start` started: pid files, mounts
NODE=rabbit4@localhost
AMQP_PORT=5682
MGMT_PORT=15682
DIST_PORT=25682
EPMD_PORT=4370
REDIS_PORT=6389
RABBIT_PIDFILE=/var/lib/rabbitmq/mnesia/$NODE.pid  # inside the root
REDIS_PIDFILE=/run/cqe-redis8.pid                   # inside the root

log() { echo "debian13-brokers: $*" >&2; }
die() { log "$*"; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot, mount)"

mirror() {  # the mirror this machine's apt uses
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
    | grep -v security | head -n1 || true)
  [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    | grep -v security | awk '{print $2}' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

mounted() { grep -qs " $1 " /proc/mounts; }
mounts_under() { awk -v r="$1/" 'index($2, r) == 1 {print $2}' /proc/mounts; }
# The root never sees the host's /dev: a bind mount there would put the machine's device nodes
# one `rm -rf` away. It gets a tmpfs with the few nodes Erlang, Redis and apt use.
mount_root() {  # recorded so `stop` unmounts only these
  mkdir -p "$RUN"
  if ! mounted "$ROOT/proc"; then mount -t proc proc "$ROOT/proc"; echo "$ROOT/proc" >>"$RUN/mounts"; fi
  if ! mounted "$ROOT/dev"; then
    mkdir -p "$ROOT/dev"
    mount -t tmpfs -o mode=755,size=16m cqe-debian13-dev "$ROOT/dev"; echo "$ROOT/dev" >>"$RUN/mounts"
    mknod -m 666 "$ROOT/dev/null" c 1 3; mknod -m 666 "$ROOT/dev/zero" c 1 5
    mknod -m 666 "$ROOT/dev/full" c 1 7; mknod -m 666 "$ROOT/dev/random" c 1 8
    mknod -m 666 "$ROOT/dev/urandom" c 1 9; mknod -m 666 "$ROOT/dev/tty" c 5 0
    mkdir -m 1777 "$ROOT/dev/shm"; ln -s /proc/self/fd "$ROOT/dev/fd"
  fi
}
unmount_root() {
  [ -f "$RUN/mounts" ] || return 0
  tac "$RUN/mounts" | while read -r m; do
    if mounted "$m"; then umount "$m" || umount -l "$m" || true; fi
  done
  rm -f "$RUN/mounts"
}
remove_tree() {  # remove_tree DIR: never across a mount, never while anything is mounted in it
  [ -e "$1" ] || return 0
  [ -z "$(mounts_under "$1")" ] || die "$1 still has mounts ($(mounts_under "$1" | tr '\n' ' ')): not removed"
  rm -rf --one-file-system "$1"
}
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

configure_root() {  # everything the root needs beyond its packages; idempotent
  mkdir -p "$ROOT/etc/rabbitmq"
  printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n' >"$ROOT/etc/hosts"
  cat >"$ROOT/etc/rabbitmq/rabbitmq.conf" <<EOF
# celery-queue-exporter: RabbitMQ 4 for the tests, loopback only (scripts/debian13-brokers.sh)
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $MGMT_PORT
EOF
  # Sourced by rabbitmq-env (server and CLI alike). Debian's wrapper starts the node through su,
  # whose pam_limits drops the open-files soft limit to 1024: raise it back to the hard limit.
  cat >"$ROOT/etc/rabbitmq/rabbitmq-env.conf" <<EOF
# celery-queue-exporter: RabbitMQ 4 for the tests, loopback only (scripts/debian13-brokers.sh)
NODENAME=$NODE
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=$AMQP_PORT
DIST_PORT=$DIST_PORT
export ERL_EPMD_PORT=$EPMD_PORT
export ERL_EPMD_ADDRESS=127.0.0.1
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
ulimit -S -n "\$(ulimit -H -n)" 2>/dev/null || true
EOF
  echo '[rabbitmq_management].' >"$ROOT/etc/rabbitmq/enabled_plugins"
}

build() {
  if [ -f "$ROOT/.cqe-recipe-$RECIPE" ]; then return 0; fi
  if [ -f "$TARBALL" ]; then
    log "unpacking the cached root $TARBALL into $ROOT"
    remove_tree "$ROOT"; mkdir -p "$ROOT"
    tar -xf "$TARBALL" -C "$ROOT"
    configure_root
    return 0
  fi
  command -v debootstrap >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  local tmp="$ROOT.building"
  unmount_root
  remove_tree "$tmp"; mkdir -p "$tmp" "$CACHE"
  log "debootstrap trixie from $(mirror) into $tmp (a few minutes, network needed once)"
  debootstrap --variant=minbase trixie "$tmp" "$(mirror)" >"$CACHE/debootstrap.log" 2>&1 \
    || die "debootstrap failed: see $CACHE/debootstrap.log"
  # A network whose TLS is inspected needs the host's extra CA certificates inside too.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$tmp/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$tmp/usr/local/share/ca-certificates/"
  fi
  printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"; chmod +x "$tmp/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
  local saved_root=$ROOT; ROOT=$tmp
  mount_root
  # shellcheck disable=SC2016
  if ! in_root sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends rabbitmq-server redis-server ca-certificates procps >/dev/null \
        && apt-get clean' >>"$CACHE/debootstrap.log" 2>&1; then
    unmount_root; ROOT=$saved_root; die "apt-get in the root failed: see $CACHE/debootstrap.log"
  fi
  unmount_root
  ROOT=$saved_root
  rm -f "$tmp/etc/resolv.conf"
  touch "$tmp/.cqe-recipe-$RECIPE"
  log "caching the root as $TARBALL"
  tar -cf "$TARBALL.part" -C "$tmp" . && mv "$TARBALL.part" "$TARBALL"
  remove_tree "$ROOT"; mv "$tmp" "$ROOT"
  configure_root
}

our_pid() {  # our_pid NAME: the pid `start` recorded for NAME, when that process still runs
  local pid
  pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(readlink "/proc/$pid/root")" = "$ROOT" ] \
    && echo "$pid"
}

start_redis() {
  if port_open "$REDIS_PORT"; then
    our_pid redis >/dev/null || die "127.0.0.1:$REDIS_PORT answers but is not this script's Redis 8: left alone"
    return 0
  fi
  log "starting Redis 8 on 127.0.0.1:$REDIS_PORT"
  rm -f "$ROOT$REDIS_PIDFILE"
  # 9>&-: a daemon holding the lock's descriptor would block every later start/stop.
  in_root redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /tmp --pidfile "$REDIS_PIDFILE" --logfile /var/log/cqe-redis8.log 9>&-
  for _ in $(seq 1 50); do [ -s "$ROOT$REDIS_PIDFILE" ] && port_open "$REDIS_PORT" && break; sleep 0.2; done
  port_open "$REDIS_PORT" || die "Redis 8 did not come up: see $ROOT/var/log/cqe-redis8.log"
  cp "$ROOT$REDIS_PIDFILE" "$RUN/redis.pid"
}

start_rabbitmq() {
  if port_open "$AMQP_PORT" || port_open "$MGMT_PORT"; then
    our_pid rabbitmq >/dev/null || die "127.0.0.1:$AMQP_PORT/$MGMT_PORT answers but is not this script's RabbitMQ 4: left alone"
    return 0
  fi
  for p in "$DIST_PORT" "$EPMD_PORT"; do
    port_open "$p" && ! our_pid rabbitmq >/dev/null && [ ! -f "$RUN/epmd.started" ] \
      && die "127.0.0.1:$p (RabbitMQ 4's distribution/epmd port) is taken by something else"
  done
  log "starting RabbitMQ 4 ($NODE) on 127.0.0.1:$AMQP_PORT, management $MGMT_PORT"
  rm -f "$ROOT$RABBIT_PIDFILE"
  touch "$RUN/epmd.started"
  in_root rabbitmq-server -detached 9>&-
  # `rabbitmqctl wait` follows the pid file: await_startup fails while the node is not registered.
  in_root rabbitmqctl -q -n "$NODE" wait "$RABBIT_PIDFILE" --timeout 120 >/dev/null 9>&- \
    || die "RabbitMQ 4 did not start: see $ROOT/var/log/rabbitmq/"
  cp "$ROOT$RABBIT_PIDFILE" "$RUN/rabbitmq.pid"
  for _ in $(seq 1 60); do port_open "$MGMT_PORT" && break; sleep 0.5; done
  port_open "$MGMT_PORT" || die "RabbitMQ 4's management API did not answer on $MGMT_PORT"
}

start() {
  exec 9>/run/lock/celery-queue-exporter-debian13.lock; flock 9  # one start at a time
  build
  mkdir -p "$RUN"
  mount_root
  start_redis
  start_rabbitmq
  log "ready: RabbitMQ 4 amqp://guest:guest@127.0.0.1:$AMQP_PORT (management $MGMT_PORT), Redis 8 redis://127.0.0.1:$REDIS_PORT"
}

stop() {
  exec 9>/run/lock/celery-queue-exporter-debian13.lock; flock 9
  local pid
  if pid=$(our_pid rabbitmq); then
    log "stopping RabbitMQ 4 (pid $pid)"
    in_root rabbitmqctl -q -n "$NODE" stop "$RABBIT_PIDFILE" >/dev/null || kill "$pid"
  fi
  rm -f "$RUN/rabbitmq.pid"
  if [ -f "$RUN/epmd.started" ]; then  # the epmd the node started outlives it
    for pid in $(pgrep -x epmd || true); do
      [ "$(readlink "/proc/$pid/root")" = "$ROOT" ] && kill "$pid"
    done
    rm -f "$RUN/epmd.started"
  fi
  if pid=$(our_pid redis); then log "stopping Redis 8 (pid $pid)"; kill "$pid"; fi
  rm -f "$RUN/redis.pid"
  sleep 0.5
  unmount_root
}

status() {
  local s
  for s in "rabbitmq-amqp $AMQP_PORT" "rabbitmq-management $MGMT_PORT" "redis $REDIS_PORT"; do
    set -- $s
    if port_open "$2"; then echo "$1 127.0.0.1:$2 up"; else echo "$1 127.0.0.1:$2 down"; fi
  done
}

case "${1:-}" in
  build) exec 9>/run/lock/celery-queue-exporter-debian13.lock; flock 9; build ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) sed -n '2,22p' "$0"; exit 2 ;;
esac
