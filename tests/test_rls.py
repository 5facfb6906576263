"""Row-level security in PostgreSQL itself: raw SQL through the app's role, with no filter in the
query, sees only the scope's rows; without a scope it sees nothing; the audit log is append-only
and admin-only; the app role cannot run programs or bypass policies."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import ProgrammingError

from etl import accounts
from etl import incidents as inc
from etl.db import DbScope, set_scope
from etl.settings import APP_ROLE
from tests.test_incidents_net import COMM, COUNTY, EAST, WEST, build_net

NOW = datetime(2026, 11, 20, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
JURISDICTIONAL = ("units", "events", "event_history")


def _two_grids(conn: Connection) -> None:
    build_net(conn)
    cats = inc.load_categories(conn)
    for code, lon in (("RLS-W", 108.005), ("RLS-E", 108.015)):
        inc.report(conn, inc.Report("0201", lon, 32.005, NOW, code=code, description="x"), cats)


def _as_app(conn: Connection, codes: tuple[str, ...] | None, role: str = "analyst") -> None:
    conn.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
    set_scope(conn, DbScope(codes, role) if codes is not None else None)


def _codes(conn: Connection, sql: str) -> set[str]:
    return {r[0] for r in conn.execute(text(sql))}


def test_a_query_that_forgets_its_filter_sees_only_the_scope(conn: Connection) -> None:
    _two_grids(conn)
    _as_app(conn, (WEST,))
    assert _codes(conn, "SELECT code FROM events") == {"RLS-W"}
    assert _codes(conn, "SELECT code FROM units") == {WEST}
    history = conn.execute(text("SELECT DISTINCT e.code FROM event_history h "
                                "JOIN events e ON e.id = h.event_id")).scalars().all()  # fmt: skip
    assert history == ["RLS-W"]
    # the history of the other grid's event is invisible even by its id
    east_id = conn.execute(text("SELECT count(*) FROM event_history WHERE event_id IN "
                                "(SELECT id FROM events WHERE code = 'RLS-E')")).scalar()  # fmt: skip
    assert east_id == 0


def test_a_unit_sees_everything_below_it(conn: Connection) -> None:
    _two_grids(conn)
    _as_app(conn, (COMM,))
    assert _codes(conn, "SELECT code FROM events") == {"RLS-W", "RLS-E"}
    assert _codes(conn, "SELECT code FROM units") == {COMM, WEST, EAST}  # not the county above


@pytest.mark.parametrize("table", JURISDICTIONAL)
def test_no_scope_sees_nothing(conn: Connection, table: str) -> None:
    _two_grids(conn)
    _as_app(conn, None)
    assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0


def test_writes_outside_the_scope_are_refused(conn: Connection) -> None:
    _two_grids(conn)
    _as_app(conn, (WEST,))
    moved = conn.execute(text("UPDATE events SET description = 'hijacked' WHERE code = 'RLS-E'"))
    assert moved.rowcount == 0  # invisible, so untouched
    with pytest.raises(ProgrammingError, match="row-level security"):
        conn.execute(text("UPDATE events SET unit_path = ARRAY[:c]::varchar[] WHERE code = 'RLS-W'"),
                     {"c": EAST})  # fmt: skip


def test_the_audit_log_is_append_only_and_admin_only(conn: Connection) -> None:
    _two_grids(conn)
    _as_app(conn, (COUNTY,), role="commander")
    accounts.audit(conn, "someone", "export", "report.xlsx")
    assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar() == 0  # not admin
    for sql in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(ProgrammingError, match="permission denied"), conn.begin_nested():
            conn.execute(text(sql))
    set_scope(conn, DbScope((COUNTY,), "admin"))
    assert [r["action"] for r in accounts.read_audit(conn)] == ["export"]


def test_the_app_role_is_no_superuser_and_runs_no_programs(conn: Connection) -> None:
    _as_app(conn, (COUNTY,))
    row = conn.execute(text("SELECT rolsuper, rolbypassrls, rolcreaterole FROM pg_roles "
                            "WHERE rolname = current_user")).one()  # fmt: skip
    assert tuple(row) == (False, False, False)
    with pytest.raises(ProgrammingError, match="superuser|privileges"), conn.begin_nested():
        conn.execute(text("COPY (SELECT 1) TO PROGRAM 'id'"))
    with pytest.raises(ProgrammingError, match="permission denied"), conn.begin_nested():
        conn.execute(text("INSERT INTO event_categories (code, name) VALUES ('99', 'x')"))


def test_every_table_with_unit_path_has_a_forced_policy(conn: Connection) -> None:
    rows = conn.execute(
        text(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'unit_path' "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'"
        )
    ).all()
    assert len(rows) >= 7
    assert [r.relname for r in rows if not (r.relrowsecurity and r.relforcerowsecurity)] == []


def test_the_territory_box_is_the_same_for_every_scope(conn: Connection) -> None:
    from etl.queries.events import territory_box

    _two_grids(conn)
    whole = territory_box(conn)
    _as_app(conn, (WEST,))
    assert territory_box(conn) == whole is not None
    assert _codes(conn, "SELECT code FROM units") == {WEST}  # yet the county row stays hidden


def test_an_unfit_app_role_is_named(conn: Connection) -> None:
    from etl.roles import app_role_problems

    owner = app_role_problems(conn)  # the tests connect as the owner
    assert any("BYPASSRLS" in p for p in owner) and any("owns" in p for p in owner)
    _as_app(conn, (COUNTY,))
    assert app_role_problems(conn) == []


def test_production_refuses_to_serve_through_the_owner(engine) -> None:  # noqa: ANN001
    from dashboard.app import create_app
    from etl.settings import Settings, UnsafeSettingsError

    settings = Settings(env="production", database_url="postgresql://o:p@h/d",
                        app_database_url="postgresql://a:p@h/d",
                        secret_key="q8ZP3vN1-xR7kT0wYb2Lm9eHcF4sJ6uA")  # fmt: skip
    with pytest.raises(UnsafeSettingsError, match="BYPASSRLS"):
        create_app(settings, engine=engine)
