"""The managed cluster takes passwords only, keeps its secrets and socket private, and its app
role cannot act as a superuser (CI runs on the managed cluster; with DATABASE_URL this checks
the configured roles only)."""

from __future__ import annotations

import stat

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from etl.settings import APP_ROLE, OWNER_ROLE, get_settings


def test_no_trust_and_private_files() -> None:
    settings = get_settings()
    if not settings.managed_cluster:
        pytest.fail("make test runs on the project-managed cluster; DATABASE_URL is set")
    hba = settings.pg_dir / "data" / "pg_hba.conf"
    rules = [line.split() for line in hba.read_text().splitlines()
             if line.strip() and not line.startswith("#")]  # fmt: skip
    assert rules and {r[-1] for r in rules} == {"scram-sha-256"}
    assert not any("replication" in r for r in rules)
    assert stat.S_IMODE(settings.secrets_file.stat().st_mode) == 0o600
    for folder in (settings.pg_dir, settings.pg_dir / "run"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_connection_without_password_is_refused() -> None:
    url = make_url(get_settings().sqlalchemy_url)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database,
                        connect_timeout=5)  # fmt: skip


def test_the_roles_are_what_the_readme_says() -> None:
    engine = create_engine(get_settings().sqlalchemy_url)
    with engine.connect() as conn:
        rows = {r.rolname: r for r in conn.execute(text(
            "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolreplication FROM pg_roles "
            "WHERE rolname IN (:o, :a)"), {"o": OWNER_ROLE, "a": APP_ROLE})}  # fmt: skip
    engine.dispose()
    owner, app = rows[OWNER_ROLE], rows[APP_ROLE]
    assert (owner.rolsuper, owner.rolbypassrls) == (False, True)
    assert (app.rolsuper, app.rolbypassrls, app.rolcreaterole, app.rolreplication) == (
        False, False, False, False)  # fmt: skip
