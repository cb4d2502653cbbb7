"""Metric families whose sample lines are rendered as they are built, with label text cached
across scrapes, so a scrape of 1,000 queues x 10 levels does not build 25,000 Sample objects
and escape 25,000 label sets only to turn them into text (issue 25).

A LineFamily is still a prometheus_client Metric: ``samples`` is built on demand from the same
readings (by a separate, plain path), which is what prometheus_client's own renderer and the
tests use; exposition.py writes ``lines`` as they are. tests/test_exposition.py checks that both
say the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import compress
from operator import is_not, ne
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from . import catalogue as cat
from .catalogue import MetricSpec
from .exposition import escape_label_value, format_value
from .snapshot import LevelReading, UrgencyReading

MESSAGES = cat.QUEUE_MESSAGES.family_name
AGE = cat.QUEUE_OLDEST_MESSAGE_AGE.family_name
UNSTAMPED = cat.QUEUE_OLDEST_MESSAGE_UNSTAMPED.family_name

#: (labels, value) pairs of a family, in the order of its lines.
Rows = Callable[[], Iterable[tuple[dict[str, str], float]]]


class LineFamily(Metric):
    """A gauge (or counter) family holding its rendered sample lines; samples built only when
    asked for. A counter's lines and samples are named ``<family>_total``."""

    def __init__(self, spec: MetricSpec, lines: list[str], rows: Rows, kind: str = "gauge") -> None:
        self._rows = rows
        self._samples: list[Sample] | None = None
        super().__init__(spec.family_name, spec.help, kind)
        #: The rendered lines; None once samples were replaced (render those instead).
        self.lines: list[str] | None = lines

    @property  # type: ignore[override]
    def samples(self) -> list[Sample]:
        if self._samples is None:
            name = self.name + "_total" if self.type == "counter" else self.name
            self._samples = [Sample(name, labels, value) for labels, value in self._rows()]
        return self._samples

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        """Samples set from outside (static_labels.py adds labels this way): the rendered
        lines no longer say the same, so the family is rendered from its samples."""
        self._samples = value or None
        self.lines = None

    def add_labels_first(self, labels: dict[str, str]) -> None:
        """Put ``labels`` first on every sample (static_labels.py), in the lines and in the
        samples alike, without falling back to rendering the samples. Every line of a
        LineFamily has labels, so its first ``{`` opens them (a metric name holds none)."""
        if not labels:
            return
        text = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items()) + ","
        if self.lines is not None:
            self.lines = [line.replace("{", "{" + text, 1) for line in self.lines]
        rows = self._rows
        self._rows = lambda: (({**labels, **own}, value) for own, value in rows())
        self._samples = None


class Prefixes:
    """``name{label="value",...} `` per label values, kept for the label sets of the last
    scrape only (so bounded by what is exported), escaped once instead of every scrape."""

    def __init__(self, name: str, labelnames: Iterable[str]) -> None:
        self.name = name
        self.labelnames = tuple(labelnames)
        #: label values -> [prefix, last value, last line]
        self._old: dict[tuple[str, ...], list] = {}
        self._new: dict[tuple[str, ...], list] = {}

    def start(self) -> None:
        """A new scrape: what the previous one used stays available, the rest is dropped."""
        self._old, self._new = self._new or self._old, {}

    def line(self, values: tuple[str, ...], value: float) -> str:
        """The sample line; the same as last scrape's when the value did not change."""
        entry = self._new.get(values)
        if entry is None:
            entry = self._old.get(values)
            if entry is None:
                inner = ",".join(
                    f'{k}="{escape_label_value(v)}"'
                    for k, v in zip(self.labelnames, values, strict=True)
                )
                entry = [f"{self.name}{{{inner}}} ", _UNSET, ""]
            self._new[values] = entry
        if entry[1] != value:
            entry[1], entry[2] = value, f"{entry[0]}{format_value(value)}\n"
        return entry[2]


#: Never equal to a value: a new entry has no line yet.
_UNSET = object()


