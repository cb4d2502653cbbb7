"""Type-check dashboard JSON against Grafana's published schema (npm ``@grafana/schema``).

Each dashboard is written as a typed TypeScript literal (``const d: Dashboard = {...}``), its
panel plugin options and custom field config as ``{...} satisfies <the plugin's type>``, and
``tsc --strict --noEmit`` from tests/node compiles it. Every error comes back with its code and
the JSON path it points at (the literal is written one key per line, so a line is a path).

Two kinds of error are type artefacts, not schema violations, and are allowed by
``ALLOWED`` (matched by error code and path, nothing else):

* **enum strings**: the schema declares some fields as TypeScript string enums
  (``FieldColorModeId``, ``ThresholdsMode``, ``MappingType``, the plugins' display modes).
  JSON can only hold the enum's string value, and TypeScript does not accept a string literal
  for an enum type. Allowed only when the literal is one of the enum's declared values, read
  from the schema's own ``.d.ts`` files, so a typo still fails.
* **panel links**: the schema types ``Panel.links`` as ``DashboardLink`` (the dashboard's
  header links, with ``asDropdown``, ``icon``, ``tags``...), while Grafana stores and reads
  panel links as data links (``title``, ``url``, ``targetBlank``). Allowed only as "missing
  properties" errors on a ``panels[i].links[j]`` element; such a link is then checked
  against the type the schema's v2 dashboard API declares for panel links (``DataLink``).

tsc reports one error per object literal where several could apply (a legacy key beside an
enum artefact goes unreported), so the check runs again with each allowed artefact masked
(``as never``, which no sibling type absorbs, on a checked enum value, and on a link
``satisfies DataLink``) until no new artefact
turns up: whatever is left is a schema violation.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testsupport.paths import ROOT

NODE_DIR = ROOT / "tests" / "node"
TSC = NODE_DIR / "node_modules" / ".bin" / "tsc"
SCHEMA_TYPES = NODE_DIR / "node_modules" / "@grafana" / "schema" / "dist" / "types"

_PANELCFG = "@grafana/schema/dist/esm/raw/composable/{0}/panelcfg/x/{1}PanelCfg_types.gen"
#: Per panel type: (module, options type, custom field config type or None).
PLUGIN_TYPES: dict[str, tuple[str, str, str | None]] = {
    "timeseries": (_PANELCFG.format("timeseries", "TimeSeries"), "Options", "FieldConfig"),
    "stat": (_PANELCFG.format("stat", "Stat"), "Options", None),
    "bargauge": (_PANELCFG.format("bargauge", "BarGauge"), "Options", None),
    "heatmap": (_PANELCFG.format("heatmap", "Heatmap"), "Options", "FieldConfig"),
    # the table's panelcfg Options is deprecated in favour of the common TableOptions
    "table": ("@grafana/schema", "TableOptions", "TableFieldOptions"),
}

#: tsc error codes: a value not assignable to the declared type; missing properties.
NOT_ASSIGNABLE = "TS2322"
MISSING_PROPERTIES = ("TS2739", "TS2740", "TS2741")

#: (error codes, path pattern, category). ``[*]`` is any index; nothing else is a wildcard.
ALLOWED: list[tuple[tuple[str, ...], str, str]] = [
    ((NOT_ASSIGNABLE,), "panels[*].fieldConfig.defaults.color.mode", "enum"),
    ((NOT_ASSIGNABLE,), "panels[*].fieldConfig.defaults.thresholds.mode", "enum"),
    ((NOT_ASSIGNABLE,), "panels[*].fieldConfig.defaults.mappings[*].type", "enum"),
    ((NOT_ASSIGNABLE,), "panels[*].fieldConfig.defaults.custom.*", "enum"),
    ((NOT_ASSIGNABLE,), "panels[*].options.*", "enum"),
    (MISSING_PROPERTIES, "panels[*].links[*]", "panel link"),
]


@dataclass(frozen=True)
class TscError:
    """One tsc error: its code, ``slug:json.path`` and tsc's message."""

    code: str
    path: str
    message: str


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Writer:
    """Writes one dashboard as a TypeScript literal, one key per line, remembering each
    line's JSON path. A masked leaf (a checked enum string) is written ``as never``, a masked
    object (a panel link) ``satisfies DataLink`` and then ``as never``."""

    def __init__(self, first_line: int, panel_types: dict[str, str], masks: set[str]) -> None:
        self.panel_types = panel_types  # "panels[3]" -> "timeseries"
        self.masks = masks  # paths of allowed artefacts
        self.lines: list[str] = []
        self.paths: dict[int, str] = {}
        self.first_line = first_line

    def put(self, text: str, path: str) -> None:
        self.paths[self.first_line + len(self.lines)] = path
        self.lines.append(text)

    def value(self, value: Any, path: str, indent: str, lead: str, tail: str) -> None:
        """``lead`` (``"key": `` or nothing) and ``value`` then ``tail`` (``,`` or nothing)."""
        inner = indent + "  "
        masked = path in self.masks
        if isinstance(value, dict) and value:
            self.put(f"{indent}{lead}{'(' if masked else ''}{{", path)
            items = list(value.items())
            for i, (key, item) in enumerate(items):
                comma = "," if i < len(items) - 1 else ""
                self.value(item, _key(path, key), inner, f"{json.dumps(key)}: ", comma)
            close = " satisfies DataLink) as never" if masked else self.satisfies(path)
            self.put(f"{indent}}}{close}{tail}", path)
        elif isinstance(value, list) and value:
            self.put(f"{indent}{lead}[", path)
            for i, item in enumerate(value):
                comma = "," if i < len(value) - 1 else ""
                self.value(item, f"{path}[{i}]", inner, "", comma)
            self.put(f"{indent}]{tail}", path)
        else:
            close = " as never" if masked else self.satisfies(path)
            self.put(f"{indent}{lead}{json.dumps(value)}{close}{tail}", path)

    def satisfies(self, path: str) -> str:
        """`` satisfies <plugin type>`` after a panel's options and custom field config."""
        match = re.fullmatch(r"(panels\[\d+\])\.(options|fieldConfig\.defaults\.custom)", path)
        if not match or match.group(1) not in self.panel_types:
            return ""
        kind = self.panel_types[match.group(1)]
        if kind not in PLUGIN_TYPES:
            return ""
        options, custom = PLUGIN_TYPES[kind][1:]
        name = options if match.group(2) == "options" else custom
        return f" satisfies {_alias(kind, name)}" if name else ""


