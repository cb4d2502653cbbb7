"""Configuration: precedence, validation errors that name the field, credentials kept out."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from celery_queue_exporter.config import DEFAULT_PORT, ConfigError, redact_url
from celery_queue_exporter.config.brokers import default_broker_name
from celery_queue_exporter.config.load import load_config
from celery_queue_exporter.config.parser import build_parser
from testsupport.exporter import build_exporter, scrape
from testsupport.exposition import sample_value
from testsupport.paths import ROOT

#: Every flag the exporter has had since before options were declared in one place.
FLAGS = [
    "--broker-url",
    "--celery-app",
    "--config",
    "--discover-queues",
    "--events",
    "--events-heartbeat-timeout",
    "--events-max-exception-names",
    "--events-max-queue-names",
    "--events-max-task-age",
    "--events-max-task-names",
    "--events-max-tracked-tasks",
    "--events-max-wait",
    "--events-max-workers",
    "--events-runtime-buckets",
    "--events-task-names",
    "--events-wait-buckets",
    "--events-worker-retention",
    "--global-keyprefix",
    "--host",
    "--log-level",
    "--management-api",
    "--management-url",
    "--once",
    "--port",
    "--priority-steps",
    "--queue",
    "--scrape-timeout",
    "--sep",
    "--tls-cert-file",
    "--tls-client-ca-file",
    "--tls-key-file",
    "--visibility-timeout",
]
#: Flags added for production brokers (issue 16).
PRODUCTION_FLAGS = [
    "--broker-ssl-ca-file",
    "--broker-ssl-cert-file",
    "--broker-ssl-key-file",
    "--broker-ssl-server-name",
    "--broker-ssl-verify",
    "--broker-transport-option",
    "--queue-exclude",
    "--queue-include",
    "--static-label",
]
#: Flags added for on-call fidelity (issue 13).
ONCALL_FLAGS = ["--events-state-file", "--events-worker-offline-grace", "--urgency-memory"]
#: Issue 23: the prefix of Celery's native delayed delivery queues (kombu >= 5.7).
RABBITMQ4_FLAGS = ["--delayed-delivery-prefix"]
#: The rabbitmq_prometheus plugin's URL (issue 25).
PLUGIN_FLAGS = ["--prometheus-url"]
#: Flags added for the series budget and the bounded state file (issue 24).
HARDENING_FLAGS = [
    "--events-max-label-length",
    "--events-max-series-per-family",
    "--events-max-event-samples",
    "--events-state-file-max-bytes",
]


def write(tmp_path, text: str):
    path = tmp_path / "exporter.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_urgency_memory_from_file_env_and_flag_reaches_the_resolvers(tmp_path):
    config_file = write(tmp_path, "urgency_memory_seconds: 600\n")
    assert load_config([], environ={}).urgency_memory_seconds == 86400.0
    assert load_config(["--config", config_file], environ={}).urgency_memory_seconds == 600.0
    env = {"CELERY_EXPORTER_URGENCY_MEMORY": "900"}
    assert load_config(["--config", config_file], environ=env).urgency_memory_seconds == 900.0
    config = load_config(["--urgency-memory", "60", "--broker-url", "r=redis://h:6379/0"], {})
    assert config.urgency_memory_seconds == 60.0
    exporter = build_exporter("--urgency-memory", "60", "--broker-url", "r=redis://h:6379/0")
    try:
        assert [s.urgency.memory_seconds for s in exporter.queues._brokers] == [60.0]
    finally:
        exporter.close()


def test_precedence_flag_over_env_over_file_over_default(tmp_path):
    config_file = write(
        tmp_path,
        """
        port: 9001
        host: 127.0.0.2
        scrape_timeout_seconds: 3
        brokers:
          - {name: from-file, url: "redis://filehost:6379/1"}
    """,
    )
    assert load_config([], environ={}).port == DEFAULT_PORT
    assert load_config(["--config", config_file], environ={}).port == 9001
    env = {"CELERY_EXPORTER_CONFIG": config_file, "CELERY_EXPORTER_PORT": "9002"}
    config = load_config([], environ=env)
    assert (config.port, config.host, config.scrape_timeout_seconds) == (9002, "127.0.0.2", 3.0)
    assert [b.name for b in config.brokers] == ["from-file"]
    config = load_config(["--port", "9003"], environ=env)
    assert config.port == 9003
    # Brokers: flags replace the environment's, which replace the file's.
    env["CELERY_EXPORTER_BROKER_URL"] = "env1=redis://e1:6379/0 redis://e2:6380/2"
    assert [b.name for b in load_config([], environ=env).brokers] == [
        "env1",
        "redis-e2-6380-2",
    ]
    flagged = load_config(["--broker-url", "amqp://u:p@rabbit:5672/vh"], environ=env)
    assert [b.name for b in flagged.brokers] == ["rabbitmq-rabbit-5672-vh"]


def test_file_brokers_carry_transport_options_and_queues(tmp_path):
    config_file = write(
        tmp_path,
        """
        brokers:
          - name: tenant
            url: "redis://localhost:6379/3"
            queues: [a, b]
            transport_options:
              priority_steps: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
              sep: ":"
              global_keyprefix: "t1:"
              visibility_timeout: 120
            reserved_sample_size: 50
    """,
    )
    (broker,) = load_config(["--config", config_file], environ={}).brokers
    assert broker.queues == ["a", "b"] and broker.discover_queues is False
    assert broker.options.priority_steps == list(range(10))
    assert (
        broker.options.sep,
        broker.options.global_keyprefix,
        broker.options.visibility_timeout,
    ) == (":", "t1:", 120.0)
    assert broker.options.reserved_sample_size == 50


@pytest.mark.parametrize(
    ("args", "file_text", "message"),
    [
        (["--port", "70000"], None, "port: must be between 0 and 65535, got 70000"),
        (["--port", "http"], None, "port: expected an integer, got 'http'"),
        (["--priority-steps", "3,0"], None, "priority_steps: must be strictly ascending"),
        (["--priority-steps", "0,12"], None, "priority_steps: must be between 0 and 9, got 12"),
        (["--broker-url", "mysql://db/1"], None, "--broker-url[0].url: unsupported scheme 'mysql'"),
        (["--broker-url", "redis://host/abc"], None, "Redis database must be a number"),
        (["--log-level", "loud"], None, "log_level: expected DEBUG, INFO, WARNING or ERROR"),
        (["--scrape-timeout", "inf"], None, "scrape_timeout_seconds: expected a finite number"),
        ([], "brokers:\n  - {url: 'redis://h/0', colour: red}\n", "brokers[0].colour: unknown"),
        (
            [],
            "brokers:\n  - {url: 'redis://h/0', transport_options: {steps: [0]}}\n",
            "brokers[0].transport_options.steps: unknown field",
        ),
        ([], "prot: 9000\n", "config: prot: unknown field"),
        ([], "port: [1\n", "is not valid YAML"),
        (
            [],
            "brokers:\n  - {name: x, url: 'redis://a/0'}\n  - {name: x, url: 'redis://b/0'}\n",
            "duplicate broker name 'x'",
        ),
        (
            ["--tls-cert-file", "/nonexistent.pem", "--tls-key-file", "/nonexistent.key"],
            None,
            "tls.cert_file: no such file '/nonexistent.pem'",
        ),
        (
            ["--tls-cert-file", "/etc/hostname"],
            None,
            "cert_file and key_file must be given together",
        ),
        (
            ["--events-worker-offline-grace", "0"],
            None,
            "events.worker_offline_grace_seconds: must be greater than 0, got 0",
        ),
        (
            [],
            "events: {worker_offline_grace_seconds: soon}\n",
            "events.worker_offline_grace_seconds: expected a number, got 'soon'",
        ),
        (
            ["--events-state-file", "/nonexistent-dir/state.json"],
            None,
            "events.state_file: needs a file in an existing directory, got "
            "'/nonexistent-dir/state.json'",
        ),
    ],
)
@pytest.mark.subprocess
def test_bad_input_names_the_field_and_exits_2(tmp_path, args, file_text, message):
    argv = list(args)
    if file_text is not None:
        argv += ["--config", write(tmp_path, file_text)]
    with pytest.raises(ConfigError) as error:
        load_config(argv, environ={})
    assert message in str(error.value)
    result = subprocess.run(
        [sys.executable, "-m", "celery_queue_exporter", *argv, "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("celery-queue-exporter: configuration error: ")
    assert message in result.stderr


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read '/no/such/file.yaml'"):
        load_config(["--config", "/no/such/file.yaml"], environ={})


def test_passwords_never_appear_in_errors_names_or_reprs():
    secret = "s3cr3t-pw"
    for url in (f"redis://:{secret}@h:6379/x", f"redis://user:{secret}@h:99999/0"):
        with pytest.raises(ConfigError) as error:
            load_config(["--broker-url", url], environ={})
        assert secret not in str(error.value)
    # Unencoded / ? # in a password break URL parsing; no piece of it may show.
    for password in ("Zq9/xW7k", "123/xW7k", "Zq9?xW7k", "Zq9#xW7k", "12345/678"):
        for scheme in ("redis", "amqp"):
            url = f"{scheme}://user:{password}@host:6379/0"
            with pytest.raises(ConfigError) as error:
                load_config(["--broker-url", url], environ={})
            message = str(error.value)
            assert "percent-encode" in message
            assert not any(
                piece in message
                for piece in password.replace("?", "/").split("/") + password.split("#")
                if len(piece) >= 2
            )
            assert redact_url(url) == "<unparsable url>"
    config = load_config(["--broker-url", f"redis://admin:{secret}@cache.internal:6380/2"], {})
    broker = config.brokers[0]
    assert broker.name == "redis-cache.internal-6380-2"
    assert secret not in broker.name + broker.safe_url + repr(broker) + repr(config)
    assert broker.safe_url == "redis://cache.internal:6380/2"
    assert redact_url(f"amqps://u:{secret}@[::1]:5671/vh") == "amqps://[::1]:5671/vh"
    assert default_broker_name("amqp://guest:guest@localhost:5672//") == (
        "rabbitmq-localhost-5672-default-vhost"
    )


@pytest.mark.redis
def test_password_from_env_and_file_reach_a_password_protected_redis(redis_server, tmp_path):
    secret = "pw-for-test"
    redis_server.client().config_set("requirepass", secret)
    (tmp_path / "pw").write_text(secret + "\n")
    config_file = write(
        tmp_path,
        f"""
        brokers:
          - {{name: by-env, url: "{redis_server.url}", password_env: CQE_TEST_PW, queues: [q]}}
          - {{name: by-file, url: "{redis_server.url}", password_file: "{tmp_path / "pw"}",
              queues: [q]}}
          - {{name: wrong, url: "redis://:nope-{secret}@127.0.0.1:{redis_server.port}/0",
              queues: [q]}}
    """,
    )
    import os

    os.environ["CQE_TEST_PW"] = secret
    try:
        exporter = build_exporter("--config", config_file)
    finally:
        del os.environ["CQE_TEST_PW"]
    samples = scrape(exporter)
    exporter.close()
    assert sample_value(samples, "celery_broker_up", broker="by-env") == 1
    assert sample_value(samples, "celery_broker_up", broker="by-file") == 1
    assert sample_value(samples, "celery_broker_up", broker="wrong") == 0
    assert not any(secret in str(labels) for _, labels in samples)
    with pytest.raises(ConfigError, match="password_env: environment variable CQE_UNSET is not"):
        load_config(
            [
                "--config",
                write(tmp_path, "brokers:\n  - {url: 'redis://h/0', password_env: CQE_UNSET}\n"),
            ],
            environ={},
        )


@pytest.mark.redis
def test_celery_app_supplies_broker_transport_options_and_queues(
    redis_server, tmp_path, monkeypatch
):
    module = tmp_path / "cqe_user_app.py"
    module.write_text(
        textwrap.dedent(f"""
        from celery import Celery
        from kombu import Queue

        app = Celery("user", broker="{redis_server.url}", set_as_current=False)
        app.conf.broker_transport_options = {{
            "priority_steps": list(range(10)), "sep": ":", "global_keyprefix": "u:",
            "visibility_timeout": 900, "max_connections": 5,
        }}
        app.conf.task_queues = [Queue("evals"), Queue("reports")]
        app.conf.task_default_queue = "evals"

        @app.task(name="user.work", shared=False)
        def work():
            return None
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = load_config(["--celery-app", "cqe_user_app:app"], environ={})
    (broker,) = config.brokers
    assert broker.url.text == redis_server.url
    assert broker.options.priority_steps == list(range(10))
    assert (
        broker.options.sep,
        broker.options.global_keyprefix,
        broker.options.visibility_timeout,
    ) == (":", "u:", 900.0)
    assert broker.queues == ["evals", "reports"]

    import cqe_user_app

    for priority in (0, 0, 7):
        cqe_user_app.work.apply_async(queue="reports", priority=priority)
    exporter = build_exporter("--celery-app", "cqe_user_app:app")
    samples = scrape(exporter)
    exporter.close()
    name = broker.name
    assert (
        sample_value(samples, "celery_queue_messages", broker=name, queue="reports", priority="0")
        == 2
    )
    assert (
        sample_value(samples, "celery_queue_messages", broker=name, queue="reports", priority="7")
        == 1
    )
    assert sample_value(samples, "celery_broker_visibility_timeout_seconds", broker=name) == 900
    with pytest.raises(ConfigError, match="celery_app: cannot import 'no_such_module_x'"):
        load_config(["--celery-app", "no_such_module_x:app"], environ={})


