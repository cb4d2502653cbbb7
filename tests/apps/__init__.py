"""Celery apps and helpers for the event tests (workers run them as subprocesses)."""
