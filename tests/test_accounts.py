"""Accounts end to end: the login form, lockout, rate limit, sessions ended by logout and by a new
password, first-login password change, bearer tokens and their revocation, the admin page, the
audit log, and the ``etl users`` / ``etl tokens`` commands."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from dashboard.app import create_app
from etl import accounts
from etl.settings import Settings
from tests.accounts import PASSWORD, client_from_own_address, ensure_user, login, root_code


@pytest.fixture(scope="module")
def app(demo_engine: Engine) -> Iterator[Any]:
    yield create_app(Settings(), engine=demo_engine)


@pytest.fixture(scope="module")
def root(demo_engine: Engine) -> str:
    return root_code(demo_engine)


def _audit(engine: Engine, action: str, target: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM audit_log WHERE action = :a AND "
                                     "target = :t"), {"a": action, "t": target}).scalar_one())  # fmt: skip


def test_login_logout_and_the_session(app: Any, demo_engine: Engine, root: str) -> None:
    ensure_user(demo_engine, "acc-cmd", "commander", root)
    client = client_from_own_address(app)
    page = client.get("/login?lang=en")
    assert page.status_code == 200 and b"Log in" in page.data and b"<script" not in page.data
    assert login(client, "acc-cmd", "wrong password!").status_code == 401
    resp = login(client, "acc-cmd")
    assert resp.status_code == 302
    cookie = resp.headers.getlist("Set-Cookie")
    session_cookie = next(c for c in cookie if c.startswith("gridgov_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    assert client.get("/").status_code == 200
    assert _audit(demo_engine, "login", "acc-cmd") >= 1
    assert _audit(demo_engine, "login_failed", "acc-cmd") >= 1
    with client.session_transaction() as s:
        token = s["csrf"]
    out = client.post("/logout", data={"csrf_token": token}, headers={"Origin": "http://localhost"})
    assert out.status_code == 302
    assert client.get("/api/v1/workflow").status_code == 401


def test_five_failures_lock_the_account(app: Any, demo_engine: Engine, root: str) -> None:
    ensure_user(demo_engine, "acc-lock", "analyst", root)
    client = client_from_own_address(app)
    for _ in range(accounts.MAX_FAILED_LOGINS):
        assert login(client, "acc-lock", "not the password").status_code == 401
    assert login(client, "acc-lock").status_code == 401  # the right password, but locked
    with demo_engine.connect() as conn:
        locked = conn.execute(
            text("SELECT locked_until FROM users WHERE name = 'acc-lock'")
        ).scalar()
    assert locked is not None


def test_logins_are_rate_limited_per_address(app: Any) -> None:
    client = client_from_own_address(app)
    codes = [login(client, f"nobody{i}", "x" * 12).status_code for i in range(12)]
    assert 429 in codes and codes[0] == 401


def test_a_new_password_ends_every_session(app: Any, demo_engine: Engine, root: str) -> None:
    ensure_user(demo_engine, "acc-pw", "planner", root)
    first, second = client_from_own_address(app), client_from_own_address(app)
    assert login(first, "acc-pw").status_code == 302
    assert login(second, "acc-pw").status_code == 302
    with first.session_transaction() as s:
        token = s["csrf"]
    changed = first.post("/account/password", headers={"Origin": "http://localhost"},
                         data={"old": PASSWORD, "new": "another-Passw0rd", "again": "another-Passw0rd",
                               "csrf_token": token})  # fmt: skip
    assert changed.status_code == 302
    assert second.get("/api/v1/workflow").status_code == 401  # the other session is over


def test_a_generated_password_must_be_changed_first(
    app: Any, demo_engine: Engine, root: str
) -> None:
    with demo_engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE name = 'acc-new'"))
        accounts.add_user(conn, "acc-new", role="analyst", unit_code=root, password=PASSWORD,
                          must_change=True)  # fmt: skip
    client = client_from_own_address(app)
    assert login(client, "acc-new").status_code == 302
    assert client.get("/reports").headers["Location"].endswith("/account/password")
    assert client.get("/api/v1/kpis").status_code == 403


def test_tokens_are_bound_to_a_role_and_revocable(app: Any, demo_engine: Engine, root: str) -> None:
    with demo_engine.begin() as conn:
        token_id, secret = accounts.add_token(conn, "acc-avl", role="wall", unit_code=root,
                                              created_by="test")  # fmt: skip
        stored = conn.execute(text("SELECT token_hash FROM api_tokens WHERE id = :i"),
                              {"i": token_id}).scalar_one()  # fmt: skip
    assert secret not in stored
    client = client_from_own_address(app)
    bearer = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/categories", headers=bearer).status_code == 200
    assert client.get("/api/v1/events", headers=bearer).status_code == 403  # a wall token
    with demo_engine.begin() as conn:
        accounts.revoke_token(conn, token_id, now=accounts.datetime.now().astimezone())
    assert client.get("/api/v1/categories", headers=bearer).status_code == 401


def test_the_admin_page_adds_users_and_shows_the_audit_log(
    app: Any, demo_engine: Engine, root: str
) -> None:
    ensure_user(demo_engine, "acc-admin", "admin", root)
    ensure_user(demo_engine, "acc-analyst", "analyst", root)
    with demo_engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE name = 'acc-made'"))
    other = client_from_own_address(app)
    login(other, "acc-analyst")
    assert other.get("/admin").status_code == 403
    client = client_from_own_address(app)
    login(client, "acc-admin")
    with client.session_transaction() as s:
        token = s["csrf"]
    made = client.post("/admin/users", headers={"Origin": "http://localhost"},
                       data={"action": "add", "name": "acc-made", "role": "grid_worker",
                             "unit": root, "csrf_token": token})  # fmt: skip
    assert made.status_code == 200 and "acc-made" in made.get_data(as_text=True)
    assert "user_action:add" in client.get("/admin/audit").get_data(as_text=True)
    bad = client.post("/admin/users", headers={"Origin": "http://localhost"},
                      data={"action": "add", "name": "acc-x", "role": "admin", "unit": "999",
                            "csrf_token": token})  # fmt: skip
    assert bad.status_code == 422


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "etl", *args], input=stdin, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_the_command_line_adds_users_and_tokens(
    demo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.db import get_engine

    monkeypatch.setenv("DATABASE_URL", demo_url)
    engine = get_engine(Settings())
    root = root_code(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM users WHERE name = 'acc-cli'"))
    added = _cli("users", "add", "acc-cli", "--role", "dispatcher", "--unit", root,
                 stdin="cli-Passw0rd-long\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "password" not in added.stdout  # given on stdin: nothing to show
    reset = _cli("users", "reset-password", "acc-cli")
    assert reset.returncode == 0 and "shown once" in reset.stdout
    assert (
        _cli("users", "add", "acc-cli2", "--role", "dispatcher", "--unit", "0000").returncode == 2
    )
    token = _cli("tokens", "add", "acc-gw", "--role", "dispatcher", "--unit", root)
    assert token.returncode == 0 and token.stdout.strip().splitlines()[-1].startswith("ggt_")
    token_id = token.stdout.split()[1]
    assert _cli("tokens", "revoke", token_id).returncode == 0
    assert _cli("tokens", "revoke", token_id).returncode == 2


def test_security_headers_and_framing_of_the_wall(demo_engine: Engine, root: str) -> None:
    settings = Settings(wall_frame_origins=["https://portal.example.gov.cn"])
    app = create_app(settings, engine=demo_engine)
    ensure_user(demo_engine, "acc-wall", "wall", root)
    client = client_from_own_address(app)
    login(client, "acc-wall")
    page = client.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert page.headers["Cache-Control"] == "no-store"
    wall = client.get("/?wall=1")
    assert (
        "frame-ancestors https://portal.example.gov.cn" in wall.headers["Content-Security-Policy"]
    )
    assert "X-Frame-Options" not in wall.headers
    assert client.get("/login").headers["X-Frame-Options"] == "DENY"
