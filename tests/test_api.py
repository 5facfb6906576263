"""The JSON API and Open311 endpoints through Flask's test client against the real PostGIS; every
response body is validated against the OpenAPI document's schemas."""

from __future__ import annotations

import io
import itertools
from datetime import timedelta

import flask
import jsonschema
import pytest
from sqlalchemy import Connection, text

from dashboard.api import make_blueprint, openapi_document
from etl.settings import Settings
from tests.test_incidents_net import COUNTY, EAST, WEST, at, build_net

NOW = at(20, 10)  # Friday 20 November 2026, 10:00
DOC = openapi_document()


def _check(instance: object, schema: dict) -> None:
    root = {**schema, "components": DOC["components"]}
    jsonschema.validate(instance, root, cls=jsonschema.Draft202012Validator)


def _schema_of(path: str, method: str, status: int) -> dict | None:
    resp = DOC["paths"][path][method]["responses"][str(status)]
    content = resp.get("content", {}).get("application/json")
    return content["schema"] if content else None


@pytest.fixture
def client(conn: Connection) -> flask.testing.FlaskClient:
    build_net(conn)
    app = flask.Flask("test")
    ticks = itertools.count()  # a clock that moves a second per reading, from NOW
    clock = lambda: NOW + timedelta(seconds=next(ticks))  # noqa: E731
    app.register_blueprint(make_blueprint(conn, Settings(), clock=clock))
    return app.test_client()


def call(client, method: str, url: str, path: str, status: int, **kw):  # noqa: ANN001, ANN201
    resp = getattr(client, method)(url, **kw)
    assert resp.status_code == status, resp.get_json()
    schema = _schema_of(path, method, status)
    if schema is not None:
        _check(resp.get_json(), schema)
    return resp.get_json()


REPORT = {"category_code": "0201", "lon": 108.015, "lat": 32.005, "description": "垃圾堆放"}


def test_openapi_document_is_valid_openapi_31(client) -> None:  # noqa: ANN001
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema({**schema, "components": doc["components"]})
        assert name
    for path, ops in doc["paths"].items():
        assert path.startswith(("/api/v1/", "/open311/v2/"))
        assert all(op["responses"] for k, op in ops.items() if k != "parameters")


def test_report_then_walk_the_loop(client, conn: Connection) -> None:  # noqa: ANN001
    made = call(client, "post", "/api/v1/events", "/api/v1/events", 201, json=REPORT)
    assert made["created"] and made["unit_code"] == EAST and made["handling_unit_code"] == EAST
    code, url = made["code"], f"/api/v1/events/{made['code']}"
    card = call(client, "get", url + "?actor_level=grid", "/api/v1/events/{code}", 200)
    assert card["allowed_actions"] == ["cancel", "escalate", "verify"]
    version = card["version"]
    for action in ("verify", "file", "dispatch", "handle", "report_back"):
        body = {"action": action, "actor": "Li", "actor_level": "grid", "version": version}
        out = call(
            client, "post", url + "/actions", "/api/v1/events/{code}/actions", 200, json=body
        )
        version = out["version"]
    assert out["status"] == "handled"
    card = call(client, "get", url + "?actor_level=grid", "/api/v1/events/{code}", 200)
    assert [h["action"] for h in card["history"]] == [
        "report", "verify", "file", "dispatch", "handle", "report_back"]  # fmt: skip
    assert card["allowed_actions"] == [] and card["due_at"] is not None
    community = call(client, "get", url + "?actor_level=community", "/api/v1/events/{code}", 200)
    assert community["allowed_actions"] == ["check_fail", "check_pass"]
    listed = call(client, "get", "/api/v1/events?status=handled", "/api/v1/events", 200)
    assert [e["code"] for e in listed] == [code]


def call_get(client, url: str, path: str, status: int = 200):  # noqa: ANN001, ANN201
    resp = client.get(url)
    assert resp.status_code == status, resp.get_json()
    schema = DOC["paths"][path]["get"]["responses"][str(status)]["content"]["application/json"]
    _check(resp.get_json(), schema["schema"])
    return resp.get_json()


