"""Fuzzing the parsers that read what other programs wrote: the event decoder (and the tracker
it feeds), the Redis message-head and reservation parsers, and the management API entry
reader. Whatever the input, no exception escapes: bad input is a malformed count at most.

Seeded (``derandomize``) and bounded (120 examples each: seconds in the suite). These
are unit tests of pure parsing code; the real-broker tests of the same paths are in
test_hardening_*.py.
"""

from __future__ import annotations

import base64
import json
import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from celery_queue_exporter.brokers.rabbitmq.inspector import RabbitMQInspector
from celery_queue_exporter.brokers.rabbitmq.priority import rabbitmq_priority_level
from celery_queue_exporter.brokers.redis.inspector import RedisInspector
from celery_queue_exporter.brokers.redis.priority import step_levels
from celery_queue_exporter.config.brokers import new_broker
from celery_queue_exporter.events.collector import families
from celery_queue_exporter.events.decode import (
    MalformedEvent,
    decode_json_body,
    decode_redis_payload,
)
from celery_queue_exporter.events.tracker import EventTracker
from celery_queue_exporter.headtracker import HeadTracker
from celery_queue_exporter.instrumentation import ENQUEUED_AT_HEADER, TASK_INFO_EVENT
from celery_queue_exporter.snapshot import BrokerSnapshot

FUZZ = settings(
    max_examples=120,
    derandomize=True,  # seeded: the same examples on every run
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Numbers JSON can carry, including what only the stdlib parser accepts.
numbers = st.one_of(
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**1024, 2**1023]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["NaN", "abc", "1e999", "-0", ""]),
)
#: Text, including lone surrogates (JSON can write "\\ud800"; no exposition can encode it).
texts = st.one_of(st.text(max_size=20), st.sampled_from(["\ud800", "q\udcff", "caf\xe9"]))
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)
EVENT_TYPES = [
    "task-sent", TASK_INFO_EVENT, "task-received", "task-started", "task-succeeded",
    "task-failed", "task-retried", "task-rejected", "task-revoked", "worker-online",
    "worker-heartbeat", "worker-offline", "queueexporter-worker-queues", "other",
]  # fmt: skip
FIELDS = [
    "uuid", "name", "queue", "routing_key", "hostname", "timestamp", "runtime", "active",
    "processed", "loadavg", "priority", "max_priority", "enqueued_at", "exception",
    "traceback", "queues",
]  # fmt: skip
#: Field values: mostly flat (what the tracker reads), sometimes any JSON.
field_values = st.one_of(scalars, st.lists(scalars, max_size=3), json_values)
events = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(EVENT_TYPES), scalars)},
    optional={field: field_values for field in FIELDS},
)
bodies = st.one_of(events, st.lists(st.one_of(events, json_values), max_size=8), json_values)


def _dumps(value: object) -> str:
    """JSON as Python's serializer writes it (NaN, Infinity, huge integers included)."""
    return json.dumps(value, allow_nan=True)


def _redis_tracker() -> EventTracker:
    return EventTracker("fuzz", priority_level=step_levels((0, 3, 6, 9)))


def _feed(tracker: EventTracker, decode, data) -> None:  # noqa: ANN001 - decoder under test
    try:
        tracker.handle(decode(data))
    except MalformedEvent:
        tracker.count_malformed()
    snap = tracker.snapshot()
    for _buckets, total in [*snap.runtime.values(), *snap.task_wait.values()]:
        assert math.isfinite(total)
    for family in families([("fuzz", tracker, snap)]):
        for sample in family.samples:
            for value in sample.labels.values():
                value.encode("utf-8")  # every label can be exposed


@FUZZ
@given(st.binary(max_size=300))
def test_event_decoders_on_arbitrary_bytes(data):
    _feed(_redis_tracker(), decode_redis_payload, data)
    _feed(_redis_tracker(), decode_json_body, data)


