"""OAuth2 as Xero's identity server has it: apps, consents (grants) and their connections,
30-minute JWT access tokens, refresh tokens that rotate with a grace period and expire
unused, authorization codes, and which scopes open which Accounting endpoint."""

from __future__ import annotations

import base64
import json
import math
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sandbox.xero.base import SandboxBase
from sandbox.xero.common import (
    _SEED_NS,
    JSON,
    _utc,
)


def _b64(data: JSON) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _jwt(claims: JSON) -> str:
    """A JWT-shaped token (Xero's tokens are JWTs); the signature is random, nothing verifies it."""
    header = {"alg": "RS256", "kid": "zxsync-sandbox", "typ": "JWT"}
    return f"{_b64(header)}.{_b64(claims)}.{secrets.token_urlsafe(32)}"


@dataclass
class _Client:
    """An OAuth app; `tenant_ids` are the organisations a sandbox consent connects."""

    secret: str
    tenant_ids: list[str]
    granular: bool = True  # created on or after 2 March 2026: no broad scopes


@dataclass
class Grant:
    """One user's consent to an app (Xero's auth event): its tokens share these connections."""

    client_id: str
    auth_event_id: str
    connected_at: dict[str, float]


@dataclass
class _RefreshToken:
    grant: Grant
    scope: str
    issued_at: float
    superseded_at: float | None = None


@dataclass
class _AccessToken:
    grant: Grant
    expires_at: float
    scope: frozenset[str] = frozenset()


@dataclass
class _AuthCode:
    client_id: str
    redirect_uri: str
    scope: str
    expires_at: float


_DEFAULT_SCOPE = (
    "openid profile email accounting.transactions accounting.contacts accounting.settings "
    "offline_access"
)


_GRANULAR_SCOPE = (
    "openid profile email offline_access accounting.invoices accounting.payments "
    "accounting.contacts accounting.settings"
)


# The broad scopes granular apps cannot request, and the scopes of the Accounting API an app may
# ask for (developer.xero.com/documentation/oauth2/scopes; apideck.com/blog/xero-scopes).
BROAD = frozenset(
    {"accounting.transactions", "accounting.transactions.read", "accounting.reports.read"}
)


_GRANULAR_FAMILIES = (
    "invoices",
    "payments",
    "banktransactions",
    "manualjournals",
    "classicexpenses",
    "settings",
    "contacts",
    "attachments",
)


KNOWN_SCOPES = (
    BROAD
    | {
        "openid",
        "profile",
        "email",
        "offline_access",
        "accounting.journals.read",
        "accounting.budgets.read",
    }
    | {f"accounting.{family}{suffix}" for family in _GRANULAR_FAMILIES for suffix in ("", ".read")}
)


# Which scope families open which Accounting endpoint (first path segment): a write needs the
# scope itself, a read also takes its `.read` variant; the broad accounting.transactions still
# opens invoices and payments for older apps. Items: invoices or settings (apideck.com).
SCOPE_FAMILIES: dict[str, tuple[str, ...]] = {
    "settings": ("accounting.settings",),
    "contacts": ("accounting.contacts",),
    "invoices": ("accounting.invoices", "accounting.transactions"),
    "payments": ("accounting.payments", "accounting.transactions"),
}


ENDPOINT_FAMILIES: dict[str, tuple[str, ...]] = {
    "Organisation": ("settings",),
    "TaxRates": ("settings",),
    "Accounts": ("settings",),
    "Currencies": ("settings",),
    "TrackingCategories": ("settings",),
    "Contacts": ("contacts",),
    "Items": ("invoices", "settings"),
    "Invoices": ("invoices",),
    "CreditNotes": ("invoices",),
    "PurchaseOrders": ("invoices",),
    "Payments": ("payments",),
    "Overpayments": ("payments",),
    "Prepayments": ("payments",),
}


def scope_allows(scope: frozenset[str], collection: str, method: str) -> bool:
    """Does a token with `scope` open `method` on this Accounting collection?"""
    for family in ENDPOINT_FAMILIES.get(collection, ()):
        for base in SCOPE_FAMILIES[family]:
            if base in scope or (method == "GET" and f"{base}.read" in scope):
                return True
    return False


def _iso7(at: float) -> str:
    """The identity API's timestamps: ISO with 7 fractional digits and no offset."""
    return _utc(at).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"


def _connection_id(grant: Grant, tenant_id: str) -> str:
    return str(uuid.uuid5(_SEED_NS, f"{grant.auth_event_id}/connection/{tenant_id}"))


