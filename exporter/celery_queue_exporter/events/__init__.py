"""Celery events: task timings and outcomes, worker health, per-priority queue wait.

tracker.py joins events into metrics (pure logic); decode.py unpacks broker messages;
redis_consumer.py and rabbitmq_consumer.py read the event stream of one broker each without
touching the user's queues; collector.py exposes every tracker to Prometheus.
"""
