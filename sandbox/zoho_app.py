"""Zoho CRM sandbox: a local Starlette app that answers like Zoho's accounts server and CRM v7 API.

Point both `ZOHO_ACCOUNTS_URL` and `ZOHO_API_URL` at it; token replies carry this server's own
base URL as `api_domain`, as Zoho's carry the data centre's (FACTS.md §1). Section numbers (§n)
refer to the project's Zoho facts file (FACTS.md, kept beside the repository: Zoho's CRM v7
documentation and its developers' issue threads, summarised); state, field lists and totals
live in `sandbox.zoho_state`.

Faithful envelopes and status codes:
- OAuth (§2): `POST /oauth/v2/token` (params in query or form) answers `invalid_client` and
  `invalid_code` with HTTP 200; the 10-per-10-minutes rule answers 400 "Access Denied".
  `GET /oauth/v2/auth` is a consent screen that always approves and redirects with `code`,
  `location` and `accounts-server` (§1).
- API (§3, §4, §8, §9): `Authorization: Zoho-oauthtoken <token>` or 401 `INVALID_TOKEN`;
  `{"data": [...], "info": {...}}` lists, 204 for nothing found, per-record results with
  201/207/400, `LIMIT_EXCEEDED` past 100 records, `fields` required (max 50) and `ids` (max
  100) on lists, `page_token` past 2,000 records, search `criteria` with escapes, notes,
  attachments and `/settings/fields` (GET lists the org's fields; POST creates custom ones, §11).
- Limits (§6): 1 credit per call per org over a rolling day, concurrent calls per org, both
  answered 429 `TOO_MANY_REQUESTS`. `latency_seconds` (and `slow_rate`) delays and `fault_rate`
  answers 500 `INTERNAL_ERROR` before a call touches data, so a 500 never half-applies a write;
  `timeout_rate` and `drop_rate` lose the answer of a call that did its work (sandbox/faults.py).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qsl, urlencode

import simplejson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sandbox.zoho_notifications import WatchError
from sandbox.zoho_state import (
    ITEMS_FIELD,
    MAX_RECORDS_PER_CALL,
    MODULE_FIELDS,
    Predicate,
    Record,
    ZohoSandbox,
)

__all__ = ["ZohoSandbox", "create_zoho_app"]

Handler = Callable[[ZohoSandbox, Request, str], Awaitable[Response]]

VERSIONS = ("v7", "v8")
MAX_FIELDS = 50  # §3
MAX_IDS = 100  # records read by `ids` in one list call (§3)
MAX_FIELDS_PER_CREATE = 5  # §11 (u: the v8 create-custom-field request schema)
MAX_PER_PAGE = 200  # §3
MAX_DISCRETE_RECORDS = 2000  # §3, §4: past this, lists need page_token and search stops
MAX_CRITERIA = 10  # §4
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024  # §8
SORTABLE = ("id", "Created_Time", "Modified_Time")


class ApiError(Exception):
    """A whole-request error in Zoho's envelope {code, details, message, status}."""

    def __init__(self, status: int, code: str, message: str, details: Record | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.body: Record = {
            "code": code,
            "details": details or {},
            "message": message,
            "status": "error",
        }


def _json(content: Any, status: int = 200) -> Response:
    """Render with Decimals as JSON numbers; money never passes through float."""
    return Response(
        simplejson.dumps(content, use_decimal=True), status, media_type="application/json"
    )


def _missing(param: str) -> ApiError:
    return ApiError(
        400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param": param}
    )


def _bad_param(param: str, message: str = "invalid data") -> ApiError:
    return ApiError(400, "INVALID_DATA", message, {"param": param})


def _module(request: Request) -> str:
    module = str(request.path_params["module"])
    if module not in MODULE_FIELDS:
        raise ApiError(400, "INVALID_MODULE", "the module name given seems to be invalid")
    return module


def _base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise _bad_param(name) from None


async def _body_json(request: Request) -> Any:
    try:
        return json.loads(await request.body(), parse_float=Decimal)
    except ValueError:
        raise ApiError(400, "INVALID_DATA", "body is not in json format") from None


async def _body_rows(request: Request) -> tuple[list[Any], Record]:
    """The `data` array of a write (max 100 records, §3) and the whole body."""
    body = await _body_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("data"), list) or not body["data"]:
        raise _missing("data")
    if len(body["data"]) > MAX_RECORDS_PER_CALL:
        raise ApiError(
            400,
            "LIMIT_EXCEEDED",
            "the number of records exceeds the limit",
            {"api_name": "data", "limit": MAX_RECORDS_PER_CALL},
        )
    return body["data"], body