def test_validation_errors_name_fields(client) -> None:  # noqa: ANN001
    bad = client.post("/api/v1/events", json={"category_code": "99", "lon": "x"})
    assert bad.status_code == 422
    _check(bad.get_json(), {"$ref": "#/components/schemas/Error"})
    fields = {f["field"] for f in bad.get_json()["error"]["fields"]}
    assert fields == {"category_code", "lon", "lat"}
    garbage = client.post("/api/v1/events", data=b"{nope", content_type="application/json")
    assert garbage.status_code == 400
    outside = client.post("/api/v1/events", json={**REPORT, "lon": 110.0})
    assert outside.status_code == 422 and "outside" in outside.get_json()["error"]["message"]
    batch = client.post("/api/v1/events", json=[REPORT, {**REPORT, "priority": 0}])
    assert batch.status_code == 422
    assert [f["field"] for f in batch.get_json()["error"]["fields"]] == ["[1].priority"]


def test_conflicts_are_409_and_reasons_422(client) -> None:  # noqa: ANN001
    code = client.post("/api/v1/events", json=REPORT).get_json()["code"]
    url = f"/api/v1/events/{code}/actions"
    ok = client.post(
        url, json={"action": "verify", "actor": "a", "actor_level": "grid", "version": 1}
    )
    assert ok.status_code == 200
    stale = client.post(
        url, json={"action": "file", "actor": "b", "actor_level": "grid", "version": 1}
    )
    assert stale.status_code == 409 and "version" in stale.get_json()["error"]["message"]
    illegal = client.post(url, json={"action": "close", "actor": "b", "actor_level": "grid"})
    assert illegal.status_code == 409
    reason = client.post(url, json={"action": "cancel", "actor": "b", "actor_level": "grid"})
    assert reason.status_code == 422
    assert reason.get_json()["error"]["fields"][0]["field"] == "reason"
    missing = client.post("/api/v1/events/NOPE/actions",
                          json={"action": "verify", "actor": "a", "actor_level": "grid"})  # fmt: skip
    assert missing.status_code == 404


def test_dispatch_responders_and_positions(client, conn: Connection) -> None:  # noqa: ANN001
    for rcode, x in (("T1", 108.019), ("T2", 108.016), ("P1", 108.0151)):
        kind = "police" if rcode == "P1" else "grid_team"
        conn.execute(text("""INSERT INTO responders (code, name, type, status, geom) VALUES
            (:c, :c, :t, 'available', ST_SetSRID(ST_MakePoint(:x, 32.005), 4490))"""),
            {"c": rcode, "t": kind, "x": x})  # fmt: skip
    code = client.post("/api/v1/events", json=REPORT).get_json()["code"]
    ranked = call_get(
        client, f"/api/v1/events/{code}/candidates", "/api/v1/events/{code}/candidates"
    )
    assert [c["code"] for c in ranked] == ["T2", "T1"]  # grid teams, nearest first (no roads)
    assert {c["method"] for c in ranked} == {"straight_line"}
    url = f"/api/v1/events/{code}"
    for action in ("verify", "file"):
        client.post(
            url + "/actions", json={"action": action, "actor": "c", "actor_level": "county"}
        )
    early = client.post(url + "/dispatch", json={"actor": "c", "actor_level": "county"})
    assert early.status_code == 409  # not dispatched yet
    out = client.post(url + "/actions", json={"action": "dispatch", "actor": "c",
                                              "actor_level": "county", "responder": "T2"})  # fmt: skip
    assert out.status_code == 200 and out.get_json()["assignment"]["responder"] == "T2"
    board = call_get(client, "/api/v1/responders", "/api/v1/responders")
    t2 = next(r for r in board if r["code"] == "T2")
    assert (t2["status"], t2["event"]) == ("busy", code)
    busy = client.post(url + "/dispatch", json={"actor": "c", "actor_level": "county",
                                                "responder": "T2"})  # fmt: skip
    assert busy.status_code == 409
    fixes = {
        "positions": [
            {"lon": 108.0155, "lat": 32.005, "at": "2026-11-20T09:50:00+08:00"},
            {"lon": 108.0152, "lat": 32.005, "at": "2026-11-20T09:55:00+08:00"},
        ]
    }
    assert client.post("/api/v1/responders/T2/positions", json=fixes).status_code == 201
    board = call_get(client, "/api/v1/responders", "/api/v1/responders")
    t2 = next(r for r in board if r["code"] == "T2")
    assert t2["lon"] == pytest.approx(108.0152)
    n = conn.execute(text("SELECT count(*) FROM responder_positions")).scalar()
    assert n == 2
    bad = client.post("/api/v1/responders/T2/positions", json={"lon": 500, "lat": 1})
    assert bad.status_code == 422 and bad.get_json()["error"]["fields"][0]["field"].endswith("lon")


