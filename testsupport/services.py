"""A test whose service or tool is missing: it fails in CI, and skips locally with the reason
and the command that sets it up (the skip summary, testsupport/skip_summary.py, counts these)."""

from __future__ import annotations

import os

import pytest

SETUP_HINT = "run `bash scripts/bootstrap.sh` (installs and starts the services), then pytest"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_service(reason: str) -> None:
    """Fail in CI, skip locally, always saying why and how to fix it."""
    message = f"{reason}; {SETUP_HINT}"
    if in_ci():
        pytest.fail(f"CI: required service missing: {message}", pytrace=False)
    pytest.skip(message)
