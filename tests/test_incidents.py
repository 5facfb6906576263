"""The incident loop's write side against the real PostGIS: intake, duplicates, transitions,
deadlines on the working calendar, replay of the stored history, and concurrent dispatchers."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Geod
from sqlalchemy import Connection, Engine, create_engine, text

from etl import incidents as inc
from etl import migrate
from geo import workflow as wf
from geo.workcalendar import DEFAULT_WORK_PERIODS, WorkCalendar
from tests.conftest import database_url, ensure_database
from tests.test_incidents_net import COUNTY, EAST, EDGE_X, WEST, at, build_net

GEOD = Geod(ellps="GRS80")
PLAIN = WorkCalendar(holidays=(), makeup_workdays=())
CENTRE = wf.Actor("county", "dispatcher", "centre")
GRID = wf.Actor("grid", "grid_worker", "Li")


@pytest.fixture
def net(conn: Connection) -> Connection:
    build_net(conn)
    return conn


def _cats(conn: Connection) -> dict[str, inc.Category]:
    return inc.load_categories(conn)


def _report(conn: Connection, lon: float, lat: float, cat: str = "0201", when=None, **kw):  # noqa: ANN001, ANN202
    rep = inc.Report(category_code=cat, lon=lon, lat=lat, reported_at=when or at(2, 9), **kw)
    return inc.report(conn, rep, _cats(conn))


def _row(conn: Connection, code: str):  # noqa: ANN202
    return conn.execute(text("SELECT * FROM events WHERE code = :c"), {"c": code}).one()


# --- intake ----------------------------------------------------------------------------------


def test_intake_assigns_finest_unit_and_place_first(net: Connection) -> None:
    west = _report(net, 108.005, 32.005)
    east = _report(net, 108.015, 32.005)
    edge = _report(net, EDGE_X, 32.005)  # on the shared edge: the lowest code wins
    assert (west["unit_code"], east["unit_code"], edge["unit_code"]) == (WEST, EAST, WEST)
    row = _row(net, east["code"])
    assert row.unit_path[-1] == EAST and row.handling_unit_code == EAST
    assert row.status == "reported" and row.version == 1
    fire = _report(net, 108.015, 32.005, cat="0601")  # emergencies skip the ladder
    assert (fire["handling_level"], fire["handling_unit_code"]) == ("county", COUNTY)
    hist = net.execute(text("SELECT action, to_status, to_level, version FROM event_history "
                            "WHERE event_id = :i"), {"i": fire["id"]}).all()  # fmt: skip
    assert [tuple(h) for h in hist] == [("report", "reported", "county", 1)]


def test_intake_refuses_outside_and_is_idempotent(net: Connection) -> None:
    with pytest.raises(inc.InvalidReport, match="outside the territory"):
        _report(net, 109.5, 32.005)
    first = _report(net, 108.005, 32.005, code="CLIENT-1")
    again = _report(net, 108.005, 32.005, code="CLIENT-1")
    assert first["created"] and not again["created"] and again["id"] == first["id"]
    n = net.execute(text("SELECT count(*) FROM events WHERE code = 'CLIENT-1'")).scalar()
    assert n == 1


def test_parse_report_names_every_bad_field() -> None:
    cats = {"0201": inc.Category("0201", "x", None, 4, 4, "work_hours", None, False, True),
            "02": inc.Category("02", "x", None, 4, None, None, None, False, False)}  # fmt: skip
    now = at(2, 9)
    bad = {"category_code": "02", "lon": "108", "lat": 95, "channel": "fax", "priority": 9,
           "reported_at": "2026-11-02T09:00:00"}  # fmt: skip
    with pytest.raises(inc.InvalidReport) as err:
        inc.parse_report(bad, cats, now=now)
    fields = {f for f, _ in err.value.errors}
    assert fields == {"category_code", "lon", "lat", "channel", "priority", "reported_at"}
    ok = inc.parse_report({"category_code": "0201", "lon": 108.0, "lat": 32.0}, cats, now=now)
    assert ok.reported_at == now and ok.channel == "app"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    reports=st.lists(
        st.tuples(
            st.sampled_from(["0201", "0202"]),
            st.floats(0, 0.0025),  # ~0-240 m east of the first point
            st.integers(0, 240),  # minutes after 09:00
        ),
        min_size=2,
        max_size=7,
    )
)
def test_duplicates_link_to_the_first_report(net: Connection, reports: list) -> None:
    """Oracle: each report links to the earliest live report of its category within 100 m and
    2 h (its root if that one is itself a duplicate); nothing is dropped."""
    with net.begin_nested() as sp:
        stored: list[tuple[str, float, datetime, int]] = []
        for cat, dx, minutes in sorted(reports, key=lambda r: r[2]):
            when = at(2, 9) + timedelta(minutes=minutes)
            got = _report(net, 108.004 + dx, 32.005, cat=cat, when=when)
            expected = None
            for c, x, t, eid in stored:
                _, _, dist = GEOD.inv(108.004 + dx, 32.005, x, 32.005)
                near = abs(dist - 100) > 0.5 and dist < 100  # skip float-ambiguous ties
                if c == cat and near and abs(when - t) <= timedelta(hours=2):
                    expected = eid
                    break
                if c == cat and abs(dist - 100) <= 0.5:
                    expected = got["duplicate_of"]  # too close to call
                    break
            if expected is not None:
                root = net.execute(text("SELECT COALESCE(duplicate_of, id) FROM events "
                                        "WHERE id = :i"), {"i": expected}).scalar()  # fmt: skip
                expected = root
            assert got["duplicate_of"] == expected
            stored.append((cat, 108.004 + dx, when, got["id"]))
        n = net.execute(text("SELECT count(*) FROM events")).scalar()
        assert n == len(reports)
        sp.rollback()


# --- transitions: the DB layer follows the pure machine and never loses history --------------

ACTORS = st.builds(wf.Actor, st.sampled_from(inc.LADDER), st.just("staff"), st.sampled_from("ab"))


def _draw_step(data: st.DataObject, model: wf.EventState) -> tuple:
    """Mostly a legal action of the drawn actor (to reach deep states), sometimes any action."""
    actor = data.draw(ACTORS)
    # what inc.act takes: not report (inc.report) nor reinforce (inc.assign_responder)
    legal = sorted(a for a in wf.allowed_actions(model, actor) if a in inc.ACTIONS)
    anything = [wf.Action(a) for a in inc.ACTIONS]
    pool = legal if legal and data.draw(st.integers(0, 3)) else anything
    action = data.draw(st.sampled_from(pool))
    reason = data.draw(st.sampled_from([None, "because", "because", "because"]))
    sat = data.draw(st.sampled_from([None, 0, 3, 5])) if action is wf.Action.EVALUATE else None
    level = data.draw(st.sampled_from([None, *inc.LADDER]))
    return action, actor, reason, sat, level if action is wf.Action.DISPATCH else None


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), n_steps=st.integers(1, 30), emergency=st.booleans())
def test_random_actions_match_the_machine_and_replay(
    net: Connection, data: st.DataObject, n_steps: int, emergency: bool
) -> None:
    """Random action sequences through the DB layer: every step does what the pure machine says
    (or is refused with the same error and no write); the stored history replays to the stored
    state; one history row per version."""
    with net.begin_nested() as sp:
        ev = _report(net, 108.005, 32.005, cat="0601" if emergency else "0201",
                     reporter_level="grid", reporter_role="grid_worker", reporter="Li")  # fmt: skip
        model, _ = wf.report_event(wf.Actor("grid", "grid_worker", "Li"), at=at(2, 9),
                                   emergency=emergency)  # fmt: skip
        for i in range(n_steps):
            action, actor, reason, sat, to_level = _draw_step(data, model)
            when = at(2, 9) + timedelta(minutes=10 * (i + 1))
            kw = {"at": when, "reason": reason, "satisfaction": sat, "to_level": to_level}
            try:
                expected, _ = wf.apply(model, action, actor, **kw)
            except wf.WorkflowError as exc:
                with pytest.raises(type(exc)):
                    inc.act(net, ev["code"], action.value, actor, calendar=PLAIN,
                            version=model.version, **kw)  # fmt: skip
                assert _row(net, ev["code"]).version == model.version
                continue
            got = inc.act(net, ev["code"], action.value, actor, calendar=PLAIN,
                          version=model.version, **kw)  # fmt: skip
            model = expected
            assert (got["status"], got["version"]) == (model.status.value, model.version)
        row = _row(net, ev["code"])
        replayed = inc.replay_event(net, ev["code"])
        stored = inc.state_of(net.execute(inc._LOCK_SQL, {"code": ev["code"]}).one())
        assert replayed == model == stored
        assert row.status == model.status.value and row.handling_level == model.handling_level
        n_hist = net.execute(text("SELECT count(*) FROM event_history WHERE event_id = :i"),
                             {"i": row.id}).scalar()  # fmt: skip
        assert n_hist == row.version  # one history row per version, none lost
        sp.rollback()


def test_stale_version_is_refused(net: Connection) -> None:
    ev = _report(net, 108.005, 32.005)
    inc.act(net, ev["code"], "verify", GRID, calendar=PLAIN, version=1, at=at(2, 10))
    with pytest.raises(inc.VersionConflict):
        inc.act(net, ev["code"], "file", GRID, calendar=PLAIN, version=1, at=at(2, 11))
    assert _row(net, ev["code"]).version == 2


# --- deadlines across nights, weekends, holidays and pauses ----------------------------------


def _naive_due(cal: WorkCalendar, start: datetime, minutes: int, pauses=()) -> datetime:  # noqa: ANN001
    """Walk minute by minute, counting the minutes that are worked and not paused."""
    t = start
    while minutes > 0:
        local = t.astimezone(cal.zone)
        worked = cal.is_workday(local.date()) and any(
            a <= local.time() < b for a, b in DEFAULT_WORK_PERIODS
        )
        paused = any(p0 <= t < p1 for p0, p1 in pauses)
        t += timedelta(minutes=1)
        minutes -= int(worked and not paused)
    return t


def _to_dispatched(conn: Connection, code: str, when: datetime, cal: WorkCalendar) -> None:
    for i, action in enumerate(("verify", "file", "dispatch")):
        inc.act(conn, code, action, GRID, calendar=cal, at=when - timedelta(minutes=2 - i))


def test_due_at_counts_working_hours_over_a_weekend(net: Connection) -> None:
    ev = _report(net, 108.005, 32.005, cat="0201", when=at(6, 16))  # 4 working hours
    _to_dispatched(net, ev["code"], at(6, 17), PLAIN)  # Friday 17:00
    assert _row(net, ev["code"]).due_at == _naive_due(PLAIN, at(6, 17), 4 * 60)


def test_due_at_over_a_holiday_with_a_makeup_day_and_pause(net: Connection) -> None:
    cal = WorkCalendar(holidays=[date(2026, 11, 9), date(2026, 11, 10)],
                       makeup_workdays=[date(2026, 11, 8)])  # fmt: skip
    ev = _report(net, 108.005, 32.005, cat="0303", when=at(6, 9))  # 8 working hours
    _to_dispatched(net, ev["code"], at(6, 15), cal)  # Friday 15:00
    code = ev["code"]
    inc.act(net, code, "request_extension", GRID, calendar=cal, reason="parts", at=at(8, 9))
    assert _row(net, code).due_at is None  # paused for good until decided
    inc.act(net, code, "approve_extension", CENTRE, calendar=cal, at=at(11, 10), extend_by=2)
    pauses = [(at(8, 9), at(11, 10))]
    assert _row(net, code).due_at == _naive_due(cal, at(6, 15), 10 * 60, pauses)


def test_extension_must_match_the_category_unit(net: Connection) -> None:
    ev = _report(net, 108.005, 32.005, cat="0101")  # work_days
    _to_dispatched(net, ev["code"], at(2, 10), PLAIN)
    inc.act(net, ev["code"], "request_extension", GRID, calendar=PLAIN, reason="x", at=at(2, 11))
    with pytest.raises(inc.InvalidReport, match="whole working days"):
        inc.act(net, ev["code"], "approve_extension", CENTRE, calendar=PLAIN, at=at(2, 12),
                extend_by=1.5)  # fmt: skip


# --- concurrency: two dispatchers on parallel connections ------------------------------------


@pytest.fixture(scope="module")
def mt_engine() -> Engine:
    url = database_url("_test_incidents_mt")
    ensure_database(url)
    migrate.upgrade(url)
    eng = create_engine(url, pool_size=4)
    with eng.begin() as c:
        c.execute(text("TRUNCATE units, events, event_history, event_categories, responders "
                       "RESTART IDENTITY CASCADE"))  # fmt: skip
        build_net(c)
    yield eng
    eng.dispose()


def test_two_dispatchers_cannot_both_succeed(mt_engine: Engine) -> None:
    with mt_engine.begin() as c:
        ev = _report(c, 108.005, 32.005)
        for i, action in enumerate(("verify", "file")):
            inc.act(c, ev["code"], action, CENTRE, calendar=PLAIN, at=at(2, 9, 10 + i))
    barrier, outcomes = threading.Barrier(4), []

    def dispatcher(level: str) -> None:
        actor = wf.Actor("county", "dispatcher", f"d-{level}")
        barrier.wait()
        try:
            with mt_engine.begin() as c:
                inc.act(c, ev["code"], "dispatch", actor, calendar=PLAIN, version=3,
                        to_level=level, at=at(2, 10))  # fmt: skip
            outcomes.append(("ok", level))
        except (inc.VersionConflict, wf.WorkflowError) as exc:
            outcomes.append((type(exc).__name__, level))

    threads = [threading.Thread(target=dispatcher, args=(lvl,)) for lvl in inc.LADDER]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wins = [lvl for kind, lvl in outcomes if kind == "ok"]
    assert len(wins) == 1 and len(outcomes) == 4
    with mt_engine.connect() as c:
        row = _row(c, ev["code"])
        assert (row.version, row.handling_level) == (4, wins[0])
        assert inc.replay_event(c, ev["code"]).handling_level == wins[0]
