"""Engine and session factory. Everything else asks here for a connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url

from etl.settings import Settings, get_settings

# Codes, statuses and paths are ASCII identifiers: byte order ("C") compares them without the C
# library's locale machinery, which halves the time to build their indexes. For UTF-8 text the
# order is the same as C.UTF-8's (code point order), so names sort exactly as before.
DATABASE_OPTIONS = "TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C'"


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def get_engine(settings: Settings | None = None) -> Engine:
    return _engine_for((settings or get_settings()).sqlalchemy_url)


@contextmanager
def transaction(bind: Engine | Connection) -> Iterator[Connection]:
    """One transaction on an engine, or a savepoint inside a caller's connection (tests)."""
    if isinstance(bind, Connection):
        with bind.begin_nested():
            yield bind
        return
    with bind.begin() as conn:
        yield conn


def sibling_database_url(suffix: str, settings: Settings | None = None) -> str:
    """The URL of ``<configured database><suffix>`` on the same server (tests, benchmarks)."""
    url = make_url((settings or get_settings()).sqlalchemy_url)
    return url.set(database=f"{url.database}{suffix}").render_as_string(hide_password=False)


def ensure_database(url: str, *, fresh: bool = False) -> None:
    """Create the database of ``url`` (dropped first when ``fresh``) with PostGIS and pgRouting."""
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if fresh:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}
            ).first()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{target.database}" {DATABASE_OPTIONS}'))
    finally:
        admin.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pgrouting"))
    engine.dispose()
