"""Unpack Celery event messages as the brokers deliver them, cheaply and defensively.

* Redis (kombu virtual transport): the pub/sub payload is a JSON envelope whose ``body`` is the
  event JSON, base64-encoded (``properties.body_encoding``).
* RabbitMQ: the AMQP body is the event JSON itself.

Prefork workers batch task events: the body is then a JSON list of events (routing key
``task.multi``). Only JSON is accepted (Celery's default ``event_serializer``); other content
types (pickle in particular) are never deserialised and count as malformed.

JSON is parsed with orjson (about 4x faster than the standard library on these messages; see
docs/performance.md). What orjson rejects is retried with the standard library, which accepts
everything kombu's serializer can write (NaN, Infinity, numbers beyond a double), so the fast
parser changes no outcome, only the cost.

Two exceptions: an integer beyond a double (400 digits: no clock or counter writes that) and
text that is not valid Unicode (a lone surrogate such as ``"\\ud800"``, which no exposition
can encode: as a label it would break every scrape) make the event holding them malformed, on
its own: the other events of a ``task.multi`` batch still count. Only the fallback parser can
meet either (orjson rejects both), so the fast path pays nothing for the check.
"""

from __future__ import annotations

import binascii
import json
from typing import Any

import orjson

_fast_loads = orjson.loads
_slow_loads = json.loads
_a2b_base64 = binascii.a2b_base64
JSON_TYPES = (None, "", "application/json")


class MalformedEvent(ValueError):
    """An event message that cannot be decoded."""


class _OutOfRange:
    """Stands for an integer a double cannot hold: float() of it raises OverflowError."""

    __slots__ = ()


_OUT_OF_RANGE = _OutOfRange()


def _bounded_int(text: str) -> Any:
    """``int`` for the fallback parser; the marker beyond a double."""
    value = int(text)
    if len(text) < 300:  # a double holds every integer below 1e299
        return value
    try:
        float(value)
    except OverflowError:
        return _OUT_OF_RANGE
    return value


def _unfit(value: Any) -> bool:
    """Whether a decoded value holds an out-of-range integer or text that is not valid
    Unicode anywhere (iterative: a deep document must not exhaust the stack here either)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if item is _OUT_OF_RANGE:
            return True
        if kind is str:
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif kind is dict:
            stack.extend(item)
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
    return False


def _drop_unfit(value: Any) -> Any:
    """None for a document that is unfit; for a list (a batch), each unfit item replaced by
    None, so the others still count."""
    if type(value) is list:
        return [None if _unfit(item) else item for item in value]
    return None if _unfit(value) else value


def loads(data: bytes | str, what: str) -> Any:
    """Parse JSON; MalformedEvent (naming ``what``) when neither parser accepts it."""
    try:
        return _fast_loads(data)
    except ValueError:
        pass
    try:
        value = _slow_loads(data, parse_int=_bounded_int)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedEvent(f"{what} is not JSON: {exc}") from None
    return _drop_unfit(value)


def events_from_body(body: Any) -> list[Any]:
    """The events of one decoded body: a dict is one event, a list is a batch. Items that are
    not dicts are returned as they are (the tracker counts them as malformed)."""
    if type(body) is dict:
        return [body]
    if type(body) is list:
        return body
    raise MalformedEvent(f"event body is a {type(body).__name__}, not an object or a list")


def decode_json_body(body: bytes | str, content_type: str | None = None) -> list[Any]:
    """RabbitMQ: the message body is the event JSON."""
    if content_type not in JSON_TYPES:
        raise MalformedEvent(f"unsupported content type {content_type!r}")
    return events_from_body(loads(body, "body"))


def decode_redis_payload(data: bytes) -> list[Any]:
    """Redis: a kombu envelope published on ``/{db}.celeryev/<routing key>``.

    The whole envelope is parsed (orjson makes that as cheap as slicing the body out by hand)
    and checked: a JSON content type, and a base64 or absent body encoding. orjson is called
    directly first (loads() retries it), to spare two calls per event message."""
    try:
        envelope = _fast_loads(data)
    except ValueError:
        envelope = loads(data, "envelope")
    if type(envelope) is not dict:
        raise MalformedEvent("envelope is not a JSON object")
    body = envelope.get("body")
    if type(body) is not str:
        raise MalformedEvent("envelope has no body")
    content_type = envelope.get("content-type")
    if content_type not in JSON_TYPES:
        raise MalformedEvent(f"unsupported content type {content_type!r}")
    properties = envelope.get("properties")
    encoding = properties.get("body_encoding") if type(properties) is dict else None
    if encoding == "base64":
        try:
            raw: bytes | str = _a2b_base64(body)
        except (binascii.Error, ValueError) as exc:
            raise MalformedEvent(f"body is not base64: {exc}") from None
    elif encoding is None:
        raw = body
    else:
        raise MalformedEvent(f"unsupported body encoding {encoding!r}")
    try:
        events = _fast_loads(raw)
    except ValueError:
        events = loads(raw, "body")
    return [events] if type(events) is dict else events_from_body(events)