def _batch_response(results: list[Record], ok_status: int, key: str = "data") -> Response:
    """All ok -> ok_status, all failed -> 400, mixed -> 207 (§3)."""
    failed = sum(1 for r in results if r["status"] == "error")
    status = ok_status if failed == 0 else 400 if failed == len(results) else 207
    return _json({key: results}, status)


# ------------------------------------------------------------------------------ OAuth (§2)


async def _token(zs: ZohoSandbox, request: Request) -> Response:
    params = dict(request.query_params)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        params = {**dict(parse_qsl((await request.body()).decode())), **params}
    client_id, secret = params.get("client_id", ""), params.get("client_secret", "")
    grant = params.get("grant_type")
    if grant == "refresh_token":
        status, body = zs.refresh(client_id, secret, params.get("refresh_token", ""))
    elif grant == "authorization_code":
        status, body = zs.exchange_code(
            client_id, secret, params.get("code", ""), params.get("redirect_uri", "")
        )
    else:
        status, body = 200, {"error": "unsupported_grant_type"}
    if "access_token" in body:
        body["api_domain"] = _base_url(request)
    return _json(body, status)


async def _authorize(zs: ZohoSandbox, request: Request) -> Response:
    q = request.query_params
    redirect_uri = q.get("redirect_uri", "")
    if q.get("response_type") != "code" or not redirect_uri:
        return _json({"error": "invalid_request"}, 400)
    code = zs.grant_code(q.get("client_id", ""), redirect_uri)
    if code is None:
        return _json({"error": "invalid_client"}, 400)
    params = {"code": code, "location": "us", "accounts-server": _base_url(request)}
    if "state" in q:
        params = {"state": q["state"], **params}
    separator = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(redirect_uri + separator + urlencode(params), status_code=302)


# ---------------------------------------------------------------------- pagination (§3)


def _sorted(request: Request, rows: list[Record]) -> list[Record]:
    sort_by = request.query_params.get("sort_by", "id")
    order = request.query_params.get("sort_order", "desc")
    if sort_by not in SORTABLE:
        raise _bad_param("sort_by")
    if order not in ("asc", "desc"):
        raise _bad_param("sort_order")

    def key(row: Record) -> tuple[Any, int]:
        return (int(row["id"]) if sort_by == "id" else row.get(sort_by) or "", int(row["id"]))

    return sorted(rows, key=key, reverse=order == "desc")