class SameLines:
    """Lines of items a producer hands over again as the same objects while unchanged (the
    urgency resolver's cached marks): only items not at the same place as last time are
    rendered again, found at C speed."""

    def __init__(self, render_one: Callable[[Any], str]) -> None:
        self._render = render_one
        self._items: list[Any] = []
        self._lines: list[str] = []

    def render(self, items: list[Any]) -> list[str]:
        count = len(items)
        if len(self._items) == count:
            changed: Iterable[int] = list(compress(range(count), map(is_not, items, self._items)))
        else:
            self._lines = [""] * count
            changed = range(count)
        lines = self._lines
        for i in changed:
            lines[i] = self._render(items[i])
        self._items = list(items)
        return lines


class QueueColumn:
    """One per-queue family's lines for one broker (labels broker and queue): the label text
    built once per watched list, a line rendered again only where its value changed (found
    at C speed with ``map(ne, ...)``), so 5,000 queues whose reserved count stays 0 cost no
    Python code per queue."""

    def __init__(self, name: str, broker: str) -> None:
        self.name = name
        self.broker = broker
        self._queues: list[str] = []
        self._values: list[Any] = []
        self._heads: list[str] = []
        #: Per queue its line, "" where the value is None (not reported).
        self._lines: list[str] = []

    def render(self, queues: list[str], values: list[Any]) -> list[str]:
        """The lines of ``values`` (numbers or booleans, None: no line), per queue."""
        count = len(queues)
        if queues != self._queues:
            broker = escape_label_value(self.broker)
            self._heads = [
                f'{self.name}{{broker="{broker}",queue="{escape_label_value(q)}"}} ' for q in queues
            ]
            self._queues, self._lines = list(queues), [""] * count
            changed: Iterable[int] = range(count)
        else:
            changed = list(compress(range(count), map(ne, values, self._values)))
        heads, lines = self._heads, self._lines
        for i in changed:
            value = values[i]
            lines[i] = "" if value is None else f"{heads[i]}{format_value(value)}\n"
        self._values = list(values)
        return lines


class Lines:
    """One family's lines for one scrape, from label values and values."""

    def __init__(self, prefixes: Prefixes, spec: MetricSpec) -> None:
        self.prefixes = prefixes
        self.spec = spec
        self.lines: list[str] = []
        #: Label values and values of the lines, for samples on demand (two lists: no
        #: tuple per sample for the garbage collector to track).
        self.labels: list[tuple[str, ...]] = []
        self.values: list[float] = []
        #: (broker, queues, values) added by add_column, for samples on demand.
        self.columns: list[tuple[str, list[str], list[Any]]] = []

    def add_column(self, column: QueueColumn, queues: list[str], values: list[Any]) -> None:
        """One sample per queue of ``column``'s broker whose value is not None."""
        self.lines.extend(filter(None, column.render(queues, values)))
        self.columns.append((column.broker, queues, values))

    def add(self, values: tuple[str, ...], value: float | None) -> None:
        """One sample; None (not reported) adds none."""
        if value is None:
            return
        self.labels.append(values)
        self.values.append(value)
        self.lines.append(self.prefixes.line(values, value))

    def family(self, kind: str = "gauge") -> LineFamily:
        """The family of these lines (``kind``: gauge or counter, as the prefixes' name)."""
        labels, values, names = self.labels, self.values, self.prefixes.labelnames
        columns = self.columns

        def rows() -> Iterator[tuple[dict[str, str], float]]:
            for label_values, value in zip(labels, values, strict=True):
                yield dict(zip(names, label_values, strict=True)), value
            for broker, queues, column in columns:
                for queue, value in zip(queues, column, strict=True):
                    if value is not None:
                        yield {"broker": broker, "queue": queue}, float(value)

        return LineFamily(self.spec, self.lines, rows, kind)


