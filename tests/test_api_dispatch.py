"""Auto-dispatch under contention: 20 dispatchers press "send the fastest" on one case at once,
each request in its own thread on its own database connection, against committed data in a
scratch database (a rolled-back test transaction cannot be shared between connections)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import flask
import pytest
from sqlalchemy import Engine, create_engine, text

from dashboard.api import make_blueprint
from etl import incidents as inc
from etl import migrate
from etl.db import transaction
from etl.deadlines import work_calendar
from etl.settings import Settings
from geo import workflow as wf
from tests.conftest import database_url, ensure_database
from tests.test_incidents_net import at, build_net

NOW = at(20, 10)
DISPATCHERS = 20


@pytest.fixture(scope="module")
def scratch() -> Iterator[Engine]:
    url = database_url("_test_dispatch")
    ensure_database(url, fresh=True)
    migrate.upgrade(url)
    eng = create_engine(url, pool_size=DISPATCHERS + 5)
    with transaction(eng) as conn:
        build_net(conn)
        for i in range(5):  # five grid teams, all free, at different distances
            conn.execute(text("""INSERT INTO responders (code, name, type, status, geom) VALUES
                (:c, :c, 'grid_team', 'available', ST_SetSRID(ST_MakePoint(:x, 32.005), 4490))"""),
                {"c": f"T{i}", "x": 108.0155 + 0.0008 * i})  # fmt: skip
    yield eng
    eng.dispose()


def _dispatched_case(eng: Engine) -> str:
    cats, calendar = inc.load_categories(eng), work_calendar(Settings())
    county = wf.Actor("county", "staff", "centre")
    rep = inc.Report(category_code="0201", lon=108.015, lat=32.005, reported_at=at(20, 9))
    with transaction(eng) as conn:
        code = inc.report(conn, rep, cats)["code"]
        for action in ("verify", "file", "dispatch"):
            inc.act(conn, code, action, county, calendar=calendar, at=at(20, 9, 30))
    return str(code)


def test_parallel_auto_dispatches_send_one_responder(scratch: Engine) -> None:
    code = _dispatched_case(scratch)
    app = flask.Flask("race")
    app.register_blueprint(make_blueprint(scratch, Settings(), clock=lambda: NOW))
    start, statuses = threading.Barrier(DISPATCHERS), []

    def dispatch() -> None:
        client = app.test_client()
        start.wait()
        resp = client.post(f"/api/v1/events/{code}/dispatch",
                           json={"actor": "centre", "actor_level": "county"})  # fmt: skip
        statuses.append(resp.status_code)

    threads = [threading.Thread(target=dispatch) for _ in range(DISPATCHERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == [201] + [409] * (DISPATCHERS - 1)
    with scratch.connect() as conn:
        busy = conn.execute(text("SELECT code FROM responders WHERE status = 'busy'")).scalars()
        recorded = conn.execute(text("""
            SELECT r.code FROM events e JOIN responders r ON r.id = e.responder_id
            WHERE e.code = :c"""), {"c": code}).scalar_one()  # fmt: skip
        open_ = conn.execute(text("""
            SELECT count(*) FROM dispatch_assignments a JOIN events e ON e.id = a.event_id
            WHERE e.code = :c AND a.released_at IS NULL"""), {"c": code}).scalar_one()  # fmt: skip
        assert list(busy) == [recorded] and open_ == 1

    # a second responder only on purpose, recorded in the history with a new version
    client = app.test_client()
    again = client.post(f"/api/v1/events/{code}/dispatch",
                        json={"actor": "centre", "actor_level": "county"})  # fmt: skip
    assert again.status_code == 409 and recorded in again.get_json()["error"]["message"]
    more = client.post(f"/api/v1/events/{code}/dispatch",
                       json={"actor": "centre", "actor_level": "county", "reinforcement": True})  # fmt: skip
    assert more.status_code == 201, more.get_json()
    sent = more.get_json()
    assert sent["reinforcement"] is True and sent["responder"] != recorded
    card = client.get(f"/api/v1/events/{code}").get_json()
    last = card["history"][-1]
    assert (last["action"], last["version"], card["version"]) == ("reinforce", 5, 5)
    assert sent["responder"] in last["note"] and card["responder"] == recorded
    with scratch.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM responders WHERE status = 'busy'")).scalar()
        assert n == 2
        assert inc.replay_event(conn, code).version == 5  # the history still replays
