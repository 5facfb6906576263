"""Apply Alembic migrations programmatically (``python -m etl migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(url: str, revision: str = "head") -> bool:
    """Migrate, then grant the app role its rights; False when that role does not exist."""
    from sqlalchemy import create_engine

    from etl.roles import apply_grants

    command.upgrade(alembic_config(url), revision)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            return apply_grants(conn)
    finally:
        engine.dispose()


def downgrade(url: str, revision: str = "-1") -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    with create_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
