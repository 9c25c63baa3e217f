"""Find a record by Zoho record id, Zoho invoice number or Xero invoice number, and its
timeline: the history every stage wrote, its outcome, its Xero link and any dead letter.

A Zoho record id and a Xero invoice number are found in Redis (history keys, the invoice links);
a Zoho invoice number is not stored by the pipeline, so it is asked of Zoho's search API (one
call per connection, through the shared limiter).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis

from schemas.connection import Connection
from schemas.wire import loads
from workers import keys
from workers.deadletter import DeadLetter
from workers.history import RecordHistory, record_key
from workers.pipeline import PIPELINES
from workers.redact import redact
from workers.settings import Settings
from workers.store import get_database

# Zoho's search `criteria` needs these escaped with a backslash (FACTS.md §4)
_CRITERIA_SPECIALS = "\\(),"
ZohoSearch = Callable[[str, str], list[str]]  # (connection, invoice number) -> record ids
ShortCode = Callable[[str], str | None]  # connection -> its Xero organisation's ShortCode


@dataclass
class Timeline:
    connection: str
    module: str
    record_id: str
    entries: list[dict[str, Any]]
    outcome: tuple[str, str] | None
    xero: dict[str, Any] | None
    dead_letters: list[DeadLetter] = field(default_factory=list)
    xero_url: str = ""
    zoho_url: str = ""


def escape_criteria(value: str) -> str:
    return "".join(f"\\{c}" if c in _CRITERIA_SPECIALS else c for c in value)


def zoho_search(connection: str, number: str) -> list[str]:
    """Zoho record ids of invoices numbered `number` on `connection` (one API call)."""
    from workers.context import build_context

    ctx = build_context(connection)
    payload = ctx.zoho.json(
        "GET",
        "Invoices/search",
        params={"criteria": f"(Invoice_Number:equals:{escape_criteria(number)})"},
    )
    return [str(row["id"]) for row in (payload or {}).get("data", [])]


def xero_shortcode(connection: str) -> str | None:
    """The Xero organisation's ShortCode (GET Organisation: one call per connection, cached)."""
    from workers.context import build_context

    ctx = build_context(connection)
    cached = ctx.redis.hget(keys.SHORTCODES(), connection)
    if cached:
        return str(cached)
    payload = ctx.xero.json("GET", "Organisation") or {}
    code = str((payload.get("Organisations") or [{}])[0].get("ShortCode") or "")
    if code:
        ctx.redis.hset(keys.SHORTCODES(), connection, code)
    return code or None


def xero_link(invoice_id: str, shortcode: str | None) -> str:
    """Xero's deep link to the invoice in the right organisation (developer.xero.com "Deep link
    to Xero"); without the ShortCode, the invoice in whichever organisation is open."""
    path = f"/AccountsReceivable/View.aspx?InvoiceID={invoice_id}"
    if shortcode:
        return (
            "https://go.xero.com/organisationlogin/default.aspx"
            f"?shortcode={shortcode}&redirecturl={path}"
        )
    return f"https://go.xero.com{path}"


def zoho_link(settings: Settings, connection: Connection, module: str, record_id: str) -> str:
    """The record in Zoho CRM's web UI, in the data centre of the configured API."""
    host = urlsplit(settings.zoho_api_url).hostname or "www.zohoapis.com"
    tld = host.split("zohoapis.", 1)[1] if "zohoapis." in host else "com"
    return f"https://crm.zoho.{tld}/crm/org{connection.zoho_org_id}/tab/{module}/{record_id}"


def find(
    redis_client: redis.Redis,
    settings: Settings,
    query: str,
    letters: list[DeadLetter],
    search: ZohoSearch = zoho_search,
    shortcode: ShortCode = xero_shortcode,
) -> tuple[list[Timeline], list[str]]:
    """Timelines of every record the query names, and notes on what could not be asked."""
    query = query.strip()
    if not query:
        return [], []
    connections = settings.connections()
    found: set[tuple[str, str, str]] = set()
    notes: list[str] = []
    database = get_database()
    for name in connections:
        for module in PIPELINES:
            if record_key(name, module, query) in database.history_keys(query):
                found.add((name, module, query))
        for link_id in database.links_where("invoice", name, "InvoiceNumber", query):
            module, _, record_id = link_id.partition(":")
            found.add((name, module, record_id))
    if not found:
        for name in connections:
            try:
                found.update((name, "Invoices", rid) for rid in search(name, query))
            except Exception as exc:
                notes.append(redact(f"{name}: Zoho search failed ({type(exc).__name__}: {exc})"))
    history = RecordHistory(redis_client)
    timelines = []
    for name, module, record_id in sorted(found):
        key = record_key(name, module, record_id)
        xero = database.links("invoice", name, [f"{module}:{record_id}"]).get(
            f"{module}:{record_id}"
        )
        code = None
        if xero:
            try:
                code = shortcode(name)
            except Exception as exc:
                notes.append(redact(f"{name}: no Xero ShortCode for the deep link ({exc})"))
        timelines.append(
            Timeline(
                connection=name,
                module=module,
                record_id=record_id,
                entries=history.entries(key),
                outcome=_outcome(redis_client, name, key),
                xero=xero,
                dead_letters=[
                    dl for dl in letters if dl.connection == name and dl.record_id == record_id
                ],
                xero_url=xero_link(str(xero["InvoiceID"]), code) if xero else "",
                zoho_url=zoho_link(settings, connections[name], module, record_id),
            )
        )
    return timelines, notes


def _outcome(redis_client: redis.Redis, connection: str, key: str) -> tuple[str, str] | None:
    raw = redis_client.hget(keys.OUTCOMES(connection), key)
    if not raw:
        return None
    outcome, detail = loads(str(raw))
    return str(outcome), str(detail)
