"""The ops console (console/): health from Redis, pause/resume honoured by admission, the pages,
auth and CSRF, dead letters, record lookup. Real Redis (the Lua admission script runs there);
the app is driven over Starlette's TestClient. The browser test is tests/test_console_browser.py.
"""

from __future__ import annotations

import functools
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from starlette.testclient import TestClient

from clients.tokens import TokenCipher, TokenManager, TokenSet
from console import audit
from console.app import create_app, filter_letters
from console.auth import hash_password, parse_users, verify_password
from console.charts import hourly_svg
from console.health import read_health, worst
from console.settings import ConsoleSettings
from schemas.errors import AuthRevoked, ConfigurationError, InvalidRecord
from schemas.history import HistoryEvent
from schemas.jobs import StageMessage, SyncJob
from schemas.links import INVOICE, InvoiceLink
from workers import activity, admission
from workers.admission import TenantWindows
from workers.deadletter import DeadLetterStore
from workers.history import RecordHistory, record_key
from workers.idempotency import IdempotencyStore
from workers.outcomes import record_history
from workers.settings import Settings

PASSWORD = "correct horse battery staple"
SECRET = "s" * 40


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


@pytest.fixture
def names() -> list[str]:
    suffix = uuid.uuid4().hex[:8]
    return [f"con-a-{suffix}", f"con-b-{suffix}"]


@pytest.fixture
def settings(names: list[str], redis_url: str) -> Settings:
    conns = [
        {
            "name": name,
            "xero_tenant_id": f"tenant-{name}",
            "zoho_org_id": f"org-{name}",
            "xero_refresh_token": f"xero-refresh-secret-{name}",
            "zoho_refresh_token": f"zoho-refresh-secret-{name}",
        }
        for name in names
    ]
    return Settings(
        redis_url=redis_url,
        zxs_connections=json.dumps(conns),
        zxs_token_key=Fernet.generate_key().decode(),
        zxs_tenant_window=2,
        xero_client_secret="xero-client-secret-value",
    )


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(
        admission, "start_pipeline", lambda message: calls.append(message.job.record_id)
    )
    return calls


@functools.cache
def users() -> str:
    """The two test users, hashed once: a hash at scrypt's real cost is ~55 ms of CPU."""
    return f"olga:operator:{hash_password(PASSWORD)},vic:viewer:{hash_password(PASSWORD)}"


def console_settings(**overrides: Any) -> ConsoleSettings:
    values: dict[str, Any] = {
        "zxs_console_users": users(),
        "zxs_console_secret": SECRET,
        "zxs_console_cookie_secure": False,
        **overrides,
    }
    return ConsoleSettings(**values)


@pytest.fixture
def web(settings: Settings, client: redis.Redis) -> Iterator[TestClient]:
    app = create_app(console_settings(), settings, client, search=lambda c, n: [])
    with TestClient(app) as test_client:
        yield test_client


def login(web: TestClient, user: str = "olga", password: str = PASSWORD) -> Any:
    return web.post(
        "/login",
        data={"user": user, "password": password, "csrf": csrf(web, "/login"), "next": "/"},
        follow_redirects=False,
    )


def csrf(web: TestClient, path: str = "/") -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', web.get(path).text)
    assert match, "no CSRF token on the page"
    return match.group(1)


def job(connection: str, record_id: str) -> StageMessage:
    return StageMessage(
        job=SyncJob(
            connection=connection,
            module="Invoices",
            record_id=record_id,
            event="insert",
            event_id=f"ev-{record_id}",
        )
    )


def dead_letter(client: redis.Redis, connection: str, record_id: str, **job_extra: Any) -> str:
    exc = InvalidRecord(
        f"Zoho invoice {record_id}",
        "Product_Code",
        "the product has no code",
        hint="Give the product a code in Zoho, then replay.",
    )
    message = job(connection, record_id).model_dump(mode="json")
    message["job"].update(job_extra)
    letter = DeadLetterStore(client).add(
        stage="zxsync.item_precheck",
        job=message["job"],
        exc=exc,
        attempts=1,
        payload=json.dumps(message),
        traceback="Traceback: Authorization: Bearer abcdefghijklmnop",
    )
    return letter.id


# ---------------------------------------------------------------- point 1: health and pause


