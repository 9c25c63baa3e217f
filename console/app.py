"""The ops console's web app: Starlette routes rendering Jinja2 templates.

Every page needs a logged-in user (or a proxy-authenticated one); every POST needs the operator
role and the session's CSRF token. What the pages show comes from console/health.py (the same
reading as /metrics and `zxsync connections`); what the buttons do is the workers' own code:
workers/admission.py pauses and resumes, workers/replay.py replays, the dead-letter store
discards, the connection store adds, edits and removes (console/connection_pages.py). Each
action leaves an audit line (console/audit.py).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import redis
import simplejson
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from console import audit, lookup
from console.auth import User, authenticate, check_credentials, parse_users, require_operator
from console.charts import hourly_svg
from console.connection_pages import ConnectionPages
from console.health import age_words, read_health, since, worst
from console.settings import ConsoleSettings
from schemas.wire import loads
from workers import keys
from workers.admission import pause, resume
from workers.alerts import build_report
from workers.deadletter import DeadLetter, DeadLetterStore
from workers.redact import redact
from workers.settings import Settings

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
TEMPLATES.env.globals.update(age_words=age_words, since=since)
MAX_LOGIN_FAILURES = 10  # per user name, then refused for LOGIN_LOCK_SECONDS
LOGIN_LOCK_SECONDS = 900
AGES = {"": None, "1h": 3600, "24h": 86_400, "7d": 7 * 86_400}
Handler = Callable[[Request], Awaitable[Response]]


class Console:
    """The app's state: settings, Redis and users; routes are its methods."""

    def __init__(
        self,
        console_settings: ConsoleSettings,
        settings: Settings,
        redis_client: redis.Redis,
        search: lookup.ZohoSearch = lookup.zoho_search,
        shortcode: lookup.ShortCode = lookup.xero_shortcode,
    ) -> None:
        self.users = parse_users(console_settings.users_text())
        self.secret = console_settings.secret()
        self.proxy_header = console_settings.zxs_console_proxy_user_header
        check_credentials(self.users, self.proxy_header, self.secret)
        self.proxy_operators = {
            n.strip() for n in console_settings.zxs_console_proxy_operators.split(",") if n.strip()
        }
        self.cs = console_settings
        self.settings = settings
        self.redis = redis_client
        self.store = DeadLetterStore(redis_client)
        self.search = search
        self.shortcode = shortcode

    # ------------------------------------------------------------------ identity and CSRF

    def user(self, request: Request) -> User | None:
        if self.proxy_header:
            name = request.headers.get(self.proxy_header, "").strip()
            if name:
                return User(name, "operator" if name in self.proxy_operators else "viewer")
        session = request.session
        found = self.users.get(str(session.get("user", "")))
        if found is None or session.get("expires", 0) < time.time():
            return None
        return found

    @staticmethod
    def csrf_token(request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = secrets.token_urlsafe(32)
            request.session["csrf"] = token
        return str(token)

    async def form(self, request: Request) -> FormData:
        """The POST's form once its CSRF token matches the session's (403 otherwise)."""
        form = await request.form()
        sent, expected = str(form.get("csrf", "")), request.session.get("csrf", "")
        if not expected or not secrets.compare_digest(sent, str(expected)):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page")
        return form

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.update(user=self.user(request), csrf=self.csrf_token(request))
        response = TEMPLATES.TemplateResponse(request, name, context, status_code=status)
        response.headers.update(
            {
                "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'"
                "; img-src 'self' data:; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin",
                "Cache-Control": "no-store",
            }
        )
        return response

    def viewer(self, handler: Callable[[Request, User], Awaitable[Response]]) -> Handler:
        async def wrapped(request: Request) -> Response:
            user = self.user(request)
            if user is None:
                return RedirectResponse(
                    f"/login?{urlencode({'next': request.url.path})}", status_code=303
                )
            return await handler(request, user)

        return wrapped

    def operator(
        self, handler: Callable[[Request, User, FormData], Awaitable[Response]]
    ) -> Handler:
        async def wrapped(request: Request) -> Response:
            user = self.user(request)
            if user is None:
                return RedirectResponse("/login", status_code=303)
            form = await self.form(request)
            require_operator(user)
            return await handler(request, user, form)

        return wrapped

    # ------------------------------------------------------------------ login

    async def login_page(self, request: Request) -> Response:
        return self.page(request, "login.html", next=request.query_params.get("next", "/"))

    async def login(self, request: Request) -> Response:
        form = await self.form(request)
        name, password = str(form.get("user", "")), str(form.get("password", ""))
        failures = keys.LOGIN_FAILURES(name)
        if int(cast(str | None, self.redis.get(failures)) or 0) >= MAX_LOGIN_FAILURES:
            minutes = LOGIN_LOCK_SECONDS // 60
            error = f"too many failed logins for this user: try again in {minutes} minutes"
            return self.page(request, "login.html", 429, error=error, next="/")
        user = authenticate(self.users, name, password)
        if user is None:
            pipe = self.redis.pipeline(transaction=False)
            pipe.incr(failures)
            pipe.expire(failures, LOGIN_LOCK_SECONDS)
            pipe.execute()
            return self.page(request, "login.html", 401, error="wrong user or password", next="/")
        self.redis.delete(failures)
        request.session.clear()  # a new session id's worth: no fixation of the old token
        request.session.update(
            user=user.name,
            expires=time.time() + self.cs.zxs_console_session_hours * 3600,
            csrf=secrets.token_urlsafe(32),
        )
        return RedirectResponse(local_path(str(form.get("next", "/"))), status_code=303)

    async def logout(self, request: Request) -> Response:
        await self.form(request)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # ------------------------------------------------------------------ connections

    async def connections(self, request: Request, user: User) -> Response:
        healths = read_health(self.redis, self.settings)
        charts = {
            h.name: hourly_svg(h.hourly, f"{h.name}: synced and failed per hour") for h in healths
        }
        return self.page(
            request, "connections.html", healths=healths, charts=charts, worst=worst(healths)
        )

    async def pause(self, request: Request, user: User, form: FormData) -> Response:
        name = self._connection(request)
        pause(self.redis, name, user.name)
        audit.record(user.name, "pause", name)
        return RedirectResponse("/", status_code=303)

    async def resume(self, request: Request, user: User, form: FormData) -> Response:
        name = self._connection(request)
        started = resume(self.redis, name, user.name, self.settings)
        audit.record(user.name, "resume", name, f"{started} waiting jobs started")
        return RedirectResponse("/", status_code=303)

    def _connection(self, request: Request) -> str:
        name = str(request.path_params["name"])
        if name not in self.settings.connections():
            raise HTTPException(404, f"no connection '{name}'")
        return name

    # ------------------------------------------------------------------ dead letters

    async def dead_letters(self, request: Request, user: User) -> Response:
        q = request.query_params
        filters = {k: q.get(k, "") for k in ("connection", "kind", "stage", "age")}
        letters = self.store.list(count=1_000_000)
        options = {
            "connection": sorted({dl.connection for dl in letters}),
            "kind": sorted({dl.error_kind for dl in letters}),
            "stage": sorted({dl.stage for dl in letters}),
        }
        shown = filter_letters(
            letters, filters["connection"], filters["kind"], filters["stage"], filters["age"]
        )
        return self.page(
            request,
            "dead_letters.html",
            letters=shown,
            total=len(letters),
            filters=filters,
            options=options,
            ages=list(AGES),
        )

    async def dead_letter(self, request: Request, user: User) -> Response:
        letter = self._letter(request)
        return self.page(
            request,
            "dead_letter.html",
            letter=letter,
            report=build_report(letter),
            payload=pretty_payload(letter.payload),
            traceback=redact(letter.traceback),
            audit=audit.recent(target=letter.id),
        )

    async def confirm(self, request: Request, user: User) -> Response:
        """The confirmation step of replay / discard / replay-all (no JavaScript needed)."""
        action = str(request.path_params["action"])
        if action not in {"replay", "discard"}:
            raise HTTPException(404)
        letter = self._letter(request)
        return self.page(request, "confirm.html", action=action, letter=letter, targets=[letter])

    async def act(self, request: Request, user: User, form: FormData) -> Response:
        action = str(request.path_params["action"])
        letter = self._letter(request)
        if action == "replay":
            from workers.replay import replay

            event_id = replay(letter, self.store, by=user.name)
            audit.record(user.name, "replay", letter.id, f"event {event_id}")
        elif action == "discard":
            self.store.discard(letter.id, by=user.name)
            audit.record(user.name, "discard", letter.id, letter_words(letter))
        else:
            raise HTTPException(404)
        return RedirectResponse(f"/dead-letters?{urlencode({'done': action})}", status_code=303)

    async def confirm_all(self, request: Request, user: User) -> Response:
        connection, kind = (
            request.query_params.get("connection", ""),
            request.query_params.get("kind", ""),
        )
        targets = filter_letters(self.store.list(count=1_000_000), connection=connection, kind=kind)
        return self.page(
            request,
            "confirm.html",
            action="replay-all",
            letter=None,
            targets=targets,
            connection=connection,
            kind=kind,
        )

    async def replay_all(self, request: Request, user: User, form: FormData) -> Response:
        from workers.replay import replay

        connection, kind = str(form.get("connection", "")), str(form.get("kind", ""))
        if not connection or not kind:
            raise HTTPException(400, "replay-all needs a connection and a kind")
        targets = filter_letters(self.store.list(count=1_000_000), connection=connection, kind=kind)
        for letter in targets:
            replay(letter, self.store, by=user.name)
            audit.record(user.name, "replay", letter.id, f"replay-all {kind}")
        audit.record(user.name, "replay-all", connection, f"{len(targets)} letters of {kind}")
        return RedirectResponse(f"/dead-letters?{urlencode({'done': 'replay-all'})}", 303)

    def _letter(self, request: Request) -> DeadLetter:
        letter_id = str(request.path_params["id"])
        letter = self.store.get(letter_id) if letter_id.isdigit() else None
        if letter is None:
            raise HTTPException(404, f"no open dead letter {letter_id} (replayed or discarded?)")
        return letter

    # ------------------------------------------------------------------ records and audit

    async def records(self, request: Request, user: User) -> Response:
        query = request.query_params.get("q", "")
        letters = self.store.list(count=1_000_000)
        timelines, notes = lookup.find(
            self.redis, self.settings, query, letters, self.search, self.shortcode
        )
        return self.page(request, "records.html", q=query, timelines=timelines, notes=notes)

    async def audit_page(self, request: Request, user: User) -> Response:
        return self.page(request, "audit.html", lines=audit.recent(count=500))

    async def health(self, request: Request) -> Response:
        self.redis.ping()
        return PlainTextResponse("ok")


def local_path(target: str) -> str:
    """`target` when it is a path on this site, else "/" (no open redirect via `next`)."""
    if target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target:
        return target
    return "/"


def filter_letters(
    letters: list[DeadLetter],
    connection: str = "",
    kind: str = "",
    stage: str = "",
    age: str = "",
    now: datetime | None = None,
) -> list[DeadLetter]:
    """Pure: the letters matching every filter given; `age` keeps letters older than it."""
    older = AGES.get(age)
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=older) if older else None
    return [
        dl
        for dl in letters
        if (not connection or dl.connection == connection)
        and (not kind or dl.error_kind == kind)
        and (not stage or dl.stage == stage)
        and (cutoff is None or datetime.fromisoformat(dl.failed_at) <= cutoff)
    ]


