"""Bad configuration input (issue 12, points 5, 6 and 10): every case exits 2 with one line that
names the field, and the secret in the input never reaches stdout or stderr, whatever the
parser's own error text says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "Hunter2-sekr1t"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celery_queue_exporter", *args, "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


def write(tmp_path: Path, content: str | bytes, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


YAML_WITH_SECRET_ON_THE_BAD_LINE = {
    # An unclosed quote: PyYAML's snippet would print the password line.
    "unclosed quote": f'brokers:\n  - url: redis://127.0.0.1:1/0\n    password: "{SECRET}\n',
    # A colon inside an unquoted password.
    "colon in value": f"brokers:\n  - url: redis://127.0.0.1:1/0\n    password: {SECRET}: x\n",
    # A tab where YAML wants spaces, right before the secret.
    "tab": f"brokers:\n  - url: redis://127.0.0.1:1/0\n\tpassword: {SECRET}\n",
    # A bad escape inside a double-quoted password.
    "bad escape": f'brokers:\n  - url: redis://127.0.0.1:1/0\n    password: "{SECRET}\\q"\n',
}


@pytest.mark.parametrize("case", sorted(YAML_WITH_SECRET_ON_THE_BAD_LINE))
@pytest.mark.subprocess
def test_yaml_syntax_error_names_the_place_never_the_line(tmp_path, case):
    path = write(tmp_path, YAML_WITH_SECRET_ON_THE_BAD_LINE[case])
    result = run_cli("--config", path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"celery-queue-exporter: configuration error: config: '{path}'")
    assert "is not valid YAML: line " in result.stderr
    assert result.stderr.count("\n") == 1
    assert SECRET not in result.stderr
    assert SECRET[:6] not in result.stderr  # no piece of it either


@pytest.mark.parametrize(
    ("content", "line", "offset"),
    [
        (b"port: 9818\npassword: \xff\xfe" + SECRET.encode() + b"\n", 2, 21),
        (b"\xef\xbb\xbfport: \xc3\x28\n", 1, 9),
    ],
)
@pytest.mark.subprocess
def test_config_file_that_is_not_utf8_exits_2(tmp_path, content, line, offset):
    path = write(tmp_path, content)
    result = run_cli("--config", path)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"celery-queue-exporter: configuration error: config: '{path}' is not UTF-8 text "
        f"(line {line}, byte offset {offset})\n"
    )


@pytest.mark.subprocess
def test_password_file_that_is_not_utf8_exits_2(tmp_path):
    secret_file = write(tmp_path, b"\xff" + SECRET.encode(), "password")
    path = write(
        tmp_path, f"brokers:\n  - url: redis://127.0.0.1:1/0\n    password_file: {secret_file}\n"
    )
    result = run_cli("--config", path)
    assert (result.returncode, result.stderr) == (
        2,
        f"celery-queue-exporter: configuration error: brokers[0].password_file: '{secret_file}' "
        "is not UTF-8 text (line 1, byte offset 0)\n",
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1e12", "must be at most 1e+06, got 1e+12"),
        ("1000001", "must be at most 1e+06, got 1e+06"),
        ("1" + "0" * 400, "expected a finite number"),
    ],
)
@pytest.mark.subprocess
def test_scrape_timeout_bounded_to_what_the_platform_accepts(value, shown):
    result = run_cli("--scrape-timeout", value, "--broker-url", "redis://127.0.0.1:1/0")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"celery-queue-exporter: configuration error: scrape_timeout_seconds: {shown}"
    )


@pytest.mark.redis
@pytest.mark.subprocess
def test_the_largest_scrape_timeout_accepted_works(redis_server):
    """The bound itself is usable: a scrape with it answers (no OverflowError anywhere)."""
    result = run_cli("--scrape-timeout", "1000000", "--broker-url", f"r={redis_server.url}")
    assert result.returncode == 0, result.stderr
    assert 'celery_broker_up{broker="r"} 1.0' in result.stdout


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("password: {x: 1}", "brokers[0].password: expected a string, got a mapping"),
        (f"password: [{SECRET}]", "brokers[0].password: expected a string, got a list"),
        ("password: 12345", "brokers[0].password: expected a string, got a number"),
        (f"password_file: {{f: {SECRET}}}", "brokers[0].password_file: expected a string"),
        (f"password_env: [{SECRET}]", "brokers[0].password_env: expected a string"),
        (f"name: {{n: {SECRET}}}", "brokers[0].name: expected a string, got a mapping"),
    ],
)
@pytest.mark.subprocess
def test_a_password_that_is_not_a_string_exits_2_without_echoing_it(tmp_path, entry, message):
    path = write(tmp_path, f"brokers:\n  - url: redis://127.0.0.1:1/0\n    {entry}\n")
    result = run_cli("--config", path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"celery-queue-exporter: configuration error: {message}")
    assert SECRET not in result.stdout + result.stderr
    assert "12345" not in result.stderr


@pytest.mark.subprocess
def test_deeply_nested_yaml_exits_2(tmp_path):
    path = write(tmp_path, "port: " + "[" * 5000 + "]" * 5000 + "\n")
    result = run_cli("--config", path)
    assert result.returncode == 2
    assert result.stderr.startswith("celery-queue-exporter: configuration error: config: ")
    assert "Traceback" not in result.stderr


@pytest.mark.subprocess
def test_credentials_in_text_from_a_celery_app_are_redacted(tmp_path):
    """The user's module can raise anything; a URL with a password in it is redacted."""
    (tmp_path / "badapp.py").write_text(
        f"raise RuntimeError('cannot reach amqp://svc:{SECRET}@mq.internal:5672//')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "celery_queue_exporter", "--celery-app", "badapp:app", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "celery-queue-exporter: configuration error: celery_app: cannot import 'badapp': "
        "cannot reach amqp://mq.internal:5672//\n"
    )


