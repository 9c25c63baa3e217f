"""Zoho CRM v7 client: read records, write fields back, add notes.

Answers follow Zoho's envelope `{"data":[{"code","details","message","status"}]}` (FACTS.md §3);
calls go to the `api_domain` the token response names, falling back to ZOHO_API_URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from clients.http import ApiClient, Limiter, body_text, server_or_generic
from clients.oauth import OAuthApp
from clients.tokens import Refresh, TokenManager
from schemas.errors import (
    ApiError,
    AuthRevoked,
    NotFound,
    RateLimited,
    ValidationFailed,
)
from schemas.wire import loads

PROVIDER = "Zoho"
API_VERSION = "crm/v7"
MAX_RECORDS_PER_CALL = 100
REFRESH_BLOCKED = "Access Denied"  # Zoho's `error` once a refresh token was used 10 times in 10 min
REFRESH_BLOCK_SECONDS = 60.0


def classify_zoho(response: httpx.Response) -> ApiError:
    """Turn a non-2xx Zoho answer into the error the retry policy understands."""
    try:
        payload = loads(response.content) if response.content else {}
    except ValueError:
        payload = {}
    code = payload.get("code", "") if isinstance(payload, dict) else ""
    message = (payload.get("message") if isinstance(payload, dict) else None) or body_text(response)
    if response.status_code == 429 or code == "TOO_MANY_REQUESTS":
        return RateLimited(PROVIDER, "api credits or concurrency", None)
    rows = (payload.get("data") or payload.get("fields")) if isinstance(payload, dict) else None
    if response.status_code == 400 and isinstance(rows, list):
        return ValidationFailed(PROVIDER, record_errors(rows))  # per record (or per new field)
    if response.status_code == 400 and code:
        return ValidationFailed(PROVIDER, [f"{code}: {message}"])
    if response.status_code == 401:
        return AuthRevoked(PROVIDER, f"{code or 'unauthorised'}: {message}", status=401)
    return server_or_generic(PROVIDER, response, f"{code} {message}".strip())


def record_errors(results: list[dict[str, Any]]) -> list[str]:
    """Messages of the per-record results that failed, naming the field Zoho names."""
    errors = []
    for result in results:
        if result.get("status") == "success":
            continue
        field = (result.get("details") or {}).get("api_name")
        text = f"{result.get('code')}: {result.get('message')}"
        errors.append(f"{text} (field {field})" if field else text)
    return errors


def zoho_oauth(accounts_url: str, client_id: str, client_secret: str) -> OAuthApp:
    """Zoho's token endpoint: the client secret and refresh token in the form body (Zoho's
    examples put them in the query, where every proxy and access log on the way keeps them;
    Zoho reads either); the refresh token is kept (answers name none, FACTS §2); "Access
    Denied" is Zoho's 10 refreshes per 10 minutes: a wait, not a revoked token."""
    return OAuthApp(
        PROVIDER,
        f"{accounts_url.rstrip('/')}/oauth/v2/token",
        client_id,
        client_secret,
        "client_secret_post",
        rotates=False,
        classify=classify_zoho,
        revoked=None,
        reconnect_hint="Reconnect Zoho with `zxsync connect zoho` (check the data centre too).",
        endpoint_setting="ZOHO_ACCOUNTS_URL",
        blocked={REFRESH_BLOCKED: REFRESH_BLOCK_SECONDS},
    )


def refresh_zoho_token(
    http: httpx.Client, accounts_url: str, client_id: str, client_secret: str
) -> Refresh:
    """A refresher for TokenManager: POST /oauth/v2/token with the refresh_token grant."""
    return zoho_oauth(accounts_url, client_id, client_secret).refresher(http)