def test_pause_holds_new_jobs_in_the_waiting_room_and_resume_starts_them_in_order(
    client: redis.Redis, settings: Settings, names: list[str], started: list[str]
) -> None:
    conn = names[0]
    history = RecordHistory(client)
    admission.pause(client, conn, "olga")
    for rid in ("1", "2", "3"):
        history.start(conn, record_key(conn, "Invoices", rid), job(conn, rid).job.model_dump())
        assert admission.admit(client, settings, job(conn, rid)) == "queued"
    assert started == []
    windows = TenantWindows(client, settings.zxs_tenant_window, settings.zxs_stall_seconds)
    assert windows.counts(conn) == (0, 3)
    assert admission.pump(client, settings) == 0  # beat's pump honours the pause too
    assert admission.paused(client, conn)["by"] == "olga"  # type: ignore[index]
    # the other connection is not held back
    assert admission.admit(client, settings, job(names[1], "9")) == "started"
    assert admission.resume(client, conn, "olga", settings) == 2  # the window is 2
    assert started == ["9", "1", "2"]
    assert admission.paused(client, conn) is None
    assert windows.counts(conn) == (2, 1)


def test_health_shows_missing_xero_scopes_and_a_channel_about_to_lapse(
    client: redis.Redis, settings: Settings, names: list[str]
) -> None:
    from tasks.zoho_channels import channel_key

    a = names[0]
    cipher = TokenCipher(settings.zxs_token_key.get_secret_value())
    granted = "offline_access accounting.contacts accounting.settings.read"  # no invoices
    TokenManager(client, "Xero", a, lambda t: TokenSet("", "", 0), None, cipher=cipher).store(
        TokenSet.issued("access", "refresh", 1800, scope=granted)
    )
    expiry = time.time() + 3600
    client.set(
        channel_key(a),
        json.dumps(
            {
                "channel_id": "1",
                "events": ["Invoices.all"],
                "notify_url": "https://relay/x",
                "expiry": expiry,
                "lifetime": 86400,
            }
        ),
    )
    health = {h.name: h for h in read_health(client, settings)}[a]
    assert health.scopes is not None
    [xero] = health.scopes
    assert set(xero.missing) == {"accounting.invoices", "accounting.payments.read"}
    assert health.level == "unhealthy" and "Xero scopes missing" in health.words
    assert health.channel_expiry is not None
    assert abs(health.channel_expiry.timestamp() - expiry) < 1
    assert "Zoho notification channel expires within a day" in health.words


def test_health_reads_tokens_limits_room_dead_letters_and_activity(
    client: redis.Redis, settings: Settings, names: list[str], started: list[str]
) -> None:
    a, b = names
    conn_a = settings.connections()[a]
    cipher = TokenCipher(settings.zxs_token_key.get_secret_value())
    # a: Xero refused the refresh token (remembered), Zoho has a fresh token
    client.set(f"zxs:tokens:Xero:{a}:revoked", "f1ngerprint invalid_grant: refresh token revoked")
    TokenManager(client, "Zoho", a, lambda t: TokenSet("", "", 0), None, cipher=cipher).store(
        TokenSet.issued("access", "refresh", 3600)
    )
    # the limiter's day and minute windows: 7 calls this window (one of them a placeholder)
    now_ms = int(time.time() * 1000)
    base = f"zxs:rl:xero:{conn_a.xero_tenant_id}"
    for name in ("day", "minute"):
        client.set(f"{base}:{name}:anchor", now_ms - 1000)
        client.zadd(f"{base}:{name}", {f"lease{i}": now_ms - 500 for i in range(6)})
        client.zadd(f"{base}:{name}", {"spent:x:1": now_ms - 400})
    client.zadd(f"{base}:day", {"old": now_ms - 2 * 86_400_000 + 5})  # a previous window
    dead_letter(client, a, "101")
    dead_letter(client, a, "102")
    admission.pause(client, a, "olga")
    history = record_history(client)  # as the workers build it: outcomes are counted
    history.start(a, record_key(a, "Invoices", "201"), job(a, "201").job.model_dump())
    admission.admit(client, settings, job(a, "201"))
    # b: one synced document, one failed
    for rid, outcome in (("301", "created"), ("302", "failed")):
        history.start(b, record_key(b, "Invoices", rid), job(b, rid).job.model_dump())
        history.finish(b, record_key(b, "Invoices", rid), outcome)  # type: ignore[arg-type]
    healths = {h.name: h for h in read_health(client, settings)}
    ha, hb = healths[a], healths[b]
    assert ha.level == "unhealthy" and hb.level == "healthy"
    assert worst(list(healths.values())) == "unhealthy"
    xero, zoho = ha.tokens
    assert (xero.state, zoho.state) == ("reconnect needed", "ok")
    assert xero.command == f"zxsync connect xero --connection {a}"
    assert "refresh token revoked" in xero.detail
    assert (ha.xero.calls_today, ha.xero.day_limit) == (7, 1000)  # the Starter tier (default)
    assert ha.xero.minute_headroom == 60 - 7
    assert ha.dead_letters == {"invalid_record": 2}
    assert (ha.waiting, ha.in_flight) == (1, 0)
    assert ha.paused and ha.paused["by"] == "olga"
    assert "Xero reconnect needed" in ha.words and "2 dead letter(s)" in ha.words
    assert ha.scopes is None and ha.channel_expiry is None  # never recorded for a
    assert hb.tokens[0].state == "not used yet"
    assert hb.last_sync is not None and hb.last_sync > datetime.now(UTC) - timedelta(minutes=1)
    assert hb.hourly[-1][1:] == (1, 1) and len(hb.hourly) == 24


