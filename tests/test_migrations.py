"""Migrations: upgrade from empty, downgrade one step, upgrade again."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from etl import migrate
from tests.conftest import database_url, ensure_database


def test_upgrade_downgrade_upgrade() -> None:
    url = database_url("_test_migrations")
    ensure_database(url, fresh=True)
    migrate.upgrade(url)
    head = migrate.current(url)
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    assert {
        "units",
        "buildings",
        "events",
        "event_history",
        "staff",
        "responders",
        "responder_positions",
        "patrols",
        "roads",
        "etl_runs",
        "event_categories",
        "levels",
    } <= tables
    migrate.downgrade(url, "-1")
    assert migrate.current(url) != head
    migrate.upgrade(url)
    assert migrate.current(url) == head
    gist = {
        i["name"]
        for t in ("units", "buildings", "events", "roads", "patrols")
        for i in inspect(engine).get_indexes(t)
        if i["name"].endswith("_geom")
    }
    assert gist == {
        "ix_units_geom",
        "ix_buildings_geom",
        "ix_events_geom",
        "ix_roads_geom",
        "ix_patrols_geom",
    }
    migrate.downgrade(url, "base")
    assert "units" not in set(inspect(engine).get_table_names())
    engine.dispose()
