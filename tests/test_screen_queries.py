"""etl.queries.screen against the real PostGIS, each figure checked by a plain recount in Python."""

from __future__ import annotations

import math
import statistics
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, text

from etl.queries import Scope
from etl.queries import screen as q
from tests.test_screen_data import BOXES, COUNTY, build_territory

NOW = datetime.fromisoformat("2026-11-20T18:00:00+08:00")
TODAY = q.Window(NOW.replace(hour=0), NOW.replace(hour=0) + timedelta(days=1), NOW)
WEEK = q.Window(
    NOW.replace(hour=0) - timedelta(days=6), NOW.replace(hour=0) + timedelta(days=1), NOW
)
ALL = Scope()


@pytest.fixture
def territory(conn: Connection) -> Connection:
    build_territory(conn, now=NOW, n_events=150)
    return conn


def raw_events(conn: Connection, within: str = COUNTY) -> list[Any]:
    return conn.execute(text("SELECT * , ST_X(geom) AS lon, ST_Y(geom) AS lat FROM events "
                             "WHERE :c = ANY(unit_path)"), {"c": within}).all()  # fmt: skip


def recount(rows: list[Any], w: q.Window) -> dict[str, Any]:
    """The module docstring's definitions, literally."""
    seen = [r for r in rows if r.reported_at < w.asof]
    in_win = [r for r in seen if w.start <= r.reported_at < w.end]
    closed = [r for r in in_win if r.closed_at is not None and r.closed_at <= w.asof]
    is_open = [
        r for r in seen if r.status != "cancelled" and (r.closed_at is None or r.closed_at > w.asof)
    ]
    closable = [r for r in in_win if r.status != "cancelled"]
    due = [r for r in closable if r in closed or (r.due_at is not None and r.due_at < w.asof)]
    on_time = [r for r in closed if r.due_at is None or r.closed_at <= r.due_at]
    resp = [(r.dispatched_at - r.reported_at).total_seconds() / 60 for r in in_win
            if r.dispatched_at is not None and r.dispatched_at <= w.asof]  # fmt: skip
    sat = [r.satisfaction for r in closed if r.satisfaction is not None]
    return {
        "reported": len(in_win), "open": len(is_open),
        "overdue": sum(1 for r in is_open if r.due_at is not None and r.due_at < w.asof),
        "closure_rate": len(closed) / len(closable) if closable else None,
        "on_time_rate": len(on_time) / len(due) if due else None,
        "response_min": statistics.median(resp) if resp else None,
        "satisfaction": statistics.mean(sat) if sat else None,
    }  # fmt: skip


@pytest.mark.parametrize("window", [TODAY, WEEK], ids=["today", "week"])
@pytest.mark.parametrize("within", [COUNTY, f"{COUNTY}001", f"{COUNTY}002001"])
def test_kpis_match_a_recount(territory: Connection, window: q.Window, within: str) -> None:
    got = q.kpis(territory, ALL, within=within, window=window)
    want = recount(raw_events(territory, within), window)
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    assert got["reported"] > 0 or window is TODAY


def test_previous_window_is_yesterday_and_counts_there(territory: Connection) -> None:
    prev = TODAY.previous()
    assert prev.end == TODAY.start and prev.asof == NOW - timedelta(days=1)
    got = q.kpis(territory, ALL, within=COUNTY, window=prev)
    assert got["reported"] == recount(raw_events(territory), prev)["reported"]


def test_patrol_coverage_counts_grid_days(territory: Connection) -> None:
    # build_territory patrols grid j on the last (j % 3 + 1) days, 30 minutes before NOW
    days = [j % 3 + 1 for j in range(8)]
    assert q.kpis(territory, ALL, within=COUNTY, window=TODAY)["patrol_coverage"] == 1.0
    week = q.kpis(territory, ALL, within=COUNTY, window=WEEK)["patrol_coverage"]
    assert week == pytest.approx(sum(days) / (8 * 7))


