"""Priority load test: does true priority queuing pay off? Redis versus RabbitMQ, measured.

``python -m bench.loadtest [--quick]`` runs real Celery workers against a private Redis and the
machine's RabbitMQ, offers a mixed-priority workload from below saturation to well beyond it
and a starvation scenario, reads per-priority waits from the real exporter's
``celery_queue_wait_seconds`` histogram and checks them against the tasks' own start times,
then writes a Markdown report with plots and the raw data it was computed from.

Modules: workload (classes, setups, schedules), app (the Celery app of the workers),
services (private redis-server, exporter and worker processes), runner (one run, raw data),
analysis (the arithmetic), report (Markdown and plots), progress (the progress bar).
"""
