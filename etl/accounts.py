"""Accounts, machine tokens and the audit log: the SQL behind logins, the admin page and the CLI.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile) and
re-hashed on login when those parameters change. Tokens are 32 random bytes shown once; only
their SHA-256 is stored (a random 256-bit secret needs no slow hash). After
:data:`MAX_FAILED_LOGINS` failures in a row an account is locked for :data:`LOCKOUT`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, text

from etl.access import Role, role_of

HASHER = PasswordHasher()
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD = 10
TOKEN_PREFIX = "ggt_"
TOKEN_USE_RESOLUTION = timedelta(minutes=1)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")


class AccountError(ValueError):
    """A refused account operation, with the reason."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a logged-in user or a machine token, with a role and a unit."""

    name: str
    role: Role
    unit_code: str
    kind: str = "user"  # "user" | "token"
    user_id: int | None = None
    epoch: int = 0
    must_change_password: bool = False


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def check_password_rules(password: str, name: str = "") -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if name and name.lower() in password.lower():
        raise AccountError("a password must not contain the user name")
    if len(set(password)) < 5:
        raise AccountError("a password needs at least 5 different characters")


def _check_unit(conn: Connection, unit_code: str) -> None:
    found = conn.execute(
        text("SELECT 1 FROM units WHERE code = :c AND valid_to IS NULL"), {"c": unit_code}
    ).first()
    if not found:
        raise AccountError(f"no current unit with code {unit_code!r}")


def add_user(
    conn: Connection, name: str, *, role: str, unit_code: str, password: str,
    display_name: str | None = None, must_change: bool = False,
) -> int:  # fmt: skip
    if not NAME_PATTERN.match(name):
        raise AccountError(f"user name {name!r}: 2-64 letters, digits or _ . @ -")
    role_of(role)
    check_password_rules(password, name)
    _check_unit(conn, unit_code)
    if conn.execute(text("SELECT 1 FROM users WHERE name = :n"), {"n": name}).first():
        raise AccountError(f"user {name!r} already exists")
    return int(
        conn.execute(
            text(
                "INSERT INTO users (name, display_name, role, unit_code, password_hash, "
                "must_change_password) VALUES (:n, :d, :r, :u, :h, :m) RETURNING id"
            ),
            {
                "n": name,
                "d": display_name,
                "r": role,
                "u": unit_code,
                "h": HASHER.hash(password),
                "m": must_change,
            },  # fmt: skip
        ).scalar_one()
    )


def set_password(conn: Connection, name: str, password: str, *, must_change: bool = False) -> None:
    """New password; every open session of the user ends (the epoch moves on); unlocks."""
    check_password_rules(password, name)
    done = conn.execute(
        text(
            "UPDATE users SET password_hash = :h, must_change_password = :m, failed_logins = 0, "
            "locked_until = NULL, session_epoch = session_epoch + 1 WHERE name = :n"
        ),
        {"h": HASHER.hash(password), "m": must_change, "n": name},
    ).rowcount
    if not done:
        raise AccountError(f"no user {name!r}")


def set_active(conn: Connection, name: str, active: bool) -> None:
    done = conn.execute(
        text("UPDATE users SET active = :a, session_epoch = session_epoch + 1 WHERE name = :n"),
        {"a": active, "n": name},
    ).rowcount
    if not done:
        raise AccountError(f"no user {name!r}")


def _principal(row: Any) -> Principal:
    return Principal(row.name, Role(row.role), row.unit_code, "user", row.id, row.session_epoch,
                     row.must_change_password)  # fmt: skip


_USER_SQL = text(
    "SELECT id, name, role, unit_code, password_hash, failed_logins, locked_until, active, "
    "session_epoch, must_change_password FROM users WHERE name = :n"
)


class LoginRefused(AccountError):
    """Wrong name or password, a locked or disabled account (the message never says which)."""


def authenticate(conn: Connection, name: str, password: str, *, now: datetime) -> Principal:
    """The user, or :class:`LoginRefused`; counts failures and locks after too many."""
    row = conn.execute(_USER_SQL, {"n": name}).first()
    if row is None:
        HASHER.hash(password)  # the same time whether or not the name exists
        raise LoginRefused("wrong user name or password")
    if not row.active or (row.locked_until is not None and row.locked_until > now):
        raise LoginRefused("wrong user name or password, or the account is locked")
    try:
        HASHER.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        failed = row.failed_logins + 1
        locked = now + LOCKOUT if failed >= MAX_FAILED_LOGINS else None
        conn.execute(
            text("UPDATE users SET failed_logins = :f, locked_until = :l WHERE id = :i"),
            {"f": 0 if locked else failed, "l": locked, "i": row.id},
        )
        raise LoginRefused("wrong user name or password") from None
    rehash = HASHER.hash(password) if HASHER.check_needs_rehash(row.password_hash) else None
    conn.execute(
        text(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = :now, "
            "password_hash = coalesce(:h, password_hash) WHERE id = :i"
        ),
        {"now": now, "h": rehash, "i": row.id},
    )
    return _principal(row)


def session_user(conn: Connection, user_id: int, epoch: int) -> Principal | None:
    """The user of a session cookie, if the account is still active and the session current."""
    row = conn.execute(
        text(
            "SELECT id, name, role, unit_code, session_epoch, must_change_password, active "
            "FROM users WHERE id = :i"
        ),
        {"i": user_id},
    ).first()
    if row is None or not row.active or row.session_epoch != epoch:
        return None
    return _principal(row)


