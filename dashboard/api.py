"""The incident loop's HTTP API on the dashboard's Flask server.

* ``/api/v1/...``: JSON API for intake, the case workflow, dispatch, AVL and KPIs, described by
  the OpenAPI 3.1 document at ``/api/v1/openapi.json`` (``dashboard.openapi``);
* ``/open311/v2/...``: an Open311 GeoReport v2 endpoint set (JSON only): services = our event
  categories, requests = events.

Every request body and query string is validated by its model in ``dashboard.api_models``
(the same model generates its schema in the document). Errors are JSON:
``{"error": {"status", "message", "fields": [{"field", "reason"}]}}`` with 400 (unreadable body,
a NUL byte in a parameter), 404, 405, 409 (stale version, illegal in the current state,
responder busy or already sent), 413 (body too large), 422 (a field is wrong) or 503 (database
unreachable, with ``Retry-After``); the Open311 routes answer in Open311's own
``[{"code", "description"}]``. Unknown paths and methods under both prefixes are answered here,
never by the page catch-all of the full app. The handlers only unpack requests and call
``etl.incidents`` (writes) and ``etl.queries.events`` (reads); every write is one transaction.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

import flask
import orjson
from sqlalchemy import Connection, Engine
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from dashboard import api_models as m
from dashboard.api_errors import (
    ApiError,
    error_response,
    guard,
    json_response,
    o311_error,
)
from dashboard.auth import current_principal, current_scope
from dashboard.openapi import openapi_document
from dashboard.personal import protect, protect_one, search_refusal
from etl import incidents as inc
from etl import routing
from etl.db import transaction
from etl.deadlines import work_calendar
from etl.errors import CRSInvalidError, CRSMissingError, LoadError, ValidationFailed
from etl.load import load_file
from etl.models import EventHistory
from etl.queries import WHOLE_TERRITORY, Scope
from etl.queries import events as q
from etl.queries.screen import unit_ref
from etl.readers import VECTOR_SUFFIXES
from etl.schema import RESERVED_EVENT_CODES, max_length
from etl.settings import Settings
from geo import workflow as wf

__all__ = ["make_blueprint", "openapi_document", "register_routes"]

OPEN311_CLOSED = ("closed", "evaluated", "cancelled")
CACHE_TTL_S = 60.0  # categories and the territory change rarely: a minute of staleness is fine
IMPORT_SUFFIXES = {".csv", ".txt", ".xlsx", ".xlsm", ".zip", *VECTOR_SUFFIXES}
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
PREFIXES = ("/api/v1/", "/open311/v2/")


# --- caches ----------------------------------------------------------------------------------

T = TypeVar("T")


class _Cached(Generic[T]):
    """A value read from the database at most every :data:`CACHE_TTL_S` seconds."""

    def __init__(self, load: Callable[[], T]) -> None:
        self.load, self.loaded_at = load, 0.0
        self.value: T | None = None

    def get(self) -> T:
        if self.value is None or time.monotonic() - self.loaded_at > CACHE_TTL_S:
            self.value, self.loaded_at = self.load(), time.monotonic()
        return self.value


def _territory(engine: Engine | Connection) -> m.Box:
    """Where a point may be reported: the root units' box plus a margin (China's without units)."""
    box = q.territory_box(engine)
    return m.CHINA if box is None else m.Box(*box).grown(m.MARGIN_DEG)


# --- the blueprint ---------------------------------------------------------------------------


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
    bp.register_error_handler(Exception, error_response)
    bp.before_request(guard)
    for rule, view, methods in api.routes():  # OPTIONS is answered by api.unrouted, from Allow
        bp.add_url_rule(rule, view_func=view, methods=methods, provide_automatic_options=False)
    for prefix in PREFIXES:
        bp.add_url_rule(prefix, endpoint=f"unrouted{prefix}", view_func=api.unrouted,
                        methods=ALL_METHODS, strict_slashes=False)  # fmt: skip
        bp.add_url_rule(prefix + "<path:rest>", endpoint=f"unrouted{prefix}*",
                        view_func=api.unrouted, methods=ALL_METHODS)  # fmt: skip
    return bp


class _Api:
    def __init__(self, engine: Engine | Connection, settings: Settings, clock: Any) -> None:
        self.engine, self.settings = engine, settings
        self.tz = ZoneInfo(settings.timezone)
        self.clock = clock or (lambda: datetime.now(self.tz))
        self.calendar = work_calendar(settings)
        self.categories = _Cached(lambda: inc.load_categories(engine))
        self.box = _Cached(lambda: _territory(engine))
        self.router = Map([Rule(r, methods=ms, endpoint=r) for r, _, ms in self.routes()])
        self.allowed: dict[str, set[str]] = {}  # fixed paths (no <code>): the methods they take
        for rule, _, methods in self.routes():
            if "<" not in rule:
                taken = self.allowed.setdefault(rule, set())
                taken.update(methods)
                if "GET" in methods:
                    taken.add("HEAD")

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

    def unrouted(self, rest: str = "") -> flask.Response:
        """Any path or method under the prefixes that no route takes: 404, or 405 with
        ``Allow``; OPTIONS of a known path answers 204 with ``Allow``."""
        request = flask.request
        methods = self._methods(request.path)
        if not methods:
            raise ApiError(404, f"no resource at {request.path}")
        allow = ", ".join(sorted({*methods, "OPTIONS"}))
        if request.method == "OPTIONS":
            return flask.Response(status=204, headers={"Allow": allow})
        raise ApiError(405, f"{request.method} is not allowed on {request.path}; allowed: {allow}",
                       headers={"Allow": allow})  # fmt: skip

    def _methods(self, path: str) -> set[str]:
        """The methods our routes take at ``path`` (a fixed path before a <code> one)."""
        if path in self.allowed:
            return self.allowed[path]
        try:
            self.router.bind("api").match(path, method="-")
        except MethodNotAllowed as exc:
            return set(exc.valid_methods or [])
        except NotFound:
            pass
        return set()

    # -- helpers --------------------------------------------------------------------------------

    def _ctx(self, *, categories: bool = False) -> m.Context:
        cats = self.categories.get() if categories else None
        return m.Context(now=self.clock(), tz=self.tz, box=self.box.get(), categories=cats)

    def _raw(self) -> tuple[bytes, Any]:
        """The body as bytes and as parsed JSON (400 when it is not JSON)."""
        raw = flask.request.get_data()
        try:
            return raw, orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None

    def _code(self, value: str, pattern: str, what: str, field: str = "code") -> None:
        """A code in the path, checked against its documented pattern (404: none can exist)."""
        reserved = pattern == m.EVENT_CODE and value in RESERVED_EVENT_CODES
        if re.fullmatch(pattern, value) is None or reserved:
            raise ApiError(
                404, f"no {what} with code {value!r}", [(field, f"must match {pattern}")]
            )

    @property
    def scope(self) -> Scope:
        """The caller's jurisdiction (the whole territory only for a bare blueprint in tests)."""
        return current_scope() if current_principal() is not None else WHOLE_TERRITORY

    def _actor(self, body: dict[str, Any]) -> wf.Actor:
        """Who acts: the logged-in user or token, at their unit's level or below, never above."""
        who = current_principal()
        if who is not None:
            body = {**body, "actor": body.get("actor") or who.name}
            if body.get("actor_level") is None:
                body["actor_level"] = self._own_level(who)
        actor = self._actor_from_body(body)
        if who is None:
            return actor
        own = self._own_level(who)
        ladder = list(inc.LADDER)
        if own is None or ladder.index(actor.level) > ladder.index(own):
            raise ApiError(403, f"{who.name} acts at level {own} or below, not {actor.level}",
                           [("actor_level", f"at most {own}")])  # fmt: skip
        named = actor.name if actor.name == who.name else f"{who.name} ({actor.name[:24]})"
        return wf.Actor(actor.level, actor.role, named[: max_length(EventHistory, "actor")])

    def _own_level(self, who: Any) -> str | None:
        ref = unit_ref(self.engine, self.scope, who.unit_code)
        return ref.level if ref is not None and ref.level in inc.LADDER else None

    def _actor_from_body(self, body: dict[str, Any]) -> wf.Actor:
        """The body's actor fields (their form already checked by the request's model)."""
        missing = [(key, "is required: who acts, and at which level")
                   for key in ("actor", "actor_level") if body.get(key) is None]  # fmt: skip
        if missing:
            raise inc.InvalidReport(missing)
        return wf.Actor(body["actor_level"], body.get("actor_role") or "staff", body["actor"])

    def _event_out(self, row: dict[str, Any]) -> dict[str, Any]:
        row = {k: v for k, v in row.items() if k != "state"}
        row.setdefault("deadline", q.deadline_flag(row, self.clock(), self.calendar))
        return row

    # -- reference ------------------------------------------------------------------------------

    def openapi(self) -> flask.Response:
        return json_response(openapi_document(box=self.box.get()))

    def list_categories(self) -> flask.Response:
        return json_response([c.__dict__ for c in self.categories.get().values()])

    def workflow_rules(self) -> flask.Response:
        return json_response({"ladder": list(inc.LADDER), "rules": wf.rule_rows()})

    # -- intake ---------------------------------------------------------------------------------

    def create_events(self) -> flask.Response:
        raw, parsed = self._raw()
        ctx = self._ctx(categories=True)
        if isinstance(parsed, list):
            if not 1 <= len(parsed) <= m.MAX_BATCH:
                raise inc.InvalidReport([("body", f"send 1-{m.MAX_BATCH} reports")])
            models = m.batch(raw, ctx)
        else:
            models = [m.body(m.Report, raw, ctx)]
        reports = [r.to_report(ctx.now) for r in models]
        with transaction(self.engine) as conn:
            out = [inc.report(conn, r, ctx.categories or {}) for r in reports]
        created = any(o["created"] for o in out)
        return json_response(out if isinstance(parsed, list) else out[0], 201 if created else 200)

    def import_events(self) -> flask.Response:
        upload = flask.request.files.get("file")
        form = m.form(m.ImportForm, {**flask.request.form.to_dict(),
                                     "file": upload.filename if upload else None}, self._ctx())  # fmt: skip
        suffix = Path(form.file).suffix.lower() or ".csv"
        if upload is None or suffix not in IMPORT_SUFFIXES:
            raise inc.InvalidReport([("file", f"upload a file ({', '.join(sorted(IMPORT_SUFFIXES))})"
                                              " as multipart field 'file'")])  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload{suffix}"
            upload.save(path)
            result, completed = self._load(path, form)
        counts = result.counts
        return json_response({"inserted": counts.inserted, "updated": counts.updated,
                      "unchanged": counts.unchanged, "kept_live": counts.kept,
                      "kept_live_codes": counts.kept_codes, "rejected": result.rejected,
                      "completed": completed, "run_id": result.run_id,
                      "warnings": result.warnings}, 201)  # fmt: skip

    def _load(self, path: Path, form: m.ImportForm) -> tuple[Any, int]:
        skip = form.skip_invalid in ("1", "true", "yes")
        try:
            with transaction(self.engine) as conn:
                result = load_file(conn, "events", path, skip_invalid=skip, crs=form.crs or None)
                completed = inc.finish_import(conn, note=f"import of {form.file}")
        except ValidationFailed as exc:
            fields = [(str(where), why) for where, why in exc.problems[:200]]
            raise ApiError(422, f"{form.file}: {len(exc.problems)} invalid row(s)",
                           fields) from None  # fmt: skip
        except LoadError as exc:
            field = "crs" if isinstance(exc, CRSMissingError | CRSInvalidError) else "file"
            why = str(exc).replace(str(path), form.file)
            raise ApiError(422, why, [(field, why)]) from None
        return result, completed

    # -- reads ----------------------------------------------------------------------------------

    def get_events(self) -> flask.Response:
        a = m.query(m.EventsQuery, flask.request.args, self._ctx())
        refused = search_refusal(a.q)
        if refused:
            raise ApiError(403, refused, [("q", refused)])
        rows = q.list_events(
            self.engine, self.scope, statuses=[s for s in a.status.split(",") if s] or None,
            level=a.level, category=a.category, unit=a.unit, since=a.since,
            overdue_at=self.clock() if a.overdue in ("1", "true") else None,
            text_query=a.q, limit=a.limit, offset=a.offset,
        )  # fmt: skip
        rows = protect(self.engine, rows, what="api events")
        return json_response([self._event_out(r) for r in rows])

    def get_event(self, code: str) -> flask.Response:
        if flask.request.path in self.allowed:  # GET /api/v1/events/import: the import's path
            return self.unrouted()
        self._code(code, m.EVENT_CODE, "event")
        a = m.query(m.CardQuery, flask.request.args, self._ctx())
        card = q.event_card(self.engine, self.scope, code, now=self.clock(), calendar=self.calendar)
        if card is None:
            raise inc.NotFound(f"no event with code {code!r}")
        card["allowed_actions"] = (
            q.allowed_for(card["state"], a.actor_level) if a.actor_level else None
        )
        return json_response(
            self._event_out(protect_one(self.engine, card, what=f"api event {code}"))
        )

    # -- workflow -------------------------------------------------------------------------------

    def post_action(self, code: str) -> flask.Response:
        self._code(code, m.EVENT_CODE, "event")
        body = m.body(m.ActionRequest, self._raw()[0], self._ctx()).model_dump()
        actor = self._actor(body)
        with transaction(self.engine) as conn:
            out = inc.act(conn, code, body["action"], actor, calendar=self.calendar,
                          at=self.clock(), version=body["version"], reason=body["reason"],
                          satisfaction=body["satisfaction"], to_level=body["to_level"],
                          extend_by=body["extend_by"])  # fmt: skip
            if body["responder"] is not None:
                out["assignment"] = self._assign(conn, code, body["responder"], actor, False)
        return json_response(out)

    def get_candidates(self, code: str) -> flask.Response:
        self._code(code, m.EVENT_CODE, "event")
        a = m.query(m.CandidatesQuery, flask.request.args, self._ctx())
        types = [t for t in a.types.split(",") if t]
        with transaction(self.engine) as conn:
            found = self._ranked(conn, code, types or None, a.limit)
        return json_response([c.__dict__ for c in found])

    def _ranked(
        self, conn: Connection, code: str, types: list[str] | None, limit: int
    ) -> list[routing.Candidate]:
        row = q.event_point(conn, self.scope, code)
        if row is None:
            raise inc.NotFound(f"no event with code {code!r}")
        kinds = types or list(routing.suitable_types(row["department"]))
        return routing.rank_responders(conn, row["lon"], row["lat"], types=kinds, limit=limit)

    def post_dispatch(self, code: str) -> flask.Response:
        self._code(code, m.EVENT_CODE, "event")
        body = m.body(m.DispatchRequest, self._raw()[0], self._ctx()).model_dump()
        actor = self._actor(body)
        with transaction(self.engine) as conn:
            out = self._assign(conn, code, body["responder"], actor, body["reinforcement"])
        return json_response(out, 201)

    def _assign(
        self, conn: Connection, code: str, responder: str | None, actor: wf.Actor,
        reinforcement: bool,
    ) -> dict:  # fmt: skip
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
        return json_response(q.responder_board(self.engine, self.scope))

    def post_positions(self, code: str) -> flask.Response:
        self._code(code, m.RESPONDER_CODE, "responder")
        raw, parsed = self._raw()
        ctx = self._ctx()
        if isinstance(parsed, dict) and "positions" in parsed:
            if isinstance(parsed["positions"], list) and len(parsed["positions"]) > m.MAX_FIXES:
                raise inc.InvalidReport([("positions", f"send at most {m.MAX_FIXES} positions")])
            fixes = m.body(m.Positions, raw, ctx).positions
        else:
            fixes = [m.body(m.Fix, raw, ctx)]
        with transaction(self.engine) as conn:
            n = inc.record_positions(conn, code, [(f.at or ctx.now, f.lon, f.lat) for f in fixes])
        return json_response({"responder": code, "recorded": n}, 201)

    def get_kpis(self) -> flask.Response:
        ctx = self._ctx()
        a = m.query(m.KpisQuery, flask.request.args, ctx)
        start, end = a.period(ctx.now)
        rows = q.kpis(self.engine, self.scope, level=a.level, period=(start, end), as_of=ctx.now)
        return json_response({"level": a.level, "start": start, "end": end, "units": rows})

    # -- Open311 GeoReport v2 -------------------------------------------------------------------

    def o311_discovery(self) -> flask.Response:
        base = flask.request.host_url.rstrip("/") + "/open311/v2/"
        return json_response({"changeset": "2026-11-01T00:00:00Z", "contact": "command centre",
                      "endpoints": [{"specification": "http://wiki.open311.org/GeoReport_v2",
                                     "url": base, "type": "production",
                                     "formats": ["application/json"]}]})  # fmt: skip

    def o311_services(self) -> flask.Response:
        cats = self.categories.get()
        return json_response([_o311_service(c, cats) for c in cats.values() if c.leaf])

    def o311_service(self, service_code: str) -> flask.Response:
        if service_code not in self.categories.get():
            return o311_error(404, f"service_code {service_code} not found")
        return json_response({"service_code": service_code, "attributes": []})

    def o311_post(self) -> flask.Response:
        values = flask.request.form.to_dict() if flask.request.form else self._raw()[1]
        if not isinstance(values, dict):
            raise inc.InvalidReport([("body", "send form fields (or a JSON object)")])
        ctx = self._ctx(categories=True)
        rep = m.form(m.Open311Report, values, ctx).to_report(ctx.now)
        with transaction(self.engine) as conn:
            out = inc.report(conn, rep, ctx.categories or {})
        notice = (
            f"duplicate of an open request (id {out['duplicate_of']})"
            if out.get("duplicate_of")
            else ""
        )
        return json_response([{"service_request_id": out["code"], "service_notice": notice,
                       "account_id": None}])  # fmt: skip

    def o311_requests(self) -> flask.Response:
        ctx = self._ctx()
        a = m.query(m.Open311Query, flask.request.args, ctx)
        ids = [i for i in a.service_request_id.split(",") if i]
        start = a.start_date or ((a.end_date or ctx.now) - timedelta(days=90))
        rows = q.list_events(self.engine, self.scope, category=a.service_code, since=start,
                             limit=1000)  # fmt: skip
        rows = [
            r
            for r in rows
            if (not ids or r["code"] in ids)
            and (a.end_date is None or r["reported_at"] <= a.end_date)
        ]
        out = [_o311_request(r) for r in protect(self.engine, rows, what="open311 requests")]
        return json_response([r for r in out if a.status is None or r["status"] == a.status])

    def o311_request(self, rid: str) -> flask.Response:
        self._code(rid, m.EVENT_CODE, "service request", "id")
        card = q.event_card(self.engine, self.scope, rid, now=self.clock(), calendar=self.calendar)
        if card is None:
            return o311_error(404, f"service_request_id {rid} not found")
        return json_response([_o311_request(protect_one(self.engine, card, what=f"open311 {rid}"))])


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