def test_an_expired_token_with_work_waiting_is_refresh_failing(
    client: redis.Redis, settings: Settings, names: list[str], started: list[str]
) -> None:
    a = names[0]
    cipher = TokenCipher(settings.zxs_token_key.get_secret_value())
    manager = TokenManager(client, "Xero", a, lambda t: TokenSet("", "", 0), None, cipher=cipher)
    manager.store(TokenSet("access", "refresh", time.time() - 3600, None, time.time() - 5400))
    assert read_health(client, settings, hours=0)[0].tokens[0].state == "ok"  # idle: fine
    RecordHistory(client).start(a, record_key(a, "Invoices", "401"), job(a, "401").job.model_dump())
    state = read_health(client, settings, hours=0)[0].tokens[0]
    assert state.state == "refresh failing" and "expired 60 min ago" in state.detail


def test_xero_429s_are_counted_per_connection(client: redis.Redis, names: list[str]) -> None:
    class Inner:
        def __init__(self) -> None:
            self.seen: list[dict[str, str]] = []

        def slot(self) -> Any:
            raise NotImplementedError

        def observe(self, permit: Any, headers: Any) -> None:
            self.seen.append(dict(headers))

    inner = Inner()
    counted = activity.CountingLimiter(inner, client, names[0])
    counted.observe(None, {"X-MinLimit-Remaining": "3"})
    counted.observe(None, {"X-Rate-Limit-Problem": "minute", "Retry-After": "2"})
    assert activity.xero_rate_limited(client, names[0]) == 1
    assert len(inner.seen) == 2  # the limiter still learns from every answer


def test_the_chart_draws_one_bar_pair_per_hour_scaled_to_the_busiest() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    svg = hourly_svg([(start, 4, 0), (start + timedelta(hours=1), 1, 1)], "401")
    assert svg.count('class="hour"') == 2
    heights = [float(h) for h in re.findall(r'class="synced"[^>]*height="([\d.]+)"', svg)]
    assert heights[0] == pytest.approx(62.0) and heights[1] == pytest.approx(15.5)
    assert "01:00 UTC: 1 synced, 1 failed" in svg


def test_the_connections_page_shows_health_in_words_and_pause_resume_works(
    web: TestClient,
    client: redis.Redis,
    names: list[str],
    settings: Settings,
    started: list[str],
) -> None:
    a = names[0]
    dead_letter(client, a, "101")
    assert login(web).status_code == 303
    page = web.get("/")
    assert page.status_code == 200
    row = page.text.split(f'data-connection="{a}"')[1].split("</tr>")[0]
    assert "unhealthy" in row and "1 dead letter(s)" in row and "1 invalid_record" in row
    assert "scopes not known yet" in row and "<svg" in row
    token = csrf(web)
    assert web.post(f"/connections/{a}/pause", data={"csrf": token}).status_code == 200
    assert admission.paused(client, a)["by"] == "olga"  # type: ignore[index]
    assert "paused" in web.get("/").text.split(f'data-connection="{a}"')[1].split("</tr>")[0]
    history = RecordHistory(client)
    history.start(a, record_key(a, "Invoices", "501"), job(a, "501").job.model_dump())
    assert admission.admit(client, settings, job(a, "501")) == "queued"
    web.post(f"/connections/{a}/resume", data={"csrf": token})
    assert started == ["501"] and admission.paused(client, a) is None
    lines = audit.recent()
    assert [(line.user, line.action, line.target) for line in lines[:2]] == [
        ("olga", "resume", a),
        ("olga", "pause", a),
    ]


