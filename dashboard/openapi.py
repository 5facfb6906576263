"""The OpenAPI 3.1 document of ``/api/v1`` and ``/open311/v2`` (JSON Schema 2020-12).

Request bodies and query parameters are generated from the models in
:mod:`dashboard.api_models`, the same ones that validate the requests; responses are described
here. The served document states the territory's lon/lat bounds (:func:`openapi_document` with
``box``); without one it states China's.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from dashboard import api_models as m
from geo import workflow as wf

REF = "#/components/schemas/{model}"
_S, _N, _I, _B = {"type": "string"}, {"type": "number"}, {"type": "integer"}, {"type": "boolean"}
_TS = {"type": ["string", "null"], "format": "date-time"}
BODIES: tuple[type[BaseModel], ...] = (
    m.Report, m.ActionRequest, m.DispatchRequest, m.Fix, m.Positions, m.ImportForm,
    m.Open311Report,
)  # fmt: skip


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or []}


def _null(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _arr(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


def _response_schemas() -> dict[str, Any]:
    step = _obj({
        "version": _I, "action": {"enum": [a.value for a in wf.Action]}, "at": _TS, "actor": _S,
        "actor_level": _S, "actor_role": _null(_S), "from_status": _null(_S), "to_status": _S,
        "from_level": _null(_S), "to_level": _S, "note": _null(_S), "satisfaction": _null(_I),
    }, ["version", "action", "at", "actor", "to_status"])  # fmt: skip
    event = _obj({
        "code": _S, "category_code": _S, "category": _S, "department": _null(_S),
        "priority": _I, "channel": _S, "status": {"enum": [s.value for s in wf.Status]},
        "handling_level": _S, "handling_unit_code": _null(_S), "unit_code": _null(_S),
        "reported_at": _TS, "dispatched_at": _TS, "due_at": _TS, "closed_at": _TS,
        "version": _I, "lon": _N, "lat": _N, "description": _null(_S),
        "duplicate_of": _null(_S), "responder": _null(_S),
        "deadline": {"enum": ["on_time", "due_soon", "overdue", "paused", None]},
    }, ["code", "category_code", "status", "handling_level", "version", "lon", "lat",
        "reported_at"])  # fmt: skip
    card = {"allOf": [_ref("Event"), _obj({
        "history": {"type": "array", "items": _ref("HistoryStep")},
        "duplicates": {"type": "array", "items": _S},
        "assignments": {"type": "array", "items": _obj({"responder": _S, "eta_s": _null(_N),
                                                               "method": _S})},
        "allowed_actions": {"type": ["array", "null"], "items": _S},
    }, ["history", "duplicates", "assignments"])]}  # fmt: skip
    return {
        "Error": _obj({"error": _obj({
            "status": _I, "message": _S,
            "fields": {"type": "array", "items": _obj({"field": _S, "reason": _S},
                                                             ["field", "reason"])},
        }, ["status", "message", "fields"])}, ["error"]),  # fmt: skip
        "Created": _obj({
            "id": _I, "code": _S, "created": _B, "status": _S, "handling_level": _S,
            "handling_unit_code": _null(_S), "unit_code": _null(_S), "duplicate_of": _null(_I),
            "emergency": _B,
        }, ["id", "code", "created"]),  # fmt: skip
        "ActionResult": _obj({
            "code": _S, "status": _S, "version": _I, "handling_level": _S, "due_at": _TS,
            "assignment": _ref("Assignment"),
        }, ["code", "status", "version", "handling_level"]),  # fmt: skip
        "HistoryStep": step,
        "Event": event,
        "EventCard": card,
        "Candidate": _obj({
            "code": _S, "name": _S, "type": _S, "eta_s": _N, "distance_m": _N,
            "method": {"enum": ["network", "straight_line"]}, "lon": _N, "lat": _N,
        }, ["code", "type", "eta_s", "method"]),  # fmt: skip
        "Assignment": _obj({"event": _S, "responder": _S, "eta_s": _null(_N), "method": _S,
                            "reinforcement": _B, "version": _I},
                           ["event", "responder", "reinforcement"]),  # fmt: skip
        "Recorded": _obj({"responder": _S, "recorded": _I}, ["responder", "recorded"]),
        "Responder": _obj({
            "code": _S, "name": _S, "type": _S, "status": _S, "position_at": _TS,
            "lon": _null(_N), "lat": _null(_N), "event": _null(_S),
        }, ["code", "type", "status"]),  # fmt: skip
        "Category": _obj({
            "code": _S, "name": _S, "name_en": _null(_S), "priority": _I,
            "time_limit": _null(_N), "time_unit": _null(_S), "department": _null(_S),
            "emergency": _B, "leaf": _B,
        }, ["code", "name", "priority", "emergency", "leaf"]),  # fmt: skip
        "Kpis": _obj({"level": _S, "start": _TS, "end": _TS, "units": {"type": "array",
            "items": _obj({
                "unit": _S, "filed": _I, "should_close": _I, "closed": _I, "closed_on_time": _I,
                "closure_rate": _null(_N), "on_time_rate": _null(_N),
                "resolution_rate": _null(_N), "satisfaction": _null(_N), "returns": _I,
                "escalations": _I, "bounced": _I, "repeats": _I},
                ["unit", "filed", "closed", "closure_rate", "repeats"])}},
            ["level", "units"]),  # fmt: skip
        "Import": _obj({
            "inserted": _I, "updated": _I, "unchanged": _I, "rejected": _I, "completed": _I,
            "kept_live": {**_I, "description": "events already in the workflow, left unchanged"},
            "kept_live_codes": {"type": "array", "items": _S}, "run_id": _I,
            "warnings": {"type": "array", "items": _S},
        }, ["inserted", "rejected", "kept_live", "kept_live_codes"]),  # fmt: skip
        "Open311Service": _obj({
            "service_code": _S, "service_name": _S, "description": _S, "metadata": _B,
            "type": {"enum": ["realtime", "batch", "blackbox"]}, "keywords": _S, "group": _S,
        }, ["service_code", "service_name", "metadata", "type"]),  # fmt: skip
        "Open311Request": _obj({
            "service_request_id": _S, "status": {"enum": ["open", "closed"]},
            "service_code": _S, "requested_datetime": _TS, "lat": _N, "long": _N,
        }, ["service_request_id", "status", "service_code", "lat", "long"]),  # fmt: skip
        "Open311Accepted": {"type": "array", "items": _obj(
            {"service_request_id": _S, "service_notice": _S, "account_id": _null(_S)},
            ["service_request_id"])},  # fmt: skip
        "Open311Error": {"type": "array", "items": _obj({"code": _I, "description": _S},
                                                               ["code", "description"])},
    }  # fmt: skip


def _request_schemas() -> dict[str, Any]:
    _, top = models_json_schema([(model, "validation") for model in BODIES], ref_template=REF)
    schemas: dict[str, Any] = top["$defs"]
    schemas["ReportBatch"] = m.ReportBatch.json_schema(ref_template=REF)
    schemas["ReportBatch"].pop("$defs", None)
    return schemas


# --- operations ------------------------------------------------------------------------------

_ERROR_TEXT = {
    400: "unreadable body or parameter", 404: "not found",
    405: "this method is not allowed on the path (/api/v1/events/import is the import)", 409: "conflict (stale version, not "
    "allowed now, responder busy or already sent)", 413: "body too large",
    422: "a field is wrong (fields names each)", 503: "database unreachable: retry after the "
    "Retry-After header's seconds",
}  # fmt: skip


def _op(
    summary: str,
    ok: dict[str, Any] | None,
    *,
    errors: tuple[int, ...] = (),
    status: str = "200",
    body: dict[str, Any] | None = None,
    query: type[BaseModel] | None = None,
    path: list[dict[str, Any]] | None = None,
    open311: bool = False,
) -> dict[str, Any]:
    """One operation; every one may answer 503 (database unreachable)."""
    content = {"application/json": {"schema": ok}} if ok else {}
    responses: dict[str, Any] = {status: {"description": "ok", "content": content}}
    error = _ref("Open311Error" if open311 else "Error")
    for code in sorted({*errors, 400, 503}):  # 400: a NUL byte in a parameter, unreadable body
        responses[str(code)] = {"description": _ERROR_TEXT[code],
                                "content": {"application/json": {"schema": error}}}  # fmt: skip
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    params = [*(path or []), *(_query_params(query) if query else [])]
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": body}
    return op


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _path(name: str, pattern: str, what: str, **more: Any) -> list[dict[str, Any]]:
    schema = {"type": "string", "pattern": pattern, **more}
    return [{"name": name, "in": "path", "required": True, "schema": schema, "description": what}]


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The model's fields as query parameters (an optional field's ``null`` branch dropped)."""
    props = model.model_json_schema()["properties"]
    out = []
    for name, field in model.model_fields.items():
        schema = dict(props[name])
        branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
        if branches:
            schema = {**branches[0], **schema}
        schema.pop("title", None)
        param = {"name": name, "in": "query", "required": field.is_required(), "schema": schema}
        if "description" in schema:
            param["description"] = schema.pop("description")
        out.append(param)
    return out