class ZohoClient(ApiClient):
    """Calls on one Zoho CRM org."""

    provider = PROVIDER

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        tokens: TokenManager,
        limiter: Limiter | None = None,
    ):
        super().__init__(http, base_url, tokens, classify_zoho, "Zoho-oauthtoken", limiter=limiter)

    def _url(self, path: str) -> str:
        domain = self._tokens.current().api_domain or self.base_url()
        return f"{domain.rstrip('/')}/{API_VERSION}/{path.lstrip('/')}"

    def get_record(self, module: str, record_id: str) -> dict[str, Any]:
        """One record; NotFound when Zoho answers 204 (deleted or never existed)."""
        payload = self.json("GET", f"{module}/{record_id}")
        if not payload or not payload.get("data"):
            raise NotFound(PROVIDER, f"{module} {record_id} does not exist", status=204)
        record: dict[str, Any] = payload["data"][0]
        return record

    def is_deleted(self, module: str, record_id: str) -> bool:
        """Whether the record is in the module's deleted-records list (recycle bin or deleted
        for good; `GET /{module}/deleted`, FACTS §11), reading pages until it is found."""
        page = 1
        while True:
            payload = self.json(
                "GET", f"{module}/deleted", params={"type": "all", "page": str(page)}
            )
            rows = payload.get("data", []) if payload else []
            if any(str(row.get("id")) == record_id for row in rows):
                return True
            if not (payload or {}).get("info", {}).get("more_records"):
                return False
            page += 1

    def get_records(self, module: str, ids: list[str], fields: list[str]) -> list[dict[str, Any]]:
        """Many records by id, one call per 100 ids (Zoho's most, FACTS §3); records Zoho does
        not have are absent from the answer."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), MAX_RECORDS_PER_CALL):
            chunk = ids[start : start + MAX_RECORDS_PER_CALL]
            payload = self.json(
                "GET", module, params={"ids": ",".join(chunk), "fields": ",".join(fields)}
            )
            found += list(payload.get("data", [])) if payload else []
        return found

    def modified_since(
        self, module: str, since: datetime, fields: list[str]
    ) -> list[dict[str, Any]]:
        """Every record of `module` modified after `since` (If-Modified-Since, all pages of
        200; 304 when none). One API credit per page (u: Zoho's credit table)."""
        found: list[dict[str, Any]] = []
        params = {"fields": ",".join(fields), "per_page": "200"}
        headers = {"If-Modified-Since": since.astimezone(UTC).isoformat(timespec="seconds")}
        while True:
            try:
                payload = self.json("GET", module, params=params, headers=headers)
            except ApiError as exc:
                if exc.status == 304:
                    return found
                raise
            found += list(payload.get("data", [])) if payload else []
            info = (payload or {}).get("info") or {}
            if not info.get("more_records") or not info.get("next_page_token"):
                return found
            params = {**params, "page_token": str(info["next_page_token"])}

    def fields(self, module: str) -> list[dict[str, Any]]:
        """The module's field metadata (`GET /settings/fields?module=X`, FACTS §9)."""
        payload = self.json("GET", "settings/fields", params={"module": module})
        return list(payload.get("fields", [])) if payload else []

    def create_fields(self, module: str, fields: list[dict[str, Any]]) -> list[list[str]]:
        """Create custom fields (`POST /settings/fields?module=X`, FACTS §11; scope
        ZohoCRM.settings.fields.ALL); per field, Zoho's errors (empty: created)."""
        try:
            payload = self.json(
                "POST", "settings/fields", params={"module": module}, body={"fields": fields}
            )
        except ValidationFailed as exc:
            if len(exc.messages) == len(fields):
                return [[message] for message in exc.messages]
            return [list(exc.messages) for _ in fields]
        return [record_errors([result]) for result in (payload or {}).get("fields", [])]

    def pages(self, module: str, fields: list[str]) -> Iterator[list[dict[str, Any]]]:
        """Every record of `module`, a page of 200 at a time, oldest first (one credit per
        page (u: Zoho's credit table); `page_token` past 2,000 records, FACTS §3)."""
        params = {
            "fields": ",".join(fields),
            "per_page": "200",
            "sort_by": "id",
            "sort_order": "asc",
        }
        page = 1
        while True:
            payload = self.json(
                "GET",
                module,
                params={**params, "page": str(page)} if "page_token" not in params else params,
            )
            yield list(payload.get("data", [])) if payload else []
            info = (payload or {}).get("info") or {}
            if not info.get("more_records"):
                return
            if info.get("next_page_token"):
                params = {**params, "page_token": str(info["next_page_token"])}
            page += 1

    def update_records(self, module: str, records: list[dict[str, Any]]) -> None:
        """Write fields without firing Zoho workflows (ours must not re-trigger a sync)."""
        for start in range(0, len(records), MAX_RECORDS_PER_CALL):
            chunk = records[start : start + MAX_RECORDS_PER_CALL]
            payload = self.json("PUT", module, body={"data": chunk, "trigger": []})
            errors = record_errors(payload.get("data", []) if payload else [])
            if errors:
                raise ValidationFailed(PROVIDER, errors)

    def update_each(self, module: str, records: list[dict[str, Any]]) -> list[list[str]]:
        """Write up to 100 records in one call (no workflows); per record, Zoho's errors.

        Zoho answers a partly failed write with a result per record; a write where every record
        failed comes back as a 400 whose messages follow the records' order."""
        if len(records) > MAX_RECORDS_PER_CALL:
            raise ValueError(f"at most {MAX_RECORDS_PER_CALL} records per Zoho update")
        try:
            payload = self.json("PUT", module, body={"data": records, "trigger": []})
        except ValidationFailed as exc:
            if len(exc.messages) == len(records):
                return [[message] for message in exc.messages]
            return [list(exc.messages) for _ in records]
        results = payload.get("data", []) if payload else []
        return [record_errors([result]) for result in results]

    def attach_file(
        self, module: str, record_id: str, filename: str, content: bytes, content_type: str
    ) -> None:
        """Attach a file to a record (multipart `file`, FACTS.md §8)."""
        self.request(
            "POST",
            f"{module}/{record_id}/Attachments",
            files={"file": (filename, content, content_type)},
        )

    def add_note(self, module: str, record_id: str, title: str, content: str) -> None:
        self.json(
            "POST",
            f"{module}/{record_id}/Notes",
            body={"data": [{"Note_Title": title, "Note_Content": content}]},
        )