# ---------------------------------------------------------------- point 4: auth


def test_the_console_refuses_to_start_without_credentials(
    settings: Settings, client: redis.Redis
) -> None:
    with pytest.raises(ConfigurationError, match="no users"):
        create_app(ConsoleSettings(zxs_console_secret=SECRET), settings, client)
    with pytest.raises(ConfigurationError, match="ZXS_CONSOLE_SECRET"):
        create_app(console_settings(zxs_console_secret="short"), settings, client)
    with pytest.raises(ConfigurationError, match="entry 1"):
        parse_users("olga:admin:scrypt$1")


def test_passwords_are_scrypt_hashes_that_verify_only_the_password() -> None:
    encoded = hash_password(PASSWORD)
    assert encoded.startswith("scrypt$") and PASSWORD not in encoded
    assert verify_password(PASSWORD, encoded)
    assert not verify_password(PASSWORD + "!", encoded)
    assert hash_password(PASSWORD) != encoded  # salted


def test_pages_need_a_login_and_a_wrong_password_is_refused(web: TestClient) -> None:
    assert web.get("/", follow_redirects=False).headers["location"].startswith("/login")
    assert login(web, password="wrong").status_code == 401
    assert web.get("/", follow_redirects=False).status_code == 303
    assert login(web).status_code == 303
    assert web.get("/").status_code == 200


def test_every_post_needs_the_csrf_token_and_the_operator_role(
    web: TestClient, names: list[str], client: redis.Redis
) -> None:
    a = names[0]
    assert web.post("/login", data={"user": "olga", "password": PASSWORD}).status_code == 403
    login(web)
    assert web.post(f"/connections/{a}/pause", data={"csrf": "forged"}).status_code == 403
    assert web.post(f"/connections/{a}/pause", data={}).status_code == 403
    assert admission.paused(client, a) is None
    web.post("/logout", data={"csrf": csrf(web)})
    login(web, "vic")
    assert "Pause</button>" not in web.get("/").text  # a viewer sees no buttons
    assert web.post(f"/connections/{a}/pause", data={"csrf": csrf(web)}).status_code == 403
    assert admission.paused(client, a) is None


def test_the_session_cookie_is_secure_httponly_and_strict_by_default(
    settings: Settings, client: redis.Redis
) -> None:
    app = create_app(console_settings(zxs_console_cookie_secure=True), settings, client)
    with TestClient(app, base_url="https://console.test") as web:
        cookie = web.get("/login").headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_proxy_auth_takes_the_user_from_the_header_and_operators_from_the_list(
    settings: Settings, client: redis.Redis, names: list[str]
) -> None:
    cs = ConsoleSettings(
        zxs_console_secret=SECRET,
        zxs_console_proxy_user_header="X-Forwarded-User",
        zxs_console_proxy_operators="olga",
        zxs_console_cookie_secure=False,
    )
    with TestClient(create_app(cs, settings, client)) as web:
        assert web.get("/", follow_redirects=False).status_code == 303
        page = web.get("/", headers={"X-Forwarded-User": "olga"})
        assert "olga (operator)" in page.text
        assert "vic (viewer)" in web.get("/", headers={"X-Forwarded-User": "vic"}).text


def test_nothing_secret_is_rendered(
    web: TestClient, client: redis.Redis, names: list[str], settings: Settings
) -> None:
    a = names[0]
    letter_id = dead_letter(client, a, "101", note="refresh_token=xero-refresh-secret-abc")
    login(web)
    pages = [web.get(p).text for p in ("/", "/dead-letters", f"/dead-letters/{letter_id}")]
    secrets_ = [
        SECRET,
        PASSWORD,
        "xero-client-secret-value",
        settings.zxs_token_key.get_secret_value(),
        *(
            c.xero_refresh_token.get_secret_value()
            for c in settings.connections().values()
            if c.xero_refresh_token
        ),
        "abcdefghijklmnop",
        "scrypt$",
    ]
    for page in pages:
        for secret in secrets_:
            assert secret not in page
    assert "[redacted]" in pages[2]