@pytest.mark.subprocess
def test_configuration_docs_are_generated_from_the_declarations(tmp_path):
    """docs/configuration.md is committed; --check fails when it drifts from the options."""
    command = [sys.executable, "-m", "celery_queue_exporter.config.docs", "--check"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (result.returncode, result.stderr) == (0, ""), (
        "run: python -m celery_queue_exporter.config.docs"
    )
    stale = tmp_path / "configuration.md"
    stale.write_text((ROOT / "docs" / "configuration.md").read_text().replace("9818", "9819"))
    result = subprocess.run(
        [*command, "--output", str(stale)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"{stale} is out of date: run python -m celery_queue_exporter.config.docs\n"
    )
    # Every flag of --help and every variable has its row, with the parser's default.
    page = (ROOT / "docs" / "configuration.md").read_text()
    parser = build_parser()
    flags = [a.option_strings[0] for a in parser._actions if a.option_strings[0] != "-h"]
    # the command line is unchanged by the split; issues 16 and 13 only added flags
    assert sorted(flags) == sorted(
        FLAGS + PRODUCTION_FLAGS + ONCALL_FLAGS + HARDENING_FLAGS + RABBITMQ4_FLAGS + PLUGIN_FLAGS
    )
    for flag in flags:
        assert f"| `{flag}` |" in page, flag
    assert "| `port` | `--port` | `CELERY_EXPORTER_PORT` | integer 0..65535 | `9818` |" in page
    assert (
        "| `brokers[].transport_options.priority_steps` | `--priority-steps` | "
        "`CELERY_EXPORTER_PRIORITY_STEPS` | ascending integers 0..9 starting at 0 (a,b,c) | "
        "`0,3,6,9` |"
    ) in page
    assert (
        "| `events.heartbeat_timeout_seconds` | `--events-heartbeat-timeout` | "
        "`CELERY_EXPORTER_EVENTS_HEARTBEAT_TIMEOUT` | number > 0, at most 1,000,000 | `30` |"
    ) in page
