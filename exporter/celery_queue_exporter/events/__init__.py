"""Celery events: task timings and outcomes, worker health, per-priority queue wait.

tracker.py joins events into metrics (pure logic); decode.py unpacks broker messages;
consumer.py is the reconnecting thread every broker's consumer (``brokers/<name>/events.py``)
builds on, reading one broker's event stream without touching the user's queues; collector.py
exposes every tracker to Prometheus; state.py keeps the known workers across restarts
(``events.state_file``).
"""
