"""Test accounts: real users in the test databases, logged in the way a person does it.

``login_cookie(app)`` posts the login form through Flask's test client (the same guard, CSRF
check and password hash as in production) and returns the session cookie; :mod:`tests.browser`
hands it to every new Chromium page so page tests start logged in.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import flask
from sqlalchemy import Engine, text

from etl import accounts
from etl.access import Role
from etl.accounts import Principal

PASSWORD = "test-Passw0rd-long"


def root_code(engine: Engine) -> str:
    with engine.connect() as conn:
        return accounts.root_units(conn)[0]


def ensure_user(engine: Engine, name: str, role: str, unit_code: str) -> None:
    """The user exists with :data:`PASSWORD`, this role and unit (committed; idempotent)."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE name = :n"), {"n": name})
        accounts.add_user(conn, name, role=role, unit_code=unit_code, password=PASSWORD)


_ADDRESSES = itertools.count(1)


def client_from_own_address(app: Any) -> Any:
    """A test client with an address of its own (the login rate limit counts per address)."""
    client = getattr(app, "server", app).test_client()
    n = next(_ADDRESSES)
    client.environ_base["REMOTE_ADDR"] = f"10.{n // 250 % 250}.{n % 250}.1"
    return client


def login(
    client: Any, name: str, password: str = PASSWORD, *, host: str = "http://localhost"
) -> Any:
    """Log a Flask test client in through the login form; returns the response."""
    client.get("/login")
    with client.session_transaction() as session:
        token = session["csrf"]
    return client.post("/login", data={"name": name, "password": password, "csrf_token": token},
                       headers={"Origin": host})  # fmt: skip


def login_cookie(app: Any, role: str = "admin", unit_code: str | None = None) -> str:
    """A session cookie of a fresh user of ``role`` at ``unit_code`` (default: the root unit)."""
    server = getattr(app, "server", app)
    engine = server.extensions["gridgov"].engine
    unit = unit_code or root_code(engine)
    name = f"t-{role}-{unit}"[:64]
    ensure_user(engine, name, role, unit)
    client = client_from_own_address(server)
    response = login(client, name)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    cookie = client.get_cookie("gridgov_session")
    assert cookie is not None
    return str(cookie.value)


@contextmanager
def acting(role: Role | str = Role.ADMIN, unit_code: str = "") -> Iterator[Principal]:
    """Inside a request context: the page code sees this principal (as if logged in)."""
    who = Principal(f"t-{role}", Role(role), unit_code)
    flask.g.principal = who
    try:
        yield who
    finally:
        flask.g.pop("principal", None)
