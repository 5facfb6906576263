"""Accounts for the benchmarks: a user or a token made on the owner's connection, and a session
cookie got the way a person gets one (GET /login, POST the form with its CSRF token).

The benchmarks serve the app through the app role (row-level security on) and measure it as a
logged-in user or a token holder, as in production: nothing here bypasses the guard.
"""

from __future__ import annotations

import http.client
import re
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from etl import accounts

SESSION_COOKIE = "gridgov_session"


def root_unit(engine: Engine) -> str:
    """The code of the (first) root unit."""
    with engine.connect() as conn:
        return accounts.root_units(conn)[0]


def bench_user(engine: Engine, name: str, role: str, unit_code: str) -> str:
    """(Re)create user ``name`` with this role and unit; returns its new random password."""
    password = accounts.generate_password()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE name = :n"), {"n": name})
        accounts.add_user(conn, name, role=role, unit_code=unit_code, password=password)
    return password


def bench_token(engine: Engine, name: str, role: str, unit_code: str) -> tuple[int, str]:
    """A new token ``(id, secret)``; earlier live tokens of the same name are revoked first."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE api_tokens SET revoked_at = now() WHERE name = :n AND revoked_at IS NULL"),
            {"n": name},
        )
        return accounts.add_token(conn, name, role=role, unit_code=unit_code, created_by="bench")


def revoke_token(engine: Engine, token_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE api_tokens SET revoked_at = now() WHERE id = :i AND revoked_at IS NULL"),
            {"i": token_id},
        )


def is_app_role(app_url: str, owner_url: str) -> bool:
    """Whether ``app_url`` logs in as another role than the owner (so RLS applies to it)."""
    return make_url(app_url).username != make_url(owner_url).username


def _cookies(resp: http.client.HTTPResponse) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in resp.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return {k: m.value for k, m in jar.items()}


def session_cookie(base_url: str, name: str, password: str, timeout: float = 30) -> str:
    """Log in through the /login form of the server at ``base_url``; the session cookie's value.

    Raises RuntimeError when the login is refused (wrong password, lockout, rate limit).
    """
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", "/login")
        resp = conn.getresponse()
        page = resp.read().decode()
        jar = _cookies(resp)
        found = re.search(r'name=csrf_token value="([^"]+)"', page)
        if resp.status != 200 or not found or SESSION_COOKIE not in jar:
            raise RuntimeError(f"GET /login: {resp.status}, no form or no session cookie")
        body = urlencode({"name": name, "password": password, "csrf_token": found[1]})
        conn.request("POST", "/login", body, {
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": f"{parts.scheme}://{parts.netloc}",
            "Cookie": f"{SESSION_COOKIE}={jar[SESSION_COOKIE]}",
        })  # fmt: skip
        resp = conn.getresponse()
        resp.read()
        after = _cookies(resp)
        if resp.status != 302 or SESSION_COOKIE not in after:
            raise RuntimeError(f"POST /login as {name!r}: {resp.status} (refused)")
        return after[SESSION_COOKIE]
    finally:
        conn.close()


def browser_cookie(value: str, host: str = "127.0.0.1") -> dict[str, object]:
    """The session cookie as Playwright's ``BrowserContext.add_cookies`` takes it."""
    return {"name": SESSION_COOKIE, "value": value, "domain": host, "path": "/",
            "httpOnly": True, "sameSite": "Lax"}  # fmt: skip
