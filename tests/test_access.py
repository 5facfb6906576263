"""The access matrix, generated from the permission table: every role × every route of the app ×
a unit inside and outside the user's jurisdiction, through the real login, the app's database
role and PostgreSQL's row-level security on the demo county.

A route added without an entry in ``dashboard.auth.ROUTES`` fails here (and is refused at run
time); a route whose sample request is missing below fails too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from dashboard.app import create_app
from dashboard.auth import ANY, PAGES, PUBLIC, ROUTES
from etl.access import PERMISSIONS, Perm, Role
from etl.db import app_url_for, scoped_engine
from etl.settings import Settings
from tests.accounts import client_from_own_address, ensure_user, login


@pytest.fixture(scope="module")
def places(demo_engine: Engine) -> dict[str, str]:
    """Two townships (ours and theirs) and an event in each."""
    with demo_engine.connect() as conn:
        towns = conn.execute(text(
            "SELECT u.code FROM units u WHERE u.depth = 1 AND u.valid_to IS NULL AND EXISTS "
            "(SELECT 1 FROM events e WHERE e.unit_path @> ARRAY[u.code]::varchar[]) "
            "ORDER BY u.code LIMIT 2")).scalars().all()  # fmt: skip
        ev = {
            t: conn.execute(
                text(
                    "SELECT code FROM events WHERE unit_path @> ARRAY[:t]::varchar[] "
                    "ORDER BY id LIMIT 1"
                ),
                {"t": t},
            ).scalar_one()  # fmt: skip
            for t in towns
        }
    ours, theirs = towns
    return {"ours": ours, "theirs": theirs, "our_event": ev[ours], "their_event": ev[theirs]}


@pytest.fixture(scope="module")
def app(demo_url: str, demo_engine: Engine, places: dict[str, str]) -> Iterator[Any]:
    engine = scoped_engine(app_url_for(demo_url))
    for role in Role:
        ensure_user(demo_engine, f"m-{role.value}", role.value, places["ours"])
    yield create_app(Settings(), engine=engine)
    engine.dispose()


@pytest.fixture(scope="module")
def clients(app: Any) -> dict[Role, Any]:
    out = {}
    for role in Role:
        client = client_from_own_address(app)
        assert login(client, f"m-{role.value}").status_code == 302
        out[role] = client
    return out


def _csrf(client: Any) -> str:
    with client.session_transaction() as session:
        return str(session.get("csrf", ""))


# one sample request per rule and method: (url, body); {ours}/{theirs}/{our_event}... are filled in
SAMPLES: dict[tuple[str, str], str] = {
    ("/api/v1/openapi.json", "GET"): "/api/v1/openapi.json",
    ("/api/v1/categories", "GET"): "/api/v1/categories",
    ("/api/v1/workflow", "GET"): "/api/v1/workflow",
    ("/api/v1/events", "GET"): "/api/v1/events?limit=1000",
    ("/api/v1/events", "POST"): "/api/v1/events",
    ("/api/v1/events/import", "POST"): "/api/v1/events/import",
    ("/api/v1/events/<code>", "GET"): "/api/v1/events/{our_event}",
    ("/api/v1/events/<code>/actions", "POST"): "/api/v1/events/{our_event}/actions",
    ("/api/v1/events/<code>/candidates", "GET"): "/api/v1/events/{our_event}/candidates",
    ("/api/v1/events/<code>/dispatch", "POST"): "/api/v1/events/{our_event}/dispatch",
    ("/api/v1/responders", "GET"): "/api/v1/responders",
    ("/api/v1/responders/<code>/positions", "POST"): "/api/v1/responders/NOPE/positions",
    ("/api/v1/kpis", "GET"): "/api/v1/kpis?level=community",
    ("/open311/v2/discovery.json", "GET"): "/open311/v2/discovery.json",
    ("/open311/v2/services.json", "GET"): "/open311/v2/services.json",
    ("/open311/v2/services/<service_code>.json", "GET"): "/open311/v2/services/0201.json",
    ("/open311/v2/requests.json", "GET"): "/open311/v2/requests.json",
    ("/open311/v2/requests.json", "POST"): "/open311/v2/requests.json",
    ("/open311/v2/requests/<rid>.json", "GET"): "/open311/v2/requests/{our_event}.json",
    ("/tiles/buildings/<int:z>/<int:x>/<int:y>.pbf", "GET"): "/tiles/buildings/3/6/3.pbf",
    ("/admin", "GET"): "/admin",
    ("/admin/audit", "GET"): "/admin/audit",
    ("/admin/users", "POST"): "/admin/users",
    ("/admin/tokens", "POST"): "/admin/tokens",
    ("/", "GET"): "/",
    ("/<path:path>", "GET"): "/desk",
}


def _need(rule: str, method: str) -> Any:
    entry = ROUTES[rule]
    return entry.get(method, entry.get("*"))


def _rules(app: Any) -> list[tuple[str, str]]:
    return sorted({(r.rule, m) for r in app.server.url_map.iter_rules()
                   for m in r.methods - {"HEAD", "OPTIONS"}})  # fmt: skip


def test_every_route_has_a_permission_and_a_sample(app: Any) -> None:
    missing = [rule for rule, _ in _rules(app) if rule not in ROUTES]
    assert missing == [], "routes without an entry in dashboard.auth.ROUTES"
    guarded = [(r, m) for r, m in _rules(app) if _need(r, m) not in (ANY, PUBLIC, None)]
    assert [k for k in guarded if k not in SAMPLES] == []


def test_anonymous_gets_only_the_login_page_and_discovery(app: Any, places: dict) -> None:
    client = client_from_own_address(app)
    for (rule, method), sample in SAMPLES.items():
        resp = client.open(
            sample.format(**places), method=method, headers={"Origin": "http://localhost"}
        )
        if _need(rule, method) == PUBLIC:
            assert resp.status_code == 200, rule
        else:
            assert resp.status_code in (302, 401), (rule, method, resp.status_code)
            assert b"EV" not in resp.data and b"lon" not in resp.data
    assert client.get("/login").status_code == 200
    assert client.get("/_dash-layout").status_code == 401


def _expected(role: Role, rule: str, method: str) -> bool:
    need = _need(rule, method)
    if rule == "/<path:path>":
        need = PAGES["/desk"]
    if rule == "/":
        need = PAGES["/"]
    return need in (PUBLIC, ANY) or role in PERMISSIONS[Perm(need)]


@pytest.mark.parametrize("role", list(Role))
def test_each_role_gets_exactly_what_the_table_allows(
    clients: dict, places: dict, role: Role
) -> None:
    client = clients[role]
    wrong = []
    for (rule, method), sample in SAMPLES.items():
        headers = {"Origin": "http://localhost", "X-CSRFToken": _csrf(client)}
        resp = client.open(sample.format(**places), method=method, headers=headers, json={}
                           if method == "POST" and not rule.startswith("/admin") else None)  # fmt: skip
        allowed = resp.status_code not in (401, 403)
        if allowed != _expected(role, rule, method):
            wrong.append((rule, method, resp.status_code))
        assert resp.status_code < 500, (rule, method, resp.get_data(as_text=True)[:300])
    assert wrong == []


@pytest.mark.parametrize("role", [r for r in Role if r in PERMISSIONS[Perm.EVENTS_READ]])
def test_reads_hold_no_foreign_row(clients: dict, places: dict, role: Role) -> None:
    client = clients[role]
    events = client.get("/api/v1/events?limit=1000").get_json()
    assert events, "the own township has events"
    assert {e["unit_code"][: len(places["ours"])] for e in events} == {places["ours"]}
    assert client.get(f"/api/v1/events/{places['their_event']}").status_code == 404
    assert client.get(f"/open311/v2/requests/{places['their_event']}.json").status_code == 404
    o311 = client.get("/open311/v2/requests.json").get_json()
    assert places["their_event"] not in {r["service_request_id"] for r in o311}


def test_tampered_unit_and_codes_show_nothing_foreign(
    clients: dict, places: dict, demo_engine: Engine
) -> None:
    client = clients[Role.COMMANDER]
    rows = client.get(f"/api/v1/events?unit={places['theirs']}&limit=1000").get_json()
    assert rows == []
    kpis = client.get("/api/v1/kpis?level=township").get_json()
    assert {u["unit"] for u in kpis["units"]} <= {places["ours"]}
    board = {r["code"] for r in client.get("/api/v1/responders").get_json()}
    with demo_engine.connect() as conn:
        ours = set(conn.execute(text("SELECT code FROM responders WHERE unit_path @> "
                                     "ARRAY[:t]::varchar[]"), {"t": places["ours"]}).scalars())  # fmt: skip
    assert board <= ours


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    import math

    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def test_tiles_hold_only_the_own_buildings(
    clients: dict, demo_engine: Engine, places: dict
) -> None:
    z = 16
    with demo_engine.connect() as conn:

        def inside(town: str, away_from: str) -> tuple[int, int]:
            """A building of ``town`` as far as can be from ``away_from`` (no shared tile)."""
            pts = conn.execute(text(
                "SELECT ST_X(ST_Centroid(b.geom)), ST_Y(ST_Centroid(b.geom)) FROM buildings b, "
                "units a WHERE a.code = :a AND a.valid_to IS NULL AND "
                "b.unit_path @> ARRAY[:t]::varchar[] ORDER BY ST_Distance(b.geom, a.geom) DESC "
                "LIMIT 1"), {"t": town, "a": away_from}).one()  # fmt: skip
            return _tile_of(pts[0], pts[1], z)

        ours = inside(places["ours"], places["theirs"])
        theirs = inside(places["theirs"], places["ours"])
    client = clients[Role.COMMANDER]
    assert len(client.get(f"/tiles/buildings/{z}/{ours[0]}/{ours[1]}.pbf").data) > 0
    assert ours != theirs
    assert client.get(f"/tiles/buildings/{z}/{theirs[0]}/{theirs[1]}.pbf").data == b""


def test_cross_origin_and_tokenless_posts_are_refused(clients: dict, places: dict) -> None:
    client = clients[Role.DISPATCHER]
    url = f"/api/v1/events/{places['our_event']}/actions"
    evil = client.post(url, data="{}", content_type="text/plain",
                       headers={"Origin": "http://evil.example", "X-CSRFToken": _csrf(client)})  # fmt: skip
    assert evil.status_code == 403
    no_token = client.post(url, json={}, headers={"Origin": "http://localhost"})
    assert no_token.status_code == 403


def test_a_wall_screen_gets_no_personal_data(clients: dict, places: dict) -> None:
    client = clients[Role.WALL]
    for url in ("/api/v1/events", f"/api/v1/events/{places['our_event']}", "/api/v1/responders",
                "/open311/v2/requests.json", "/desk", "/reports", "/admin"):  # fmt: skip
        assert client.get(url).status_code == 403, url
    assert client.get("/").status_code == 200


def _callback_cases() -> list[tuple[str, Any]]:
    from dashboard.auth import CALLBACK_PAGES, CALLBACK_WRITES

    cases = [(out, need) for out, need in CALLBACK_WRITES.items()]
    cases += [(f"{page}-anything.data", need) for page, need in CALLBACK_PAGES.items()
              if page != "frame"]  # fmt: skip
    cases.append(('{"action":["ALL"],"type":"desk-action"}.n_clicks', Perm.EVENTS_READ))
    return cases


@pytest.mark.parametrize("role", list(Role))
def test_dash_callbacks_follow_the_table(clients: dict, role: Role) -> None:
    """Every page's callbacks and every writing callback, as the renderer would post them."""
    client = clients[role]
    wrong = []
    for output, need in _callback_cases():
        body = {"output": output + "@abc", "outputs": [], "inputs": [], "changedPropIds": []}
        resp = client.post("/_dash-update-component", json=body,
                           headers={"Origin": "http://localhost", "X-CSRFToken": _csrf(client)})  # fmt: skip
        denied = resp.status_code == 403
        expected = need not in (ANY, PUBLIC) and role not in PERMISSIONS[Perm(need)]
        if denied != expected:
            wrong.append((output, resp.status_code))
    assert wrong == []


