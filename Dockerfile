# syntax=docker/dockerfile:1
# Image of celery-queue-exporter: `docker build -t celery-queue-exporter:0.1.0 .`
# Runs as an unprivileged numeric user (65532) so Kubernetes' runAsNonRoot can check it, and
# needs no writable root filesystem (k8s/deployment.yaml mounts it read-only).

FROM python:3.11-slim AS build
WORKDIR /src
# Only what the package build needs (see .dockerignore).
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# The package version built above (celery_queue_exporter.__version__; tests/test_k8s.py checks).
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="celery-queue-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Celery queues on Redis and RabbitMQ, per priority level" \
      org.opencontainers.image.version="${VERSION}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels "celery-queue-exporter==${VERSION}" \
    && rm -rf /wheels \
    && groupadd --system --gid 65532 exporter \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin exporter
USER 65532:65532
EXPOSE 9818
ENTRYPOINT ["celery-queue-exporter"]
