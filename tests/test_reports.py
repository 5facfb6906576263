"""Coverage reports against a naive recount: raw rows read with plain SELECTs, tallied in Python,
CJ/T 292 figures through geo.workflow.closure_stats (an independent implementation)."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, text

from etl.queries import Scope
from etl.queries.reports import (
    BadPeriod,
    Period,
    UnknownUnit,
    coverage_report,
    hotspot_layer,
    parse_period,
)
from geo.workflow import Actor, Transition, closure_stats
from tests.test_reports_data import ASOF, COUNTY, HOT_GRIDS, TZ, build_report_territory

PERIOD = "2026-10"
LO, HI = datetime(2026, 10, 1, tzinfo=TZ), datetime(2026, 11, 1, tzinfo=TZ)


def _select(conn: Connection, sql: str) -> pd.DataFrame:
    result = conn.execute(text(sql))
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def _raw(conn: Connection) -> dict[str, pd.DataFrame]:
    return {
        "units": _select(conn, "SELECT code, level, unit_path, households, residents, buildings FROM units"),
        "staff": _select(conn, "SELECT role, unit_path FROM staff"),
        "patrols": _select(conn, "SELECT kind, at, unit_path FROM patrols"),
        "events": _select(conn, "SELECT * FROM events"),
        "history": _select(conn, "SELECT * FROM event_history ORDER BY event_id, at, id"),
        "cats": _select(conn, "SELECT code, name FROM event_categories"),
    }  # fmt: skip


def _within(frame: pd.DataFrame, code: str) -> pd.DataFrame:
    return frame[frame["unit_path"].map(lambda p: p is not None and code in p)]


def _none(value: object) -> Any:
    return None if pd.isna(value) else value


def _histories(raw: dict[str, pd.DataFrame], ids: set[int]) -> dict[int, list[Transition]]:
    out: dict[int, list[Transition]] = {}
    for h in raw["history"].itertuples():
        if h.event_id in ids:
            out.setdefault(h.event_id, []).append(Transition(
                version=len(out.get(h.event_id, [])) + 1, action=h.action,
                actor=Actor(h.actor_level or "grid", "x", h.actor), at=h.at,
                from_status=_none(h.from_status), to_status=h.to_status,
                from_level=_none(h.from_level),
                to_level=h.to_level or "grid"))  # fmt: skip
    return out


def _oracle(raw: dict[str, pd.DataFrame], code: str, asof: datetime) -> dict[str, Any]:
    hi = min(HI, asof)
    units = raw["units"]
    grids = _within(units[units["level"] == "grid"], code)
    ev = _within(raw["events"], code)
    inp = ev[(ev["reported_at"] >= LO) & (ev["reported_at"] < hi)]
    pats = _within(raw["patrols"], code)
    pats = pats[(pats["at"] >= LO) & (pats["at"] < hi)]
    days = (hi - LO).days + (1 if (hi - LO) % timedelta(days=1) else 0)
    patrol_days = sum(
        len({at.astimezone(TZ).date() for at in _within(pats[pats["kind"] == "patrol"], g)["at"]})
        for g in grids["code"]
    )
    roles = Counter(_within(raw["staff"], code)["role"])
    due = {i: (None if pd.isna(d) else d) for i, d in zip(ev["id"], ev["due_at"], strict=True)}
    hist = _histories(raw, set(ev["id"]))
    due_by_history = {id(h): due[i] for i, h in hist.items()}
    cs = closure_stats(list(hist.values()), (LO, HI), as_of=asof,
                       due_of=lambda h: due_by_history[id(h)])  # fmt: skip

    def late(e: Any) -> bool:
        if e.status == "cancelled" or pd.isna(e.due_at):
            return False
        closed = e.closed_at if not pd.isna(e.closed_at) and e.closed_at <= asof else None
        return (closed is not None and closed > e.due_at) or (closed is None and e.due_at < asof)

    resp = [(e.dispatched_at - e.reported_at).total_seconds() / 60 for e in inp.itertuples()
            if not pd.isna(e.dispatched_at) and e.dispatched_at <= asof]  # fmt: skip
    handl = []
    for e in inp.itertuples():
        end = e.handled_at if not pd.isna(e.handled_at) else e.closed_at
        if not pd.isna(e.dispatched_at) and not pd.isna(end) and end <= asof:
            handl.append((end - e.dispatched_at).total_seconds() / 3600)
    sat = [s for s in inp["satisfaction"] if not pd.isna(s)]
    names = dict(zip(raw["cats"]["code"], raw["cats"]["name"], strict=True))
    top = sorted(Counter(inp["category_code"]).items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    return {
        "grids": len(grids), "hh": int(grids["households"].sum()),
        "res": int(grids["residents"].sum()), "bld": int(grids["buildings"].sum()),
        "chief": roles["grid_chief"], "ft": roles["full_time"], "pt": roles["part_time"],
        "aux": roles["auxiliary"], "patrol_d": patrol_days, "days": days,
        "patrol_cov": patrol_days / (len(grids) * days),
        "visits": int((pats["kind"] == "visit").sum()), "reported": len(inp),
        "overdue": sum(late(e) for e in inp.itertuples()),
        "filed": cs.filed, "should": cs.should_close, "closed": cs.closed,
        "ontime": cs.closed_on_time, "close_rt": cs.closure_rate, "ontime_rt": cs.on_time_rate,
        "returns": cs.returns, "escal": cs.escalations,
        "resp_min": statistics.median(resp) if resp else None,
        "handl_h": statistics.median(handl) if handl else None,
        "satisf": statistics.mean(sat) if sat else None,
        "top_cat": "、".join(f"{names[c]}({n})" for c, n in top),
    }  # fmt: skip


@pytest.fixture
def territory(conn: Connection) -> Connection:
    build_report_territory(conn)
    return conn


def _close(a: object, b: object) -> bool:
    if a is None or (isinstance(a, float) and pd.isna(a)):
        return b is None or (isinstance(b, float) and pd.isna(b))
    if isinstance(a, float) or isinstance(b, float):
        return b is not None and abs(float(a) - float(b)) < 1e-6  # type: ignore[arg-type]
    return a == b


def test_every_row_equals_a_naive_recount(territory: Connection) -> None:
    report = coverage_report(territory, Scope(), unit=COUNTY, period=PERIOD, asof=ASOF)
    raw = _raw(territory)
    for row in report.rows.itertuples():
        expected = _oracle(raw, row.code, ASOF)
        got = {k: getattr(row, k) for k in expected}
        wrong = {k: (got[k], v) for k, v in expected.items() if not _close(got[k], v)}
        assert not wrong, f"{row.code} ({row.row_kind}): report vs recount {wrong}"


def test_rows_are_grids_then_their_subtotals_for_every_ancestor(territory: Connection) -> None:
    report = coverage_report(territory, Scope(), unit=COUNTY, period=PERIOD, asof=ASOF)
    rows = report.rows
    grids = territory.execute(text("SELECT code, unit_path FROM units WHERE level = 'grid'")).all()
    assert sorted(rows.loc[rows["row_kind"] == "grid", "code"]) == sorted(g.code for g in grids)
    ancestors = {a for g in grids for a in g.unit_path if a != g.code}
    assert set(rows.loc[rows["row_kind"] != "grid", "code"]) == ancestors  # incl. the work area
    assert rows["row_kind"].iloc[-1] == "total" and rows["code"].iloc[-1] == COUNTY
    position = {c: i for i, c in enumerate(rows["code"])}
    for g in grids:  # every subtotal comes after all its grids
        assert all(position[a] > position[g.code] for a in g.unit_path if a != g.code)
    assert "microgrid" not in set(rows["level"])


def test_report_of_a_community_and_a_narrow_scope(territory: Connection) -> None:
    street = Scope(user="street", unit_codes=("888888001",))
    with pytest.raises(UnknownUnit, match="888888"):
        coverage_report(territory, street, unit=COUNTY, period=PERIOD, asof=ASOF)
    report = coverage_report(territory, street, unit="888888001", period=PERIOD, asof=ASOF)
    assert set(report.rows["code"].str[:9]) == {"888888001"}
    assert report.total["grids"] == 6
    whole = coverage_report(territory, Scope(), unit="888888001", period=PERIOD, asof=ASOF)
    pd.testing.assert_frame_equal(report.rows, whole.rows)


def test_bands_follow_the_settings(territory: Connection) -> None:
    bands = {"grid": (300, 500), "community": (1000, 2000)}
    report = coverage_report(territory, Scope(), unit=COUNTY, period=PERIOD, asof=ASOF,
                             bands=bands, hotspots=False)  # fmt: skip
    for row in report.rows.itertuples():
        band = bands.get(row.level)
        expected = None if band is None else ("below" if row.hh < band[0] else
                                              "above" if row.hh > band[1] else "within")  # fmt: skip
        assert (row.band if isinstance(row.band, str) else None) == expected, row.code


def test_hot_spots_sit_where_the_events_cluster(territory: Connection) -> None:
    layer = hotspot_layer(territory, Scope(), unit=COUNTY, period=PERIOD, asof=ASOF,
                          density_cells=True)  # fmt: skip
    props = {f["properties"]["code"]: f["properties"] for f in layer["features"]}
    assert len(props) == 12
    assert {c for c, p in props.items() if p["gi_class"].startswith("hot")} == set(HOT_GRIDS)
    densest = max(props.values(), key=lambda p: p["kde"])
    assert densest["code"] in HOT_GRIDS
    assert layer["density"]["features"], "density cells of the hot area"
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in layer["features"])


def test_a_period_not_yet_begun_has_no_activity(territory: Connection) -> None:
    report = coverage_report(territory, Scope(), unit=COUNTY, period="2027-01", asof=ASOF)
    assert report.rows["reported"].sum() == 0 and report.rows["patrol_d"].sum() == 0
    assert report.rows["patrol_cov"].isna().all() and report.total["hh"] > 0


@pytest.mark.parametrize(
    ("text_", "start", "end"),
    [
        ("2026", date(2026, 1, 1), date(2027, 1, 1)),
        ("2026-02", date(2026, 2, 1), date(2026, 3, 1)),
        ("2024-02", date(2024, 2, 1), date(2024, 3, 1)),
        ("2026-12", date(2026, 12, 1), date(2027, 1, 1)),
        ("2026-10-05", date(2026, 10, 5), date(2026, 10, 6)),
        ("2026-10-01..2026-10-15", date(2026, 10, 1), date(2026, 10, 16)),
    ],
)
def test_parse_period(text_: str, start: date, end: date) -> None:
    assert parse_period(text_) == Period(start, end, text_)


@pytest.mark.parametrize("bad", ["", "2026-13", "26-10", "2026-10-32", "2026-10-05..2026-10-01",
                                 "October", "2026/10"])  # fmt: skip
def test_bad_periods_are_refused(bad: str) -> None:
    with pytest.raises(BadPeriod, match="period"):
        parse_period(bad)


@given(st.dates(date(2000, 1, 1), date(2099, 12, 31)), st.integers(0, 800))
def test_a_range_holds_both_ends(a: date, n: int) -> None:
    b = a + timedelta(days=n)
    p = parse_period(f"{a.isoformat()}..{b.isoformat()}")
    assert p.start == a and (p.end - p.start).days == n + 1


def test_analysis_reads_match_the_raw_rows(territory: Connection) -> None:
    from etl.queries.reports import data_span, event_times, grid_event_counts, unit_frame

    raw = _raw(territory)
    ev = _within(raw["events"], COUNTY)
    assert data_span(territory, Scope(), within=COUNTY) == (
        ev["reported_at"].min(),
        ev["reported_at"].max(),
    )
    grids = unit_frame(territory, Scope(), within=COUNTY, level="grid")
    assert len(grids) == 12 and grids.crs.to_epsg() == 4490
    assert grids["households"].sum() == raw["units"].query("level == 'grid'")["households"].sum()
    counts = grid_event_counts(territory, Scope(), within=COUNTY, start=LO, end=HI, bucket="month")
    for code, n in zip(counts["code"], counts["n"], strict=True):
        mine = _within(ev, code)
        assert n == ((mine["reported_at"] >= LO) & (mine["reported_at"] < HI)).sum()
    times = event_times(territory, Scope(), within=COUNTY, start=LO, end=HI, level="township")
    inp = ev[(ev["reported_at"] >= LO) & (ev["reported_at"] < HI)]
    assert len(times) == len(inp) and set(times["unit_code"]) == {"888888001", "888888101"}
    dispatched = inp.dropna(subset=["dispatched_at"])
    expected = (
        (dispatched["dispatched_at"] - dispatched["reported_at"]).dt.total_seconds() / 60
    ).median()
    assert times["response_min"].median() == pytest.approx(expected)
