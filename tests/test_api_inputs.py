"""Bad input at every door of the API answers 4xx naming the field, never 500 (the findings of
the probe of the old API, each kept as a regression test), and the error paths: database
unreachable (503), body too large (413), unknown paths and methods (404/405), all in JSON."""

from __future__ import annotations

import io
import itertools
from datetime import timedelta

import flask
import jsonschema
import psycopg
import pytest
from sqlalchemy import Connection, create_engine, exc, text

from dashboard.api import make_blueprint
from dashboard.api_errors import classify
from dashboard.openapi import openapi_document
from etl import incidents as inc
from etl.deadlines import work_calendar
from etl.settings import Settings
from geo import workflow as wf
from tests.test_incidents_net import at, build_net

NOW = at(20, 10)
DOC = openapi_document()
REPORT = {"category_code": "0201", "lon": 108.015, "lat": 32.005}
ACTOR = {"actor": "Li", "actor_level": "county"}


def _app(bind: object) -> flask.Flask:
    app = flask.Flask("inputs")
    ticks = itertools.count()
    clock = lambda: NOW + timedelta(seconds=next(ticks))  # noqa: E731
    app.register_blueprint(make_blueprint(bind, Settings(), clock=clock))  # type: ignore[arg-type]
    return app


@pytest.fixture
def net(conn: Connection) -> Connection:
    """The test net, responder T1, and EV1: a case dispatched at the county level."""
    build_net(conn)
    conn.execute(
        text("""INSERT INTO responders (code, name, type, status, geom) VALUES
        ('T1', 'T1', 'grid_team', 'available', ST_SetSRID(ST_MakePoint(108.016, 32.005), 4490))""")
    )
    inc.report(conn, inc.Report("0201", 108.015, 32.005, at(20, 9), code="EV1"),
               inc.load_categories(conn))  # fmt: skip
    county = wf.Actor("county", "staff", "centre")
    for action in ("verify", "file", "dispatch"):
        inc.act(conn, "EV1", action, county, calendar=work_calendar(Settings()), at=at(20, 9, 30))
    return conn


@pytest.fixture
def client(net: Connection) -> flask.testing.FlaskClient:
    return _app(net).test_client()


def refused(resp, status: int, field: str | None = None) -> dict:  # noqa: ANN001
    """``resp`` is an API error of ``status`` in the documented shape, naming ``field``."""
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    jsonschema.validate(body, {"$ref": "#/components/schemas/Error", **DOC},
                        cls=jsonschema.Draft202012Validator)  # fmt: skip
    fields = [f["field"] for f in body["error"]["fields"]]
    assert field is None or field in fields, fields
    return body["error"]


# --- write endpoints -------------------------------------------------------------------------

BAD_REPORTS = [
    ({"reporter": "x" * 65}, "reporter"),  # longer than event_history.actor
    ({"reporter_role": "x" * 25}, "reporter_role"),
    ({"code": "X" * 41}, "code"),
    ({"code": "   "}, "code"),  # a code of spaces
    ({"code": "A/B"}, "code"),  # a code no URL can address again
    ({"code": "import"}, "code"),  # nor can this one: /api/v1/events/import is the import
    ({"description": "a\x00b"}, "description"),  # NUL byte
    ({"description": "长" * 4001}, "description"),
    ({"lon": 0, "lat": 0}, "lon"),  # a fix at (0, 0)
    ({"lon": 110.0}, "lon"),  # inside China, outside the territory
    ({"reported_at": "0001-01-01T00:00:00+08:00"}, "reported_at"),  # year 1
    ({"reported_at": "2026-11-20T10:00:00"}, "reported_at"),  # no offset
    ({"reported_at": 1_700_000_000}, "reported_at"),  # a number is not a date-time
    ({"priority": 0}, "priority"),
    ({"priority": "3"}, "priority"),  # JSON: a string is not an integer
    ({"priority": True}, "priority"),
    ({"channel": "fax"}, "channel"),
    ({"category_code": "02"}, "category_code"),  # a group, not a leaf
    ({"colour": "red"}, "colour"),  # not a field
]


@pytest.mark.parametrize(("change", "field"), BAD_REPORTS, ids=[f for _, f in BAD_REPORTS])
def test_bad_reports_are_422_naming_the_field(client, change: dict, field: str) -> None:  # noqa: ANN001
    refused(client.post("/api/v1/events", json={**REPORT, **change}), 422, field)
    refused(client.post("/api/v1/events", json=[REPORT, {**REPORT, **change}]), 422, f"[1].{field}")


