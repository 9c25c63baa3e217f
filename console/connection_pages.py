"""Connection settings in the console (issue #20.4): the connections of the database, and forms
that add, edit and remove them through the same ConnectionStore and validation as
`zxsync connections` (workers/store/connections.py), so the two can never disagree.

Secrets are write-only: a form never carries one back, an empty secret input keeps the stored
value, and an error message names the field, never a value. Only operators change anything
(the console's role check and CSRF token, as for pause and replay); every change is an audit
line; removing asks first. Workers read the table every few seconds: no restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlparse

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

import workers.store.connections as stored
from clients.tokens import TokenCipher
from console import audit
from console.auth import User, require_operator
from schemas.connection import Connection
from schemas.errors import ConfigurationError
from workers.store import get_database
from workers.store.connections import (
    FIELDS,
    SECRET_FIELDS,
    ConnectionStore,
    from_text,
    refuse_bootstrap,
)

if TYPE_CHECKING:
    from console.app import Console


@dataclass(frozen=True)
class Row:
    """One line of the settings page."""

    name: str
    connection: Connection
    secrets: list[str]  # the names of the secrets set, never their values
    bootstrap: bool  # defined in ZXS_CONNECTIONS(_FILE)
    imported: bool  # in the table
    changed: str
    by: str


def text(value: Any) -> str:
    """A field's value as a form shows it (the inverse of `from_text`)."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def texts_of(connection: Connection | None) -> dict[str, str]:
    """Every non-secret field's text: the connection's values, else the defaults."""
    found: dict[str, str] = {}
    for name, field in Connection.model_fields.items():
        if name in SECRET_FIELDS:
            continue
        if connection is not None:
            found[name] = text(getattr(connection, name))
        elif not field.is_required():
            found[name] = text(field.get_default(call_default_factory=True))
    return found


def form_values(form: FormData, current: Connection | None) -> dict[str, Any]:
    """What a submitted form asks for. A field left empty takes its default; a field the form
    does not send is kept; a secret changes only when typed in, or cleared on purpose."""
    cleared = {str(v) for v in form.getlist("clear")}
    data: dict[str, Any] = {}
    for name, shape in FIELDS.items():
        if name == "name" and current is not None:
            continue  # a connection's name never changes
        given = str(form.get(name, "")).strip()
        if shape.secret:
            if name in cleared:
                data[name] = None
            elif given:
                data[name] = given
        elif name not in form:
            continue
        elif given:
            data[name] = from_text(name, given)
        elif current is not None:
            field = Connection.model_fields[name]
            data[name] = "" if field.is_required() else field.get_default(call_default_factory=True)
    return data


def submitted_texts(form: FormData, current: Connection | None) -> dict[str, str]:
    """The form as typed (to correct a mistake), secrets left out."""
    typed = {name: str(form[name]) for name in FIELDS if name in form and name not in SECRET_FIELDS}
    return {**texts_of(current), **typed}


def when(epoch: float | None) -> str:
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


