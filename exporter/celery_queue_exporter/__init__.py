"""celery-queue-exporter: Prometheus metrics for Celery queues on Redis and RabbitMQ."""

__version__ = "0.1.0"
