"""Helpers the test suite (tests/) and the benchmarks (bench/) share.

One copy of how a spare port is found, how a service is awaited, how a private redis-server is
started and removed, how a started process is stopped and how RabbitMQ objects are cleaned up,
so a fix to any of them reaches both. Importable from the repository root: pytest puts it on
sys.path (``pythonpath = ["."]``) and every bench script inserts it.

* :mod:`testsupport.net`: ``free_port``, ``port_open``, ``http_ok``;
* :mod:`testsupport.waiting`: ``wait_for`` and ``ServiceError``;
* :mod:`testsupport.redis_server`: ``RedisServer``, a private redis-server process;
* :mod:`testsupport.processes`: ``stop_process``, SIGTERM then SIGKILL (optionally the group);
* :mod:`testsupport.rabbitmq`: ``rabbitmq_available``, ``delete_rabbitmq_objects``, ``pika_url``,
  ``RABBITMQ_URL``, ``create_vhost``/``delete_vhost``;
* :mod:`testsupport.http`: raw HTTP on loopback.

The tests' own helpers, imported by the package name and never through ``conftest``:

* :mod:`testsupport.paths`: ``ROOT``; :mod:`testsupport.services`: ``missing_service``,
  ``in_ci`` (fail in CI, skip locally); :mod:`testsupport.exposition`: ``parse_exposition``,
  ``sample_value``, ``samples_named``;
* :mod:`testsupport.exporter`: ``build_exporter``, ``scrape``, ``scrape_text``,
  ``serve_exporter`` (was tests/exporter_helpers.py);
* :mod:`testsupport.prometheus`: the one Prometheus helper (was tests/prometheus_stack.py);
* :mod:`testsupport.oncall_stack`, :mod:`testsupport.rabbitmq_node`,
  :mod:`testsupport.redis_topologies`, :mod:`testsupport.grafana_schema` (were in tests/);
* pytest plugins, registered by tests/conftest.py: :mod:`testsupport.tiers` (the tier markers
  and ``--fast``), :mod:`testsupport.skip_summary`, :mod:`testsupport.xdist_groups`.
"""
