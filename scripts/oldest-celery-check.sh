#!/usr/bin/env bash
# install(app) and the Celery event paths with the oldest Celery the package supports
# (pyproject: celery>=5.3, kombu>=5.3), beside the pinned one: a venv of its own with
# celery==5.3.6 and kombu==5.3.7 (the rest from requirements/lock.txt), then the tests that
# run real workers with install(app) and count their events, on Redis and RabbitMQ, and the
# per-level depth on RabbitMQ 4.0 from install(app)'s priority in task-sent.
#
# Usage: bash scripts/oldest-celery-check.sh [VENV]   default /var/tmp/cqe-oldest-celery
# Needs the network once (pip), then the services bootstrap.sh starts. Not part of CI.
# pytest's filterwarnings are cleared (-o filterwarnings=): pyproject names
# celery.exceptions.DuplicateTaskNameWarning, which Celery 5.3 does not have.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/var/tmp/cqe-oldest-celery}
CELERY=5.3.6
KOMBU=5.3.7
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
grep -vE '^(celery|kombu)==' requirements/lock.txt >"$constraints"
printf 'celery==%s\nkombu==%s\n' "$CELERY" "$KOMBU" >>"$constraints"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -c "$constraints" -e ".[test]"
"$VENV/bin/python" -c "import celery, kombu; print('celery', celery.__version__, 'kombu', kombu.__version__)"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -o filterwarnings= \
  tests/test_hook_isolation.py tests/test_events_redis.py tests/test_events_rabbitmq.py \
  tests/test_level_estimate.py tests/test_rabbitmq4_levels.py \
  -k "hook or outcomes_counted or most_urgent_level_waits or install_adds_the_priority or levels_from_events_exact"
