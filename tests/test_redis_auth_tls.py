"""Redis with a password and over TLS (`rediss://`): Celery's broker and redis-py's client both
take everything from REDIS_URL. TLS is checked as configuration (no TLS Redis is started); the
password end to end against a redis-server started here with --requirepass."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

import workers.app
import workers.redis
from sandbox.server import free_port
from workers.app import _resolve_broker, broker_ssl_options, create_app
from workers.settings import Settings

PASSWORD = "s3cret-pw/with+odd=chars"
QUOTED = "s3cret-pw%2Fwith%2Bodd%3Dchars"


def use_url(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """REDIS_URL as the workers would read it (settings and the client cache reset after)."""
    settings = Settings(redis_url=url)
    for module in (workers.app, workers.redis):
        monkeypatch.setattr(module, "get_settings", lambda: settings)
    workers.redis.get_redis.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_client_cache() -> Iterator[None]:
    workers.redis.get_redis.cache_clear()
    yield
    workers.redis.get_redis.cache_clear()


# ----------------------------------------------------------------------------- TLS


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rediss://:pw@redis.example.com:6380/0", {"ssl_cert_reqs": ssl.CERT_REQUIRED}),
        ("rediss://redis.example.com:6380/0?ssl_cert_reqs=none", None),  # the URL decides
        ("redis://:pw@127.0.0.1:6379/0", None),
    ],
)
def test_broker_ssl_options_for_a_rediss_url(url: str, expected: object) -> None:
    assert broker_ssl_options(url) == expected


def test_a_rediss_broker_url_configures_celery_tls_with_certificate_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "rediss://:pw@redis.example.com:6380/2"
    use_url(monkeypatch, url)
    app = Celery("tls-test")
    _resolve_broker(app)
    assert app.conf.broker_url == url
    assert app.conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    connection = app.connection_for_write()  # built, not connected
    assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}

    plain = Celery("plain-test")
    use_url(monkeypatch, "redis://127.0.0.1:6379/0")
    _resolve_broker(plain)
    assert not plain.conf.broker_use_ssl


def test_get_redis_speaks_tls_to_a_rediss_url_and_verifies_the_certificate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_url(monkeypatch, "rediss://:pw@redis.example.com:6380/3")
    client = workers.redis.get_redis()
    pool = client.connection_pool
    assert issubclass(pool.connection_class, redis.SSLConnection)
    assert pool.connection_kwargs["password"] == "pw"
    cert_reqs = pool.connection_kwargs.get("ssl_cert_reqs", "required")  # redis-py's default
    assert cert_reqs in ("required", ssl.CERT_REQUIRED)


# ----------------------------------------------------------------------------- password


def redis_server_binary() -> str | None:
    here = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "redis-server"
    return str(here) if here.exists() else shutil.which("redis-server")


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[int]:
    """A throwaway redis-server on a free loopback port that requires PASSWORD."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary")
    port = free_port()
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        probe = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD)
        deadline = time.monotonic() + 10
        while True:
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.integration
def test_a_password_url_works_for_the_client_and_the_celery_broker(
    monkeypatch: pytest.MonkeyPatch, password_redis: int
) -> None:
    url = f"redis://:{QUOTED}@127.0.0.1:{password_redis}/0"
    use_url(monkeypatch, url)
    client = workers.redis.get_redis()
    client.set("zxs:test:auth", "ok")
    assert client.get("zxs:test:auth") == "ok"

    app = create_app()  # the workers' app, broker resolved from the URL above
    app.send_task("zxsync.ingest", args=[{"probe": True}])
    assert client.llen("zxs.ingest") == 1
    app.close()

    wrong = redis.Redis.from_url(f"redis://:nope@127.0.0.1:{password_redis}/0")
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    anonymous = redis.Redis.from_url(f"redis://127.0.0.1:{password_redis}/0")
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
