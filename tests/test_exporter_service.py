"""The exporter as a service: HTTP endpoints, outages, read-only guarantee, exposition format."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
from celery import Celery

from celery_queue_exporter import catalogue
from celery_queue_exporter.config.load import load_config
from celery_queue_exporter.server import MetricsServer
from testsupport.exporter import build_exporter, scrape, scrape_text
from testsupport.exposition import parse_exposition, sample_value
from testsupport.paths import ROOT
from testsupport.waiting import wait_for


def fill(url: str) -> None:
    """Messages at every level, bindings, and reserved work, so every read path runs."""
    from kombu import Connection, Exchange, Queue

    app = Celery("svc", broker=url, set_as_current=False)

    @app.task(name="svc.noop", shared=False)
    def task() -> None:
        return None

    for priority in range(10):
        task.apply_async(queue="jobs", priority=priority)
    with Connection(url) as conn:
        got = []
        queue = Queue("jobs", Exchange("jobs", type="direct"), routing_key="jobs")
        with conn.Consumer(queue, callbacks=[lambda body, msg: got.append(msg)]) as consumer:
            consumer.qos(prefetch_count=2)
            while len(got) < 2:
                conn.drain_events(timeout=5)
        # Leave them unacked: kombu restores them on close, so the hash was populated.


def serve(*args: str):
    exporter = build_exporter(*args, "--port", "0", "--host", "127.0.0.1")
    server = MetricsServer(exporter.registry, exporter.config)
    server.start()
    return exporter, server, f"http://127.0.0.1:{server.port}"


@pytest.mark.redis
def test_only_read_commands_reach_redis(redis_server):
    """Redis' own command statistics, reset before the exporter runs, hold no write command."""
    fill(redis_server.url)
    client = redis_server.client()
    client.config_resetstat()
    exporter = build_exporter("--broker-url", f"ro={redis_server.url}", "--discover-queues")
    for _ in range(3):
        samples = scrape(exporter)
        assert sample_value(samples, "celery_broker_up", broker="ro") == 1
    exporter.close()
    stats = client.info("commandstats")
    used = sorted(name.removeprefix("cmdstat_") for name in stats)
    # The test itself only ran CONFIG RESETSTAT before and INFO after.
    writes = []
    for command in used:
        base = command.split("|")[0]
        info = client.execute_command("COMMAND", "INFO", base)  # parsed: {name: {"flags": ...}}
        flags = [f.decode() if isinstance(f, bytes) else f for f in info[base]["flags"]]
        if "write" in flags:
            writes.append(command)
    assert writes == []
    # And the exporter really did read: depths and heads in one EVAL_RO per scrape (no per-key
    # round trips), bindings, reserved work.
    assert {"eval_ro", "scan", "smembers", "hlen", "zcount"} <= set(used)
    assert stats["cmdstat_eval_ro"]["calls"] == 3
    # Redis counts the script's own calls too: 4 priority-step keys of 'jobs', 3 scrapes.
    assert stats["cmdstat_llen"]["calls"] == 3 * 4


@pytest.mark.redis
def test_http_endpoints_and_redis_outage_recovery(redis_server):
    fill(redis_server.url)
    exporter, server, base = serve("--broker-url", f"r={redis_server.url}", "--scrape-timeout", "2")
    try:
        page = requests.get(base + "/", timeout=5)
        assert page.status_code == 200 and "/metrics" in page.text and "r (redis" in page.text
        health = requests.get(base + "/healthz", timeout=5)
        assert (health.status_code, health.text) == (200, "ok\n")
        assert requests.get(base + "/nope", timeout=5).status_code == 404

        def metrics() -> dict:
            response = requests.get(base + "/metrics", timeout=10)
            assert response.status_code == 200
            return parse_exposition(response.text)

        samples = metrics()
        assert sample_value(samples, "celery_broker_up", broker="r") == 1
        assert sample_value(samples, "celery_exporter_scrape_errors_total", broker="r") == 0

        redis_server.stop()
        samples = metrics()  # still answers
        assert sample_value(samples, "celery_broker_up", broker="r") == 0
        assert sample_value(samples, "celery_exporter_scrape_errors_total", broker="r") == 1
        assert not any(name == "celery_queue_messages" for name, _ in samples)
        assert requests.get(base + "/healthz", timeout=5).status_code == 200

        redis_server.start()  # same port, empty data
        samples = wait_for(
            lambda: (s := metrics()) and sample_value(s, "celery_broker_up", broker="r") == 1 and s,
            timeout=20,
            what="recovery after Redis restart",
        )
        assert (
            sample_value(samples, "celery_queue_messages", broker="r", queue="jobs", priority="0")
            == 0
        )
    finally:
        server.stop()
        exporter.close()


