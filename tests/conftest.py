"""Shared fixtures: a real PostGIS (never mocked), one rolled-back transaction per test.

Databases on the configured server (the project-managed cluster, or DATABASE_URL's):
  <db>_test        migrated, empty; every test's changes are rolled back
  <db>_test_demo   the demo county at a small scale, committed once, read by page tests
A test that needs PostGIS and cannot reach it fails (it never skips).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from etl import migrate
from etl.db import ensure_database as create_database
from etl.db import sibling_database_url

DEMO_SCALE = float(os.environ.get("GRIDGOV_TEST_DEMO_SCALE", "0.25"))
DEMO_SEED = 11
DEMO_END = datetime(2026, 11, 20, 18, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def database_url(suffix: str) -> str:
    return sibling_database_url(suffix)


def ensure_database(url: str, *, fresh: bool = False) -> None:
    try:
        create_database(url, fresh=fresh)
    except OperationalError as exc:  # fail loudly: PostGIS tests never skip
        pytest.fail(f"PostGIS is not reachable at {make_url(url).render_as_string()}: {exc}")


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    url = database_url("_test")
    ensure_database(url)
    migrate.upgrade(url)
    eng = create_engine(url)
    yield eng
    eng.dispose()


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    with engine.connect() as connection:
        outer = connection.begin()
        try:
            yield connection
        finally:
            outer.rollback()


@pytest.fixture(scope="session")
def demo_url() -> str:
    """The demo county, loaded once (skipped when the same demo is already there)."""
    from etl.demo import already_loaded, demo_fingerprint, load_demo

    url = database_url("_test_demo")
    ensure_database(url)
    migrate.upgrade(url)
    eng = create_engine(url)
    if not already_loaded(eng, demo_fingerprint(DEMO_SEED, DEMO_SCALE)):
        load_demo(eng, seed=DEMO_SEED, scale=DEMO_SCALE, end=DEMO_END)
    eng.dispose()
    return url


@pytest.fixture(scope="session")
def demo_engine(demo_url: str) -> Iterator[Engine]:
    eng = create_engine(demo_url, pool_pre_ping=True)  # outlives the outage test's kills
    yield eng
    eng.dispose()