def test_ranking_children_add_up(territory: Connection) -> None:
    rows = q.ranking(territory, ALL, within=COUNTY, window=WEEK)
    assert {r["code"] for r in rows} == {f"{COUNTY}001", f"{COUNTY}002"}
    total = q.kpis(territory, ALL, within=COUNTY, window=WEEK)
    assert sum(r["open"] for r in rows) == total["open"]
    assert sum(r["reported"] for r in rows) == total["reported"]
    for r in rows:
        assert r["overdue"] == recount(raw_events(territory, r["code"]), WEEK)["overdue"]
    assert [r["open"] for r in rows] == sorted((r["open"] for r in rows), reverse=True)


def test_map_events_are_the_window_plus_open_ones(territory: Connection) -> None:
    got = {row[0] for row in q.map_events(territory, ALL, within=COUNTY, window=TODAY)}
    w = TODAY
    want = {r.id for r in raw_events(territory) if r.reported_at < w.asof and (
        w.start <= r.reported_at < w.end
        or (r.status not in ("cancelled", "closed", "evaluated") and (r.closed_at is None or r.closed_at > w.asof)))}  # fmt: skip
    assert got == want and got


def test_map_events_limit_keeps_overdue_then_newest(territory: Connection) -> None:
    w = TODAY
    keep = [r for r in raw_events(territory) if r.reported_at < w.asof and (
        w.start <= r.reported_at < w.end
        or (r.status not in ("cancelled", "closed", "evaluated") and (r.closed_at is None or r.closed_at > w.asof)))]  # fmt: skip
    overdue = [r.closed_at is None and r.due_at is not None and r.due_at < w.asof for r in keep]
    ranked = sorted(zip(overdue, keep, strict=True), reverse=True,
                    key=lambda p: (p[0], p[1].reported_at, p[1].id))  # fmt: skip
    n = max(1, len(keep) // 2)
    got = [row[0] for row in q.map_events(territory, ALL, within=COUNTY, window=w, limit=n)]
    assert got == [r.id for _, r in ranked[:n]]


def test_map_events_rows_are_compact_and_in_place(territory: Connection) -> None:
    rows = q.map_events(territory, ALL, within=f"{COUNTY}001", window=WEEK, limit=5)
    assert len(rows) == 5 and all(len(r) == len(q.EVENT_COLUMNS) for r in rows)
    west, south, east, north = BOXES[f"{COUNTY}001"]
    for r in rows:
        rec = dict(zip(q.EVENT_COLUMNS, r, strict=True))
        assert west <= rec["lon"] <= east and south <= rec["lat"] <= north


def test_change_cursor_returns_only_new_changes(territory: Connection) -> None:
    cursor = q.max_rev(territory)
    assert q.events_after(territory, ALL, rev=cursor, within=COUNTY) == []
    target = raw_events(territory)[0].id
    territory.execute(text("UPDATE events SET status = 'closed', closed_at = :t WHERE id = :i"),
                      {"t": NOW, "i": target})  # fmt: skip
    changed = q.events_after(territory, ALL, rev=cursor, within=COUNTY)
    assert [r[0] for r in changed] == [target] and changed[0][4] == "closed"
    assert q.max_rev(territory) > cursor
    assert q.events_after(territory, ALL, rev=cursor, within=f"{COUNTY}999") == []


def test_heat_cells_conserve_events(territory: Connection) -> None:
    cells = q.heat_cells(territory, ALL, within=COUNTY, window=WEEK, cell=0.05, steps=7)
    rows = [r for r in raw_events(territory) if WEEK.start <= r.reported_at < WEEK.asof]
    assert sum(c[2] for c in cells) == len(rows)
    for lat, lon, _n, step in cells:
        assert 0 <= step < 7 and 108.0 <= lon <= 108.4 and 32.0 <= lat <= 32.3
    per_step = {s: sum(c[2] for c in cells if c[3] == s) for s in range(7)}
    want = {
        s: sum(1 for r in rows if int((r.reported_at - WEEK.start) / timedelta(days=1)) == s)
        for s in range(7)
    }
    assert per_step == want
    only = q.heat_cells(
        territory, ALL, within=COUNTY, window=WEEK, cell=0.05, steps=7, categories=["06"]
    )
    assert sum(c[2] for c in only) == sum(1 for r in rows if r.category_code.startswith("06"))


def test_trend_sums_match(territory: Connection) -> None:
    rows = q.trend(territory, ALL, within=COUNTY, window=WEEK, bucket="day")
    assert len(rows) == 7
    evs = raw_events(territory)
    assert sum(r["reported"] for r in rows) == sum(
        1 for e in evs if WEEK.start <= e.reported_at < NOW
    )
    assert sum(r["closed"] for r in rows) == sum(
        1 for e in evs if e.closed_at is not None and WEEK.start <= e.closed_at < NOW
    )
    hours = q.trend(territory, ALL, within=COUNTY, window=TODAY, bucket="hour")
    assert len(hours) == 24
    with pytest.raises(ValueError, match="bucket"):
        q.trend(territory, ALL, within=COUNTY, window=TODAY, bucket="week")


def test_units_layer_and_breadcrumb(territory: Connection) -> None:
    layer = q.unit_layer(territory, ALL, within=f"{COUNTY}001", depth=3, tolerance=0.001)
    codes = sorted(f["properties"]["code"] for f in layer["features"])
    assert codes == [f"{COUNTY}001{c:03d}{g:03d}" for c in (1, 2) for g in (1, 2)]
    households = territory.execute(text("SELECT code, households FROM units WHERE code = ANY(:c)"),
                                   {"c": codes}).all()  # fmt: skip
    assert {f["properties"]["code"]: f["properties"]["hh"] for f in layer["features"]} == dict(
        households
    )
    ref = q.unit_ref(territory, ALL, f"{COUNTY}001002")
    assert ref is not None and ref.level == "community" and ref.child_level == "grid"
    assert [c for c, _ in ref.path] == [COUNTY, f"{COUNTY}001", f"{COUNTY}001002"]
    west, south, east, north = BOXES[ref.code]
    assert ref.bounds == (
        (pytest.approx(south), pytest.approx(west)),
        (pytest.approx(north), pytest.approx(east)),
    )
    assert q.root_unit(territory, ALL).code == COUNTY  # type: ignore[union-attr]
    assert q.root_unit(territory, Scope(unit_codes=(f"{COUNTY}002",))).code == f"{COUNTY}002"  # type: ignore[union-attr]
    assert q.unit_ref(territory, Scope(unit_codes=(f"{COUNTY}002",)), f"{COUNTY}001") is None


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return int((lon + 180) / 360 * n), int(y)


def test_building_tile_has_the_building_only_where_it_is(territory: Connection) -> None:
    west, south, _e, _n = BOXES[f"{COUNTY}001001001"]  # building B0 sits at +0.01..0.02 degrees
    x, y = tile_of(west + 0.015, south + 0.015, 14)
    tile = q.building_tile(territory, ALL, z=14, x=x, y=y)
    assert b"buildings" in tile and b"B0" in tile
    assert q.building_tile(territory, ALL, z=14, x=x + 40, y=y) == b""
    assert q.building_tile(territory, Scope(unit_codes=(f"{COUNTY}002",)), z=14, x=x, y=y) == b""


def test_responders_with_their_dispatch(territory: Connection) -> None:
    rows = q.responders(territory, ALL, within=COUNTY)
    assert [r["code"] for r in rows] == ["R0", "R1", "R2"]
    open_by = dict(
        territory.execute(
            text(
                "SELECT responder_id, count(*) FROM events WHERE responder_id IS NOT NULL "
                "AND status NOT IN ('cancelled', 'closed', 'evaluated') GROUP BY 1"
            )
        ).all()
    )
    for r in rows:
        assert (r["event_id"] is not None) == (r["id"] in open_by)


def test_scope_restricts_every_figure(territory: Connection) -> None:
    town = Scope(unit_codes=(f"{COUNTY}002",))
    scoped = q.kpis(territory, town, within=COUNTY, window=WEEK)
    assert scoped["reported"] == recount(raw_events(territory, f"{COUNTY}002"), WEEK)["reported"]
    assert {r["code"] for r in q.ranking(territory, town, within=COUNTY, window=WEEK)} == {
        f"{COUNTY}002"
    }


def test_window_refuses_naive_or_empty() -> None:
    with pytest.raises(ValueError, match="aware"):
        q.Window(datetime(2026, 1, 1), datetime(2026, 1, 2), NOW)
    with pytest.raises(ValueError, match="not after"):
        q.Window(NOW, NOW, NOW)