@FUZZ
@given(bodies, st.booleans())
@example({"type": "task-sent", "uuid": "a", "queue": "q\udcff"}, True)
@example({"type": "worker-heartbeat", "hostname": "w", "active": 10**400}, True)
def test_event_decoders_and_tracker_on_arbitrary_events(body, batch):
    text = _dumps([body] if batch else body)
    envelope = {
        "body": base64.b64encode(text.encode()).decode(),
        "content-type": "application/json",
        "properties": {"body_encoding": "base64"},
    }
    tracker = _redis_tracker()
    _feed(tracker, decode_redis_payload, json.dumps(envelope).encode())
    rabbit = EventTracker("fuzz", priority_level=rabbitmq_priority_level)
    _feed(rabbit, decode_json_body, text.encode())


@FUZZ
@given(st.lists(st.lists(events, max_size=4), min_size=1, max_size=3))
def test_tracker_counts_every_event_once_whatever_it_holds(batches):
    """Every event item is either received or malformed: none is lost, none ends a batch."""
    tracker = _redis_tracker()
    for batch in batches:
        tracker.handle(json.loads(_dumps(batch)))
    snap = tracker.snapshot()
    assert snap.events_received + snap.malformed == sum(len(batch) for batch in batches)


STATE_FIELDS = ["last_heard", "offline_at", "queues", "task_queues", "pool", "pool_size",
                "prefetch_multiplier"]  # fmt: skip
state_entries = st.one_of(
    st.fixed_dictionaries({}, optional={field: field_values for field in STATE_FIELDS}),
    json_values,
)
state_documents = st.one_of(
    st.fixed_dictionaries(
        {
            "version": st.one_of(st.just(1), scalars),
            "brokers": st.one_of(
                st.fixed_dictionaries(
                    {
                        "fuzz": st.one_of(
                            st.fixed_dictionaries(
                                {
                                    "workers": st.one_of(
                                        st.dictionaries(texts, state_entries, max_size=4),
                                        json_values,
                                    )
                                }  # fmt: skip
                            ),
                            json_values,
                        )
                    }  # fmt: skip
                ),
                json_values,
            ),
        }
    ),
    json_values,
)


@FUZZ
@given(state_documents)
@example({"version": 1, "brokers": {"fuzz": {"workers": {"w": {"last_heard": 10**400}}}}})
@example({"version": 1, "brokers": {"fuzz": {"workers": {"\ud800": {"last_heard": 1e12}}}}})
def test_state_file_reader_never_raises(tmp_path_factory, document):
    """Whatever the events state file holds, the exporter starts (restoring what reads as a
    worker), exposes what it restored, and writes it back."""
    from celery_queue_exporter.events.state import StateFile

    path = tmp_path_factory.mktemp("state") / "state.json"
    path.write_text(_dumps(document), encoding="utf-8", errors="surrogatepass")
    tracker = _redis_tracker()
    state = StateFile(path, [tracker])
    state.load()
    snap = tracker.snapshot()
    for family in families([("fuzz", tracker, snap)]):
        for sample in family.samples:
            for value in sample.labels.values():
                value.encode("utf-8")
    state.save()


# No command is ever sent: only the parsing methods are called.
REDIS = RedisInspector(new_broker(name="fuzz", url="redis://127.0.0.1:1/0", queues=["q"]))
RABBITMQ = RabbitMQInspector(
    new_broker(
        name="fuzz", url="amqp://guest:guest@127.0.0.1:1//", queues=["q"], discover_queues=False
    )
)


headers = st.fixed_dictionaries(
    {}, optional={"id": json_values, ENQUEUED_AT_HEADER: json_values, "x": json_values}
)
messages = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"headers": st.one_of(headers, json_values), "properties": json_values}
    ),
    json_values,
)
raw_messages = st.one_of(
    messages.map(lambda m: _dumps(m).encode()),
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
)