@pytest.mark.parametrize(
    ("url", "entry", "message"),
    [
        (
            "redis://127.0.0.1:1/0",
            "priority_levels: {jobs: {most: high}}",
            "brokers[0].priority_levels.jobs.most: expected a non-negative integer, got 'high'",
        ),
        (
            "amqp://guest:guest@127.0.0.1:1//",
            "priority_levels: {jobs: {least: -1}}",
            "brokers[0].priority_levels.jobs.least: must be between 0 and 255, got -1",
        ),
        (
            "amqp://guest:guest@127.0.0.1:1//",
            "priority_levels: {jobs: {most: 9.5}}",
            "brokers[0].priority_levels.jobs.most: expected a non-negative integer, got 9.5",
        ),
        (
            "amqp://guest:guest@127.0.0.1:1//",
            "priority_levels: {jobs: {most: true}}",
            "brokers[0].priority_levels.jobs.most: expected a non-negative integer, got True",
        ),
        (
            "redis://127.0.0.1:1/0",
            "priority_levels: {jobs: {highest: 0}}",
            "brokers[0].priority_levels.jobs.highest: unknown field (allowed: least, most)",
        ),
        (
            "redis://127.0.0.1:1/0",
            "priority_levels: [jobs]",
            "brokers[0].priority_levels: expected a mapping of queue -> {most: N, least: M}, "
            "got list",
        ),
        (
            "redis://127.0.0.1:1/0",
            "priority_levels: {jobs: 9}",
            "brokers[0].priority_levels.jobs: expected a mapping with most and/or least",
        ),
        (
            "redis://127.0.0.1:1/0",
            "priority_levels: {jobs: {most: 0, least: 8}}",
            "brokers[r].priority_levels.jobs.least: 8 is not one of the priority_steps "
            "[0, 3, 6, 9] (kombu has no list for it)",
        ),
        (
            "redis://127.0.0.1:1/0",
            "transport_options: {priority_steps: [0, 5]}\n    priority_levels: {jobs: {most: 3}}",
            "brokers[r].priority_levels.jobs.most: 3 is not one of the priority_steps [0, 5] "
            "(kombu has no list for it)",
        ),
        (
            "redis://127.0.0.1:1/0",
            "priority_levels: {jobs: {most: 9, least: 0}}",
            "brokers[r].priority_levels.jobs.most: 9 is less urgent than least (0): on Redis "
            "the lower step is served first",
        ),
        (
            "amqp://guest:guest@127.0.0.1:1//",
            "priority_levels: {jobs: {most: 0, least: 9}}",
            "brokers[r].priority_levels.jobs.most: 0 is less urgent than least (9): RabbitMQ "
            "serves the highest priority first",
        ),
    ],
)
@pytest.mark.subprocess
def test_priority_levels_override_is_checked_at_load(tmp_path, url, entry, message):
    path = write(tmp_path, f"brokers:\n  - name: r\n    url: {url}\n    {entry}\n")
    result = run_cli("--config", path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"celery-queue-exporter: configuration error: {message}\n"


def test_priority_levels_override_within_the_steps_loads(tmp_path):
    from celery_queue_exporter.config.load import load_config

    path = write(
        tmp_path,
        "brokers:\n  - name: r\n    url: redis://127.0.0.1:1/0\n"
        "    transport_options: {priority_steps: [0, 3, 6, 9]}\n"
        "    priority_levels: {jobs: {most: 3, least: 9}, other: {least: 0}}\n"
        "  - name: q\n    url: amqp://guest:guest@127.0.0.1:1//\n"
        "    priority_levels: {jobs: {most: 9, least: 0}}\n",
    )
    config = load_config(["--config", path], environ={})
    assert config.brokers[0].priority_levels == {
        "jobs": {"most": 3, "least": 9},
        "other": {"least": 0},
    }
    assert config.brokers[1].priority_levels == {"jobs": {"most": 9, "least": 0}}


@pytest.mark.subprocess
def test_an_unparsable_management_url_exits_2_without_echoing_it():
    """'http://[::1' made urlsplit raise a bare ValueError (a traceback quoting the URL); it is
    a configuration error like any other bad URL now."""
    result = run_cli(
        "--broker-url", "amqp://127.0.0.1:1//", "--management-url", f"http://u:{SECRET}@[::1"
    )
    assert result.returncode == 2
    assert result.stderr == (
        "celery-queue-exporter: configuration error: management_url: expected an http(s) URL, "
        "got '<unparsable url>'\n"
    )