def test_report_batches_and_bodies(client) -> None:  # noqa: ANN001
    refused(client.post("/api/v1/events", json=[REPORT] * 1001), 422, "body")
    refused(client.post("/api/v1/events", json=[]), 422, "body")
    refused(client.post("/api/v1/events", json="hello"), 422, "body")
    refused(client.post("/api/v1/events", data=b"{nope", content_type="application/json"), 400)
    refused(client.post("/api/v1/events", data=b'{"a": "\\ud800"}',
                        content_type="application/json"), 400)  # fmt: skip
    ok = client.post("/api/v1/events", json={**REPORT, "priority": 3.0, "code": "R-1.a_b"})
    assert ok.status_code == 201 and ok.get_json()["code"] == "R-1.a_b"


BAD_ACTIONS = [
    ({"actor": "x" * 65}, "actor"),
    ({"actor": "   "}, "actor"),
    ({"actor_role": "x" * 25}, "actor_role"),
    ({"actor_level": "planet"}, "actor_level"),
    ({"reason": "n" * 2001}, "reason"),  # the 50 MB note, in small
    ({"reason": "a\x00b"}, "reason"),
    ({"action": "approve_extension", "extend_by": 1e6}, "extend_by"),
    ({"action": "approve_extension", "extend_by": -1}, "extend_by"),
    ({"action": "approve_extension", "extend_by": True}, "extend_by"),
    ({"satisfaction": 6}, "satisfaction"),
    ({"version": 0}, "version"),
    ({"version": 2**40}, "version"),
    ({"action": "report"}, "action"),
    ({"action": "reinforce"}, "action"),
    ({"to_level": "x" * 40}, "to_level"),
    ({"responder": "T 1"}, "responder"),
]


@pytest.mark.parametrize(("change", "field"), BAD_ACTIONS, ids=[f for _, f in BAD_ACTIONS])
def test_bad_actions_are_422_naming_the_field(client, change: dict, field: str) -> None:  # noqa: ANN001
    body = {"action": "handle", **ACTOR, **change}
    refused(client.post("/api/v1/events/EV1/actions", json=body), 422, field)


def test_a_note_of_50_mb_is_413(client) -> None:  # noqa: ANN001
    note = {"action": "handle", **ACTOR, "reason": "n" * (50 << 20)}
    refused(client.post("/api/v1/events/EV1/actions", json=note), 413)
    card = client.get("/api/v1/events/EV1").get_json()
    assert all(len(h["note"] or "") < 100 for h in card["history"])


BAD_DISPATCHES = [
    ({"responder": "R" * 33}, "responder"),
    ({"responder": "a/b"}, "responder"),
    ({"reinforcement": "yes"}, "reinforcement"),
    ({"actor": "a\x00b"}, "actor"),
    ({"actor_level": None}, "actor_level"),
]


@pytest.mark.parametrize(("change", "field"), BAD_DISPATCHES, ids=[f for _, f in BAD_DISPATCHES])
def test_bad_dispatches_are_422(client, change: dict, field: str) -> None:  # noqa: ANN001
    refused(client.post("/api/v1/events/EV1/dispatch", json={**ACTOR, **change}), 422, field)


def test_bad_positions(client) -> None:  # noqa: ANN001
    url = "/api/v1/responders/T1/positions"
    fix = {"lon": 108.015, "lat": 32.005, "at": "2026-11-20T09:50:00+08:00"}
    refused(client.post(url, json={"positions": [fix] * 100_000}), 422, "positions")
    refused(client.post(url, json={"lon": 0, "lat": 0}), 422, "lat")
    refused(client.post(url, json={"positions": [fix, {**fix, "at": "0001-01-01T00:00:00Z"}]}),
            422, "positions[1].at")  # fmt: skip
    refused(client.post(url, json={"positions": [fix, {**fix, "lon": "x"}]}), 422,
            "positions[1].lon")  # fmt: skip
    refused(client.post(url, json={"positions": []}), 422, "positions")
    refused(client.post("/api/v1/responders/a%20b/positions", json=fix), 404, "code")
    assert client.post(url, json={"positions": [fix] * 1000}).status_code == 201


def _upload(client, data: bytes, name: str = "events.csv", **form: str):  # noqa: ANN001, ANN202
    return client.post("/api/v1/events/import", content_type="multipart/form-data",
                       data={"file": (io.BytesIO(data), name), "crs": "4490", **form})  # fmt: skip


HEADER = "事件编号,事件类型,上报时间,经度,纬度,事件描述,状态\n"


