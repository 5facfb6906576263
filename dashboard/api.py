"""The incident loop's HTTP API on the dashboard's Flask server.

* ``/api/v1/...``: JSON API for intake, the case workflow, dispatch, AVL and KPIs, described by
  the OpenAPI 3.1 document at ``/api/v1/openapi.json`` (:func:`openapi_document`);
* ``/open311/v2/...``: an Open311 GeoReport v2 endpoint set (JSON only): services = our event
  categories, requests = events.

Errors are JSON: ``{"error": {"status", "message", "fields": [{"field", "reason"}]}}`` with 400
(unreadable body), 404, 409 (stale version, illegal in the current state, responder busy) or 422
(a field is wrong). The handlers only unpack requests and call ``etl.incidents`` (writes) and
``etl.queries.events`` (reads); every write is one transaction.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import flask
import orjson
from sqlalchemy import Connection, Engine
from werkzeug.exceptions import HTTPException

from dashboard.auth import current_principal, current_scope
from dashboard.personal import protect, protect_one
from etl import incidents as inc
from etl import routing
from etl.db import transaction
from etl.deadlines import work_calendar
from etl.errors import CRSMissingError, LoadError, ValidationFailed
from etl.load import load_file
from etl.queries import WHOLE_TERRITORY, Scope
from etl.queries import events as q
from etl.queries.screen import unit_ref
from etl.settings import Settings
from geo import workflow as wf

OPEN311_CLOSED = ("closed", "evaluated", "cancelled")
MAX_BATCH = 1000
CATEGORY_TTL_S = 60.0


class ApiError(Exception):
    def __init__(self, status: int, message: str, fields: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.fields = status, message, fields or []


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, wf.EventState):
        return None
    raise TypeError(type(value).__name__)


def _json(payload: object, status: int = 200) -> flask.Response:
    body = orjson.dumps(payload, default=_default, option=orjson.OPT_NON_STR_KEYS)
    return flask.Response(body, status=status, mimetype="application/json")


def _error(exc: Exception) -> flask.Response:
    status, fields = 500, []
    if isinstance(exc, HTTPException):
        status = exc.code or 500
    elif isinstance(exc, ApiError):
        status, fields = exc.status, exc.fields
    elif isinstance(exc, inc.InvalidReport):
        status, fields = 422, exc.errors
    elif isinstance(exc, inc.NotFound):
        status = 404
    elif isinstance(exc, inc.VersionConflict | wf.IllegalTransition | inc.ResponderUnavailable):
        status = 409
    elif isinstance(exc, wf.WorkflowError):
        status = 422
        fields = [(_FIELD_OF.get(type(exc), "body"), str(exc))]
    message = getattr(exc, "message", None) or str(exc)
    if status == 500:
        flask.current_app.logger.exception("incident API failure")
        message = "internal error (logged)"
    body = {"status": status, "message": message,
            "fields": [{"field": f, "reason": r} for f, r in fields]}  # fmt: skip
    return _json({"error": body}, status)


_FIELD_OF: dict[type, str] = {
    wf.MissingReason: "reason",
    wf.InvalidSatisfaction: "satisfaction",
    wf.UnknownLevel: "actor_level",
    wf.InvalidTime: "at",
}


class _Categories:
    """Category table cache (categories change rarely; a minute of staleness is fine)."""

    def __init__(self, engine: Engine | Connection) -> None:
        self.engine, self.loaded_at = engine, 0.0
        self.value: dict[str, inc.Category] = {}

    def get(self) -> dict[str, inc.Category]:
        if not self.value or time.monotonic() - self.loaded_at > CATEGORY_TTL_S:
            self.value, self.loaded_at = inc.load_categories(self.engine), time.monotonic()
        return self.value


def register_routes(server: flask.Flask, engine: Engine | Connection, settings: Settings) -> None:
    """Attach the API and Open311 blueprints (called by ``dashboard.app.create_app``)."""
    server.register_blueprint(make_blueprint(engine, settings))


def make_blueprint(
    engine: Engine | Connection,
    settings: Settings,
    *,
    clock: Callable[[], datetime] | None = None,
) -> flask.Blueprint:
    """The blueprint, bound to a database (an engine, or a test's connection) and settings."""
    bp = flask.Blueprint("incident_api", __name__)
    api = _Api(engine, settings, clock)
    bp.register_error_handler(Exception, _error)
    for rule, view, methods in api.routes():
        bp.add_url_rule(rule, view_func=view, methods=methods)
    return bp


class _Api:
    def __init__(self, engine: Engine | Connection, settings: Settings, clock: Any) -> None:
        self.engine, self.settings = engine, settings
        self.tz = ZoneInfo(settings.timezone)
        self.clock = clock or (lambda: datetime.now(self.tz))
        self.calendar = work_calendar(settings)
        self.categories = _Categories(engine)

    def routes(self) -> list[tuple[str, Callable, list[str]]]:
        return [
            ("/api/v1/openapi.json", self.openapi, ["GET"]),
            ("/api/v1/categories", self.list_categories, ["GET"]),
            ("/api/v1/workflow", self.workflow_rules, ["GET"]),
            ("/api/v1/events", self.create_events, ["POST"]),
            ("/api/v1/events", self.get_events, ["GET"]),
            ("/api/v1/events/import", self.import_events, ["POST"]),
            ("/api/v1/events/<code>", self.get_event, ["GET"]),
            ("/api/v1/events/<code>/actions", self.post_action, ["POST"]),
            ("/api/v1/events/<code>/candidates", self.get_candidates, ["GET"]),
            ("/api/v1/events/<code>/dispatch", self.post_dispatch, ["POST"]),
            ("/api/v1/responders", self.get_responders, ["GET"]),
            ("/api/v1/responders/<code>/positions", self.post_positions, ["POST"]),
            ("/api/v1/kpis", self.get_kpis, ["GET"]),
            ("/open311/v2/discovery.json", self.o311_discovery, ["GET"]),
            ("/open311/v2/services.json", self.o311_services, ["GET"]),
            ("/open311/v2/services/<service_code>.json", self.o311_service, ["GET"]),
            ("/open311/v2/requests.json", self.o311_requests, ["GET"]),
            ("/open311/v2/requests.json", self.o311_post, ["POST"]),
            ("/open311/v2/requests/<rid>.json", self.o311_request, ["GET"]),
        ]

    # -- helpers --------------------------------------------------------------------------------

    def _body(self) -> Any:
        raw = flask.request.get_data()
        try:
            return orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None

    def _obj(self) -> dict[str, Any]:
        body = self._body()
        if not isinstance(body, dict):
            raise ApiError(422, "the body must be a JSON object", [("body", "must be an object")])
        return body

    def _args_time(self, name: str) -> datetime | None:
        value = flask.request.args.get(name)
        if not value:
            return None
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise ApiError(
                422, f"{name} is not a date-time", [(name, "ISO 8601 date-time")]
            ) from None
        return at if at.tzinfo else at.replace(tzinfo=self.tz)

    def _int_arg(self, name: str, default: int, hi: int) -> int:
        value = flask.request.args.get(name, str(default))
        if not value.isdigit() or not 0 <= int(value) <= hi:
            raise ApiError(422, f"{name} must be an integer 0-{hi}", [(name, f"integer 0-{hi}")])
        return int(value)

    @property
    def scope(self) -> Scope:
        """The caller's jurisdiction (the whole territory only for a bare blueprint in tests)."""
        return current_scope() if current_principal() is not None else WHOLE_TERRITORY

    def _actor(self, body: dict[str, Any]) -> wf.Actor:
        """Who acts: the logged-in user or token, at their unit's level or below, never above."""
        who = current_principal()
        if who is not None:
            body = {**body, "actor": body.get("actor") or who.name}
            body.setdefault("actor_level", self._own_level(who))
        actor = self._actor_from_body(body)
        if who is None:
            return actor
        own = self._own_level(who)
        ladder = list(inc.LADDER)
        if own is None or ladder.index(actor.level) > ladder.index(own):
            raise ApiError(403, f"{who.name} acts at level {own} or below, not {actor.level}",
                           [("actor_level", f"at most {own}")])  # fmt: skip
        named = actor.name if actor.name == who.name else f"{who.name} ({actor.name[:24]})"
        return wf.Actor(actor.level, actor.role, named)

    def _own_level(self, who: Any) -> str | None:
        ref = unit_ref(self.engine, self.scope, who.unit_code)
        return ref.level if ref is not None and ref.level in inc.LADDER else None

    def _actor_from_body(self, body: dict[str, Any]) -> wf.Actor:
        errors = []
        name, level = body.get("actor"), body.get("actor_level")
        role = body.get("actor_role", "staff")
        if not isinstance(name, str) or not name.strip():
            errors.append(("actor", "is required: who acts (a name or staff code)"))
        if level not in inc.LADDER:
            errors.append(("actor_level", f"is required, one of {list(inc.LADDER)}"))
        if not isinstance(role, str):
            errors.append(("actor_role", "must be a string"))
        if errors or not isinstance(name, str) or not isinstance(level, str):
            raise inc.InvalidReport(errors)
        return wf.Actor(level, role, name.strip())

    def _event_out(self, row: dict[str, Any]) -> dict[str, Any]:
        row = {k: v for k, v in row.items() if k != "state"}
        row.setdefault("deadline", q.deadline_flag(row, self.clock(), self.calendar))
        return row

    # -- reference ------------------------------------------------------------------------------

    def openapi(self) -> flask.Response:
        return _json(openapi_document())

    def list_categories(self) -> flask.Response:
        return _json([c.__dict__ for c in self.categories.get().values()])

    def workflow_rules(self) -> flask.Response:
        return _json({"ladder": list(inc.LADDER), "rules": wf.rule_rows()})

    # -- intake ---------------------------------------------------------------------------------

    def create_events(self) -> flask.Response:
        body = self._body()
        batch = body if isinstance(body, list) else [body]
        if not batch or len(batch) > MAX_BATCH:
            raise ApiError(422, f"send 1-{MAX_BATCH} reports", [("body", "batch size")])
        cats, now = self.categories.get(), self.clock()
        reports = self._parse_all(batch, cats, now)
        with transaction(self.engine) as conn:
            out = [inc.report(conn, r, cats) for r in reports]
        created = any(o["created"] for o in out)
        result = out if isinstance(body, list) else out[0]
        return _json(result, 201 if created else 200)

    def _parse_all(self, batch: list, cats: dict, now: datetime) -> list[inc.Report]:
        reports, errors = [], []
        for i, item in enumerate(batch):
            try:
                reports.append(inc.parse_report(item, cats, now=now))
            except inc.InvalidReport as exc:
                prefix = f"[{i}]." if len(batch) > 1 else ""
                errors += [(prefix + f, r) for f, r in exc.errors]
        if errors:
            raise inc.InvalidReport(errors)
        return reports

    def import_events(self) -> flask.Response:
        upload = flask.request.files.get("file")
        if upload is None or not upload.filename:
            raise ApiError(422, "upload a file as multipart field 'file'", [("file", "required")])
        skip = flask.request.form.get("skip_invalid", "false").lower() in ("1", "true", "yes")
        suffix = Path(upload.filename).suffix.lower() or ".csv"
        crs = flask.request.form.get("crs") or None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload{suffix}"
            upload.save(path)
            try:
                with transaction(self.engine) as conn:
                    result = load_file(conn, "events", path, skip_invalid=skip, crs=crs)
                    completed = inc.finish_import(conn, note=f"import of {upload.filename}")
            except ValidationFailed as exc:
                fields = [(str(where), why) for where, why in exc.problems[:200]]
                raise ApiError(422, f"{upload.filename}: {len(exc.problems)} invalid row(s)",
                               fields) from None  # fmt: skip
            except LoadError as exc:
                field = "crs" if isinstance(exc, CRSMissingError) else "file"
                raise ApiError(422, str(exc).replace(str(path), upload.filename),
                               [(field, str(exc).replace(str(path), upload.filename))]) from None  # fmt: skip
        counts = result.counts
        return _json({"inserted": counts.inserted, "updated": counts.updated,
                      "unchanged": counts.unchanged, "rejected": result.rejected,
                      "completed": completed, "run_id": result.run_id,
                      "warnings": result.warnings}, 201)  # fmt: skip

    # -- reads ----------------------------------------------------------------------------------

    def get_events(self) -> flask.Response:
        a = flask.request.args
        statuses = [s for s in a.get("status", "").split(",") if s]
        rows = q.list_events(
            self.engine, self.scope, statuses=statuses or None, level=a.get("level"),
            category=a.get("category"), unit=a.get("unit"), since=self._args_time("since"),
            overdue_at=self.clock() if a.get("overdue") in ("1", "true") else None,
            text_query=a.get("q"), limit=self._int_arg("limit", 100, 1000),
            offset=self._int_arg("offset", 0, 10**9),
        )  # fmt: skip
        rows = protect(self.engine, rows, what="api events")
        return _json([self._event_out(r) for r in rows])

    def get_event(self, code: str) -> flask.Response:
        card = q.event_card(self.engine, self.scope, code, now=self.clock(), calendar=self.calendar)
        if card is None:
            raise inc.NotFound(f"no event with code {code!r}")
        level = flask.request.args.get("actor_level")
        card["allowed_actions"] = q.allowed_for(card["state"], level) if level else None
        return _json(self._event_out(protect_one(self.engine, card, what=f"api event {code}")))

    # -- workflow -------------------------------------------------------------------------------

    def post_action(self, code: str) -> flask.Response:
        body = self._obj()
        actor = self._actor(body)
        kw = _action_kwargs(body)
        responder = body.get("responder")
        with transaction(self.engine) as conn:
            out = inc.act(conn, code, body.get("action", ""), actor, calendar=self.calendar,
                          at=self.clock(), **kw)  # fmt: skip
            if responder is not None:
                out["assignment"] = self._assign(conn, code, responder, actor, False)
        return _json(out)

    def get_candidates(self, code: str) -> flask.Response:
        types = [t for t in flask.request.args.get("types", "").split(",") if t]
        limit = self._int_arg("limit", 10, 100)
        with transaction(self.engine) as conn:
            found = self._ranked(conn, code, types or None, limit)
        return _json([c.__dict__ for c in found])

    def _ranked(
        self, conn: Connection, code: str, types: list[str] | None, limit: int
    ) -> list[routing.Candidate]:
        row = q.event_point(conn, self.scope, code)
        if row is None:
            raise inc.NotFound(f"no event with code {code!r}")
        kinds = types or list(routing.suitable_types(row["department"]))
        return routing.rank_responders(conn, row["lon"], row["lat"], types=kinds, limit=limit)

    def post_dispatch(self, code: str) -> flask.Response:
        body = self._obj()
        actor = self._actor(body)
        reinforcement = body.get("reinforcement", False)
        if not isinstance(reinforcement, bool):
            raise inc.InvalidReport([("reinforcement", "must be true or false")])
        with transaction(self.engine) as conn:
            out = self._assign(conn, code, body.get("responder"), actor, reinforcement)
        return _json(out, 201)

    def _assign(
        self, conn: Connection, code: str, responder: Any, actor: wf.Actor, reinforcement: bool
    ) -> dict:
        if responder is not None and not isinstance(responder, str):
            raise inc.InvalidReport([("responder", "must be a responder code")])
        # lock the case before choosing: a second dispatcher waits here, then sees the first's
        # responder and is refused, instead of picking the next fastest
        inc.lock_for_dispatch(conn, code, reinforcement=reinforcement)
        ranked = self._ranked(conn, code, None if responder is None else [], 100)
        if responder is None and not ranked:
            raise inc.ResponderUnavailable(f"no available responder suits event {code}")
        pick = (
            ranked[0]
            if responder is None
            else next((c for c in ranked if c.code == responder), None)
        )
        chosen = str(responder) if pick is None else pick.code
        return inc.assign_responder(
            conn, code, chosen, actor=actor, at=self.clock(), calendar=self.calendar,
            reinforcement=reinforcement, eta_s=pick.eta_s if pick else None,
            distance_m=pick.distance_m if pick else None,
            method=pick.method if pick else "unranked",
        )  # fmt: skip

    # -- responders and KPIs --------------------------------------------------------------------

    def get_responders(self) -> flask.Response:
        return _json(q.responder_board(self.engine, self.scope))

    def post_positions(self, code: str) -> flask.Response:
        body = self._obj()
        fixes_in = body.get("positions", [body])
        if not isinstance(fixes_in, list) or not fixes_in:
            raise inc.InvalidReport([("positions", "a non-empty list of {lon, lat, at}")])
        fixes = [self._fix(f, i) for i, f in enumerate(fixes_in)]
        with transaction(self.engine) as conn:
            n = inc.record_positions(conn, code, fixes)
        return _json({"responder": code, "recorded": n}, 201)

    def _fix(self, item: Any, i: int) -> tuple[datetime, float, float]:
        errors: list[tuple[str, str]] = []
        if not isinstance(item, dict):
            raise inc.InvalidReport([(f"positions[{i}]", "must be an object")])
        lon = inc._number(item, "lon", -180, 180, errors)  # noqa: SLF001
        lat = inc._number(item, "lat", -90, 90, errors)  # noqa: SLF001
        at = inc._time_field(item.get("at"), self.clock(), errors)  # noqa: SLF001
        if errors:
            raise inc.InvalidReport([(f"positions[{i}].{f}", r) for f, r in errors])
        return at, lon, lat

    def get_kpis(self) -> flask.Response:
        level = flask.request.args.get("level", "grid")
        end = self._args_time("end") or self.clock()
        start = self._args_time("start") or end - timedelta(days=30)
        if level not in inc.LADDER or end <= start:
            raise ApiError(422, "level must be on the ladder and start before end",
                           [("level", f"one of {list(inc.LADDER)}"), ("start", "before end")])  # fmt: skip
        rows = q.kpis(self.engine, self.scope, level=level, period=(start, end), as_of=self.clock())
        return _json({"level": level, "start": start, "end": end, "units": rows})

    # -- Open311 GeoReport v2 -------------------------------------------------------------------

    def o311_discovery(self) -> flask.Response:
        base = flask.request.host_url.rstrip("/") + "/open311/v2/"
        return _json({"changeset": "2026-11-01T00:00:00Z", "contact": "command centre",
                      "endpoints": [{"specification": "http://wiki.open311.org/GeoReport_v2",
                                     "url": base, "type": "production",
                                     "formats": ["application/json"]}]})  # fmt: skip

    def o311_services(self) -> flask.Response:
        cats = self.categories.get()
        return _json([_o311_service(c, cats) for c in cats.values() if c.leaf])

    def o311_service(self, service_code: str) -> flask.Response:
        if service_code not in self.categories.get():
            return _o311_error(404, f"service_code {service_code} not found")
        return _json({"service_code": service_code, "attributes": []})

    def o311_post(self) -> flask.Response:
        form = flask.request.form if flask.request.form else self._obj()
        payload = _o311_report(form)
        try:
            rep = inc.parse_report(payload, self.categories.get(), now=self.clock())
            with transaction(self.engine) as conn:
                out = inc.report(conn, rep, self.categories.get())
        except inc.InvalidReport as exc:
            return _o311_error(
                400, "; ".join(f"{_O311_NAME.get(f, f)}: {r}" for f, r in exc.errors)
            )
        notice = (
            f"duplicate of an open request (id {out['duplicate_of']})"
            if out.get("duplicate_of")
            else ""
        )
        return _json([{"service_request_id": out["code"], "service_notice": notice,
                       "account_id": None}])  # fmt: skip

    def o311_requests(self) -> flask.Response:
        a = flask.request.args
        ids = [i for i in a.get("service_request_id", "").split(",") if i]
        status = a.get("status")
        end = self._args_time("end_date")
        start = self._args_time("start_date") or ((end or self.clock()) - timedelta(days=90))
        rows = q.list_events(self.engine, self.scope, category=a.get("service_code"),
                             since=start, limit=1000)  # fmt: skip
        rows = [
            r
            for r in rows
            if (not ids or r["code"] in ids) and (end is None or r["reported_at"] <= end)
        ]
        out = [_o311_request(r) for r in protect(self.engine, rows, what="open311 requests")]
        return _json([r for r in out if status is None or r["status"] == status])

    def o311_request(self, rid: str) -> flask.Response:
        card = q.event_card(self.engine, self.scope, rid, now=self.clock(), calendar=self.calendar)
        if card is None:
            return _o311_error(404, f"service_request_id {rid} not found")
        return _json([_o311_request(protect_one(self.engine, card, what=f"open311 {rid}"))])


def _action_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    errors = []
    version, sat, extend = body.get("version"), body.get("satisfaction"), body.get("extend_by")
    if version is not None and (type(version) is not int or version < 1):
        errors.append(("version", "must be the integer version you last saw"))
    if sat is not None and type(sat) is not int:
        errors.append(("satisfaction", "must be an integer 1-5"))
    if extend is not None and (isinstance(extend, bool) or not isinstance(extend, int | float)):
        errors.append(("extend_by", "must be a number"))
    for key in ("reason", "to_level"):
        if body.get(key) is not None and not isinstance(body[key], str):
            errors.append((key, "must be a string"))
    if not isinstance(body.get("action"), str):
        errors.append(("action", "is required"))
    if errors:
        raise inc.InvalidReport(errors)
    return {"version": version, "reason": body.get("reason"), "satisfaction": sat,
            "to_level": body.get("to_level"), "extend_by": extend}  # fmt: skip


_O311_NAME = {"lon": "long", "category_code": "service_code", "lon/lat": "lat/long"}


def _o311_report(form: Any) -> dict[str, Any]:
    def num(key: str) -> Any:
        try:
            return float(form.get(key))
        except (TypeError, ValueError):
            return form.get(key)

    who = " ".join(x for x in (form.get("first_name"), form.get("last_name")) if x)
    desc = " / ".join(x for x in (form.get("description"), form.get("address_string")) if x)
    return {"category_code": form.get("service_code"), "lon": num("long"), "lat": num("lat"),
            "description": desc or None, "channel": "open311", "reporter": who or "open311",
            "reporter_role": "resident"}  # fmt: skip


def _o311_service(c: inc.Category, cats: dict[str, inc.Category]) -> dict[str, Any]:
    group = next((p.name for p in cats.values() if not p.leaf and c.code.startswith(p.code)), "")
    limit = f"{c.time_limit:g} {c.time_unit}" if c.time_limit is not None else "no limit"
    return {"service_code": c.code, "service_name": c.name,
            "description": f"{c.name_en or c.name}; deadline {limit}"
                           + (f"; owner {c.department}" if c.department else ""),
            "metadata": False, "type": "realtime", "keywords": c.name_en or "", "group": group}  # fmt: skip


def _o311_request(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "service_request_id": r["code"],
        "status": "closed" if r["status"] in OPEN311_CLOSED else "open",
        "status_notes": r["status"], "service_name": r["category"],
        "service_code": r["category_code"], "description": r.get("description"),
        "agency_responsible": r.get("department") or r.get("handling_unit_code"),
        "service_notice": f"duplicate of {r['duplicate_of']}" if r.get("duplicate_of") else None,
        "requested_datetime": r["reported_at"], "updated_datetime": r.get("updated_at"),
        "expected_datetime": r.get("due_at"), "address": None, "address_id": None,
        "zipcode": None, "lat": r["lat"], "long": r["lon"], "media_url": None,
    }  # fmt: skip


def _o311_error(status: int, description: str) -> flask.Response:
    return _json([{"code": status, "description": description}], status)


# --- OpenAPI ---------------------------------------------------------------------------------


def _obj_schema(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or []}


_S, _N, _I, _B = {"type": "string"}, {"type": "number"}, {"type": "integer"}, {"type": "boolean"}
_TS = {"type": ["string", "null"], "format": "date-time"}


def _null(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _schemas() -> dict[str, Any]:
    step = _obj_schema({
        "version": _I, "action": {"enum": [a.value for a in wf.Action]}, "at": _TS, "actor": _S,
        "actor_level": _S, "actor_role": _S, "from_status": _null(_S), "to_status": _S,
        "from_level": _null(_S), "to_level": _S, "note": _null(_S), "satisfaction": _null(_I),
    }, ["version", "action", "at", "actor", "to_status"])  # fmt: skip
    event = _obj_schema({
        "code": _S, "category_code": _S, "category": _S, "department": _null(_S),
        "priority": _I, "channel": _S, "status": {"enum": [s.value for s in wf.Status]},
        "handling_level": _S, "handling_unit_code": _null(_S), "unit_code": _null(_S),
        "reported_at": _TS, "dispatched_at": _TS, "due_at": _TS, "closed_at": _TS,
        "version": _I, "lon": _N, "lat": _N, "description": _null(_S),
        "duplicate_of": _null(_S), "responder": _null(_S),
        "deadline": {"enum": ["on_time", "due_soon", "overdue", "paused", None]},
    }, ["code", "category_code", "status", "handling_level", "version", "lon", "lat",
        "reported_at"])  # fmt: skip
    card = {"allOf": [_ref("Event"), _obj_schema({
        "history": {"type": "array", "items": _ref("HistoryStep")},
        "duplicates": {"type": "array", "items": _S},
        "assignments": {"type": "array", "items": _obj_schema({"responder": _S, "eta_s": _null(_N),
                                                               "method": _S})},
        "allowed_actions": {"type": ["array", "null"], "items": _S},
    }, ["history", "duplicates", "assignments"])]}  # fmt: skip
    return {
        "Error": _obj_schema({"error": _obj_schema({
            "status": _I, "message": _S,
            "fields": {"type": "array", "items": _obj_schema({"field": _S, "reason": _S},
                                                             ["field", "reason"])},
        }, ["status", "message", "fields"])}, ["error"]),  # fmt: skip
        "Report": _obj_schema({
            "category_code": _S, "lon": _N, "lat": _N, "reported_at": {**_S, "format": "date-time"},
            "channel": {"enum": list(inc.CHANNELS)}, "description": _S,
            "priority": {**_I, "minimum": 1, "maximum": 5}, "reporter": _S,
            "reporter_level": {"enum": list(inc.LADDER)}, "reporter_role": _S,
            "code": {**_S, "maxLength": 40, "description": "idempotency key"},
        }, ["category_code", "lon", "lat"]),  # fmt: skip
        "Created": _obj_schema({
            "id": _I, "code": _S, "created": _B, "status": _S, "handling_level": _S,
            "handling_unit_code": _null(_S), "unit_code": _null(_S), "duplicate_of": _null(_I),
            "emergency": _B,
        }, ["id", "code", "created"]),  # fmt: skip
        "ActionRequest": _obj_schema({
            "action": {"enum": [a.value for a in wf.Action if a is not wf.Action.REPORT]},
            "actor": _S, "actor_level": {"enum": list(inc.LADDER)}, "actor_role": _S,
            "reason": _S, "satisfaction": _I, "version": _I, "to_level": _S,
            "extend_by": _N, "responder": _S,
        }, ["action", "actor", "actor_level"]),  # fmt: skip
        "ActionResult": _obj_schema({
            "code": _S, "status": _S, "version": _I, "handling_level": _S, "due_at": _TS,
        }, ["code", "status", "version", "handling_level"]),  # fmt: skip
        "HistoryStep": step,
        "Event": event,
        "EventCard": card,
        "Candidate": _obj_schema({
            "code": _S, "name": _S, "type": _S, "eta_s": _N, "distance_m": _N,
            "method": {"enum": ["network", "straight_line"]}, "lon": _N, "lat": _N,
        }, ["code", "type", "eta_s", "method"]),  # fmt: skip
        "Assignment": _obj_schema({"event": _S, "responder": _S, "eta_s": _null(_N),
                                   "method": _S}, ["event", "responder"]),  # fmt: skip
        "Responder": _obj_schema({
            "code": _S, "name": _S, "type": _S, "status": _S, "position_at": _TS,
            "lon": _null(_N), "lat": _null(_N), "event": _null(_S),
        }, ["code", "type", "status"]),  # fmt: skip
        "Kpis": _obj_schema({"level": _S, "units": {"type": "array", "items": _obj_schema({
            "unit": _S, "filed": _I, "should_close": _I, "closed": _I, "closed_on_time": _I,
            "closure_rate": _null(_N), "on_time_rate": _null(_N), "resolution_rate": _null(_N),
            "satisfaction": _null(_N), "returns": _I, "escalations": _I, "bounced": _I,
            "repeats": _I}, ["unit", "filed", "closed", "closure_rate", "repeats"])}},
            ["level", "units"]),  # fmt: skip
        "Import": _obj_schema({"inserted": _I, "updated": _I, "unchanged": _I, "rejected": _I,
                               "completed": _I}, ["inserted", "rejected"]),  # fmt: skip
        "Open311Service": _obj_schema({
            "service_code": _S, "service_name": _S, "description": _S, "metadata": _B,
            "type": {"enum": ["realtime", "batch", "blackbox"]}, "keywords": _S, "group": _S,
        }, ["service_code", "service_name", "metadata", "type"]),  # fmt: skip
        "Open311Request": _obj_schema({
            "service_request_id": _S, "status": {"enum": ["open", "closed"]},
            "service_code": _S, "requested_datetime": _TS, "lat": _N, "long": _N,
        }, ["service_request_id", "status", "service_code", "lat", "long"]),  # fmt: skip
        "Open311Error": {"type": "array", "items": _obj_schema({"code": _I, "description": _S},
                                                               ["code", "description"])},
    }  # fmt: skip


def _op(summary: str, ok: str, schema: dict | None, *, body: str | None = None,
        errors: tuple[int, ...] = (404, 422), status: str = "200") -> dict[str, Any]:  # fmt: skip
    content = {"application/json": {"schema": schema}} if schema else {}
    responses = {status: {"description": ok, "content": content}}
    for code in errors:
        responses[str(code)] = {"description": "error",
                                "content": {"application/json": {"schema": _ref("Error")}}}  # fmt: skip
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": _ref(body)}}}  # fmt: skip
    return op


def _arr(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``/api/v1`` and ``/open311/v2`` (JSON Schema 2020-12)."""
    code = [{"name": "code", "in": "path", "required": True, "schema": _S}]
    paths = {
        "/api/v1/events": {
            "post": _op("Report one event (object) or a batch (array)", "created or existing",
                        {"oneOf": [_ref("Created"), _arr("Created")]}, body="Report",
                        status="201", errors=(400, 422)),
            "get": _op("List events (filters: status, level, category, unit, since, overdue, q, "
                       "limit, offset)", "events", _arr("Event"), errors=(422,)),
        },
        "/api/v1/events/import": {"post": _op("Bulk import (multipart 'file': CSV, XLSX, GeoJSON…; "
                                                    "'crs' e.g. 4490 when the file states none; "
                                                    "'skip_invalid')",
                                              "imported", _ref("Import"), status="201",
                                              errors=(422,))},
        "/api/v1/events/{code}": {"get": {**_op("The case card with its timeline", "card",
                                                _ref("EventCard"), errors=(404,)),
                                          "parameters": code}},
        "/api/v1/events/{code}/actions": {"post": {**_op(
            "Take a workflow action (409: stale version or not allowed now)", "new state",
            _ref("ActionResult"), body="ActionRequest", errors=(400, 404, 409, 422)),
            "parameters": code}},
        "/api/v1/events/{code}/candidates": {"get": {**_op(
            "Available responders ranked by travel time", "ranked", _arr("Candidate")),
            "parameters": code}},
        "/api/v1/events/{code}/dispatch": {"post": {**_op(
            "Send a responder (the fastest when none is named)", "assigned", _ref("Assignment"),
            status="201", errors=(404, 409, 422)), "parameters": code}},
        "/api/v1/responders": {"get": _op("Responder status board", "board", _arr("Responder"),
                                          errors=())},
        "/api/v1/responders/{code}/positions": {"post": {**_op(
            "AVL: one fix {lon, lat, at} or {positions: [...]}", "recorded", None,
            status="201"), "parameters": code}},
        "/api/v1/kpis": {"get": _op("KPIs per unit (level, start, end)", "kpis", _ref("Kpis"),
                                    errors=(422,))},
        "/open311/v2/services.json": {"get": _op("GeoReport v2 service list", "services",
                                                 _arr("Open311Service"), errors=())},
        "/open311/v2/requests.json": {
            "get": _op("GeoReport v2 requests", "requests", _arr("Open311Request"), errors=()),
            "post": _op("GeoReport v2 new request (form fields service_code, lat, long, "
                        "description, address_string, first_name, last_name)", "accepted",
                        None, errors=()),
        },
        "/open311/v2/requests/{id}.json": {"get": _op("GeoReport v2 one request", "request",
                                                      _arr("Open311Request"), errors=())},
    }  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "Grid governance incident loop API", "version": "1.0.0",
                 "description": "Intake, case workflow (CJ/T 315), dispatch and KPIs."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {"schemas": _schemas()},
    }  # fmt: skip
