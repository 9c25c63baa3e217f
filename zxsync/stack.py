"""A whole local deployment in one object: Redis, both sandboxes and worker processes.

The demo, the integration tests and the benchmarks all run the real pipeline this way: real
redis-server, real Celery worker processes, and the sandboxes over HTTP on loopback ports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.fernet import Fernet

from sandbox.config import SandboxConfig
from sandbox.server import ThreadedServer, free_port
from sandbox.xero_app import XeroSandbox, create_xero_app
from sandbox.zoho_app import ZohoSandbox, create_zoho_app

XERO_CLIENT_ID = "zxs-local-xero-app"
XERO_CLIENT_SECRET = "local-xero-secret-0123456789"
ZOHO_CLIENT_ID = "1000.ZXSLOCAL"
ZOHO_CLIENT_SECRET = "local-zoho-secret-0123456789"


@dataclass
class LocalConnection:
    """A sandbox Xero tenant + Zoho org wired up as one connection."""

    name: str
    xero_tenant_id: str
    zoho_org_id: str
    options: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "xero_tenant_id": self.xero_tenant_id,
            "zoho_org_id": self.zoho_org_id,
            "xero_refresh_token": f"xero-refresh-{self.name}",
            "zoho_refresh_token": f"1000.zoho-refresh-{self.name}",
            "tax_types": {"GST": "OUTPUT"},
            "purchase_tax_types": {"GST": "INPUT"},
            "untaxed_tax_type": "BASEXCLUDED",
            **self.options,
        }


class LocalStack:
    """Start with `with LocalStack(...) as stack:`; everything stops on exit, even on errors."""

    def __init__(
        self,
        connections: list[LocalConnection],
        sandbox: SandboxConfig | None = None,
        redis_url: str | None = None,
        concurrency: int = 2,
        extra_env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """`host`: the address Redis and the sandboxes listen on (loopback; another for
        workers on other hosts, zxsync/hosts.py)."""
        self.connections = connections
        self.host = host
        self.sandbox_config = sandbox or SandboxConfig()
        self.redis_url = redis_url
        self.concurrency = concurrency
        self.extra_env = extra_env or {}
        self.workdir = Path(tempfile.mkdtemp(prefix="zxsync-"))
        self.xero = XeroSandbox(self.sandbox_config)
        self.zoho = ZohoSandbox(self.sandbox_config)
        self._servers: list[ThreadedServer] = []
        self._workers: list[subprocess.Popen[bytes]] = []
        self._embedded_redis = False
        self._redis_port = 0
        self._saved_env: dict[str, str] | None = None
        self.env: dict[str, str] = {}
        for conn in connections:
            self.xero.add_tenant(conn.xero_tenant_id, f"{conn.name} (sandbox)", "AU", "AUD")
            self.xero.add_client(
                XERO_CLIENT_ID,
                XERO_CLIENT_SECRET,
                conn.config()["xero_refresh_token"],
                [conn.xero_tenant_id],
            )
            self.zoho.add_client(
                ZOHO_CLIENT_ID,
                ZOHO_CLIENT_SECRET,
                conn.config()["zoho_refresh_token"],
                conn.zoho_org_id,
            )

    def start(self) -> LocalStack:
        if not self.redis_url:
            from workers.redis import start_embedded

            self._redis_port = free_port(self.host)
            self.redis_url = start_embedded(self.workdir / "redis", self._redis_port, self.host)
            self._embedded_redis = True
        xero = ThreadedServer(create_xero_app(self.xero), self.host).start()
        zoho = ThreadedServer(create_zoho_app(self.zoho), self.host).start()
        self._servers = [xero, zoho]
        self.env = {
            "REDIS_URL": self.redis_url,
            "XERO_API_URL": f"{xero.url}/api.xro/2.0",
            "XERO_IDENTITY_URL": xero.url,
            "ZOHO_API_URL": zoho.url,
            "ZOHO_ACCOUNTS_URL": zoho.url,
            "XERO_CLIENT_ID": XERO_CLIENT_ID,
            "XERO_CLIENT_SECRET": XERO_CLIENT_SECRET,
            "ZOHO_CLIENT_ID": ZOHO_CLIENT_ID,
            "ZOHO_CLIENT_SECRET": ZOHO_CLIENT_SECRET,
            "ZXS_CONNECTIONS": json.dumps([c.config() for c in self.connections]),
            "ZXS_DATA_DIR": str(self.workdir),
            "XERO_AUTHORIZE_URL": f"{xero.url}/identity/connect/authorize",
            "ZXS_TOKEN_KEY": Fernet.generate_key().decode(),  # a fresh key per local stack
            "ZXS_LIMIT_MINUTE_SECONDS": str(self.sandbox_config.minute_seconds),
            # the sandbox app's day limit is a tier's: Starter's 1,000 or the paid tiers' 5,000
            "XERO_API_TIER": "starter"
            if self.sandbox_config.xero_limits.per_day <= 1000
            else "core",
            **self.extra_env,
        }
        self._apply_env_here()
        return self

    def _apply_env_here(self) -> None:
        """Point this process's settings, Redis client and Celery app at the stack (undone by
        stop(), so a later stack in the same process starts from a clean environment)."""
        self._saved_env = dict(os.environ)
        os.environ.update(self.env)
        _point_process_at(self.redis_url)

    def _restore_env_here(self) -> None:
        if self._saved_env is None:
            return
        os.environ.clear()
        os.environ.update(self._saved_env)
        self._saved_env = None
        _point_process_at(os.environ.get("REDIS_URL"))

    def start_worker(
        self,
        concurrency: int | None = None,
        name: str = "w",
        queues: list[str] | None = None,
        prefix: Sequence[str] = (),
        task_events: bool = False,
    ) -> subprocess.Popen[bytes]:
        """A real `celery worker` process consuming every stage queue (or only `queues`),
        started through `prefix` (e.g. `ip netns exec HOST`: on another host); `task_events` as
        if a monitor had asked for them (these workers run without heartbeat, so Flower's
        `enable_events` cannot reach them)."""
        from workers.app import QUEUE_ORDER

        log = (self.workdir / f"worker-{name}-{len(self._workers)}.log").open("ab")
        command = [
            *prefix,
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "worker",
            "-Q",
            ",".join(queues or QUEUE_ORDER),
            "-c",
            str(concurrency or self.concurrency),
            "-n",
            f"{name}{len(self._workers)}@%h",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            *(["--task-events"] if task_events else []),
        ]
        process = subprocess.Popen(
            command,
            # the image's malloc setting (Dockerfile), unless the environment sets its own
            env={"MALLOC_ARENA_MAX": "2", **os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the worker writes through its own copy of the descriptor
        self._workers.append(process)
        return process

    def start_relay(self) -> str:
        """The webhook relay on a thread of this process (which has the stack's settings);
        the Xero sandbox then sends each connection's events to it, signed with its key."""
        from relay.app import create_relay_app

        relay = ThreadedServer(create_relay_app()).start()
        self._servers.append(relay)
        for conn in self.connections:
            key = conn.options.get("xero_webhook_key")
            if key:
                url = f"{relay.url}/webhooks/xero"
                self.xero.webhooks.subscribe(conn.xero_tenant_id, url, str(key))
        return relay.url

    def worker_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("*.log")))

    def restart_redis(self) -> None:
        """Shut the embedded Redis down and start it again on its data (appendonly): what a
        Redis restart in production does to queues, links and dead letters."""
        from workers.redis import start_embedded, stop_embedded

        assert self._embedded_redis, "only the stack's own Redis can be restarted"
        stop_embedded()
        start_embedded(self.workdir / "redis", self._redis_port, self.host)

    def stop(self, wait: bool = True) -> None:
        """Stop everything. `wait=False` sends the workers SIGTERM and lets them finish their
        warm shutdown on a thread (about 3 s each, most of it Celery's and billiard's own
        sleeps), the work dir removed after: for a stack in a Redis namespace of its own
        (ZXS_REDIS_NAMESPACE), whose leftovers no later stack's workers would see. A stack
        with its own embedded Redis always waits: its workers must not outlive their Redis."""
        for process in self._workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        background = not wait and not self._embedded_redis
        if not background:
            self._reap_workers()
        self.xero.webhooks.close()
        for server in self._servers:
            server.stop()
        self._restore_env_here()
        if background:  # not a daemon thread: the interpreter waits for it at exit
            threading.Thread(target=self._finish_in_background, name="zxs-stack-stop").start()
        else:
            self._remove_leftovers()

    def _reap_workers(self) -> None:
        """Wait out the workers' warm shutdown; a worker still there after 15 s is killed."""
        deadline = time.monotonic() + 15
        for process in self._workers:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def _remove_leftovers(self) -> None:
        if self._embedded_redis:
            from workers.redis import stop_embedded

            stop_embedded()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _finish_in_background(self) -> None:
        self._reap_workers()
        self._remove_leftovers()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _point_process_at(redis_url: str | None) -> None:
    """Forget cached settings, Redis client and broker connections; use `redis_url`."""
    from workers.app import app, use_broker
    from workers.redis import get_redis
    from workers.settings import get_settings

    get_settings.cache_clear()
    get_redis.cache_clear()
    # pooled connections still point at the previous broker: drop the app's references the
    # way Celery itself does after a fork (kombu keeps its pools per broker URL, open)
    app._after_fork()
    if redis_url is None:
        app.conf.broker_url = None
    else:
        use_broker(app, redis_url)