@pytest.mark.parametrize(
    ("data", "name", "form", "field"),
    [
        (b"", "events.csv", {}, "file"),  # an empty upload
        (HEADER.encode() + b"E1,0201,0001-01-01 09:00,108.005,32.005,a,reported\n",
         "events.csv", {}, "row 2 (code=E1)"),
        (HEADER.encode() + b"A/B,0201,2026-11-19 09:00,108.005,32.005,a,reported\n",
         "events.csv", {}, "row 2 (code=A/B)"),
        (HEADER.encode() + b"E1,0201,2026-11-19 09:00,108.005,32.005,a\x00b,reported\n",
         "events.csv", {}, "row 2 (code=E1)"),
        (b"x", "events.exe", {}, "file"),
        (b"x", "events.cs\x00v", {}, "file"),
        (HEADER.encode(), "events.csv", {"crs": "99999"}, "crs"),
        (HEADER.encode(), "events.csv", {"crs": "EPSG 4490; DROP"}, "crs"),
        (HEADER.encode(), "events.csv", {"skip_invalid": "maybe"}, "skip_invalid"),
    ],
    ids=["empty", "year-1", "slash-code", "nul", "exe", "nul-name", "crs-unknown", "crs-text",
         "skip"],
)  # fmt: skip
def test_bad_imports_are_422(client, data: bytes, name: str, form: dict, field: str) -> None:  # noqa: ANN001
    refused(_upload(client, data, name, **form), 422, field)


def test_import_keeps_a_dispatched_case_as_it_is(client, net: Connection) -> None:  # noqa: ANN001
    before = net.execute(text("""SELECT status, version, category_code, ST_X(geom), description,
        (SELECT count(*) FROM event_history h WHERE h.event_id = e.id)
        FROM events e WHERE code = 'EV1'""")).one()  # fmt: skip
    rows = ("EV1,0301,2026-11-19 09:00,108.001,32.001,rewritten,closed\n"
            "N1,0201,2026-11-19 10:00,108.005,32.005,new,reported\n")  # fmt: skip
    out = _upload(client, (HEADER + rows).encode())
    assert out.status_code == 201, out.get_json()
    jsonschema.validate(out.get_json(), {"$ref": "#/components/schemas/Import", **DOC})
    got = out.get_json()
    assert (got["inserted"], got["updated"], got["kept_live"]) == (1, 0, 1)
    assert got["kept_live_codes"] == ["EV1"] and any("EV1" in w for w in got["warnings"])
    after = net.execute(text("""SELECT status, version, category_code, ST_X(geom), description,
        (SELECT count(*) FROM event_history h WHERE h.event_id = e.id)
        FROM events e WHERE code = 'EV1'""")).one()  # fmt: skip
    assert tuple(after) == tuple(before) and before[0] == "dispatched"


def test_open311_keeps_its_own_error_format(client) -> None:  # noqa: ANN001
    form = {"service_code": "0201", "lat": "32.005", "long": "108.015"}
    for change, name in (({"first_name": "x" * 40}, "first_name"), ({"lat": "0"}, "lat"),
                         ({"description": "a\x00b"}, "description"),
                         ({"service_code": "a/b"}, "service_code"),
                         ({"long": "nan"}, "long")):  # fmt: skip
        resp = client.post("/open311/v2/requests.json", data={**form, **change})
        assert resp.status_code == 400, resp.get_json()
        [error] = resp.get_json()
        assert error["code"] == 400 and name in error["description"]
    assert client.post("/open311/v2/requests.json", data=form).status_code == 200
    gone = client.get("/open311/v2/requests/a%00b.json")
    assert gone.status_code == 404 and gone.get_json()[0]["code"] == 404


# --- reads -----------------------------------------------------------------------------------

QUERY_PARAMS = [
    ("/api/v1/events", p) for p in
    ("status", "level", "category", "unit", "since", "overdue", "q", "limit", "offset", "other")
] + [("/api/v1/events/EV1", "actor_level"), ("/api/v1/events/EV1/candidates", "types"),
     ("/api/v1/events/EV1/candidates", "limit")] + [
    ("/api/v1/kpis", p) for p in ("level", "start", "end")
] + [("/open311/v2/requests.json", p) for p in
     ("service_request_id", "service_code", "start_date", "end_date", "status")]  # fmt: skip