def _alias(kind: str, name: str) -> str:
    return f"{kind.capitalize()}{name}"


def _imports() -> list[str]:
    lines = [
        "import type { Dashboard } from '@grafana/schema';",
        "import type { DataLink } from '@grafana/schema/apis/dashboard.grafana.app/v2';",
    ]
    for kind, (module, options, custom) in PLUGIN_TYPES.items():
        names = [n for n in (options, custom) if n]
        aliases = ", ".join(f"{n} as {_alias(kind, n)}" for n in names)
        lines.append(f"import type {{ {aliases} }} from '{module}';")
    return lines


def to_typescript(
    boards: dict[str, dict[str, Any]], masks: Collection[str] = ()
) -> tuple[str, dict[str, dict[int, str]]]:
    """The TypeScript source, and per dashboard the JSON path of each of its lines;
    ``masks`` (``slug:path``) are artefacts already allowed, written so tsc skips them."""
    lines = _imports()
    paths: dict[str, dict[int, str]] = {}
    for slug, board in boards.items():
        lines.append("")
        kinds = {f"panels[{i}]": str(p.get("type")) for i, p in enumerate(board.get("panels", []))}
        own = {mask.partition(":")[2] for mask in masks if mask.partition(":")[0] == slug}
        writer = _Writer(len(lines) + 1, kinds, own)
        writer.value(board, "", "", f"export const {_ident(slug)}: Dashboard = ", ";")
        lines.extend(writer.lines)
        paths[slug] = writer.paths
    return "\n".join(lines) + "\n", paths


def _ident(slug: str) -> str:
    return "dashboard_" + re.sub(r"\W", "_", slug)


_ERROR = re.compile(r"^.*?\.ts\((\d+),(\d+)\): error (TS\d+): (.*)$")


