"""requirements/lock.txt (written by scripts/lock.sh) pins every dependency pyproject.toml
names, at a version inside pyproject's range: a dependency added or re-ranged without
refreshing the lock fails here, not on a new machine."""

from __future__ import annotations

import re

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from testsupport.paths import ROOT

LOCK = ROOT / "requirements" / "lock.txt"
LOCKED_EXTRAS = ("test", "loadtest")  # scripts/lock.sh installs these
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;]+)$")


def locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"not an exact pin in {LOCK.name}: {line!r}"
        name = canonicalize_name(match["name"])
        assert name not in pins, f"{name} pinned twice"
        pins[name] = Version(match["version"])
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in LOCKED_EXTRAS:
        requirements += project["optional-dependencies"][extra]
    return [Requirement(text) for text in requirements]


def test_every_declared_dependency_is_pinned_inside_its_range():
    pins = locked()
    problems = []
    for requirement in declared():
        version = pins.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement.name}: not in the lock")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}: locked {version} is outside {requirement}")
    assert problems == [], "run `bash scripts/lock.sh` and commit requirements/lock.txt"


def test_the_lock_pins_the_build_tools_and_not_the_package_itself():
    pins = locked()
    assert {"pip", "setuptools", "wheel"} <= set(pins)
    assert "celery-queue-exporter" not in pins
