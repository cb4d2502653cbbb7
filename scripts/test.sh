#!/usr/bin/env bash
# The whole test suite: set-up (idempotent: installs and starts what is missing), lint, then
# pytest against real services. Runs with CI=true unless the caller set CI, so a service test
# that cannot run fails instead of skipping: a green run means every test ran.
# Arguments go to pytest: bash scripts/test.sh tests/test_e2e.py -k demo
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-true}"
bash scripts/bootstrap.sh --for test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
