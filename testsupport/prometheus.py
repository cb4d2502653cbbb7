"""A real Prometheus for the end-to-end tests, loading rules the real generator rendered.

Shared by tests/test_e2e.py (one stack for the module) and testsupport/oncall_stack.py (a fresh
stack per on-call scenario):

* :func:`merged` and :func:`render_monitoring`: the committed monitoring/config.yaml with a
  test's overrides, rendered by ``python -m monitoring.generate`` (the CLI users run), so the
  thresholds a test uses come from the generator's own config, never from edited rule files;
* :class:`Prometheus`: /usr/bin/prometheus on a spare port with its own temporary storage,
  scraping one target and evaluating the rendered rules, and the HTTP API calls tests make.
"""

from __future__ import annotations

import contextlib
import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
import yaml

from monitoring import config as monitoring_config
from testsupport.net import free_port
from testsupport.paths import ROOT
from testsupport.processes import stop_process
from testsupport.waiting import wait_for

PROMETHEUS = Path("/usr/bin/prometheus")
RULES = Path("alerts") / "celery-queue-exporter.rules.yaml"


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in, mappings recursively (neither is changed)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render_monitoring(workdir: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """Render rules and dashboards into ``workdir/generated`` for the committed monitoring
    config plus ``overrides``, through the real generator CLI; return the config it used."""
    config = merged(monitoring_config.load(), overrides)
    path = workdir / "monitoring.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "monitoring.generate", "--config", str(path), "--out",
         str(workdir / "generated")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return monitoring_config.load(path)


class Prometheus:
    """/usr/bin/prometheus scraping ``target`` as ``job`` and evaluating ``rule_file``, every
    ``interval`` (scrape and rule evaluation alike), with storage under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        job: str,
        target: str,
        rule_file: Path,
        interval: str = "1s",
        scrape_timeout: str = "1s",
    ) -> None:
        self.workdir = workdir
        self.job = job
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._log: Any = None
        (workdir / "prometheus.yml").write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": interval, "evaluation_interval": interval},
                    "rule_files": [str(rule_file)],
                    "scrape_configs": [
                        {
                            "job_name": job,
                            "scrape_interval": interval,
                            "scrape_timeout": scrape_timeout,
                            "static_configs": [{"targets": [target]}],
                        }
                    ],
                }
            )
        )

    def start(self) -> Prometheus:
        self._log = open(self.workdir / "prometheus.log", "w")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, timeout=60, what="prometheus to be ready")
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log_tail()}")
        with contextlib.suppress(requests.ConnectionError):
            return requests.get(f"{self.url}/-/ready", timeout=2).ok
        return False

    def close(self) -> None:
        stop_process(self.process, group=True)
        if self._log is not None:
            self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            text = (self.workdir / "prometheus.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    # --- the HTTP API ---------------------------------------------------------------------

    def api(self, path: str, **params: Any) -> dict[str, Any]:
        reply = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        return reply.json()

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list[dict]:
        answer = self.api("query_range", query=expr, start=start, end=end, step=step)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, expr: str) -> float | None:
        """The value of a query that returns exactly one series, else None."""
        answer = self.query(expr)
        result = answer["data"]["result"] if answer["status"] == "success" else []
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def active_alerts(self) -> list[dict[str, Any]]:
        """Every active alert (pending or firing) of /api/v1/alerts."""
        answer = self.api("alerts")
        assert answer["status"] == "success", answer
        return answer["data"]["alerts"]

    def alerts(self, name: str, **labels: str) -> list[dict[str, Any]]:
        """Active alerts (pending or firing) called ``name`` whose labels include ``labels``."""
        return [
            alert
            for alert in self.active_alerts()
            if alert["labels"].get("alertname") == name
            and all(alert["labels"].get(k) == v for k, v in labels.items())
        ]

    def firing(self, name: str, **labels: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts(name, **labels) if a["state"] == "firing"]

    def rule_groups(self) -> dict[str, dict[str, Any]]:
        return {g["name"]: g for g in self.api("rules")["data"]["groups"]}