def _page_token(module: str, offset: int) -> str:
    raw = json.dumps({"m": module, "o": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _token_offset(module: str, token: str) -> int:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error):
        raise _bad_param("page_token") from None
    if not isinstance(decoded, dict) or decoded.get("m") != module:
        raise _bad_param("page_token")
    return int(decoded["o"])


def _page(
    request: Request,
    module: str,
    rows: list[Record],
    *,
    tokens: bool,
    fields: list[str] | None = None,
) -> Response:
    """One page of `rows` with Zoho's `info`; lists page by token past 2,000, search stops.

    `fields` trims each row to the requested fields (and id) after sorting.
    """
    q = request.query_params
    per_page = min(max(_int_param(request, "per_page", MAX_PER_PAGE), 1), MAX_PER_PAGE)
    token = q.get("page_token")
    if token is not None and not tokens:
        raise _bad_param("page_token")
    if token is not None and "page" in q:
        raise ApiError(400, "INVALID_REQUEST", "page and page_token cannot be given together")
    page = max(_int_param(request, "page", 1), 1)
    offset = _token_offset(module, token) if token is not None else (page - 1) * per_page
    if token is None and offset + per_page > MAX_DISCRETE_RECORDS:
        code = "DISCRETE_PAGINATION_LIMIT_EXCEEDED" if tokens else "LIMIT_REACHED"
        raise ApiError(
            400,
            code,
            "cannot fetch more than 2000 records this way",
            {"limit": MAX_DISCRETE_RECORDS},
        )
    chunk = _sorted(request, rows)[offset : offset + per_page]
    if not chunk:
        return Response(status_code=204)
    if fields is not None:
        chunk = [{"id": r["id"], **{f: r[f] for f in fields}} for r in chunk]
    more = offset + per_page < len(rows)
    info: Record = {
        "per_page": per_page,
        "count": len(chunk),
        "page": page if token is None else offset // per_page + 1,
        "more_records": more,
        "sort_by": q.get("sort_by", "id"),
        "sort_order": q.get("sort_order", "desc"),
    }
    if tokens:
        info["next_page_token"] = _page_token(module, offset + per_page) if more else None
    return _json({"data": chunk, "info": info})


# --------------------------------------------------------------------------- search (§4)


def _candidates(value: Any, sub: str | None) -> list[str]:
    """The strings a stored value can match: a lookup matches by id or by name."""
    if value is None:
        return []
    if isinstance(value, dict):
        keys = [sub] if sub else ["id", "name"]
        return [str(value[k]) for k in keys if value.get(k) is not None]
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    return [str(value)]


def _same(stored: str, wanted: str) -> bool:
    if stored.lower() == wanted.lower():
        return True
    try:
        return Decimal(stored) == Decimal(wanted)
    except InvalidOperation:
        return False


def _split_values(text: str) -> list[str]:
    """Split a criteria value on unescaped commas (any one may match); `\\x` is a literal x."""
    values: list[str] = []
    current, escaped = "", False
    for char in text:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ",":
            values.append(current)
            current = ""
        else:
            current += char
    return [*values, current]


def _condition(module: str, raw: str) -> Predicate:
    parts = raw.split(":", 2)
    if len(parts) != 3:
        raise ApiError(400, "INVALID_QUERY", "invalid query formed", {"reason": "bad criteria"})
    api_name, operator, value_text = parts
    name, _, sub = api_name.strip().partition(".")
    if name != "id" and name not in MODULE_FIELDS[module]:
        raise ApiError(
            400,
            "INVALID_QUERY",
            "invalid query formed",
            {"api_name": api_name, "reason": "the api name given is invalid"},
        )
    values = _split_values(value_text)
    op = operator.strip()
    if op in ("equals", "in", "not_equal"):
        wanted = op != "not_equal"

        def match(row: Record) -> bool:
            stored = _candidates(row.get(name), sub or None)
            return any(_same(s, v) for s in stored for v in values) is wanted

        return match
    if op == "starts_with":
        return lambda row: any(
            s.lower().startswith(v.lower())
            for s in _candidates(row.get(name), sub or None)
            for v in values
        )
    raise ApiError(
        400,
        "INVALID_QUERY",
        "invalid query formed",
        {"api_name": api_name, "operator": op, "reason": "invalid operator found"},
    )


class _CriteriaParser:
    """`(A:equals:x)and((B:starts_with:y)or(C:equals:z\\,w))`; `and` binds tighter than `or`."""

    def __init__(self, module: str, text: str) -> None:
        self.module, self.text, self.pos, self.conditions = module, text, 0, 0

    def parse(self) -> Predicate:
        predicate = self._expr()
        self._skip()
        if self.pos != len(self.text):
            raise self._error()
        if self.conditions > MAX_CRITERIA:
            raise ApiError(
                400, "LIMIT_EXCEEDED", "criteria limit exceeded", {"limit": MAX_CRITERIA}
            )
        return predicate

    def _error(self) -> ApiError:
        return ApiError(
            400, "INVALID_QUERY", "invalid query formed", {"reason": "invalid criteria"}
        )

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _keyword(self) -> str | None:
        self._skip()
        for word in ("and", "or"):
            if self.text[self.pos : self.pos + len(word)].lower() == word:
                self.pos += len(word)
                return word
        return None

    def _expr(self) -> Predicate:
        groups: list[list[Predicate]] = [[self._term()]]
        while (word := self._keyword()) is not None:
            if word == "or":
                groups.append([])
            groups[-1].append(self._term())
        return lambda row: any(all(p(row) for p in group) for group in groups)

    def _term(self) -> Predicate:
        self._skip()
        if self.text[self.pos : self.pos + 1] != "(":
            raise self._error()
        self.pos += 1
        self._skip()
        if self.text[self.pos : self.pos + 1] == "(":
            inner = self._expr()
            self._skip()
        else:
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] != ")":
                self.pos += 2 if self.text[self.pos] == "\\" else 1
            inner = _condition(self.module, self.text[start : self.pos])
            self.conditions += 1
        if self.text[self.pos : self.pos + 1] != ")":
            raise self._error()
        self.pos += 1
        return inner