def test_a_callback_without_a_table_entry_is_refused(clients: dict) -> None:
    client = clients[Role.ADMIN]
    body = {"output": "mystery-thing.data", "outputs": [], "inputs": []}
    resp = client.post("/_dash-update-component", json=body,
                       headers={"Origin": "http://localhost", "X-CSRFToken": _csrf(client)})  # fmt: skip
    assert resp.status_code == 403


def test_the_readme_shows_the_permission_table() -> None:
    from pathlib import Path

    from etl.access import permission_table_markdown

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert permission_table_markdown() in readme


def test_personal_data_is_masked_or_audited(
    clients: dict, places: dict, demo_engine: Engine
) -> None:
    from etl.privacy import mask_name

    code = places["our_event"]
    full = clients[Role.COMMANDER].get(f"/api/v1/events/{code}").get_json()
    masked = clients[Role.ANALYST].get(f"/api/v1/events/{code}").get_json()
    reporter = next(s["actor"] for s in full["history"] if s["action"] == "report")
    shown = next(s["actor"] for s in masked["history"] if s["action"] == "report")
    assert len(reporter) > 1 and shown == mask_name(reporter) != reporter
    with demo_engine.connect() as conn:
        audited = conn.execute(text("SELECT count(*) FROM audit_log WHERE action = 'view_personal' "
                                    "AND target = :t"), {"t": f"api event {code}"}).scalar()  # fmt: skip
    assert audited >= 1


