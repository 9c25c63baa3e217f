"""Flower is not an open control plane (issue #14.5): the example password is refused, it
listens on localhost by default, and /metrics needs the same login as the rest."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sandbox.server import free_port
from zxsync.ops import flower_auth_problem

GOOD = "ops:a-long-operator-password"


@pytest.mark.parametrize(
    "auth",
    [
        "",
        "ops:change-me",
        "ops:CHANGE-ME",
        "ops",
        "ops:",
        ":password-long-enough",
        "ops:short",
        f"{GOOD},admin:change-me",
    ],
)
def test_flower_refuses_missing_example_or_weak_credentials(auth: str) -> None:
    assert flower_auth_problem(auth)


def test_flower_accepts_real_credentials() -> None:
    assert flower_auth_problem(GOOD) is None


@pytest.mark.integration
def test_the_example_password_stops_zxsync_flower_with_one_line(tmp_path: object) -> None:
    env = {**os.environ, "FLOWER_BASIC_AUTH": "ops:change-me", "REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run(
        [sys.executable, "-m", "zxsync.cli", "flower"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout.strip().splitlines() == [
        "FLOWER_BASIC_AUTH: the password of 'ops' is the example's; choose your own"
    ]


def _get(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # not listening (yet)


@pytest.mark.integration
def test_metrics_need_the_login_and_flower_listens_on_localhost(
    redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    (tmp_path / "flower_auth").write_text(GOOD + "\n")  # as a Docker secret would hold it
    env = {
        **os.environ,
        "FLOWER_BASIC_AUTH_FILE": str(tmp_path / "flower_auth"),
        "REDIS_URL": redis_url,
    }
    env.pop("FLOWER_BASIC_AUTH", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "zxsync.cli", "flower", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while _get(f"{base}/healthcheck") != 200:
            assert process.poll() is None and time.monotonic() < deadline, "flower did not start"
            time.sleep(0.3)
        assert _get(f"{base}/metrics") == 401
        assert _get(f"{base}/metrics", "ops:wrong-password-here") == 401
        assert _get(f"{base}/metrics", GOOD) == 200
        assert _get(f"{base}/api/workers") == 401
        listening = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True
        ).stdout
        local_addresses = [line.split()[3] for line in listening.splitlines()]
        assert local_addresses == [f"127.0.0.1:{port}"]
    finally:
        process.terminate()
        process.wait(timeout=20)