@pytest.mark.parametrize(("path", "param"), QUERY_PARAMS)
def test_a_nul_byte_in_any_query_parameter_is_400_naming_it(client, path: str, param: str) -> None:  # noqa: ANN001
    resp = client.get(path, query_string={param: "a\x00b"})
    if path.startswith("/open311/"):
        assert resp.status_code == 400 and param in resp.get_json()[0]["description"]
    else:
        refused(resp, 400, param)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=5000", "limit"), ("limit=-1", "limit"), ("offset=x", "offset"),
        ("status=reported,bogus", "status"), ("level=planet", "level"),
        ("since=0001-01-01T00:00:00%2B08:00", "since"), ("since=1700000000", "since"),
        ("since=9999-01-01", "since"), ("overdue=maybe", "overdue"), ("q=" + "x" * 101, "q"),
        ("category=a/b", "category"), ("unit=" + "1" * 33, "unit"),
    ],
)  # fmt: skip
def test_bad_event_filters_are_422(client, query: str, field: str) -> None:  # noqa: ANN001
    refused(client.get(f"/api/v1/events?{query}"), 422, field)


def test_kpi_periods_are_bounded(client) -> None:  # noqa: ANN001
    refused(client.get("/api/v1/kpis?start=2000-01-01T00:00:00%2B08:00"), 422, "start")
    refused(client.get("/api/v1/kpis?start=2026-11-20T00:00:00&end=2026-11-19T00:00:00"), 422,
            "start")  # fmt: skip
    refused(client.get("/api/v1/kpis?indicator=bogus&level=planet"), 422, "level")
    ok = client.get("/api/v1/kpis?start=2025-11-20T00:00:00&end=2026-11-20T00:00:00")
    assert ok.status_code == 200


def test_bad_path_codes_are_404_naming_the_code(client) -> None:  # noqa: ANN001
    for url in ("/api/v1/events/a%20b", "/api/v1/events/%00", "/api/v1/events/a%20b/candidates",
                "/api/v1/events/" + "E" * 41):  # fmt: skip
        refused(client.get(url), 404, "code")
    refused(client.post("/api/v1/events/a%20b/actions", json={"action": "handle", **ACTOR}), 404)
    refused(client.get("/api/v1/events/EV1?actor_level=planet"), 422, "actor_level")
    refused(client.get("/api/v1/events/EV1/candidates?types=tank"), 422, "types")


# --- error paths -----------------------------------------------------------------------------


def test_unknown_paths_and_methods_are_json_from_the_api(net: Connection) -> None:
    app = _app(net)

    @app.route("/<path:path>")  # what the Dash pages' catch-all does in the full app
    def page(path: str) -> str:
        return "<html>page</html>"

    client = app.test_client()
    refused(client.get("/api/v1/nothing/here"), 404)
    refused(client.get("/api/v1/"), 404)
    refused(client.get("/api/v1/events/EV1/dispatch"), 405)
    moved = refused(client.delete("/api/v1/events"), 405)
    assert "POST" in moved["message"]
    assert client.delete("/api/v1/events").headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert client.get("/api/v1/events/import").headers["Allow"] == "OPTIONS, POST"
    options = client.options("/api/v1/events/EV1/dispatch")
    assert (options.status_code, options.headers["Allow"]) == (204, "OPTIONS, POST")
    refused(client.options("/api/v1/nothing"), 404)
    lost = client.put("/open311/v2/requests.json")
    assert lost.status_code == 405 and lost.get_json()[0]["code"] == 405
    assert client.get("/open311/v2/nothing").get_json()[0]["code"] == 404
    assert client.get("/desk").get_data(as_text=True) == "<html>page</html>"


def test_an_unreachable_database_is_503_with_retry_after() -> None:
    dead = create_engine("postgresql+psycopg://nobody:x@127.0.0.1:1/none",
                         connect_args={"connect_timeout": 2})  # fmt: skip
    client = _app(dead).test_client()
    for resp in (client.get("/api/v1/events"), client.post("/api/v1/events", json=REPORT)):
        error = refused(resp, 503)
        assert "unreachable" in error["message"] and resp.headers["Retry-After"].isdigit()
    o311 = client.get("/open311/v2/services.json")
    assert o311.status_code == 503 and o311.headers["Retry-After"]
    assert o311.get_json()[0]["code"] == 503


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        exc.OperationalError("SELECT 1", {}, Exception("connection refused")),
        exc.DBAPIError("SELECT 1", {}, Exception("terminated"), connection_invalidated=True),
        exc.TimeoutError("QueuePool limit reached"),
    ],
    ids=["psycopg", "operational", "invalidated", "pool"],
)
def test_lost_connections_are_classed_503(error: Exception) -> None:
    assert classify(error) == (503, [])
