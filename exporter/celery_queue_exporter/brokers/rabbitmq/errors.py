"""The error both ways into a RabbitMQ broker raise, and how they name the broker."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...config.model import BrokerConfig


class RabbitMQInspectionError(RuntimeError):
    """An inspection failure with a message fit for logs (names the broker, no password)."""


def broker_where(config: BrokerConfig) -> str:
    """How errors name the broker: its label and its URL without credentials."""
    return f"RabbitMQ broker {config.name} ({config.safe_url})"
