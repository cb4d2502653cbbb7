"""Scheduling on pytest-xdist workers: ``xdist_group`` under pytest 9.2, slow tests first.

pytest-xdist (3.8.0) marks a test's group by appending ``@GROUP`` to ``item._nodeid`` on each
worker, and its controller schedules every test whose node id ends in the same ``@GROUP`` on
one worker, in order. pytest 9.2 keeps a node's id in ``item._id`` (``nodeid`` is a property
over it), so xdist's assignment is lost without a word: a group's tests spread over workers,
and a module-scoped stack their tests share is built once per worker (and tests that build on
an earlier one's state fail). This plugin sets the id as xdist meant to, on workers running
``--dist loadgroup`` only; a test already suffixed (a later xdist) is left alone.

The controller hands out work in the order the workers collected it (groups of several tests
first, largest first). The tests marked ``slow`` are moved ahead of the others (a stable sort:
a group's tests keep their order), so the long ones start at once and the short ones fill the
workers at the end, instead of one long scenario starting last and running alone.

Registered from tests/conftest.py (``pytest_plugins``); tests/test_tiers.py checks it.
"""

from __future__ import annotations

import pytest
from _pytest.nodeid import coerce_node_id


def group_suffix(item: pytest.Item) -> str | None:
    """``@NAME`` for the item's xdist_group marks (names sorted and joined as xdist does)."""
    names = {
        str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        for mark in item.iter_markers("xdist_group")
    }
    return "@" + "_".join(sorted(names)) if names else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput") or not getattr(config.option, "loadgroup", False):
        return
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: slow first
    for item in items:
        suffix = group_suffix(item)
        if suffix is None or item.nodeid.endswith(suffix):
            continue
        item._id = coerce_node_id(item.nodeid + suffix)  # what xdist's item._nodeid meant