# ---------------------------------------------------------------- point 2: dead letters


def test_dead_letters_filter_by_connection_kind_stage_and_age() -> None:
    from workers.deadletter import DeadLetter

    now = datetime(2026, 1, 2, tzinfo=UTC)

    def dl(conn: str, kind: str, stage: str, hours: float) -> DeadLetter:
        at = (now - timedelta(hours=hours)).isoformat()
        return DeadLetter(stage, conn, "Invoices", "1", kind, "e", "", "", 1, "{}", "", at, "1-1")

    letters = [
        dl("a", "invalid_record", "zxsync.item_precheck", 0.1),
        dl("a", "validation", "zxsync.invoice_create", 30),
        dl("b", "invalid_record", "zxsync.item_precheck", 2),
    ]
    assert filter_letters(letters, connection="a", now=now) == letters[:2]
    assert filter_letters(letters, kind="invalid_record", now=now) == [letters[0], letters[2]]
    assert filter_letters(letters, stage="zxsync.invoice_create", now=now) == [letters[1]]
    assert filter_letters(letters, age="1h", now=now) == letters[1:]
    assert filter_letters(letters, age="24h", now=now) == [letters[1]]


def test_dead_letter_detail_replay_discard_and_replay_all_leave_audit_lines(
    web: TestClient, client: redis.Redis, names: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.replay

    sent: list[SyncJob] = []
    monkeypatch.setattr(workers.replay, "submit", sent.append)
    a, b = names
    first, second, third = (dead_letter(client, a, r) for r in ("101", "102", "103"))
    other = dead_letter(client, b, "104")
    login(web)
    listing = web.get("/dead-letters", params={"connection": a})
    assert listing.text.count('class="dead-letter"') == 3
    detail = web.get(f"/dead-letters/{first}").text
    assert "Give the product a code in Zoho, then replay." in detail
    assert "Product_Code" in detail and "&#34;record_id&#34;: &#34;101&#34;" in detail
    confirm = web.get(f"/dead-letters/{first}/replay")
    assert "Yes, replay" in confirm.text
    assert DeadLetterStore(client).get(first) is not None  # a GET changes nothing
    token = csrf(web, f"/dead-letters/{first}/replay")
    web.post(f"/dead-letters/{first}/replay", data={"csrf": token})
    assert DeadLetterStore(client).get(first) is None
    assert [(j.record_id, j.event, j.event_id) for j in sent] == [
        ("101", "replay", f"replay-{first}")
    ]
    web.post(f"/dead-letters/{second}/discard", data={"csrf": token})
    assert DeadLetterStore(client).get(second) is None and len(sent) == 1
    all_page = web.get(
        "/dead-letters/replay-all", params={"connection": a, "kind": "invalid_record"}
    )
    assert "Replay 1 dead letter(s)" in all_page.text
    web.post(
        "/dead-letters/replay-all",
        data={"csrf": token, "connection": a, "kind": "invalid_record"},
    )
    assert [j.record_id for j in sent] == ["101", "103"]
    assert DeadLetterStore(client).get(third) is None
    assert DeadLetterStore(client).get(other) is not None  # another connection's stays
    actions = [(line.action, line.target) for line in audit.recent()]
    assert ("replay", first) in actions and ("discard", second) in actions
    assert ("replay", third) in actions and ("replay-all", a) in actions
    assert all(line.user == "olga" for line in audit.recent())
    assert "olga replay" in web.get("/audit").text.replace("</td><td>", " ")
    assert web.get(f"/dead-letters/{first}").status_code == 404


# ---------------------------------------------------------------- point 3: record lookup


def test_records_are_found_by_zoho_id_xero_number_or_zoho_number(
    client: redis.Redis, settings: Settings, names: list[str]
) -> None:
    a = names[0]
    searched: list[tuple[str, str]] = []

    def search(connection: str, number: str) -> list[str]:
        searched.append((connection, number))
        return ["7700077"] if (connection, number) == (a, "ZINV-77") else []

    history = RecordHistory(client)
    key = record_key(a, "Invoices", "7700077")
    history.log(key, "zxsync.ingest", HistoryEvent.ACCEPTED, event_id="e1")
    history.log(key, "zxsync.invoice_create", HistoryEvent.DONE)
    client.hset(f"zxs:outcomes:{a}", key, json.dumps(["created", ""]))
    IdempotencyStore(client, 60).set_links(
        INVOICE,
        a,
        {
            "Invoices:7700077": InvoiceLink(
                InvoiceID="inv-guid-1",
                InvoiceNumber="INV-0042",
                Status="AUTHORISED",
                Total=Decimal("11.00"),
            )
        },
    )
    cs = console_settings()
    app = create_app(cs, settings, client, search=search, shortcode=lambda c: "!AbC1d")
    with TestClient(app) as web:
        login(web)
        for query in ("7700077", "INV-0042", "ZINV-77"):
            page = web.get("/records", params={"q": query}).text
            assert f"Invoices 7700077 on {a}" in page, query
            assert "INV-0042" in page
            assert (
                "https://go.xero.com/organisationlogin/default.aspx?shortcode=!AbC1d&amp;"
                "redirecturl=/AccountsReceivable/View.aspx?InvoiceID=inv-guid-1"
            ) in page
            assert f"https://crm.zoho.com/crm/orgorg-{a}/tab/Invoices/7700077" in page
            assert "invoice_create" in page and ">created<" in page
        assert searched == [(a, "ZINV-77"), (names[1], "ZINV-77")]  # only when not in Redis
        assert "Nothing found" in web.get("/records", params={"q": "nope"}).text


def test_zoho_search_criteria_escape_zohos_specials() -> None:
    from console.lookup import escape_criteria

    assert escape_criteria("INV(1),2") == "INV\\(1\\)\\,2"


def test_a_revoked_connection_reads_as_reconnect_needed_after_a_real_refusal(
    client: redis.Redis, settings: Settings, names: list[str]
) -> None:
    a = names[0]
    cipher = TokenCipher(settings.zxs_token_key.get_secret_value())

    def refuse(token: str) -> TokenSet:
        raise AuthRevoked("Xero", "invalid_grant")

    manager = TokenManager(client, "Xero", a, refuse, "bootstrap-token", cipher=cipher)
    with pytest.raises(AuthRevoked):
        manager.current()
    state = read_health(client, settings, hours=0)[0].tokens[0]
    assert state.state == "reconnect needed" and "invalid_grant" in state.detail


def test_repeated_wrong_passwords_lock_the_user_name_for_a_while(
    settings: Settings, client: redis.Redis
) -> None:
    from console.app import MAX_LOGIN_FAILURES

    name = f"lock-{uuid.uuid4().hex[:8]}"
    cs = console_settings(zxs_console_users=f"{name}:operator:{hash_password(PASSWORD)}")
    with TestClient(create_app(cs, settings, client)) as web:
        for _ in range(MAX_LOGIN_FAILURES):
            assert login(web, name, "wrong").status_code == 401
        locked = login(web, name, PASSWORD)
        assert locked.status_code == 429 and "too many failed logins" in locked.text
        client.delete(f"zxs:console:login_failures:{name}")
        assert login(web, name, PASSWORD).status_code == 303


def test_the_login_redirects_only_to_paths_of_the_console(web: TestClient) -> None:
    from console.app import local_path

    assert local_path("/dead-letters?kind=x") == "/dead-letters?kind=x"
    for hostile in ("//evil.example/", "/\\evil.example", "https://evil.example/", "evil"):
        assert local_path(hostile) == "/"
    answer = web.post(
        "/login",
        data={"user": "olga", "password": PASSWORD, "csrf": csrf(web, "/login"), "next": "//x.io"},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/"


def test_stage_contexts_count_xero_429s_through_the_counting_limiter(
    settings: Settings, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.context import StageContext
    from workers.settings import get_settings

    monkeypatch.setenv("ZXS_TOKEN_KEY", settings.zxs_token_key.get_secret_value())
    get_settings.cache_clear()
    try:
        conn = next(iter(settings.connections().values()))
        xero = StageContext(conn, settings, client).xero
        assert isinstance(xero._limiter, activity.CountingLimiter)
    finally:
        get_settings.cache_clear()
