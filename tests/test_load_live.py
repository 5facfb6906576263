"""A load never rewrites an event the workflow owns (``etl.write.KEEP_STORED``): on both upsert
paths (the ON CONFLICT upsert of an ordinary batch, the two-statement upsert of a bulk batch)
such rows stay as they are, and the load counts and names them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection, text

import etl.write
from etl import incidents as inc
from etl.deadlines import work_calendar
from etl.load import load_file
from etl.settings import Settings
from geo import workflow as wf
from tests.test_incidents_net import at, build_net

HEADER = "事件编号,事件类型,上报时间,经度,纬度,事件描述,状态\n"
CALENDAR = work_calendar(Settings())
GRID = wf.Actor("grid", "staff", "Li")


def _csv(tmp_path: Path, name: str, rows: list[str]) -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def _row(conn: Connection, code: str) -> tuple:
    return tuple(
        conn.execute(
            text("""SELECT category_code, description, status, version, ST_X(geom),
                       (SELECT count(*) FROM event_history h WHERE h.event_id = e.id)
                    FROM events e WHERE code = :c"""),
            {"c": code},
        ).one()
    )


@pytest.fixture
def net(conn: Connection, tmp_path: Path) -> Connection:
    """C1 verified through the workflow, C2 and C3 fresh reports, all from a first load."""
    build_net(conn)
    first = _csv(tmp_path, "first.csv", [
        "C1,0201,2026-11-19 09:00,108.005,32.005,a,reported",
        "C2,0201,2026-11-19 09:30,108.015,32.005,b,reported",
        "C3,0301,2026-11-19 10:00,108.015,32.006,c,reported",
    ])  # fmt: skip
    load_file(conn, "events", first, crs="4490")
    inc.finish_import(conn)
    inc.act(conn, "C1", "verify", GRID, calendar=CALENDAR, at=at(19, 11))
    return conn


CHANGED = [
    "C1,0301,2026-11-19 09:00,108.009,32.005,rewritten,closed",  # live: kept
    "C2,0201,2026-11-19 09:30,108.015,32.005,b corrected,reported",  # fresh: updated
    "C3,0301,2026-11-19 10:00,108.015,32.006,c,closed",  # fresh, moved to closed: kept
    "C4,0201,2026-11-19 11:00,108.016,32.006,d,reported",  # new
]


@pytest.mark.parametrize("bulk", [False, True], ids=["upsert", "bulk"])
def test_a_load_keeps_events_in_the_workflow(
    net: Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulk: bool
) -> None:
    paths: list[str] = []
    for name in ("_bulk_upsert", "_conflict_upsert"):
        real = getattr(etl.write, name)
        monkeypatch.setattr(
            etl.write, name, lambda *a, _r=real, _n=name: paths.append(_n) or _r(*a)
        )
    if bulk:  # a batch larger than the table: indexes dropped, two-statement upsert
        monkeypatch.setattr(etl.write, "BULK_MIN_ROWS", 2)
    c1, c3 = _row(net, "C1"), _row(net, "C3")
    assert c1[2:4] == ("verified", 2)
    result = load_file(net, "events", _csv(tmp_path, "again.csv", CHANGED), crs="4490")
    counts = result.counts
    assert paths == ["_bulk_upsert" if bulk else "_conflict_upsert"]
    assert (counts.inserted, counts.updated, counts.unchanged, counts.kept) == (1, 1, 0, 2)
    assert counts.kept_codes == ["C1", "C3"]
    assert _row(net, "C1") == c1 and _row(net, "C3") == c3  # untouched, history included
    assert _row(net, "C2")[1] == "b corrected"
    assert any("C1, C3" in w and "workflow" in w for w in result.warnings)
    message = net.execute(
        text("SELECT message FROM etl_runs WHERE id = :i"), {"i": result.run_id}
    ).scalar_one()
    assert "C1, C3" in message


def test_the_same_file_again_changes_nothing_and_keeps_nothing(
    net: Connection, tmp_path: Path
) -> None:
    again = _csv(tmp_path, "same.csv", [
        "C1,0201,2026-11-19 09:00,108.005,32.005,a,reported",
        "C2,0201,2026-11-19 09:30,108.015,32.005,b,reported",
    ])  # fmt: skip
    counts = load_file(net, "events", again, crs="4490").counts
    # C1 is live and the file still says "reported": a difference, so it is kept, not rewritten
    assert (counts.inserted, counts.updated, counts.unchanged, counts.kept) == (0, 0, 1, 1)
    assert _row(net, "C1")[2:4] == ("verified", 2)
