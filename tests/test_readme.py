"""The README and docs work as written for someone who followed the Quickstart (issue 15).

Fenced blocks marked with ``<!-- runnable -->`` on the line before them, in README.md and the
pages under docs/, are run from the repository root exactly as a reader would paste them:
shell blocks with ``bash -euo pipefail``, Python blocks with ``.venv/bin/python``. A
```` ```text ```` block right after a runnable block is its exact expected output. The only
change made to a block is its broker address: ``redis://localhost:6379`` becomes a private
redis-server (so the examples that publish never touch the machine's Redis) and the local
RabbitMQ URL becomes the test RabbitMQ. ``.venv/bin`` is taken off PATH, so a block that
silently relies on an activated venv fails.

Static checks cover what cannot be run (servers, clusters): every ``.venv/bin/X`` exists after
set-up, no shell line starts with a bare ``celery-queue-exporter`` (the console script lives
in ``.venv/bin``), every ``python -m`` module and every script named is there, and relative
links point at files and headings that exist.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from testsupport.paths import ROOT
from testsupport.redis_server import RedisServer

RUNNABLE = "<!-- runnable -->"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_LANGUAGES = {"bash", "sh", "shell"}
VENV_BIN = ROOT / ".venv" / "bin"
BLOCK_TIMEOUT = 120  # seconds; every runnable block is a one-shot command (e.g. --once)
#: Addresses in runnable blocks and what the test puts in their place.
LOCAL_REDIS = "redis://localhost:6379"
LOCAL_RABBITMQ = "amqp://guest:guest@localhost:5672//"

_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block of a Markdown page."""

    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    runnable: bool
    expected: str | None  # the ```text block that follows a runnable block, if any

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The page's fenced blocks in order, with their runnable mark and expected output."""
    lines = page.read_text(encoding="utf-8").splitlines()
    fences: list[tuple[int, int, str, str]] = []  # (opening line, closing line, language, body)
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        indent, language = match.groups()
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        body = "".join(line[len(indent) :] + "\n" for line in lines[index + 1 : end])
        fences.append((index, end, language, body))
        index = end + 1
    result = []
    for position, (start, end, language, body) in enumerate(fences):
        before = [line.strip() for line in lines[:start] if line.strip()]
        runnable = bool(before) and before[-1] == RUNNABLE
        expected = None
        if runnable and position + 1 < len(fences):
            next_start, _, next_language, next_body = fences[position + 1]
            if next_language == "text" and not any(x.strip() for x in lines[end + 1 : next_start]):
                expected = next_body
        result.append(Block(page, start + 1, language, body, runnable, expected))
    return result


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in blocks(page)]


def shell_lines(block: Block) -> list[str]:
    return [line.strip() for line in block.text.splitlines() if line.strip()]