class ConnectionPages:
    """The settings page and its forms, on the console's auth, pages and settings."""

    def __init__(self, console: Console) -> None:
        self.c = console

    def routes(self) -> list[Route]:
        c = self.c
        return [
            Route("/connections", c.viewer(self.listing), methods=["GET"]),
            Route("/connections/new", c.viewer(self.form_page), methods=["GET"]),
            Route("/connections/new", c.operator(self.add), methods=["POST"]),
            Route("/connections/{name}/edit", c.viewer(self.form_page), methods=["GET"]),
            Route("/connections/{name}/edit", c.operator(self.edit), methods=["POST"]),
            Route("/connections/{name}/remove", c.viewer(self.confirm_remove), methods=["GET"]),
            Route("/connections/{name}/remove", c.operator(self.remove), methods=["POST"]),
        ]

    def store(self) -> ConnectionStore:
        """The CLI's store with the console's key (ConfigurationError without ZXS_TOKEN_KEY)."""
        key = self.c.settings.zxs_token_key.get_secret_value()
        return ConnectionStore(get_database(), TokenCipher(key))

    def managed(self, name: str) -> tuple[ConnectionStore, Connection]:
        """A connection kept in the database, to edit or remove (a ConfigurationError when it
        is the environment's or there is no key; 404 when there is no such connection)."""
        store = self.store()
        refuse_bootstrap(name, self.c.settings.bootstrap_connections())
        current = store.get(name)
        if current is None:
            raise HTTPException(404, f"no connection '{name}' in the database")
        return store, current

    # ------------------------------------------------------------------ pages

    async def listing(
        self, request: Request, user: User, status: int = 200, error: str = ""
    ) -> Response:
        self.c.settings.connections()  # what the workers read: the bootstrap imported
        bootstrap = self.c.settings.bootstrap_connections()
        connections: dict[str, Connection] = {}
        changed: dict[str, float] = {}
        managed = True
        try:
            store = self.store()
            connections, changed = store.all(), store.changed()
        except ConfigurationError as exc:
            managed, error = False, error or exc.message
        rows = []
        for name, connection in sorted({**connections, **bootstrap}.items()):
            last = audit.recent(count=1, target=name, action_prefix="connections.")
            by = last[0].user if last else ""
            rows.append(
                Row(
                    name=name,
                    connection=connection,
                    secrets=[f for f in SECRET_FIELDS if getattr(connection, f) is not None],
                    bootstrap=name in bootstrap,
                    imported=name in connections,
                    changed=when(changed.get(name)),
                    by=by,
                )
            )
        return self.c.page(
            request,
            "connection_settings.html",
            status,
            rows=rows,
            managed=managed,
            error=error,
            done=request.query_params.get("done", ""),
            zoho_dc=urlparse(self.c.settings.zoho_accounts_url).netloc,
            refresh=f"{stored.REFRESH_SECONDS:g}",
        )

    async def form_page(self, request: Request, user: User) -> Response:
        require_operator(user)
        name = request.path_params.get("name")
        try:
            current = self.managed(str(name))[1] if name else None
            if current is None:
                self.store()  # no key, no form
        except ConfigurationError as exc:
            return await self.listing(request, user, 400, exc.message)
        return self.form(request, current, texts_of(current))

    def form(
        self,
        request: Request,
        current: Connection | None,
        texts: dict[str, str],
        error: ConfigurationError | None = None,
    ) -> Response:
        secrets_set = [f for f in SECRET_FIELDS if current and getattr(current, f) is not None]
        return self.c.page(
            request,
            "connection_form.html",
            400 if error else 200,
            current=current,
            fields=list(FIELDS.values()),
            texts=texts,
            secrets_set=secrets_set,
            error=error.message if error else "",
            error_at=field_of(error),
        )

    async def confirm_remove(self, request: Request, user: User) -> Response:
        require_operator(user)
        try:
            _, current = self.managed(str(request.path_params["name"]))
        except ConfigurationError as exc:
            return await self.listing(request, user, 400, exc.message)
        return self.c.page(
            request,
            "connection_remove.html",
            target=current.name,
            refresh=f"{stored.REFRESH_SECONDS:g}",
        )

    # ------------------------------------------------------------------ changes

    async def add(self, request: Request, user: User, form: FormData) -> Response:
        try:
            store = self.store()
            data = form_values(form, None)
            refuse_bootstrap(str(data.get("name", "")), self.c.settings.bootstrap_connections())
            connection = store.add(data)
        except ConfigurationError as exc:
            return self.form(request, None, submitted_texts(form, None), exc)
        audit.record(user.name, "connections.add", connection.name)
        return done(f"added {connection.name}")

    async def edit(self, request: Request, user: User, form: FormData) -> Response:
        name = str(request.path_params["name"])
        try:
            store, current = self.managed(name)
        except ConfigurationError as exc:
            return await self.listing(request, user, 400, exc.message)
        try:
            edited = store.edit(name, form_values(form, current))
        except ConfigurationError as exc:
            return self.form(request, current, submitted_texts(form, current), exc)
        fields = [f for f in FIELDS if getattr(edited, f) != getattr(current, f)]
        audit.record(user.name, "connections.edit", name, ",".join(fields))
        return done(f"edited {name}: {', '.join(fields) or 'nothing changed'}")

    async def remove(self, request: Request, user: User, form: FormData) -> Response:
        name = str(request.path_params["name"])
        try:
            store, _ = self.managed(name)
        except ConfigurationError as exc:
            return await self.listing(request, user, 400, exc.message)
        store.remove(name)
        audit.record(user.name, "connections.remove", name)
        return done(f"removed {name}")


def field_of(error: ConfigurationError | None) -> str:
    """The form field an error is shown beside ("tax_types.GST" is tax_types'), else ""."""
    field = (error.field or "").split(".")[0] if error else ""
    return field if field in FIELDS else ""


def done(words: str) -> Response:
    return RedirectResponse(f"/connections?{urlencode({'done': words})}", status_code=303)