def pretty_payload(payload: str) -> str:
    """The stored (already redacted) payload, indented, redacted again with today's secrets."""
    try:
        text = str(simplejson.dumps(loads(payload), use_decimal=True, indent=2))
    except ValueError:
        text = payload
    return redact(text)


def letter_words(letter: DeadLetter) -> str:
    return f"{letter.module} {letter.record_id} at {letter.stage}: {letter.error_kind}"


def create_app(
    console_settings: ConsoleSettings,
    settings: Settings,
    redis_client: redis.Redis,
    search: lookup.ZohoSearch = lookup.zoho_search,
    shortcode: lookup.ShortCode = lookup.xero_shortcode,
) -> Starlette:
    """The console app; raises ConfigurationError when no credentials are configured."""
    c = Console(console_settings, settings, redis_client, search, shortcode)
    routes = [
        Route("/login", c.login_page, methods=["GET"]),
        Route("/login", c.login, methods=["POST"]),
        Route("/logout", c.logout, methods=["POST"]),
        Route("/healthz", c.health, methods=["GET"]),
        Route("/", c.viewer(c.connections), methods=["GET"]),
        Route("/connections/{name}/pause", c.operator(c.pause), methods=["POST"]),
        Route("/connections/{name}/resume", c.operator(c.resume), methods=["POST"]),
        Route("/dead-letters", c.viewer(c.dead_letters), methods=["GET"]),
        Route("/dead-letters/replay-all", c.viewer(c.confirm_all), methods=["GET"]),
        Route("/dead-letters/replay-all", c.operator(c.replay_all), methods=["POST"]),
        Route("/dead-letters/{id}", c.viewer(c.dead_letter), methods=["GET"]),
        Route("/dead-letters/{id}/{action}", c.viewer(c.confirm), methods=["GET"]),
        Route("/dead-letters/{id}/{action}", c.operator(c.act), methods=["POST"]),
        Route("/records", c.viewer(c.records), methods=["GET"]),
        Route("/audit", c.viewer(c.audit_page), methods=["GET"]),
        *ConnectionPages(c).routes(),
    ]
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=c.secret,
            session_cookie="zxs_console",
            max_age=int(console_settings.zxs_console_session_hours * 3600),
            same_site="strict",
            https_only=console_settings.zxs_console_cookie_secure,
        )
    ]
    return Starlette(routes=routes, middleware=middleware)