def _search_predicate(module: str, request: Request) -> Predicate:
    q = request.query_params
    specs = MODULE_FIELDS[module]
    if "criteria" in q:
        return _CriteriaParser(module, q["criteria"]).parse()
    for param, types in (("email", ("email",)), ("phone", ("phone",))):
        if param in q:
            names = [n for n, s in specs.items() if s.data_type in types]
            wanted = q[param].lower()
            return lambda row: any(str(row.get(n) or "").lower() == wanted for n in names)
    if "word" in q:
        text_types = ("text", "textarea", "email", "phone", "website", "picklist")
        names = [n for n, s in specs.items() if s.data_type in text_types]
        word = q["word"].lower()
        return lambda row: any(word in str(row.get(n) or "").lower() for n in names)
    raise _missing("criteria")


# --------------------------------------------------------------------- records API (§3)


async def _list(zs: ZohoSandbox, request: Request, org_id: str) -> Response:
    module = _module(request)
    q = request.query_params
    fields = [f.strip() for f in q.get("fields", "").split(",") if f.strip()]
    if not fields:
        raise _missing("fields")
    if len(fields) > MAX_FIELDS:
        raise ApiError(
            400, "LIMIT_EXCEEDED", "fields limit exceeded", {"param": "fields", "limit": MAX_FIELDS}
        )
    known = zs.fields(org_id, module) or {}
    for name in fields:
        if name not in known:
            raise ApiError(400, "INVALID_DATA", "invalid data", {"api_name": name})
    ids = {i.strip() for i in q.get("ids", "").split(",") if i.strip()}
    if len(ids) > MAX_IDS:
        raise ApiError(
            400, "LIMIT_EXCEEDED", "ids limit exceeded", {"param": "ids", "limit": MAX_IDS}
        )
    since = request.headers.get("if-modified-since")
    cutoff = None
    if since is not None:
        try:
            cutoff = datetime.fromisoformat(since)
        except ValueError:
            raise _bad_param("If-Modified-Since") from None
        if cutoff.tzinfo is None:
            raise _bad_param("If-Modified-Since")

    def wanted(row: Record) -> bool:
        if ids and row["id"] not in ids:
            return False
        return cutoff is None or datetime.fromisoformat(row["Modified_Time"]) > cutoff

    rows = zs.select(org_id, module, wanted, [*fields, *SORTABLE[1:]])
    if not rows and cutoff is not None:
        return Response(status_code=304)
    return _page(request, module, rows, tokens=True, fields=fields)


async def _search(zs: ZohoSandbox, request: Request, org_id: str) -> Response:
    module = _module(request)
    rows = zs.select(org_id, module, _search_predicate(module, request))
    return _page(request, module, rows, tokens=False)


async def _get_record(zs: ZohoSandbox, request: Request, org_id: str) -> Response:
    module = _module(request)
    record = zs.get(org_id, module, str(request.path_params["record_id"]))
    if record is None:
        return Response(status_code=204)
    return _json({"data": [record]})


def _fires_workflow(body: Record) -> bool:
    """Zoho runs workflow rules unless `trigger` is given without "workflow"."""
    trigger = body.get("trigger")
    if trigger is None:
        return True
    if not isinstance(trigger, list):
        raise ApiError(400, "INVALID_DATA", "invalid data", {"api_name": "trigger"})
    return "workflow" in trigger


async def _write(
    zs: ZohoSandbox, request: Request, org_id: str, *, insert: bool, path_id: str | None = None
) -> Response:
    module = _module(request)
    rows, body = await _body_rows(request)
    results = zs.write(
        org_id, module, rows, path_id=path_id, insert=insert, workflow=_fires_workflow(body)
    )
    return _batch_response(results, 201 if insert else 200)


async def _module_root(zs: ZohoSandbox, request: Request, org_id: str) -> Response:
    if request.method == "GET":
        return await _list(zs, request, org_id)
    if request.path_params["module"] == "Notes" and request.method == "POST":
        rows, _ = await _body_rows(request)
        return _batch_response(zs.create_notes(org_id, rows, None), 201)
    return await _write(zs, request, org_id, insert=request.method == "POST")


