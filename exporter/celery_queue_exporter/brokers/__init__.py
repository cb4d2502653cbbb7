"""Broker kinds. ``base.py`` is the one interface a broker package implements; each package
(``redis/``, ``rabbitmq/``) declares its options and builds its ``Transport``; ``registry.py``
(part of the assembly, above the packages) lists them and maps URL schemes to them.

This ``__init__`` imports only the interface, so importing any broker module never runs the
registry (no import circle through it).
"""

from __future__ import annotations

from .base import EventConsumer, Inspector, PriorityLevel, Transport

__all__ = ["EventConsumer", "Inspector", "PriorityLevel", "Transport"]
