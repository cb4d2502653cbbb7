"""Celery events: task timings and outcomes, worker health, per-priority queue wait.

tracker.py joins task events into metrics (pure logic) and owns workers.py, the worker book;
decode.py unpacks broker messages; consumer.py is the reconnecting thread every broker's
consumer (``brokers/<name>/events.py``) builds on, reading one broker's event stream without
touching the user's queues; collector.py exposes every tracker to Prometheus; state.py keeps
the known workers across restarts (``events.state_file``).
"""