class LevelLines:
    """The per-level lines of one broker (depth, head age, unstamped head). A reading the
    inspector hands over again unchanged (the same LevelReading object, at the same place:
    the Redis inspector reuses those of levels whose depth did not change and that have no
    head) keeps its rendered lines; which ones changed is found at C speed (``map`` of
    ``is not`` over last scrape's list), so only changed levels cost Python code. Label text
    is escaped once per level while the level is exported."""

    def __init__(self, broker: str) -> None:
        self.broker = broker
        #: Last scrape's readings and, at the same places, their lines (None or "": no such
        #: line).
        self._levels: list[LevelReading] = []
        self._messages: list[str] = []
        self._ages: list[str | None] = []
        self._unstamped: list[str | None] = []
        #: (queue, priority) -> label text; rebuilt from the current levels when it holds
        #: more than twice as many as a scrape exports (levels no longer watched).
        self._inner: dict[tuple[str, str | None], str] = {}

    def render(
        self,
        levels: list[LevelReading],
        messages: list[str],
        ages: list[str],
        unstamped: list[str],
    ) -> None:
        """Append each level's lines to the three families' lines."""
        count = len(levels)
        if len(self._levels) == count:
            changed: Iterable[int] = list(compress(range(count), map(is_not, levels, self._levels)))
        else:
            self._messages, self._ages, self._unstamped = (
                [""] * count,
                [None] * count,
                [None] * count,
            )
            changed = range(count)
        inner = self._inner
        m_lines, a_lines, u_lines = self._messages, self._ages, self._unstamped
        for i in changed:
            level = levels[i]
            key = (level.queue, level.priority)
            text = inner.get(key)
            if text is None:
                text = inner[key] = self._labels(level)
            entry = _level_lines(level, text)
            m_lines[i], a_lines[i], u_lines[i] = entry[2], entry[3], entry[4]
        self._levels = list(levels)
        messages.extend(filter(None, m_lines))
        ages.extend(filter(None, a_lines))  # type: ignore[arg-type]
        unstamped.extend(filter(None, u_lines))  # type: ignore[arg-type]
        if len(inner) > 2 * count + 64:
            self._inner = {
                (lv.queue, lv.priority): inner[(lv.queue, lv.priority)]
                for lv in levels
                if (lv.queue, lv.priority) in inner
            }

    def _labels(self, level: LevelReading) -> str:
        broker, queue = escape_label_value(self.broker), escape_label_value(level.queue)
        text = f'broker="{broker}",queue="{queue}"'
        if level.priority is not None:
            text += f',priority="{escape_label_value(level.priority)}"'
        return text


_Entry = tuple[LevelReading, str, str, str | None, str | None]


def _level_lines(level: LevelReading, inner: str) -> _Entry:
    age = level.oldest_age_seconds
    flag = level.unstamped
    return (
        level,
        inner,
        # An empty level that is absent while empty (LevelReading.zero_absent): no line.
        ""
        if level.zero_absent and not level.messages
        else f"{MESSAGES}{{{inner}}} {format_value(level.messages)}\n",
        None if age is None else f"{AGE}{{{inner}}} {format_value(age)}\n",
        None if flag is None else f"{UNSTAMPED}{{{inner}}} {'1.0' if flag else '0.0'}\n",
    )


def level_rows(
    per_broker: list[tuple[str, list[LevelReading]]], field: str
) -> Iterator[tuple[dict[str, str], float]]:
    """The samples' (labels, value) of one per-level family, built the plain way."""
    for broker, levels in per_broker:
        for level in levels:
            value = getattr(level, field)
            if value is None or (field == "messages" and not value and level.zero_absent):
                continue
            if level.priority is None:
                labels = {"broker": broker, "queue": level.queue}
            else:
                labels = {"broker": broker, "queue": level.queue, "priority": level.priority}
            yield labels, float(value)


def urgency_line(broker: str) -> Callable[[UrgencyReading], str]:
    """Renders one urgency mark of ``broker``."""
    name = cat.QUEUE_PRIORITY_URGENCY.family_name
    escaped = escape_label_value(broker)

    def render(mark: UrgencyReading) -> str:
        queue, priority = escape_label_value(mark.queue), escape_label_value(mark.priority)
        urgency = escape_label_value(mark.urgency)
        labels = f'broker="{escaped}",queue="{queue}",priority="{priority}",urgency="{urgency}"'
        return f"{name}{{{labels}}} {format_value(mark.rank)}\n"

    return render


def urgency_rows(
    per_broker: list[tuple[str, list[UrgencyReading]]],
) -> Iterator[tuple[dict[str, str], float]]:
    """The urgency samples' (labels, value), built the plain way."""
    for broker, marks in per_broker:
        for mark in marks:
            labels = {
                "broker": broker,
                "queue": mark.queue,
                "priority": mark.priority,
                "urgency": mark.urgency,
            }
            yield labels, float(mark.rank)
