"""The Redis key space has one owner (issue #15.4): workers/keys.py names every key pattern with
its type, lifetime and owner; no product module spells a key; nothing sends the blocking KEYS;
and two deployments with their own ZXS_REDIS_NAMESPACE share one Redis without seeing each
other's state."""

from __future__ import annotations

import ast
import functools
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import tasks.batch_handlers.invoices  # noqa: F401  (registers the invoices kind)
from workers import activity, admission, keys
from workers.admission import TenantWindows
from workers.batching import Buffer
from workers.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
# the product's packages; the sandbox (a fake Xero and Zoho) has a Redis of its own
PRODUCT = ["workers", "tasks", "clients", "relay", "console", "zxsync", "schemas"]
TYPES = {"string", "hash", "list", "set", "zset", "stream", "lock"}


@functools.cache
def product_sources() -> list[tuple[Path, str]]:
    return [
        (path, path.read_text())
        for package in PRODUCT
        for path in sorted((ROOT / package).rglob("*.py"))
    ]


def product_modules(pattern: str) -> list[tuple[Path, list[ast.AST]]]:
    """The nodes of each product module whose text matches `pattern`: parsing and walking all
    ~140 modules (~110,000 nodes) was most of these tests' time, and few modules can match."""
    return [
        (path, list(ast.walk(ast.parse(text, str(path)))))
        for path, text in product_sources()
        if re.search(pattern, text)
    ]


def docstrings(nodes: list[ast.AST]) -> set[int]:
    """ids of the docstring nodes: prose may name a key, code may not."""
    found: set[int] = set()
    for node in nodes:
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            found.add(id(first.value))
    return found


def test_no_product_module_spells_a_redis_key_outside_workers_keys() -> None:
    spelled = []
    for path, nodes in product_modules("zxs:"):
        if path == ROOT / "workers" / "keys.py":
            continue
        prose = docstrings(nodes)
        for node in nodes:
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and "zxs:" in node.value
                and id(node) not in prose
            ):
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:40]!r}")
    assert spelled == []


def test_no_product_module_sends_the_blocking_keys_command() -> None:
    """KEYS walks the whole keyspace in one blocking call on the broker's Redis: SCAN instead.
    (`dict.keys()` takes no argument; redis-py's `keys(pattern)` does.)"""
    calls = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path, nodes in product_modules(r"\.keys\s*\(")
        for node in nodes
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "keys"
        and (node.args or node.keywords)
    ]
    assert calls == []


def test_every_key_pattern_says_its_type_lifetime_and_owner() -> None:
    patterns = [v for v in vars(keys).values() if isinstance(v, keys.Key)]
    patterns += list(keys.BUFFER.values())
    assert len(patterns) > 40
    assert len({p.pattern for p in patterns}) == len(patterns), "a pattern is listed twice"
    for pattern in patterns:
        assert pattern.type in TYPES, pattern
        assert pattern.ttl, pattern
        owner = pattern.owner.split(" ", 1)[0]
        assert (ROOT / owner).exists(), pattern


@pytest.fixture
def namespace(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Switch ZXS_REDIS_NAMESPACE within a test (settings are read again each time)."""
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.delenv("ZXS_REDIS_NAMESPACE", raising=False)
    get_settings.cache_clear()


def use(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("ZXS_REDIS_NAMESPACE", name)
    get_settings.cache_clear()


def test_the_default_namespace_keeps_the_keys_as_they_were(namespace: pytest.MonkeyPatch) -> None:
    assert keys.INFLIGHT("acme") == "zxs:inflight:acme"
    assert keys.BUFFER["items"]("invoices", "acme") == "zxs:batch:invoices:acme:items"
    assert keys.BATCH_LOCK("invoices", "acme") == "zxs:lock:zxs:batch:invoices:acme"
    assert keys.LOCK("contact:acme:1") == "zxs:lock:contact:acme:1"
    assert keys.broker_prefix() == ""
    use(namespace, "eu")
    assert keys.INFLIGHT("acme") == "eu:zxs:inflight:acme"
    assert keys.broker_prefix() == "eu:"


def test_a_namespace_with_a_separator_or_a_glob_is_refused(
    namespace: pytest.MonkeyPatch,
) -> None:
    from schemas.errors import ConfigurationError

    use(namespace, "a:b*")
    with pytest.raises(ConfigurationError, match="ZXS_REDIS_NAMESPACE"):
        get_settings()


def test_two_namespaces_on_one_redis_do_not_see_each_others_state(
    redis_url: str, namespace: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn = f"shared-{uuid.uuid4().hex[:8]}"
    a, b = f"a{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}"
    before = set(client.scan_iter(count=1000))

    use(namespace, a)
    Buffer(client, "invoices", conn).add({"Invoices:1": {"v": 1}}, {"options": {"task_id": "t1"}})
    admission.pause(client, conn, "ops")
    TenantWindows(client, 1, 60).admit(conn, f"{conn}:Invoices:1", {"doc": 1})
    activity.record_heartbeat(client)
    written = set(client.scan_iter(count=1000)) - before
    assert written and all(key.startswith(f"{a}:zxs:") for key in written), written

    use(namespace, b)
    assert not Buffer(client, "invoices", conn).pending()
    assert not client.sismember(keys.BATCH_ACTIVE(), f"invoices|{conn}")
    assert admission.paused(client, conn) is None
    assert TenantWindows(client, 1, 60).counts(conn) == (0, 0)
    assert activity.beat_heartbeat(client) is None
    # b's own state lives beside a's
    admitted, _ = TenantWindows(client, 1, 60).admit(conn, f"{conn}:Invoices:2", {"doc": 2})
    assert admitted

    use(namespace, a)
    assert Buffer(client, "invoices", conn).pending()
    assert admission.paused(client, conn) is not None
    assert TenantWindows(client, 1, 60).counts(conn) == (0, 1)  # paused here: it waits
    for key in set(client.scan_iter(count=1000)) - before:
        client.delete(key)


def test_the_broker_keys_take_the_namespace_too(namespace: pytest.MonkeyPatch) -> None:
    """kombu's queues and unacked bookkeeping get the namespace (kombu `global_keyprefix`), so
    one deployment's workers never take another's tasks; none without a namespace."""
    from workers.app import create_app

    assert "global_keyprefix" not in create_app().conf.broker_transport_options
    use(namespace, "eu")
    assert create_app().conf.broker_transport_options["global_keyprefix"] == "eu:"


def test_a_process_pointed_at_a_broker_again_takes_the_namespace_set_since(
    namespace: pytest.MonkeyPatch,
) -> None:
    """`use_broker` (how a local stack points this process at its Redis) reads the transport
    options again: a namespace set after the app was made reached our keys but not kombu's
    queues, so this process published where the stack's workers did not listen."""
    from workers.app import create_app, use_broker

    app = create_app()
    use(namespace, "stack-1")
    use_broker(app, "redis://127.0.0.1:6379/0")
    assert app.conf.broker_transport_options["global_keyprefix"] == "stack-1:"
