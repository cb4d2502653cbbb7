"""How kombu's Redis transport names things, shared by the inspector and the event consumer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..celery_layout import EVENT_EXCHANGE

if TYPE_CHECKING:
    from ...config.urls import BrokerURL

#: kombu's binding sets: ``_kombu.binding.<exchange>``, members ``routing_key sep pattern sep
#: queue``.
BINDING_PREFIX = "_kombu.binding."


def escape_glob(text: str) -> str:
    """Escape Redis glob characters so a prefix like 'app[1]:' matches literally."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def event_channel(url: BrokerURL, global_keyprefix: str) -> str:
    """The pub/sub channel kombu publishes Celery events on (without the routing key)."""
    db = url.database or "0"
    return f"{global_keyprefix}/{db}.{EVENT_EXCHANGE}"
