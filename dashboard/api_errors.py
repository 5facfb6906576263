"""HTTP answers of the incident API: JSON bodies, and every error mapped to its status.

Errors are ``{"error": {"status", "message", "fields": [{"field", "reason"}]}}``, or Open311's
``[{"code", "description"}]`` under ``/open311/``; a lost database is 503 with ``Retry-After``.
"""

from __future__ import annotations

from decimal import Decimal

import flask
import orjson
import psycopg
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from etl import incidents as inc
from geo import workflow as wf

JSON_LIMIT = 16 << 20  # bytes of a JSON or form body (1,000 full reports fit)
IMPORT_LIMIT = 64 << 20  # bytes of an uploaded file
RETRY_AFTER_S = 5


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        fields: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.fields = status, message, fields or []
        self.headers = headers or {}


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, wf.EventState):
        return None
    raise TypeError(type(value).__name__)


def json_response(payload: object, status: int = 200) -> flask.Response:
    body = orjson.dumps(payload, default=_default, option=orjson.OPT_NON_STR_KEYS)
    return flask.Response(body, status=status, mimetype="application/json")


# --- errors ----------------------------------------------------------------------------------

_FIELD_OF: dict[type, str] = {
    wf.MissingReason: "reason",
    wf.InvalidSatisfaction: "satisfaction",
    wf.UnknownLevel: "actor_level",
    wf.InvalidTime: "at",
}


def unreachable(exc: Exception) -> bool:
    """The database cannot be reached, or dropped the connection (retrying later may work)."""
    if isinstance(exc, sa_exc.DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(exc, sa_exc.OperationalError)
    return isinstance(exc, psycopg.OperationalError | sa_exc.TimeoutError)


def classify(exc: Exception) -> tuple[int, list[tuple[str, str]]]:
    """HTTP status and the fields to name for an exception a handler raised."""
    if isinstance(exc, ApiError):
        return exc.status, exc.fields
    if isinstance(exc, HTTPException):
        return exc.code or 500, []
    if isinstance(exc, inc.InvalidReport):
        return 422, exc.errors
    if isinstance(exc, inc.NotFound):
        return 404, []
    if isinstance(exc, inc.VersionConflict | wf.IllegalTransition | inc.ResponderUnavailable):
        return 409, []
    if isinstance(exc, wf.WorkflowError):
        return 422, [(_FIELD_OF.get(type(exc), "body"), str(exc))]
    if unreachable(exc):
        return 503, []
    if isinstance(exc, sa_exc.DataError):  # a value the database refuses: the input's fault
        return 422, [("body", "a value does not fit the database")]
    if isinstance(exc, sa_exc.IntegrityError):
        return 409, []
    return 500, []


def error_response(exc: Exception) -> flask.Response:
    status, fields = classify(exc)
    message = getattr(exc, "message", None) or getattr(exc, "description", None) or str(exc)
    if status == 503:
        flask.current_app.logger.warning("database unreachable: %s", exc)
        message = "the database is unreachable; try again shortly"
    elif status == 500:
        flask.current_app.logger.exception("incident API failure")
        message = "internal error (logged)"
    elif isinstance(exc, sa_exc.DBAPIError):
        flask.current_app.logger.warning("refused by the database: %s", exc.orig)
        message = "the database refused a value"
    if flask.request.path.startswith("/open311/"):
        text = "; ".join([message, *(f"{O311_NAMES.get(f, f)}: {r}" for f, r in fields)])
        response = o311_error(400 if status == 422 else status, text)
    else:
        body = {"status": status, "message": message,
                "fields": [{"field": f, "reason": r} for f, r in fields]}  # fmt: skip
        response = json_response({"error": body}, status)
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    response.headers.update(getattr(exc, "headers", None) or {})
    return response


def guard() -> None:
    """Before every request of the blueprint: the body limit, and no NUL byte in a parameter
    (PostgreSQL text cannot hold one; it used to be a 500 on 17 parameters)."""
    request = flask.request
    request.max_content_length = IMPORT_LIMIT if request.path.endswith("/import") else JSON_LIMIT
    for key, values in request.args.lists():
        if any("\x00" in v for v in (key, *values)):
            name = key.replace("\x00", "\\0")
            raise ApiError(400, f"query parameter {name!r} holds a NUL byte",
                           [(name, "must not contain a NUL byte")])  # fmt: skip


O311_NAMES = {"lon": "long", "category_code": "service_code", "lon/lat": "lat/long"}


def o311_error(status: int, description: str) -> flask.Response:
    return json_response([{"code": status, "description": description}], status)