@FUZZ
@given(raw_messages)
def test_message_head_parser(raw):
    REDIS.heads = HeadTracker()
    snapshot = BrokerSnapshot()
    first, first_unstamped = REDIS._head_age(snapshot, b"q", raw, 1000.0)
    second, second_unstamped = REDIS._head_age(snapshot, b"q", raw, 1005.0)
    assert math.isfinite(first) and first >= 0.0
    assert math.isfinite(second) and second >= 0.0
    assert snapshot.malformed_messages in (0, 2)  # the same head: the same verdict twice
    assert first_unstamped is second_unstamped  # and the same stamp verdict
    if first_unstamped:  # head tracking: the same head has waited the 5 s between sightings
        assert (first, second) == (0.0, 5.0)


@FUZZ
@given(st.lists(st.tuples(st.binary(max_size=8), raw_messages), max_size=6))
def test_reserved_work_parser(pairs):
    snapshot = BrokerSnapshot()
    sample = [item for pair in pairs for item in pair]
    REDIS._attribute_reserved(snapshot, sample, max(1, len(pairs)) * 3, {"q"})
    assert all(q.reserved is None or q.reserved >= 0 for q in snapshot.queues.values())


entries = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"name": st.one_of(st.sampled_from(["q", "r"]), json_values)},
            optional={
                key: field_values
                for key in (
                    "arguments",
                    "messages_ready",
                    "messages_unacknowledged",
                    "consumers",
                    "consumer_utilisation",
                    "head_message_timestamp",
                    "backing_queue_status",
                    "messages_ready_high",
                    "messages_ready_normal",
                    "messages_by_priority",
                    "exclusive",
                    "auto_delete",
                )
            },  # fmt: skip
        ),
        json_values,
    ),
    max_size=5,
)


@FUZZ
@given(entries)
def test_management_api_entries(document):
    snapshot = RABBITMQ.management.snapshot_from_entries(json.loads(_dumps(document)))
    assert set(snapshot.queues) == {"q"}  # the watched queue, found or reported missing
    discovered = RABBITMQ.management.discovered  # names that discovery would export as labels
    assert all(name.encode("utf-8") for name in discovered)
    assert all(isinstance(level.messages, int) for level in snapshot.levels)


# --- broker pressure (issue 22) ----------------------------------------------------------------

node_entries = st.one_of(
    json_values,
    st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    key: json_values
                    for key in (
                        "name",
                        "running",
                        "mem_alarm",
                        "disk_free_alarm",
                        "partitions",
                        "mem_used",
                        "mem_limit",
                        "fd_used",
                        "fd_total",
                        "sockets_used",
                        "sockets_total",
                    )
                },
            ),  # fmt: skip
            json_values,
        ),
        max_size=5,
    ),
)


@FUZZ
@given(node_entries)
def test_management_api_nodes(document):
    """Any /api/nodes document: readings of the right types, malformed entries counted."""
    from celery_queue_exporter.brokers.rabbitmq.nodes import parse_nodes
    from celery_queue_exporter.pressure import pressure_families

    nodes, malformed = parse_nodes(json.loads(_dumps(document)))
    assert malformed >= 0 and len(nodes) <= 64
    for node in nodes:
        assert isinstance(node.node, str) and node.node
        for value in (node.partitions, node.fd_used, node.fd_limit, node.memory_used_bytes):
            assert value is None or (isinstance(value, int) and value >= 0)
    snapshot = BrokerSnapshot(rabbitmq_nodes=nodes)
    list(pressure_families([("r", snapshot)]))


@FUZZ
@given(st.dictionaries(st.text(max_size=24), json_values, max_size=12), json_values)
def test_redis_info_and_config_replies(info, config_save):
    """Any parsed INFO and CONFIG GET reply: a RedisHealth of known-or-None readings."""
    from celery_queue_exporter.brokers.redis.health import parse_health
    from celery_queue_exporter.pressure import pressure_families

    health = parse_health(info, config_save if isinstance(config_save, dict) else None)
    assert health.persistence in (None, True, False)
    assert all(isinstance(calls, int) for calls in health.flushes.values())
    list(pressure_families([("r", BrokerSnapshot(redis_health=health))]))
