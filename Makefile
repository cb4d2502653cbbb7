# Convenience targets; each is one command from the README or docs.
.PHONY: demo demo-private test e2e k8s generate lock

# Redis, RabbitMQ (when missing), Prometheus with the rules, the exporter, workers and a
# mixed-priority workload; Ctrl-C stops everything it started (docs/demo.md).
demo:
	bash scripts/demo.sh

# The same with a private Redis and RabbitMQ even when the machine runs its own.
demo-private:
	bash scripts/demo.sh --private

# Lint and the whole test suite (installs what is missing first).
test:
	bash scripts/test.sh

# The Kubernetes manifest checks and the end-to-end test in a real Prometheus.
e2e:
	bash scripts/test.sh tests/test_k8s.py tests/test_e2e.py

# Render the kustomize base (docs/kubernetes.md).
k8s:
	kubectl kustomize k8s/

# Regenerate rules, the PrometheusRule, the dashboards and their k8s copies from
# monitoring/config.yaml (add --check to only compare: docs/alerts.md).
generate:
	.venv/bin/python -m monitoring.generate

# Refresh requirements/lock.txt after changing a dependency in pyproject.toml (docs/development.md).
lock:
	bash scripts/lock.sh
