#!/usr/bin/env bash
# The test suite, in two forms (docs/development.md, "Test tiers and time"):
#
#   bash scripts/test.sh [PYTEST ARGS]          the whole suite: set-up (idempotent: installs and
#                                               starts what is missing), lint, then pytest against
#                                               real services on parallel workers
#   bash scripts/test.sh --fast [PYTEST ARGS]   the pure tests only (no service, no tool, no
#                                               process): lint, then `pytest --fast`; needs
#                                               nothing but .venv (made here when missing)
#
# Runs with CI=true unless the caller set CI, so a service test that cannot run fails instead of
# skipping: a green run means every test ran. Arguments go to pytest:
#   bash scripts/test.sh tests/test_e2e.py -k demo
# The whole suite runs on CQE_TEST_WORKERS pytest-xdist workers (default 6 on 2 cores: the
# tests mostly wait on services and processes; 0 runs them in this process, one after
# another). Tests that must not overlap share an xdist_group (--dist loadgroup).
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-true}"

if [ "${1:-}" = "--fast" ]; then
  shift
  if [ ! -x .venv/bin/pytest ]; then  # the venv only: no Debian package, no service
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q -c requirements/lock.txt -e '.[test]'
  fi
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .
  exec .venv/bin/python -m pytest --fast "$@"
fi

bash scripts/bootstrap.sh --for test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
workers="${CQE_TEST_WORKERS:-6}"
exec .venv/bin/python -m pytest -n "$workers" --dist loadgroup "$@"
