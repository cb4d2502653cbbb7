"""Helpers the test suite (tests/) and the benchmarks (bench/) share.

One copy of how a spare port is found, how a service is awaited, how a private redis-server is
started and removed, how a started process is stopped and how RabbitMQ objects are cleaned up,
so a fix to any of them reaches both. Importable from the repository root: pytest puts it on
sys.path (``pythonpath = ["."]``) and every bench script inserts it.

* :mod:`testsupport.net`: ``free_port``, ``port_open``, ``http_ok``;
* :mod:`testsupport.waiting`: ``wait_for`` and ``ServiceError``;
* :mod:`testsupport.redis_server`: ``RedisServer``, a private redis-server process;
* :mod:`testsupport.processes`: ``stop_process``, SIGTERM then SIGKILL (optionally the group);
* :mod:`testsupport.rabbitmq`: ``rabbitmq_available``, ``delete_rabbitmq_objects``, ``pika_url``.
"""
