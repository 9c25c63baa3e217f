"""Who may use the console: users with scrypt password hashes (hashlib, no extra dependency),
or the user name an authenticating reverse proxy puts in a header; two roles.

A viewer sees everything; an operator may also pause, resume, replay and discard, and add,
edit and remove connections. Sessions are
signed cookies (Starlette's SessionMiddleware: HttpOnly, SameSite=strict, Secure by default),
and every POST carries the session's CSRF token (console/app.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from starlette.exceptions import HTTPException

from schemas.errors import ConfigurationError

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_SECRET_CHARS = 32
USERS_HINT = (
    "Set ZXS_CONSOLE_USERS=name:role:hash (role viewer or operator; the hash from "
    "`zxsync console --hash`), or ZXS_CONSOLE_PROXY_USER_HEADER behind an authenticating proxy, "
    "and ZXS_CONSOLE_SECRET to 32+ random characters."
)


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str = ""

    @property
    def operator(self) -> bool:
        return self.role == "operator"


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash`, base64 parts: what ZXS_CONSOLE_USERS holds."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    parts = [base64.b64encode(v).decode() for v in (salt, digest)]
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${parts[0]}${parts[1]}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def parse_users(raw: str) -> dict[str, User]:
    """`name:role:hash,...` -> users by name; a malformed entry is an error naming it."""
    users: dict[str, User] = {}
    for position, item in enumerate(filter(None, (i.strip() for i in raw.split(","))), 1):
        name, _, rest = item.partition(":")
        role, _, password_hash = rest.partition(":")
        if not name or role not in ROLES or not password_hash.startswith("scrypt$"):
            raise ConfigurationError(
                f"ZXS_CONSOLE_USERS entry {position} ('{name or '?'}') is not name:role:hash",
                field="ZXS_CONSOLE_USERS",
                hint=USERS_HINT,
            )
        users[name] = User(name, role, password_hash)
    return users


def check_credentials(users: dict[str, User], proxy_header: str, secret: str) -> None:
    """Refuse to start a console anyone could use, or whose cookies anyone could forge."""
    if not users and not proxy_header:
        raise ConfigurationError("the console has no users configured", hint=USERS_HINT)
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigurationError(
            f"ZXS_CONSOLE_SECRET must be at least {MIN_SECRET_CHARS} characters",
            field="ZXS_CONSOLE_SECRET",
            hint=USERS_HINT,
        )


def require_operator(user: User) -> None:
    """Only operators change anything: every POST, and the forms that lead to one."""
    if not user.operator:
        raise HTTPException(403, f"{user.name} is a viewer: operators only")


def authenticate(users: dict[str, User], name: str, password: str) -> User | None:
    user = users.get(name)
    if user is None:
        verify_password(password, _DUMMY_HASH)  # same work for an unknown name
        return None
    return user if verify_password(password, user.password_hash) else None


_DUMMY_HASH = hash_password(secrets.token_hex(8))