def test_nobody_acts_above_their_own_level(clients: dict, places: dict) -> None:
    client = clients[Role.GRID_WORKER]  # bound to a township: may not act as the county
    resp = client.post(f"/api/v1/events/{places['our_event']}/actions",
                       json={"action": "verify", "actor_level": "county"},
                       headers={"Origin": "http://localhost", "X-CSRFToken": _csrf(client)})  # fmt: skip
    assert resp.status_code == 403
    assert resp.get_json()["error"]["fields"][0]["field"] == "actor_level"


def test_searching_by_phone_number_needs_the_personal_permission(clients: dict) -> None:
    assert clients[Role.ANALYST].get("/api/v1/events?q=13812345678").status_code == 403
    assert clients[Role.ANALYST].get("/api/v1/events?q=垃圾").status_code == 200
    assert clients[Role.DISPATCHER].get("/api/v1/events?q=13812345678").status_code == 200


def test_an_analysts_export_holds_only_their_unit(app: Any, places: dict) -> None:
    """The reports page's download as a township analyst, through the app role: their township's
    rows only, and another township's report is refused as unknown in their scope."""
    import base64
    import io

    import dash
    from dash._callback_context import context_value
    from dash._utils import AttributeDict
    from openpyxl import load_workbook

    from etl.db import DbScope, _db_scope
    from etl.queries.reports import UnknownUnit
    from tests.accounts import acting

    reports = next(p["module"] for p in dash.page_registry.values() if p["path"] == "/reports")
    page = sys.modules[reports]
    token = context_value.set(AttributeDict(triggered_inputs=[]))
    scope = _db_scope.set(DbScope((places["ours"],), "analyst"))
    try:
        with app.server.test_request_context("/reports"), acting(Role.ANALYST, places["ours"]):
            sent = page.download(1, places["ours"], "2026-11", "reported", "xlsx", "zh")
            codes = [r[0].value for r in load_workbook(io.BytesIO(base64.b64decode(
                sent["content"]))).active.iter_rows(min_row=4)]  # fmt: skip
            assert codes and all(str(c).startswith(places["ours"]) for c in codes if c)
            with pytest.raises(UnknownUnit):
                page.download(1, places["theirs"], "2026-11", "reported", "xlsx", "zh")
    finally:
        _db_scope.reset(scope)
        context_value.reset(token)