def run_tsc(boards: dict[str, dict[str, Any]], masks: Collection[str] = ()) -> list[TscError]:
    """Every tsc error for the dashboards, with the JSON path ``slug:path`` it points at."""
    source, paths = to_typescript(boards, masks)
    owner = {line: slug for slug, lines in paths.items() for line in lines}
    with tempfile.TemporaryDirectory(prefix="cqe-schema-") as tmp:
        os.symlink(NODE_DIR / "node_modules", Path(tmp) / "node_modules")
        (Path(tmp) / "dashboards.ts").write_text(source, encoding="utf-8")
        result = subprocess.run(
            [
                str(TSC),
                "--strict",
                "--noEmit",
                "--pretty",
                "false",
                "--skipLibCheck",
                "--noErrorTruncation",
                "--target",
                "es2022",
                "--module",
                "esnext",
                "--moduleResolution",
                "bundler",
                "dashboards.ts",
            ],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    errors: list[TscError] = []
    for text in result.stdout.splitlines():
        match = _ERROR.match(text)
        if match:
            line = int(match.group(1))
            slug = owner.get(line, "<imports>")
            path = paths.get(slug, {}).get(line, "")
            errors.append(TscError(match.group(3), f"{slug}:{path}", match.group(4)))
        elif errors and text.startswith(" "):
            last = errors[-1]
            errors[-1] = TscError(last.code, last.path, f"{last.message}\n{text}")
    if result.returncode != 0 and not errors:
        raise RuntimeError(f"tsc failed without a parsable error:\n{result.stdout}{result.stderr}")
    return errors


# --- the allow-list -------------------------------------------------------------------------


def _pattern(glob: str) -> re.Pattern[str]:
    regex = re.escape(glob).replace(r"\[\*\]", r"\[\d+\]").replace(r"\*", r"[^:]+")
    return re.compile(rf"[^:]+:{regex}")


def string_enums() -> dict[str, dict[str, str]]:
    """Every string enum the schema declares: member name -> value (from the .d.ts files)."""
    enums: dict[str, dict[str, str]] = {}
    for dts in SCHEMA_TYPES.rglob("*.d.ts"):
        text = dts.read_text(encoding="utf-8")
        for name, body in re.findall(r"export declare enum (\w+) \{([^}]*)\}", text):
            members = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', body))
            if members:
                enums.setdefault(name, {}).update(members)
    return enums


#: ``Type '"value"' is not assignable to type 'Enum'`` (or ``'Enum | undefined'`` for an
#: optional field, or ``'Enum.A | Enum.B'`` for a union of members).
_ENUM_MISMATCH = re.compile(r"^Type '\"([^\"]*)\"' is not assignable to type '([^']*)'\.$")


def _enum_accepts(target: str, value: str, enums: dict[str, dict[str, str]]) -> bool:
    """Whether the TypeScript type ``target`` is (a union of members of) a string enum that
    has ``value`` among its values."""
    accepted = set()
    for part in target.split(" | "):
        if part == "undefined":
            continue
        *_, owner, last = ["", *part.split(".")]
        if last in enums:  # the whole enum
            accepted |= set(enums[last].values())
        elif owner in enums and last in enums[owner]:  # one member
            accepted.add(enums[owner][last])
        else:
            return False
    return value in accepted


def is_allowed(error: TscError, enums: dict[str, dict[str, str]]) -> bool:
    """Whether ``error`` is one of the documented type artefacts of ``ALLOWED``."""
    for codes, glob, category in ALLOWED:
        if error.code not in codes or not _pattern(glob).fullmatch(error.path):
            continue
        if category == "panel link":
            return bool(re.search(r"\.links\[\d+\]$", error.path))
        match = _ENUM_MISMATCH.match(error.message.splitlines()[0])
        if match and _enum_accepts(match.group(2), match.group(1), enums):
            return True
    return False


#: Passes of tsc at most: each masks the artefacts found so far (two suffice in practice).
MAX_PASSES = 5


def schema_errors(boards: dict[str, dict[str, Any]]) -> list[TscError]:
    """tsc errors that are not documented artefacts: the schema violations."""
    enums = string_enums()
    masks: set[str] = set()
    for _ in range(MAX_PASSES):
        errors = run_tsc(boards, masks)
        violations = [error for error in errors if not is_allowed(error, enums)]
        allowed = {error.path for error in errors} - {error.path for error in violations}
        if not allowed - masks:
            return violations
        masks |= allowed
    raise RuntimeError(f"artefacts still turning up after {MAX_PASSES} tsc passes")
