"""The benchmarks' account helpers (bench/bench_accounts.py): the login form gives a working
session cookie, a wrong password is refused, a bench token works until it is revoked, and the
app role's URL is told apart from the owner's."""

from __future__ import annotations

import http.client
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, text

from dashboard.app import create_app
from etl.db import app_url_for, scoped_engine
from etl.settings import Settings
from tests.browser import serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_accounts as ba  # noqa: E402

NAME = "bench-t-helper"


def _get(base: str, path: str, headers: dict[str, str]) -> int:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_login_form_cookie_and_token(demo_url: str, demo_engine: Engine) -> None:
    root = ba.root_unit(demo_engine)
    password = ba.bench_user(demo_engine, NAME, "commander", root)
    token_id, token = ba.bench_token(demo_engine, NAME, "dispatcher", root)
    app_engine = scoped_engine(app_url_for(demo_url))
    try:
        with serve(create_app(Settings(), engine=app_engine), role=None) as base:
            assert _get(base, "/api/v1/categories", {}) == 401
            cookie = ba.session_cookie(base, NAME, password)
            assert (
                _get(base, "/api/v1/categories", {"Cookie": f"{ba.SESSION_COOKIE}={cookie}"}) == 200
            )
            with pytest.raises(RuntimeError, match="refused"):
                ba.session_cookie(base, NAME, password + "x")
            bearer = {"Authorization": f"Bearer {token}"}
            assert _get(base, "/api/v1/categories", bearer) == 200
            ba.revoke_token(demo_engine, token_id)
            assert _get(base, "/api/v1/categories", bearer) == 401
    finally:
        app_engine.dispose()
        with demo_engine.begin() as conn:
            conn.execute(text("DELETE FROM users WHERE name = :n"), {"n": NAME})
            conn.execute(text("DELETE FROM api_tokens WHERE name = :n"), {"n": NAME})


def test_a_new_bench_token_revokes_the_old_one(demo_engine: Engine) -> None:
    root = ba.root_unit(demo_engine)
    try:
        first, _ = ba.bench_token(demo_engine, NAME, "dispatcher", root)
        second, _ = ba.bench_token(demo_engine, NAME, "dispatcher", root)
        with demo_engine.connect() as conn:
            live = conn.execute(text("SELECT id FROM api_tokens WHERE name = :n AND revoked_at IS NULL"),
                                {"n": NAME}).scalars().all()  # fmt: skip
        assert live == [second] and first != second
    finally:
        with demo_engine.begin() as conn:
            conn.execute(text("DELETE FROM api_tokens WHERE name = :n"), {"n": NAME})


def test_app_role_url_is_told_from_the_owner() -> None:
    owner = "postgresql+psycopg://gridgov:pw@127.0.0.1:5432/x"
    assert ba.is_app_role("postgresql+psycopg://gridgov_app:pw@127.0.0.1:5432/x", owner)
    assert not ba.is_app_role(owner, owner)