async def _deleted(zs: ZohoSandbox, request: Request, org_id: str) -> Response:
    """`GET /{module}/deleted?type=all|recycle|permanent` (FACTS §11): recently deleted ids
    with `deleted_time`, paged like a list; 204 when there are none."""
    module = _module(request)
    kind = request.query_params.get("type", "all")
    if kind not in ("all", "recycle", "permanent"):
        raise _bad_param("type")
    return _page(request, module, zs.deleted(org_id, module, kind), tokens=False)


async def _record(zs: ZohoSandbox, request: Request, org_id: str) -> Response:
    if request.method == "GET":
        return await _get_record(zs, request, org_id)
    record_id = str(request.path_params["record_id"])
    return await _write(zs, request, org_id, insert=False, path_id=record_id)


def _parent_or_error(zs: ZohoSandbox, request: Request, org_id: str) -> tuple[str, str]:
    module = _module(request)
    record_id = str(request.path_params["record_id"])
    if zs.get(org_id, module, record_id) is None:
        raise ApiError(
            400, "INVALID_DATA", "the related id given seems to be invalid", {"id": record_id}
        )
    return module, record_id


async def _notes(zs: ZohoSandbox, request: Request, org_id: str) -> Response:
    module, record_id = _parent_or_error(zs, request, org_id)
    if request.method == "GET":
        return _page(request, "Notes", zs.notes(org_id, module, record_id), tokens=False)
    rows, _ = await _body_rows(request)
    return _batch_response(zs.create_notes(org_id, rows, (module, record_id)), 201)


def _multipart_file(content_type: str, body: bytes) -> tuple[str, str, int] | None:
    """(file name, content type, size) of the `file` part of a multipart/form-data body."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        return None
    for part in message.iter_parts():
        if (
            isinstance(part, EmailMessage)
            and part.get_param("name", header="content-disposition") == "file"
        ):
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
            return part.get_filename() or "file", part.get_content_type(), size
    return None


async def _attachments(zs: ZohoSandbox, request: Request, org_id: str) -> Response:
    module, record_id = _parent_or_error(zs, request, org_id)
    if request.method == "GET":
        found = zs.attachments(org_id, module, record_id)
        return _page(request, "Attachments", found, tokens=False)
    upload = _multipart_file(request.headers.get("content-type", ""), await request.body())
    if upload is None:
        raise _missing("file")
    name, content_type, size = upload
    if size > MAX_ATTACHMENT_BYTES:
        raise ApiError(
            400,
            "FILE_SIZE_MORE_THAN_ALLOWED_SIZE",
            "file size exceeds the allowed limit",
            {"limit": MAX_ATTACHMENT_BYTES},
        )
    result = zs.add_attachment(org_id, module, record_id, name, size, content_type)
    assert result is not None  # the parent was checked above
    return _json({"data": [result]})


async def _watch(zs: ZohoSandbox, request: Request, org_id: str) -> Response:
    """`/actions/watch` (sandbox/zoho_notifications.py): POST creates, PUT renews, GET lists."""
    if request.method == "GET":
        return _json({"watch": zs.notifications.channels(org_id)})
    body = await _body_json(request)
    items = body.get("watch") if isinstance(body, dict) else None
    try:
        done = zs.notifications.watch(
            org_id, items, set(MODULE_FIELDS), replace=request.method == "PUT"
        )
    except WatchError as exc:
        raise ApiError(400, exc.code, exc.message, exc.details) from None
    return _json({"watch": done})


async def _fields_meta(zs: ZohoSandbox, request: Request, org_id: str) -> Response:
    """`GET /settings/fields?module=X` (§9) lists the org's fields; `POST` creates custom ones
    (§11: `{"fields": [{field_label, data_type, ...}]}`, at most 5 a call (u))."""
    module = request.query_params.get("module")
    if module is None:
        raise _missing("module")
    specs = zs.fields(org_id, module)
    if specs is None:
        raise ApiError(400, "INVALID_MODULE", "the module name given seems to be invalid")
    if request.method == "POST":
        body = await _body_json(request)
        items = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise _missing("fields")
        if len(items) > MAX_FIELDS_PER_CREATE:
            raise ApiError(
                400,
                "LIMIT_EXCEEDED",
                "fields limit exceeded",
                {"param": "fields", "limit": MAX_FIELDS_PER_CREATE},
            )
        return _batch_response(zs.create_fields(org_id, module, items), 201, key="fields")
    fields = [
        {
            "api_name": name,
            "field_label": name.replace("_", " "),
            "data_type": spec.data_type,
            "custom_field": spec.custom,
            "read_only": spec.read_only,
            "system_mandatory": spec.mandatory,
            "pick_list_values": [{"display_value": v, "actual_value": v} for v in spec.values],
            "lookup": {"module": {"api_name": spec.target}} if spec.target else {},
            "subform": {"module": "Line_Items"} if name == ITEMS_FIELD.get(module) else None,
        }
        for name, spec in specs.items()
    ]
    return _json({"fields": fields})


# ------------------------------------------------------------------------------- wiring


def _crm(zs: ZohoSandbox, label: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an API handler with auth, limits (§6), latency, faults and stats."""

    async def guarded(request: Request) -> Response:
        if request.path_params["version"] not in VERSIONS:
            raise ApiError(
                404,
                "INVALID_URL_PATTERN",
                "Please check if the URL trying to access is a correct one",
            )
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        org_id = zs.org_for_token(token.strip()) if scheme == "Zoho-oauthtoken" else None
        if org_id is None:
            raise ApiError(401, "INVALID_TOKEN", "invalid oauth token")
        if not zs.admit(org_id):
            raise ApiError(429, "TOO_MANY_REQUESTS", "too many requests")
        try:
            await zs.faults.slow_down()
            if zs.roll_fault():
                raise ApiError(500, "INTERNAL_ERROR", "Internal Server Error")
            return await handler(zs, request, org_id)
        finally:
            zs.release(org_id)

    async def endpoint(request: Request) -> Response:
        try:
            response = await guarded(request)
        except ApiError as exc:
            response = _json(exc.body, exc.status)
        module = str(request.path_params.get("module", ""))
        version = str(request.path_params["version"])
        route = label.replace("{module}", module).replace("{version}", version)
        zs.count(f"{request.method} {route}", response.status_code)
        return await zs.faults.deliver(response, zs.faults.lose())

    return endpoint