def blocks_env() -> dict[str, str]:
    """The caller's environment without an activated venv or exporter settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_EXPORTER_")}
    env.pop("VIRTUAL_ENV", None)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != VENV_BIN]
    env["PATH"] = os.pathsep.join(path)
    return env


def run_block(block: Block, substitutions: dict[str, str]) -> subprocess.CompletedProcess:
    text = block.text
    for old, new in substitutions.items():
        text = text.replace(old, new)
    if block.language in SHELL_LANGUAGES:
        command = ["bash", "-euo", "pipefail", "-c", text]
    elif block.language == "python":
        command = [str(VENV_BIN / "python"), "-c", text]
    else:
        raise AssertionError(f"{block.where}: cannot run a {block.language!r} block")
    return subprocess.run(
        command,
        cwd=ROOT,
        env=blocks_env(),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )


RUNNABLE_PAGES = sorted({block.page for block in all_blocks() if block.runnable})


@pytest.mark.redis
@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
@pytest.mark.slow
def test_runnable_blocks_run_as_written(page: Path, redis_server: RedisServer, request) -> None:
    """Each page's blocks run in page order (later ones may rely on earlier ones) and leave the
    Redis as they found it."""
    substitutions = {LOCAL_REDIS: f"redis://127.0.0.1:{redis_server.port}"}
    runnable = [block for block in blocks(page) if block.runnable]
    for block in runnable:
        if LOCAL_RABBITMQ in block.text:
            substitutions[LOCAL_RABBITMQ] = request.getfixturevalue("rabbitmq_url")
        result = run_block(block, substitutions)
        assert result.returncode == 0, (
            f"{block.where} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        if block.expected is not None:
            assert result.stdout.splitlines() == block.expected.splitlines(), block.where
    assert redis_server.client().dbsize() == 0, "a runnable block left keys behind"


def test_the_readme_runs_a_scrape_and_shows_its_output() -> None:
    """The README's own example cannot lose its mark or its output unnoticed."""
    readme = [block for block in blocks(ROOT / "README.md") if block.runnable]
    scrapes = [block for block in readme if "--once" in block.text]
    assert len(scrapes) == 1
    assert scrapes[0].expected == (
        'celery_queue_messages{broker="redis",queue="evaluations",priority="0"} 1.0\n'
        'celery_queue_messages{broker="redis",queue="evaluations",priority="3"} 1.0\n'
        'celery_queue_messages{broker="redis",queue="evaluations",priority="9"} 1.0\n'
    )
    assert {block.language for block in readme} == {"bash", "python"}


def test_block_parser_pairs_a_runnable_block_with_the_output_after_it(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- runnable -->\n```bash\necho hi\n```\n\n```text\nhi\n```\n\n"
        "```bash\necho not marked\n```\n\n```text\nnot an expectation\n```\n",
        encoding="utf-8",
    )
    found = blocks(page)
    assert [(b.line, b.language, b.runnable, b.expected) for b in found] == [
        (4, "bash", True, "hi\n"),
        (8, "text", False, None),
        (12, "bash", False, None),
        (16, "text", False, None),
    ]


def test_every_venv_tool_named_in_the_docs_exists_after_set_up() -> None:
    named = {
        (page.relative_to(ROOT).as_posix(), tool)
        for page in PAGES
        for tool in re.findall(r"\.venv/bin/([\w.-]+)", page.read_text(encoding="utf-8"))
    }
    assert {tool for _, tool in named} >= {"python", "celery-queue-exporter"}
    missing = sorted((page, tool) for page, tool in named if not (VENV_BIN / tool).exists())
    assert missing == [], "run `bash scripts/bootstrap.sh`, or fix the docs"


def test_no_shell_line_calls_the_console_script_without_its_venv_path() -> None:
    """After the Quickstart `celery-queue-exporter` is in .venv/bin, not on PATH."""
    bare = [
        f"{block.where}: {line}"
        for block in all_blocks()
        if block.language in SHELL_LANGUAGES
        for line in shell_lines(block)
        if re.match(r"(\$\s+)?celery-queue-exporter(\s|$)", line)
    ]
    assert bare == []


def test_every_python_module_and_script_named_in_the_docs_exists() -> None:
    modules, scripts = set(), set()
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        modules |= {m.rstrip(".") for m in re.findall(r"python3? -m ([\w.]+)", text)}
        scripts |= set(re.findall(r"(?:bash|python3?)\s+((?:scripts|bench)/[\w./-]+)", text))
    assert "monitoring.generate" in modules and "scripts/run.sh" in scripts
    assert sorted(m for m in modules if not _importable(m)) == []
    assert sorted(s for s in scripts if not (ROOT / s).is_file()) == []


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def test_relative_links_point_at_existing_pages_and_headings() -> None:
    broken = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (page.parent / target).resolve() if target else page
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in headings(path):
                broken.append(f"{page.relative_to(ROOT)}: {target}#{anchor}")
    assert broken == []


def headings(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings (lower case, punctuation dropped, - for space)."""
    anchors = set()
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return anchors
