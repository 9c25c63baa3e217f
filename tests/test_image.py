"""The production image runs (issue #14.1): the wheel is built from exactly what the Dockerfile
copies (the build context minus .dockerignore), installed in a clean venv, and the commands every
compose service runs start. There is no Docker engine here, so this is the image's build, step by
step, without Docker."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore rules as (is an exception `!`, regex), in order (the last match wins)."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((negate, re.compile(regex + "$")))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: a path is out if it or one of its parent directories matches last as
    an exclusion."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    out = False
    for negate, regex in rules:
        if any(regex.match(c) for c in candidates):
            out = not negate
    return out


def build_context(dest: Path) -> list[str]:
    """Copy what `COPY . .` takes from the context into dest; return the relative paths."""
    rules = dockerignore_patterns()
    copied = []
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT).as_posix()
        if path.is_dir() or ignored(rel, rules):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied.append(rel)
    return copied


def test_dockerfile_copies_the_tree_through_dockerignore_and_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copies = re.findall(r"^COPY\s+(?!--from)(.+)$", dockerfile, re.M)
    assert copies == [". ."], f"the build stage copies the context once, not a list: {copies}"
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in {"root", "0"}, "the final stage runs as a non-root user"
    assert users[-1] != "nobody", "a dedicated user owns its data directory"


def test_context_leaves_out_secrets_tests_and_local_state(tmp_path: Path) -> None:
    rules = dockerignore_patterns()
    for path in (
        ".env",
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "bench/throughput.py",
        "workers/__pycache__/app.cpython-311.pyc",
        "secrets/xero_client_secret",
    ):
        assert ignored(path, rules), f"{path} must not reach the image"
    for path in (
        "pyproject.toml",
        "README.md",
        "relay/app.py",
        "workers/app.py",
        "schemas/job.schema.json",
    ):
        assert not ignored(path, rules), f"{path} is needed in the image"


def test_image_build_installs_and_every_service_command_starts(tmp_path: Path) -> None:
    context = tmp_path / "context"
    copied = build_context(context)
    assert "relay/app.py" in copied
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(wheels), str(context)],
        check=True,
        cwd=tmp_path,
        timeout=240,
    )
    (wheel,) = wheels.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "-q",
            "--disable-pip-version-check",
            "install",
            str(wheel),
        ],
        check=True,
        timeout=400,
    )
    workdir = tmp_path / "run"  # no .env, no source tree on the path: only the installed wheel
    workdir.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ZXS_DATA_DIR": str(tmp_path / "data"),
        "LANG": "C.UTF-8",
    }
    commands = [
        [str(venv / "bin" / "zxsync"), "--help"],
        [str(venv / "bin" / "zxsync"), "relay", "--help"],
        [str(venv / "bin" / "zxsync"), "health", "--help"],
        [str(venv / "bin" / "python"), "-c", "import workers.app, relay.app"],
        [str(venv / "bin" / "celery"), "-A", "workers.app", "beat", "--help"],
    ]
    for command in commands:
        done = subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{command[1:]} failed:\n{done.stderr[-2000:]}"
    listing = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "show", "-f", "zoho-xero-sync"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert "tests/" not in listing and "bench/" not in listing
    assert os.path.exists(venv / "bin" / "zxsync")