def test_a_report_goes_through_the_app_role(
    clients: dict, places: dict, demo_engine: Engine
) -> None:
    """A valid report, stored with its first history row by the role bound by row-level
    security (the history's policy once refused every report made in one statement)."""
    with demo_engine.connect() as conn:
        lon, lat = conn.execute(text(
            "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM units "
            "WHERE code = :c AND valid_to IS NULL"), {"c": places["ours"]}).one()  # fmt: skip
    client = clients[Role.GRID_WORKER]
    code = "ACCESS-RLS-1"
    try:
        resp = client.post("/api/v1/events", json={"category_code": "0201", "lon": lon,
                                                   "lat": lat, "code": code},
                           headers={"Origin": "http://localhost", "X-CSRFToken": _csrf(client)})  # fmt: skip
        assert resp.status_code == 201, resp.get_json()
        card = client.get(f"/api/v1/events/{code}").get_json()
        assert [s["action"] for s in card["history"]] == ["report"]
        assert card["unit_code"].startswith(places["ours"])
    finally:
        with demo_engine.begin() as conn:
            conn.execute(text("DELETE FROM events WHERE code = :c"), {"c": code})


def test_a_drill_down_narrows_the_database_scope_for_that_request_only(app: Any) -> None:
    import flask

    from dashboard.auth import narrow_to
    from etl.db import DbScope, _db_scope, current_db_scope
    from tests.accounts import acting

    with app.server.test_request_context("/"), acting(Role.COMMANDER, "510000"):
        flask.g.scope_token = _db_scope.set(DbScope(("510000",), "commander"))
        narrow_to("510000024")
        assert current_db_scope() == DbScope(("510000024",), "commander")
        _db_scope.reset(flask.g.pop("scope_token"))
    assert current_db_scope() is None