class OAuthState(SandboxBase):
    """Apps, consents and tokens."""

    def _init_state(self) -> None:
        super()._init_state()
        self._clients: dict[str, _Client] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._access: dict[str, _AccessToken] = {}
        self._codes: dict[str, _AuthCode] = {}
        self._token_refreshes = 0

    def add_client(
        self,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        tenant_ids: list[str],
        *,
        granular: bool = True,
        scope: str | None = None,
    ) -> None:
        """Register an OAuth app (again: same secret) and a refresh token for `tenant_ids`.

        Each call is one user's consent, as in Xero: the token sees only its own tenants. An
        app is granular (created on or after 2 March 2026) unless `granular=False`; the refresh
        token carries `scope`, by default every scope of the app's kind.
        """
        now = self.clock()
        with self.lock:
            unknown = [t for t in tenant_ids if t not in self._tenants]
            if unknown:
                raise ValueError(f"unknown tenants {unknown}; add_tenant first")
            client = self._clients.setdefault(client_id, _Client(client_secret, [], granular))
            if client.secret != client_secret:
                raise ValueError(f"client {client_id!r} is registered with another secret")
            client.tenant_ids += [t for t in tenant_ids if t not in client.tenant_ids]
            grant = Grant(client_id, str(uuid.uuid4()), dict.fromkeys(tenant_ids, now))
            default = _GRANULAR_SCOPE if client.granular else _DEFAULT_SCOPE
            self._refresh[refresh_token] = _RefreshToken(grant, scope or default, now)

    def check_client(self, client_id: str | None, secret: str | None) -> bool:
        client = self._clients.get(client_id or "")
        return client is not None and secrets.compare_digest(client.secret, secret or "")

    def scope_error(self, client_id: str, scope: str) -> str | None:
        """Why Xero's consent screen refuses these scopes for this app (None: it does not).

        A granular app may not ask for the broad scopes; nobody may ask for a scope Xero does
        not have (developer.xero.com/faq/granular-scopes; FACTS "The 2026 platform")."""
        with self.lock:
            client = self._clients.get(client_id)
            refused = [
                s
                for s in scope.split()
                if s not in KNOWN_SCOPES or (client is not None and client.granular and s in BROAD)
            ]
            return f"Invalid scope for client: {' '.join(refused)}" if refused else None

    def token_scope(self, access_token: str) -> frozenset[str]:
        with self.lock:
            token = self._access.get(access_token)
            return token.scope if token else frozenset()

    def authorize(self, client_id: str, redirect_uri: str, scope: str) -> str | None:
        """Consent is implicit in the sandbox: return an authorization code (None: bad client)."""
        with self.lock:
            if client_id not in self._clients:
                return None
            code = secrets.token_urlsafe(24)
            self._codes[code] = _AuthCode(client_id, redirect_uri, scope, self.clock() + 300)
            return code

    def grant(self, client_id: str, form: Mapping[str, str]) -> tuple[int, JSON]:
        """The token endpoint after client authentication: rotate or exchange, then issue."""
        with self.lock:
            now = self.clock()
            grant_type = form.get("grant_type", "")
            if grant_type == "refresh_token":
                token = self._refresh.get(form.get("refresh_token", ""))
                if (
                    token is None
                    or token.grant.client_id != client_id
                    or not (self._refresh_usable(token, now))
                ):
                    return 400, {"error": "invalid_grant"}
                if token.superseded_at is None:
                    token.superseded_at = now
                self._token_refreshes += 1
                return 200, self._issue(token.grant, token.scope, now)
            if grant_type == "authorization_code":
                code = self._codes.pop(form.get("code", ""), None)
                if (
                    code is None
                    or code.client_id != client_id
                    or code.expires_at < now
                    or code.redirect_uri != form.get("redirect_uri", "")
                ):
                    return 400, {"error": "invalid_grant"}
                tenants = self._clients[client_id].tenant_ids
                grant = Grant(client_id, str(uuid.uuid4()), dict.fromkeys(tenants, now))
                return 200, self._issue(grant, code.scope, now)
            return 400, {"error": "unsupported_grant_type"}

    def _refresh_usable(self, token: _RefreshToken, now: float) -> bool:
        if token.superseded_at is not None:
            return now - token.superseded_at <= self.config.xero_refresh_grace_seconds
        return now - token.issued_at <= self.config.xero_refresh_token_idle_seconds

    def _issue(self, grant: Grant, scope: str, now: float) -> JSON:
        lifetime = self.config.xero_access_token_seconds
        claims = {
            "nbf": int(now),
            "exp": int(now + lifetime),
            "iss": "https://identity.xero.com",
            "client_id": grant.client_id,
            "authentication_event_id": grant.auth_event_id,
            "scope": scope.split(),
            "jti": secrets.token_hex(16),
        }
        access = _jwt(claims)
        self._access[access] = _AccessToken(grant, now + lifetime, frozenset(scope.split()))
        answer: JSON = {
            "id_token": _jwt({"sub": grant.auth_event_id, "iat": int(now), "exp": int(now + 300)}),
            "access_token": access,
            "expires_in": math.ceil(lifetime),
            "token_type": "Bearer",
            "scope": scope,
        }
        if "offline_access" in scope.split():
            refresh = secrets.token_urlsafe(32)
            self._refresh[refresh] = _RefreshToken(grant, scope, now)
            answer["refresh_token"] = refresh
        return answer

    def authenticate(self, access_token: str) -> tuple[Grant | None, str]:
        """(grant, "") for a live token, else (None, the 401 Detail Xero sends)."""
        with self.lock:
            token = self._access.get(access_token)
            if token is None:
                return None, "AuthenticationUnsuccessful"
            if self.clock() >= token.expires_at:
                expired = _utc(token.expires_at).strftime("%m/%d/%Y %H:%M:%S")
                return None, f"TokenExpired: token expired at {expired}"
            return token.grant, ""

    def is_connected(self, grant: Grant, tenant_id: str) -> bool:
        with self.lock:
            return tenant_id in grant.connected_at and tenant_id in self._tenants

    def connections(self, grant: Grant) -> list[JSON]:
        """`GET /connections`: the organisations this consent connected (xero-identity.yaml)."""
        with self.lock:
            return [
                {
                    "id": _connection_id(grant, tenant_id),
                    "authEventId": grant.auth_event_id,
                    "tenantId": tenant_id,
                    "tenantType": "ORGANISATION",
                    "tenantName": self._tenants[tenant_id].name,
                    "createdDateUtc": _iso7(at),
                    "updatedDateUtc": _iso7(at),
                }
                for tenant_id, at in grant.connected_at.items()
            ]

    def disconnect(self, grant: Grant, connection_id: str) -> bool:
        with self.lock:
            for tenant_id in list(grant.connected_at):
                if _connection_id(grant, tenant_id) == connection_id:
                    del grant.connected_at[tenant_id]
                    return True
            return False
