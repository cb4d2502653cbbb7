#!/usr/bin/env bash
# Run the exporter against the local Redis (default) or whatever the arguments say.
# Example: bash scripts/run.sh --broker-url redis://localhost:6379/0 --port 9818
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/celery-queue-exporter "$@"
