"""Commands that do not mislead (issue #14.8): a mistake ends in one line naming the setting or
field at fault and a non-zero exit; no command starts an empty Redis to answer from; what a
command starts (embedded Redis, sandboxes) stops with it, SIGTERM included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = json.dumps([{"name": "acme", "xero_tenant_id": "t", "zoho_org_id": "o"}])


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ZXS_", "REDIS_"))}
    return {
        **clean,
        "ZXS_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "200",
        **values,
    }


def zxsync(tmp_path: Path, *args: str, **values: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zxsync.cli", *args],
        cwd=tmp_path,
        env=env(tmp_path, **values),
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    output = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode != 0, output
    assert len(output) == 1 and "Traceback" not in done.stderr, output
    return output[0]


def redis_servers_under(path: Path) -> list[int]:
    """redis-server processes whose working directory is under `path`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if b"redis-server" in cmd and cwd.startswith(str(path)):
            found.append(int(pid))
    return found


def test_enqueue_for_an_unknown_connection_is_rejected(tmp_path: Path, redis_url: str) -> None:
    done = zxsync(
        tmp_path,
        "enqueue",
        "--connection",
        "nope",
        "--record-id",
        "1",
        REDIS_URL=redis_url,
        ZXS_CONNECTIONS=CONNECTIONS,
    )
    assert one_line(done) == "rejected connection: unknown connection 'nope'"
    assert done.returncode == 2


@pytest.mark.parametrize(
    "command",
    [
        ["dlq", "list"],
        ["status", "1"],
        ["enqueue", "--connection", "acme", "--record-id", "1"],
        ["relay"],
    ],
)
def test_without_redis_url_no_empty_redis_is_started_to_answer(
    tmp_path: Path, command: list[str]
) -> None:
    done = zxsync(tmp_path, *command, ZXS_CONNECTIONS=CONNECTIONS)
    line = one_line(done)
    assert line.startswith("error: REDIS_URL is not set and no embedded Redis is running")
    assert not (tmp_path / "data" / "redis.url").exists()
    assert redis_servers_under(tmp_path) == []


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"ZXS_CONNECTIONS": "[{"}, "error: ZXS_CONNECTIONS is not valid JSON"),
        (
            {
                "ZXS_CONNECTIONS": json.dumps(
                    [
                        {
                            "name": "acme",
                            "zoho_org_id": "o",
                            "zoho_refresh_token": "1000.secret-token",
                        }
                    ]
                )
            },
            "error: ZXS_CONNECTIONS: connection 'acme' (item 0), field xero_tenant_id",
        ),
        ({"ZXS_SMTP_PORT": "1000.secret-token"}, "error: ZXS_SMTP_PORT: Input should be"),
        (
            {"ZXS_CONNECTIONS_FILE": "/nonexistent/connections.json"},
            "error: ZXS_CONNECTIONS_FILE: cannot read /nonexistent/connections.json",
        ),
    ],
)
def test_configuration_mistakes_are_one_line_naming_the_setting(
    tmp_path: Path, redis_url: str, variables: dict[str, str], expected: str
) -> None:
    done = zxsync(tmp_path, "dlq", "list", REDIS_URL=redis_url, **variables)
    line = one_line(done)
    assert line.startswith(expected) and "secret-token" not in line
    assert done.returncode == 2


def _start(tmp_path: Path, args: list[str], **values: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "zxsync.cli", *args],
        cwd=tmp_path,
        env=env(tmp_path, **values),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_line(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    for line in process.stdout:
        if line.startswith(prefix):
            return line.strip()
        assert time.monotonic() < deadline
    raise AssertionError(f"no line starting {prefix!r}")


def test_sandbox_uses_redis_url_and_stops_on_sigterm(tmp_path: Path, redis_url: str) -> None:
    process = _start(tmp_path, ["sandbox", "--invoices", "1"], REDIS_URL=redis_url)
    try:
        assert _wait_for_line(process, "REDIS_URL=") == f"REDIS_URL={redis_url}"
        children = subprocess.run(
            ["pgrep", "-P", str(process.pid)], capture_output=True, text=True
        ).stdout.split()
        assert children == [], "no embedded Redis when REDIS_URL is set"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_a_sigterm_while_the_sandbox_prints_its_settings_still_stops_it_cleanly(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """The tests above signal the sandbox once its first setting line is out; on a loaded
    machine it was still printing the others, and the SIGTERM ended it with 130, not 0. Here
    the signal comes exactly then, in process (the real handler, the real stack)."""
    from typer.testing import CliRunner

    import zxsync.cli as cli

    printed = cli.console.print

    def print_then_terminated(*args: object, **kwargs: object) -> None:
        printed(*args, **kwargs)  # type: ignore[arg-type]
        if str(args[0]).startswith("REDIS_URL="):
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(cli.console, "print", print_then_terminated)
    monkeypatch.setenv("REDIS_URL", redis_url)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        result = CliRunner().invoke(cli.app, ["sandbox", "--invoices", "1"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 0, result.output
    assert f"REDIS_URL={redis_url}" in result.output and "stopped" in result.output


def test_sandbox_and_worker_stop_the_embedded_redis_they_started(tmp_path: Path) -> None:
    sandbox = _start(tmp_path, ["sandbox", "--invoices", "1"])
    try:
        url = _wait_for_line(sandbox, "REDIS_URL=").removeprefix("REDIS_URL=")
        assert redis.Redis.from_url(url).ping()
    finally:
        sandbox.send_signal(signal.SIGTERM)
        assert sandbox.wait(timeout=20) == 0
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()

    worker = _start(tmp_path, ["worker", "-c", "1"], ZXS_CONNECTIONS="[]")
    try:
        _wait_for_line(worker, "[")  # celery's first log line: it is running
        marker = tmp_path / "data" / "redis.url"
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        url = marker.read_text().strip()
        assert redis.Redis.from_url(url).ping()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    assert redis_servers_under(tmp_path) == []


def test_health_names_the_dependency_that_does_not_answer(tmp_path: Path, redis_url: str) -> None:
    schedule = tmp_path / "celerybeat-schedule"
    assert one_line(zxsync(tmp_path, "health", "--redis")) == "unhealthy: REDIS_URL is not set"
    down = zxsync(tmp_path, "health", "--redis", REDIS_URL="redis://127.0.0.1:1/0")
    assert one_line(down).startswith("unhealthy: Redis (REDIS_URL) does not answer")
    missing = zxsync(tmp_path, "health", "--file", str(schedule))
    assert one_line(missing) == f"unhealthy: {schedule} does not exist"
    (tmp_path / "celerybeat-schedule.dat").write_text("")  # dbm.dumb's name for it
    fine = zxsync(tmp_path, "health", "--redis", "--file", str(schedule), REDIS_URL=redis_url)
    assert fine.returncode == 0 and fine.stdout.strip() == "healthy"
    os.utime(tmp_path / "celerybeat-schedule.dat", (0, 0))
    stale = zxsync(tmp_path, "health", "--file", str(schedule), "--max-age", "60")
    assert "has not changed for" in one_line(stale)