@pytest.mark.redis
def test_once_mode_exit_codes(redis_server):
    cli = [sys.executable, "-m", "celery_queue_exporter", "--once"]
    ok = subprocess.run(
        cli + ["--broker-url", redis_server.url], capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert 'celery_broker_up{broker="redis-127.0.0.1-' in ok.stdout
    down = subprocess.run(
        cli
        + [
            "--broker-url",
            f"up={redis_server.url}",
            "--broker-url",
            "down=redis://:hunter2@127.0.0.1:1/0",
            "--scrape-timeout",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 1
    assert 'celery_broker_up{broker="down"} 0.0' in down.stdout
    assert 'celery_broker_up{broker="up"} 1.0' in down.stdout
    assert "hunter2" not in down.stdout + down.stderr
    assert "broker down: inspection failed" in down.stderr


@pytest.mark.redis
@pytest.mark.prometheus
def test_promtool_check_metrics_on_a_real_scrape(redis_server):
    promtool = shutil.which("promtool")
    if promtool is None:
        from testsupport.services import missing_service

        missing_service("promtool (Debian package prometheus) is not installed")
    fill(redis_server.url)
    exporter = build_exporter("--broker-url", f"r={redis_server.url}")
    text = scrape_text(exporter)
    exporter.close()
    assert "celery_queue_messages{" in text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.redis
def test_every_redis_metric_in_the_catalogue_appears_in_a_real_scrape(redis_server):
    fill(redis_server.url)
    exporter = build_exporter("--broker-url", f"r={redis_server.url}")
    samples = scrape(exporter)
    exporter.close()
    seen = {name for name, _ in samples}
    expected = {
        name
        for spec in catalogue.QUEUE_METRICS
        if "redis" in spec.brokers
        for name in catalogue.exposed_series_names(spec)
    }
    assert expected - seen == set()
    # And nothing celery_* is exposed that the catalogue does not document.
    documented = {n for s in catalogue.all_metrics() for n in catalogue.exposed_series_names(s)}
    undocumented = {n for n in seen if n.startswith("celery_")} - documented
    assert undocumented == set()


def test_docs_metric_catalogue_is_generated_from_code():
    page = (ROOT / catalogue.CATALOGUE_PAGE).read_text(encoding="utf-8")
    assert catalogue.render_into(page) == page, "run: python -m celery_queue_exporter.catalogue"
    for spec in catalogue.all_metrics():
        assert f"`{spec.name}`" in page


def _make_cert(tmp: Path, name: str, ca: tuple[Path, Path] | None = None) -> tuple[Path, Path]:
    key, cert = tmp / f"{name}.key", tmp / f"{name}.crt"
    if ca is None:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                f"/CN={name}",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
    else:
        csr = tmp / f"{name}.csr"
        subprocess.run(
            [
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                f"/CN={name}",
                "-keyout",
                str(key),
                "-out",
                str(csr),
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(ca[1]),
                "-CAkey",
                str(ca[0]),
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
    return key, cert


@pytest.mark.redis
def test_tls_with_client_certificates(redis_server, tmp_path):
    if shutil.which("openssl") is None:
        from testsupport.services import missing_service

        missing_service("openssl is needed to make test certificates")
    server_key, server_cert = _make_cert(tmp_path, "server")
    ca_key, ca_cert = _make_cert(tmp_path, "client-ca")
    client_key, client_cert = _make_cert(tmp_path, "client", ca=(ca_key, ca_cert))
    exporter, server, _ = serve(
        "--broker-url",
        redis_server.url,
        "--tls-cert-file",
        str(server_cert),
        "--tls-key-file",
        str(server_key),
        "--tls-client-ca-file",
        str(ca_cert),
    )
    url = f"https://127.0.0.1:{server.port}/metrics"
    try:
        response = requests.get(
            url, verify=str(server_cert), cert=(str(client_cert), str(client_key)), timeout=10
        )
        assert response.status_code == 200 and "celery_broker_up" in response.text
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(url, verify=str(server_cert), timeout=10)  # no client certificate
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, timeout=10)  # server certificate not trusted
        # A client that connects and never starts the handshake blocks nobody else.
        import socket

        with socket.create_connection(("127.0.0.1", server.port)):
            health = requests.get(
                f"https://127.0.0.1:{server.port}/healthz",
                verify=str(server_cert),
                cert=(str(client_cert), str(client_key)),
                timeout=5,
            )
            assert health.status_code == 200
    finally:
        server.stop()
        exporter.close()
    assert ssl.OPENSSL_VERSION


@pytest.mark.redis
@pytest.mark.slow
def test_service_tests_fail_in_ci_and_skip_locally_when_a_service_is_missing(tmp_path):
    """The rule every service test relies on, exercised through a real pytest run."""
    test_file = tmp_path / "test_needs_service.py"
    test_file.write_text(
        textwrap.dedent("""
        from testsupport.services import missing_service

        def test_needs_redis():
            missing_service("redis-server is not installed")
    """)
    )
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    base = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(test_file)]
    # The copied conftest imports its helpers and plugins from testsupport/ at the root.
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(ROOT)}
    local = subprocess.run(base, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert local.returncode == 0, local.stdout
    assert "1 skipped" in local.stdout and "scripts/bootstrap.sh" in local.stdout
    ci = subprocess.run(
        base, capture_output=True, text=True, cwd=tmp_path, env=env | {"CI": "true"}, timeout=60
    )
    assert ci.returncode == 1
    assert "1 failed" in ci.stdout and "CI: required service missing" in ci.stdout


@pytest.mark.redis
def test_listen_conflict_is_a_clear_error(redis_server):
    exporter, server, _ = serve("--broker-url", redis_server.url)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "celery_queue_exporter",
                "--broker-url",
                redis_server.url,
                "--host",
                "127.0.0.1",
                "--port",
                str(server.port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert f"cannot listen on 127.0.0.1:{server.port}" in result.stderr
    finally:
        server.stop()
        exporter.close()
    assert load_config(["--port", "0"]).port == 0


@pytest.mark.redis
def test_rediss_tls_broker(tmp_path):
    """A Redis that only speaks TLS: rediss:// with the CA works; a wrong CA is a down broker."""
    if shutil.which("openssl") is None or shutil.which("redis-server") is None:
        from testsupport.services import missing_service

        missing_service("redis-server and openssl are needed for the TLS broker test")
    from testsupport.net import free_port

    key, cert = _make_cert(tmp_path, "redis")
    _, other_cert = _make_cert(tmp_path, "other")
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(cert),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        from testsupport.net import port_open

        wait_for(lambda: port_open(port), timeout=10, what="TLS redis-server")
        good = f"tls=rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
        bad = f"untrusted=rediss://127.0.0.1:{port}/0?ssl_ca_certs={other_cert}"
        exporter = build_exporter(
            "--broker-url", good, "--broker-url", bad, "--queue", "jobs", "--scrape-timeout", "5"
        )
        samples = scrape(exporter)
        exporter.close()
        assert sample_value(samples, "celery_broker_up", broker="tls") == 1
        assert sample_value(samples, "celery_broker_up", broker="untrusted") == 0
        assert (
            sample_value(samples, "celery_queue_messages", broker="tls", queue="jobs", priority="0")
            == 0
        )
        assert (
            sample_value(
                samples,
                "celery_broker_info",
                broker="tls",
                transport="redis",
                url=f"rediss://127.0.0.1:{port}/0",
            )
            == 1
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.redis
def test_readme_run_command_starts_the_exporter(redis_server):
    """`bash scripts/run.sh` (the README's first command) with --once: set-up, then a scrape."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "run.sh"), "--once", "--broker-url", redis_server.url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    # Set-up talks on stderr: stdout is the scrape alone.
    assert "bootstrap: ready (run)" in result.stderr
    assert result.stdout.startswith("# HELP ")
    assert "celery_broker_up{" in result.stdout and "celery_queue_messages{" not in ""
