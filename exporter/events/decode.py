"""Unpack Celery event messages as the brokers deliver them, cheaply and defensively.

* Redis (kombu virtual transport): the pub/sub payload is a JSON envelope whose ``body`` is the
  event JSON, base64-encoded (``properties.body_encoding``).
* RabbitMQ: the AMQP body is the event JSON itself.

Prefork workers batch task events: the body is then a JSON list of events (routing key
``task.multi``). Only JSON is accepted (Celery's default ``event_serializer``); other content
types (pickle in particular) are never deserialised and count as malformed.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64decode
from typing import Any

_loads = json.loads
JSON_TYPES = (None, "", "application/json")


class MalformedEvent(ValueError):
    """An event message that cannot be decoded."""


def events_from_body(body: Any) -> list[Any]:
    """The events of one decoded body: a dict is one event, a list is a batch. Items that are
    not dicts are returned as they are (the tracker counts them as malformed)."""
    if isinstance(body, dict):
        return [body]
    if isinstance(body, list):
        return body
    raise MalformedEvent(f"event body is a {type(body).__name__}, not an object or a list")


def decode_json_body(body: bytes | str, content_type: str | None = None) -> list[Any]:
    """RabbitMQ: the message body is the event JSON."""
    if content_type not in JSON_TYPES:
        raise MalformedEvent(f"unsupported content type {content_type!r}")
    try:
        return events_from_body(_loads(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEvent(f"body is not JSON: {exc}") from None


_BODY_PREFIX = b'{"body": "'
_BASE64_MARK = b'"body_encoding": "base64"'
_JSON_MARK = b'"content-type": "application/json"'


def decode_redis_payload(data: bytes) -> list[Any]:
    """Redis: a kombu envelope published on ``/{db}.celeryev/<routing key>``.

    Fast path: kombu serialises the envelope with ``body`` first, and a base64 body holds no
    quote, so the body is sliced out without parsing the envelope (half the cost per
    message); anything else takes the full parse."""
    if data.startswith(_BODY_PREFIX) and _BASE64_MARK in data and _JSON_MARK in data:
        end = data.find(b'"', len(_BODY_PREFIX))
        if end > 0:
            try:
                return events_from_body(_loads(b64decode(data[len(_BODY_PREFIX) : end])))
            except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
                raise MalformedEvent(f"body is not base64 JSON: {exc}") from None
    try:
        envelope = _loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEvent(f"envelope is not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise MalformedEvent("envelope is not a JSON object")
    body = envelope.get("body")
    if not isinstance(body, str):
        raise MalformedEvent("envelope has no body")
    if envelope.get("content-type") not in JSON_TYPES:
        raise MalformedEvent(f"unsupported content type {envelope.get('content-type')!r}")
    properties = envelope.get("properties")
    encoding = properties.get("body_encoding") if isinstance(properties, dict) else None
    if encoding == "base64":
        try:
            raw: bytes | str = b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedEvent(f"body is not base64: {exc}") from None
    elif encoding is None:
        raw = body
    else:
        raise MalformedEvent(f"unsupported body encoding {encoding!r}")
    try:
        return events_from_body(_loads(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEvent(f"body is not JSON: {exc}") from None