def _plain(
    zs: ZohoSandbox, label: str, handler: Callable[[ZohoSandbox, Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    """Accounts-server endpoints: no API credits, only stats."""

    async def endpoint(request: Request) -> Response:
        response = await handler(zs, request)
        zs.count(f"{request.method} {label}", response.status_code)
        return response

    return endpoint


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    body = {
        "code": "INVALID_URL_PATTERN",
        "details": {},
        "message": "Please check if the URL trying to access is a correct one",
        "status": "error",
    }
    return _json(body, status)


def create_zoho_app(zs: ZohoSandbox) -> Starlette:
    """The ASGI app serving both the accounts server and the CRM API of `zs`."""
    crm = "/crm/{version}"
    routes = [
        Route("/oauth/v2/token", _plain(zs, "/oauth/v2/token", _token), methods=["POST"]),
        Route("/oauth/v2/auth", _plain(zs, "/oauth/v2/auth", _authorize), methods=["GET"]),
        Route(
            f"{crm}/actions/watch",
            _crm(zs, f"{crm}/actions/watch", _watch),
            methods=["GET", "POST", "PUT"],
        ),
        Route(
            f"{crm}/settings/fields",
            _crm(zs, f"{crm}/settings/fields", _fields_meta),
            methods=["GET", "POST"],
        ),
        Route(
            f"{crm}/{{module}}/search",
            _crm(zs, f"{crm}/{{module}}/search", _search),
            methods=["GET"],
        ),
        Route(
            f"{crm}/{{module}}/deleted",
            _crm(zs, f"{crm}/{{module}}/deleted", _deleted),
            methods=["GET"],
        ),
        Route(
            f"{crm}/{{module}}/{{record_id}}/Notes",
            _crm(zs, f"{crm}/{{module}}/{{id}}/Notes", _notes),
            methods=["GET", "POST"],
        ),
        Route(
            f"{crm}/{{module}}/{{record_id}}/Attachments",
            _crm(zs, f"{crm}/{{module}}/{{id}}/Attachments", _attachments),
            methods=["GET", "POST"],
        ),
        Route(
            f"{crm}/{{module}}/{{record_id}}",
            _crm(zs, f"{crm}/{{module}}/{{id}}", _record),
            methods=["GET", "PUT"],
        ),
        Route(
            f"{crm}/{{module}}",
            _crm(zs, f"{crm}/{{module}}", _module_root),
            methods=["GET", "POST", "PUT"],
        ),
    ]
    return Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})
