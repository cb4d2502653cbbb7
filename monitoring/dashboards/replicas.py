"""One line per subject on every panel, whatever the number of exporter replicas.

Each replica of the exporter in one job exports the same brokers, queues, workers and tasks;
Prometheus tells them apart only by ``instance`` (and ``pod`` under the operator). Every panel
query is rewritten so each selection is deduplicated before anything sums it: a range function
over a selector (``rate(x{...}[5m])``) becomes ``max without (instance, pod) (rate(...))`` and a
bare selector ``x{...}`` becomes ``max without (instance, pod) (x{...})``. The exporter's own
series (``up``, ``celery_exporter_*``) stay per instance: their subject is the replica.
"""

from __future__ import annotations

import re

from ..promql import REPLICA_LABELS

#: Series whose subject is one exporter process: left per instance.
PER_REPLICA = re.compile(r"^(up|celery_exporter_\w+)$")
_SELECTOR = re.compile(r"(?<![\w:])([a-zA-Z_:][\w:]*)?\{[^{}]*\}")
_FUNCTION = re.compile(r"([a-z_]+)\($")


def _wrap(text: str) -> str:
    return f"max without ({REPLICA_LABELS}) ({text})"


def _call_end(expr: str, open_paren: int) -> int:
    """Index just past the parenthesis closing the one at ``open_paren``."""
    depth = 0
    for index in range(open_paren, len(expr)):
        if expr[index] == "(":
            depth += 1
        elif expr[index] == ")":
            depth -= 1
            if depth == 0:
                return index + 1
    raise ValueError(f"unbalanced parentheses in {expr!r}")


def dedupe_replicas(expr: str) -> str:
    """``expr`` with every selection of the exporter's subjects deduplicated across replicas."""
    out: list[str] = []
    position = 0
    while True:
        found = _SELECTOR.search(expr, position)
        if found is None:
            out.append(expr[position:])
            return "".join(out)
        name = found.group(1) or ""
        if name and (PER_REPLICA.match(name) or name in {"by", "without", "on", "ignoring"}):
            out.append(expr[position : found.end()])
            position = found.end()
            continue
        if expr[found.end() : found.end() + 1] == "[":
            # a range selector: wrap the function call around it
            function = _FUNCTION.search(expr[position : found.start()])
            if function is None:
                raise ValueError(f"range selector outside a function in {expr!r}")
            start = position + function.start()
            end = _call_end(expr, position + function.end() - 1)
            out.append(expr[position:start])
            out.append(_wrap(expr[start:end]))
            position = end
            continue
        out.append(expr[position : found.start()])
        out.append(_wrap(found.group(0)))
        position = found.end()