def test_csv_import_uses_the_loader_and_completes_history(client, conn: Connection) -> None:  # noqa: ANN001
    csv = ("事件编号,事件类型,上报时间,经度,纬度,事件描述\n"
           "C1,0201,2026-11-19 09:00,108.005,32.005,a\n"
           "C2,0201,2026-11-19 09:30,108.0051,32.005,b\n"
           "C3,0301,2026-11-19 10:00,108.015,32.005,c\n")  # fmt: skip
    data = {"file": (io.BytesIO(csv.encode()), "events.csv"), "crs": "4490"}
    out = client.post("/api/v1/events/import", data=data, content_type="multipart/form-data")
    assert out.status_code == 201, out.get_json()
    _check(out.get_json(), {"$ref": "#/components/schemas/Import"})
    assert out.get_json()["inserted"] == 3 and out.get_json()["completed"] == 3
    rows = conn.execute(
        text("""SELECT e.code, d.code AS dup, e.handling_unit_code,
        (SELECT count(*) FROM event_history h WHERE h.event_id = e.id) AS n
        FROM events e LEFT JOIN events d ON d.id = e.duplicate_of ORDER BY e.code""")
    ).all()
    assert [tuple(r) for r in rows] == [("C1", None, WEST, 1), ("C2", "C1", WEST, 1),
                                        ("C3", None, EAST, 1)]  # fmt: skip
    bad = "事件编号,事件类型,上报时间,经度,纬度\nX1,9999,yesterday,108.0,32.0\n"
    out = client.post("/api/v1/events/import", content_type="multipart/form-data",
                      data={"file": (io.BytesIO(bad.encode()), "bad.csv"), "crs": "4490"})  # fmt: skip
    assert out.status_code == 422
    reasons = " ".join(f["reason"] for f in out.get_json()["error"]["fields"])
    assert "unknown category" in reasons and "date-time" in reasons


def test_kpis_count_what_happened(client, conn: Connection) -> None:  # noqa: ANN001
    codes = []
    for lon in (108.005, 108.0052, 108.015):  # the second is a duplicate of the first
        codes.append(client.post("/api/v1/events", json={**REPORT, "lon": lon,
                                                         "reported_at": "2026-11-16T09:00:00+08:00"}
                                 ).get_json()["code"])  # fmt: skip
    steps = [("verify", "grid"), ("file", "grid"), ("dispatch", "grid"), ("handle", "grid"),
             ("report_back", "grid"), ("check_pass", "community"), ("close", "community"),
             ("evaluate", "grid")]  # fmt: skip
    for action, level in steps:
        body = {"action": action, "actor": "x", "actor_level": level}
        if action == "evaluate":
            body["satisfaction"] = 4
        assert client.post(f"/api/v1/events/{codes[0]}/actions", json=body).status_code == 200
    out = call_get(client, "/api/v1/kpis?level=grid&start=2026-11-01T00:00:00%2B08:00",
                   "/api/v1/kpis")  # fmt: skip
    by = {u["unit"]: u for u in out["units"]}
    assert by[WEST]["closed"] == 1 and by[WEST]["closure_rate"] == 1.0
    assert by[WEST]["satisfaction"] == 4 and by[WEST]["resolution_rate"] == 1.0
    assert by[WEST]["repeats"] == 0  # a duplicate is not a repeat
    assert by[EAST]["closed"] == 0
    county = call_get(client, "/api/v1/kpis?level=county", "/api/v1/kpis")
    assert [u["unit"] for u in county["units"]] == [COUNTY]


def test_open311(client) -> None:  # noqa: ANN001
    services = call_get(client, "/open311/v2/services.json", "/open311/v2/services.json")
    assert "0201" in {s["service_code"] for s in services}
    assert "02" not in {s["service_code"] for s in services}  # groups are not services
    form = {"service_code": "0201", "lat": "32.005", "long": "108.015", "description": "rubbish",
            "first_name": "Wang"}  # fmt: skip
    posted = client.post("/open311/v2/requests.json", data=form)
    assert posted.status_code == 200
    rid = posted.get_json()[0]["service_request_id"]
    one = call_get(client, f"/open311/v2/requests/{rid}.json", "/open311/v2/requests/{id}.json")
    assert one[0]["status"] == "open" and one[0]["long"] == pytest.approx(108.015)
    listed = call_get(client, "/open311/v2/requests.json?status=open", "/open311/v2/requests.json")
    assert rid in {r["service_request_id"] for r in listed}
    bad = client.post("/open311/v2/requests.json", data={"service_code": "0201", "lat": "x"})
    assert bad.status_code == 400 and "long" in bad.get_json()[0]["description"]
    assert client.get("/open311/v2/requests/NOPE.json").status_code == 404
