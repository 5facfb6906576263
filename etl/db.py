"""Engine and session factory. Everything else asks here for a connection."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from etl.settings import Settings, get_settings

# Codes, statuses and paths are ASCII identifiers: byte order ("C") compares them without the C
# library's locale machinery, which halves the time to build their indexes. For UTF-8 text the
# order is the same as C.UTF-8's (code point order), so names sort exactly as before.
DATABASE_OPTIONS = "TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C'"

# Under row-level security PostgreSQL runs a query's own conditions only after the policy's,
# unless their functions are LEAKPROOF; PostGIS does not mark its bounding-box test so, and a
# spatial index then goes unused for the app's role (a building tile for the whole county took
# 0.5-0.7 s instead of 0.1 ms). The test compares two boxes and cannot leak a row's values.
LEAKPROOF_SQL = "ALTER FUNCTION geometry_overlaps(geometry, geometry) LEAKPROOF"


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def get_engine(settings: Settings | None = None) -> Engine:
    """The owner's engine: migrations, loads, the CLI. Not for serving requests."""
    return _engine_for((settings or get_settings()).sqlalchemy_url)


# --- the web app's connections: row-level security keyed on the request's units -------------


@dataclass(frozen=True)
class DbScope:
    """What one request may see in PostgreSQL: unit codes (a row is visible when its
    ``unit_path`` holds one of them) and the caller's role (the audit log is admin-only)."""

    unit_codes: tuple[str, ...]
    role: str


_db_scope: ContextVar[DbScope | None] = ContextVar("gridgov_db_scope", default=None)


@contextmanager
def acting_as(unit_codes: Sequence[str], role: str) -> Iterator[DbScope]:
    """Run the block with this scope on every transaction the app engine begins in it."""
    scope = DbScope(tuple(unit_codes), role)
    token = _db_scope.set(scope)
    try:
        yield scope
    finally:
        _db_scope.reset(token)


def current_db_scope() -> DbScope | None:
    return _db_scope.get()


def set_scope(conn: Connection, scope: DbScope | None) -> None:
    """``SET LOCAL`` the scope on the connection's transaction; None means "sees nothing"."""
    codes = "{" + ",".join(scope.unit_codes) + "}" if scope else "{}"
    conn.exec_driver_sql(
        "SELECT set_config('app.unit_codes', %(codes)s, true), "
        "set_config('app.role', %(role)s, true)",
        {"codes": codes, "role": scope.role if scope else ""},
    )


def scoped_engine(url: str) -> Engine:
    """An engine whose every transaction starts with the current :func:`acting_as` scope.

    Row-level-security policies (migration 0008) read ``app.unit_codes``; outside
    :func:`acting_as` a transaction sees no jurisdictional row at all.
    """
    engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    event.listen(engine, "begin", lambda conn: set_scope(conn, _db_scope.get()))
    return engine


@lru_cache(maxsize=8)
def _app_engine_for(url: str) -> Engine:
    return scoped_engine(url)


def get_app_engine(settings: Settings | None = None) -> Engine:
    """The web app's engine: a role without superuser or ownership, scoped per transaction."""
    return _app_engine_for((settings or get_settings()).app_sqlalchemy_url)


def app_url_for(owner_url: str, settings: Settings | None = None) -> str:
    """The same database as ``owner_url`` reached with the app role's credentials."""
    app = make_url((settings or get_settings()).app_sqlalchemy_url)
    target = make_url(owner_url)
    return app.set(database=target.database).render_as_string(hide_password=False)


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


def ensure_database(url: str, *, fresh: bool = False, settings: Settings | None = None) -> None:
    """Create the database of ``url`` (dropped first when ``fresh``) with PostGIS and pgRouting,
    owned by ``url``'s user.

    On the managed cluster the superuser creates it and its extensions (the owner is not a
    superuser); with ``DATABASE_URL`` that URL's user must be allowed to.
    """
    target = make_url(url)
    admin_url = (settings or get_settings()).admin_sqlalchemy_url
    admin_base = make_url(admin_url) if admin_url else target.set(database="postgres")
    admin = create_engine(admin_base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if fresh:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}
            ).first()
            if not exists:
                conn.execute(
                    text(
                        f'CREATE DATABASE "{target.database}" OWNER "{target.username}" '
                        f"{DATABASE_OPTIONS}"
                    )
                )
    finally:
        admin.dispose()
    engine = create_engine(admin_base.set(database=target.database))
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pgrouting"))
        if admin_url:  # only a superuser may declare a function leakproof
            conn.execute(text(LEAKPROOF_SQL))
    engine.dispose()