def end_sessions(conn: Connection, user_id: int) -> None:
    conn.execute(
        text("UPDATE users SET session_epoch = session_epoch + 1 WHERE id = :i"), {"i": user_id}
    )


def list_users(conn: Connection, under: str | None = None) -> list[dict[str, Any]]:
    rows = conn.execute(
        text(
            "SELECT id, name, display_name, role, unit_code, active, locked_until, "
            "last_login_at, created_at FROM users ORDER BY unit_code, name"
        )
    ).mappings()
    return [dict(r) for r in rows if under is None or r["unit_code"].startswith(under)]


# --- tokens ----------------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_token(
    conn: Connection, name: str, *, role: str, unit_code: str, created_by: str
) -> tuple[int, str]:
    """A new token ``(id, secret)``; the secret is returned once and never stored."""
    if not NAME_PATTERN.match(name):
        raise AccountError(f"token name {name!r}: 2-64 letters, digits or _ . @ -")
    role_of(role)
    _check_unit(conn, unit_code)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = conn.execute(
        text(
            "INSERT INTO api_tokens (name, token_hash, prefix, role, unit_code, created_by) "
            "VALUES (:n, :h, :p, :r, :u, :c) RETURNING id"
        ),
        {
            "n": name,
            "h": _digest(secret),
            "p": secret[:10],
            "r": role,
            "u": unit_code,
            "c": created_by,
        },  # fmt: skip
    ).scalar_one()
    return int(token_id), secret


def revoke_token(conn: Connection, token_id: int, *, now: datetime) -> None:
    done = conn.execute(
        text("UPDATE api_tokens SET revoked_at = :now WHERE id = :i AND revoked_at IS NULL"),
        {"now": now, "i": token_id},
    ).rowcount
    if not done:
        raise AccountError(f"no active token with id {token_id}")


def token_principal(conn: Connection, secret: str, *, now: datetime) -> Principal | None:
    """The principal of a bearer token, or None when it is unknown or revoked."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 100:
        return None
    digest = _digest(secret)
    row = conn.execute(
        text(
            "SELECT id, name, role, unit_code, last_used_at FROM api_tokens "
            "WHERE token_hash = :h AND revoked_at IS NULL"
        ),
        {"h": digest},
    ).first()
    if row is None:
        return None
    # one write a minute per token, not one per request (every client of a gateway shares the
    # token: a write each queued them all on its row)
    if row.last_used_at is None or now - row.last_used_at > TOKEN_USE_RESOLUTION:
        conn.execute(
            text("UPDATE api_tokens SET last_used_at = :now WHERE id = :i"),
            {"now": now, "i": row.id},
        )
    return Principal(row.name, Role(row.role), row.unit_code, "token", None)


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        text(
            "SELECT id, name, prefix, role, unit_code, created_at, created_by, last_used_at, "
            "revoked_at FROM api_tokens ORDER BY id"
        )
    ).mappings()
    return [dict(r) for r in rows]


# --- audit log -------------------------------------------------------------------------------


def audit(
    conn: Connection, who: Principal | str, action: str, target: str | None = None, *,
    detail: dict[str, Any] | None = None, ip: str | None = None,
) -> None:  # fmt: skip
    """Append one entry (views of personal data, exports, logins, account changes)."""
    import json

    actor, role, unit = (
        (who.name, who.role.value, who.unit_code)
        if isinstance(who, Principal)
        else (who, None, None)
    )
    conn.execute(
        text(
            "INSERT INTO audit_log (actor, role, unit_code, action, target, detail, ip) "
            "VALUES (:a, :r, :u, :act, :t, CAST(:d AS jsonb), :ip)"
        ),
        {
            "a": actor[:64],
            "r": role,
            "u": unit,
            "act": action[:32],
            "t": (target or "")[:256] or None,
            "d": json.dumps(detail or {}, ensure_ascii=False),
            "ip": (ip or "")[:64] or None,
        },  # fmt: skip
    )


def read_audit(conn: Connection, *, limit: int = 200, action: str | None = None) -> list[dict]:
    """The newest entries (the app role sees rows only when acting as admin: policy)."""
    rows = conn.execute(
        text(
            "SELECT id, at, actor, role, unit_code, action, target, detail, ip FROM audit_log "
            "WHERE CAST(:a AS text) IS NULL OR action = :a ORDER BY id DESC LIMIT :l"
        ),
        {"a": action, "l": limit},
    ).mappings()
    return [dict(r) for r in rows]


def root_units(conn: Connection) -> list[str]:
    """Codes of the current root units (where a territory's administrator is bound)."""
    sql = "SELECT code FROM units WHERE parent_id IS NULL AND valid_to IS NULL ORDER BY code"
    return [str(c) for c in conn.execute(text(sql)).scalars()]


def ensure_admin(conn: Connection, *, unit_code: str) -> str | None:
    """Create ``admin`` at ``unit_code`` when no admin exists; its password (or None)."""
    if conn.execute(text("SELECT 1 FROM users WHERE role = 'admin' AND active")).first():
        return None
    password = generate_password()
    add_user(conn, "admin", role="admin", unit_code=unit_code, password=password,
             display_name="管理员 Administrator", must_change=True)  # fmt: skip
    return password
