#!/usr/bin/env bash
# The README's two commands on a bare Debian 12, as a new user would run them: builds a minimal
# root with debootstrap (git, python3, CA certificates; no service starts from a package, as in
# containers), copies this work tree in (the files git knows, not .venv or node_modules), then
#   1. with the network: `bash scripts/run.sh --once` and `bash scripts/bootstrap.sh
#      --install-only` (everything the tests need, no service started);
#   2. in a private network namespace (loopback only): `bash scripts/run.sh --once` again (no
#      Redis answers there: run.sh starts one) and `bash scripts/test.sh` (CI=true), then the
#      set-up once more, which must install nothing.
# Prints the pytest summary and exits with the test run's status. Not part of CI (it takes
# long: 10 minutes of installs, then the whole suite on this machine's cores).
#
# Usage (root): bash scripts/fresh-debian-check.sh [WORKDIR]   default /var/tmp/cqe-fresh-debian
#   WORKDIR/base is the debootstrap output, kept between runs (remove it to rebuild);
#   WORKDIR/root is a fresh copy of it for each run; WORKDIR/check.log has everything.
# The host's extra CA certificates, pip configuration (/etc/pip.conf, /etc/xdg/pip,
# ~/.config/pip, PIP_* variables) and npm configuration (/etc/npmrc, ~/.npmrc, NPM_CONFIG_*)
# are copied in when they exist: on a network whose TLS is inspected the root needs them.
# Everything started inside ends with the check (its own PID namespace); no mount outlives it.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-/var/tmp/cqe-fresh-debian}
BASE=$WORK/base
ROOT=$WORK/root
LOG=$WORK/check.log
SUITE=bookworm
APP=/root/celery-queue-exporter

[ "$(id -u)" -eq 0 ] || { echo "fresh-debian-check: run as root (debootstrap, chroot)" >&2; exit 2; }
mkdir -p "$WORK"
log() { echo "fresh-debian-check: $*" | tee -a "$LOG" >&2; }

# --- the mirror this machine's apt uses ---------------------------------------------------------
mirror() {
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
    | grep -v security | head -n1 || true)
  [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    | grep -v security | awk '{print $2}' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# --- 1. a minimal Debian root (kept between runs) ----------------------------------------------
if [ ! -f "$BASE/.complete" ]; then
  command -v debootstrap >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  rm -rf "$BASE"
  log "debootstrap $SUITE from $(mirror) into $BASE"
  debootstrap --variant=minbase --include=git,python3,ca-certificates "$SUITE" "$BASE" \
    "$(mirror)" >>"$LOG" 2>&1
  touch "$BASE/.complete"
fi
log "fresh copy of the root in $ROOT"
rm -rf "$ROOT"
cp -a "$BASE" "$ROOT"

# --- 2. what a fresh machine on this network has -------------------------------------------------
# No package starts a service (as in containers: invoke-rc.d asks policy-rc.d).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod +x "$ROOT/usr/sbin/policy-rc.d"
# The host's apt sources (main, updates, security) instead of debootstrap's single line.
if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
  rm -f "$ROOT/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/*.sources "$ROOT/etc/apt/sources.list.d/"
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
  "$(hostname)" >"$ROOT/etc/hosts"
copy_in() {  # copy_in PATH...: each host path that exists, to the same place in the root
  local path
  for path in "$@"; do
    [ -e "$path" ] || continue
    mkdir -p "$ROOT$(dirname "$path")"
    cp -a "$path" "$ROOT$path"
  done
}
copy_in /usr/local/share/ca-certificates /etc/pip.conf /etc/xdg/pip /root/.config/pip \
  /etc/npmrc /root/.npmrc
for var in PIP_CERT SSL_CERT_FILE REQUESTS_CA_BUNDLE; do  # files the variables name
  [ -n "${!var:-}" ] && [ ! -e "$ROOT${!var}" ] && copy_in "${!var}"
done
# Variables passed in: pip's and npm's, and the CA bundles named above.
ENV_IN=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        LANG=C.UTF-8 TERM=dumb)
while IFS='=' read -r name _; do
  case "$name" in
    PIP_*|NPM_CONFIG_*|npm_config_*|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE)
      ENV_IN+=("$name=${!name}") ;;
  esac
done < <(env)

# The repository as a clone would have it: the files git knows (tracked, and new ones not
# ignored), in a fresh git repository of their own.
mkdir -p "$ROOT$APP"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' file; do [ -e "$file" ] && printf '%s\0' "$file"; done \
  | tar --null -T - -cf -) | tar -xf - -C "$ROOT$APP"

# --- 3. running in the root --------------------------------------------------------------------
in_root() {  # in_root host|loopback SCRIPT: bash -c SCRIPT in the root, own mount+PID namespaces
  local net=$1 script=$2 flags=(--mount --pid --fork)
  [ "$net" = loopback ] && flags+=(--net)
  unshare "${flags[@]}" bash -c '
    set -e
    root=$1 net=$2; shift 2
    mount --rbind /dev "$root/dev"
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    mount -t tmpfs tmpfs "$root/dev/shm"
    if [ "$net" = loopback ]; then ip link set lo up; fi
    exec chroot "$root" /usr/bin/env -i "$@"
  ' _ "$ROOT" "$net" "${ENV_IN[@]}" bash -c "$script"
}

log "phase 1 (network): update-ca-certificates, git init, run.sh --once, bootstrap --install-only"
in_root host "
  set -euo pipefail
  update-ca-certificates >/dev/null 2>&1 || true
  cd $APP
  git init -q && git add -A && git -c user.name=check -c user.email=check@localhost \
    commit -qm 'fresh-debian-check copy'
  bash scripts/run.sh --once >/tmp/run-once.txt
  echo \"run.sh --once (with network): exit 0, \$(grep -c '^celery_' /tmp/run-once.txt) samples\"
  bash scripts/bootstrap.sh --install-only
" >>"$LOG" 2>&1 || { log "phase 1 failed; see $LOG"; tail -n 30 "$LOG" >&2; exit 1; }

log "phase 2 (loopback only): run.sh --once, test.sh, set-up again"
set +e
in_root loopback "
  set -uo pipefail
  cd $APP
  start=\$SECONDS
  bash scripts/run.sh --once >/tmp/run-once.txt; status=\$?
  echo \"run.sh --once (loopback only): exit \$status in \$((SECONDS - start)) s\"
  bash scripts/test.sh -p no:cacheprovider; tests=\$?
  echo \"test.sh: exit \$tests\"
  start=\$SECONDS
  again=\$(bash scripts/bootstrap.sh --for test 2>&1; bash scripts/run.sh --once 2>&1 >/dev/null)
  installed=\$(grep -c 'installing' <<<\"\$again\")
  echo \"set-up again: \$((SECONDS - start)) s, \$installed install steps\"
  exit \$tests
" >>"$LOG" 2>&1
status=$?
set -e
grep -E '^(run.sh --once|test.sh: exit|set-up again)|^=+ .*(passed|failed|error).* =+$' "$LOG" >&2 \
  || tail -n 30 "$LOG" >&2
log "exit $status (log: $LOG)"
exit "$status"