def _paths() -> dict[str, Any]:
    event = _path("code", m.EVENT_CODE, "event code", **m.EVENT_CODE_SCHEMA)
    responder = _path("code", m.RESPONDER_CODE, "responder code")
    report_body = _json_body({"oneOf": [_ref("Report"), _ref("ReportBatch")]})
    created = {"oneOf": [_ref("Created"), _arr("Created")]}
    fixes = _json_body({"oneOf": [_ref("Fix"), _ref("Positions")]})
    return {
        "/api/v1/openapi.json": {"get": _op("This document", {"type": "object"})},
        "/api/v1/categories": {"get": _op("Event categories", _arr("Category"))},
        "/api/v1/workflow": {"get": _op("The workflow's rules", {"type": "object"})},
        "/api/v1/events": {
            "post": _op("Report one event (object) or a batch (array of up to 1,000); 200 "
                        "when every report was already stored (idempotent retry)", created,
                        status="201", errors=(400, 413, 422), body=report_body),
            "get": _op("List events, newest first", _arr("Event"), errors=(422,),
                       query=m.EventsQuery),
        },
        "/api/v1/events/import": {"post": _op(
            "Bulk import through the loader; events already in the workflow are kept as they "
            "are (kept_live)", _ref("Import"), status="201", errors=(400, 413, 422),
            body={"multipart/form-data": {"schema": _ref("ImportForm")}})},
        "/api/v1/events/{code}": {"get": _op(
            "The case card with its timeline", _ref("EventCard"), errors=(404, 405, 422),
            path=event, query=m.CardQuery)},
        "/api/v1/events/{code}/actions": {"post": _op(
            "Take a workflow action (409: stale version or not allowed now)",
            _ref("ActionResult"), errors=(400, 404, 409, 413, 422), path=event,
            body=_json_body(_ref("ActionRequest")))},
        "/api/v1/events/{code}/candidates": {"get": _op(
            "Available responders ranked by travel time", _arr("Candidate"),
            errors=(404, 422), path=event, query=m.CandidatesQuery)},
        "/api/v1/events/{code}/dispatch": {"post": _op(
            "Send a responder (the fastest available when none is named)", _ref("Assignment"),
            status="201", errors=(400, 404, 409, 413, 422), path=event,
            body=_json_body(_ref("DispatchRequest")))},
        "/api/v1/responders": {"get": _op("Responder status board", _arr("Responder"))},
        "/api/v1/responders/{code}/positions": {"post": _op(
            f"AVL: one fix or up to {m.MAX_FIXES} positions", _ref("Recorded"), status="201",
            errors=(400, 404, 413, 422), path=responder, body=fixes)},
        "/api/v1/kpis": {"get": _op(f"KPIs per unit over [start, end), at most "
                                    f"{m.KPI_DAYS_MAX} days", _ref("Kpis"), errors=(422,),
                                    query=m.KpisQuery)},
        "/open311/v2/discovery.json": {"get": _op("GeoReport v2 discovery", {"type": "object"},
                                                  open311=True)},
        "/open311/v2/services.json": {"get": _op("GeoReport v2 service list",
                                                 _arr("Open311Service"), open311=True)},
        "/open311/v2/services/{service_code}.json": {"get": _op(
            "GeoReport v2 service definition", {"type": "object"}, errors=(404,), open311=True,
            path=_path("service_code", m.CATEGORY_CODE, "category code"))},
        "/open311/v2/requests.json": {
            "get": _op("GeoReport v2 requests (default: the last 90 days)",
                       _arr("Open311Request"), errors=(400,), query=m.Open311Query,
                       open311=True),
            "post": _op("GeoReport v2 new request", _ref("Open311Accepted"),
                        errors=(400, 413), open311=True,
                        body={"application/x-www-form-urlencoded":
                              {"schema": _ref("Open311Report")}}),
        },
        "/open311/v2/requests/{id}.json": {"get": _op(
            "GeoReport v2 one request", _arr("Open311Request"), errors=(404,), open311=True,
            path=_path("id", m.EVENT_CODE, "service_request_id (event code)",
                       **m.EVENT_CODE_SCHEMA))},
    }  # fmt: skip


def _bounded(node: Any, box: m.Box) -> Any:
    """``node`` with every lon/lat schema (marked ``x-territory``) bounded by ``box``."""
    if isinstance(node, list):
        return [_bounded(n, box) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _bounded(v, box) for k, v in node.items()}
    axis = node.get("x-territory")
    if axis in ("lon", "lat"):
        lo, hi = (box.west, box.east) if axis == "lon" else (box.south, box.north)
        out["minimum"], out["maximum"] = round(lo, 6), round(hi, 6)
    return out


def openapi_document(*, box: m.Box | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``/api/v1`` and ``/open311/v2``; lon/lat bounded by
    ``box`` (the territory with its margin), China's box without one."""
    schemas = {**_response_schemas(), **_request_schemas()}
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "Grid governance incident loop API", "version": "1.1.0",
                 "description": "Intake, case workflow (CJ/T 315), dispatch and KPIs. Errors: "
                                "{error: {status, message, fields: [{field, reason}]}} "
                                "(Open311: [{code, description}])."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": _paths(),
        "components": {"schemas": schemas},
    }  # fmt: skip
    return _bounded(doc, box) if box else doc
