"""Who is calling, and may they: every request passes here before any page, callback or route.

* A user logs in (``dashboard.login``) and gets a signed session cookie (HttpOnly, SameSite=Lax,
  Secure in production) holding their id and session epoch; a machine client sends
  ``Authorization: Bearer ggt_…``. Anything else is anonymous: it gets the login page, Open311
  service discovery, and 401/redirects for the rest.
* :data:`ROUTES` says which permission (``etl.access.Perm``) each URL rule needs, and
  :data:`CALLBACK_PAGES` which one each page's Dash callbacks need; a rule or callback missing
  from them is refused (403), so a new route cannot go out unguarded.
* The principal's unit becomes the request's database scope (``etl.db.acting_as``): PostgreSQL's
  row-level security then shows only that unit and what lies below it, whatever the page code
  forgets.
* State-changing requests authenticated by cookie must come from our own origin and carry the
  session's CSRF token (``X-CSRFToken``, which Dash's renderer sends from the ``_csrf_token``
  cookie, or a ``csrf_token`` form field).
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable
from contextvars import Token
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import flask
import orjson
from sqlalchemy import Engine
from werkzeug.wrappers import Response as WerkzeugResponse

from etl import accounts
from etl.access import Perm, allowed
from etl.accounts import Principal
from etl.db import DbScope, _db_scope, transaction
from etl.queries import Scope
from etl.settings import Settings

PUBLIC = "public"  # anyone, logged in or not
ANY = "any"  # any logged-in user or token
Need = Perm | str

# URL rule -> {method: permission}; "*" applies to every method. One entry per rule of the app.
# fmt: off
ROUTES: dict[str, dict[str, Need]] = {
    "/login": {"*": PUBLIC},
    "/logout": {"*": ANY},
    "/account/password": {"*": ANY},
    "/open311/v2/discovery.json": {"*": PUBLIC},
    "/open311/v2/services.json": {"*": ANY},
    "/open311/v2/services/<service_code>.json": {"*": ANY},
    "/open311/v2/requests.json": {"GET": Perm.EVENTS_READ, "POST": Perm.EVENTS_REPORT},
    "/open311/v2/requests/<rid>.json": {"*": Perm.EVENTS_READ},
    "/api/v1/openapi.json": {"*": ANY},
    "/api/v1/categories": {"*": ANY},
    "/api/v1/workflow": {"*": ANY},
    "/api/v1/events": {"GET": Perm.EVENTS_READ, "POST": Perm.EVENTS_REPORT},
    "/api/v1/events/import": {"*": Perm.EVENTS_IMPORT},
    "/api/v1/events/<code>": {"*": Perm.EVENTS_READ},
    "/api/v1/events/<code>/actions": {"*": Perm.EVENTS_ACT},
    "/api/v1/events/<code>/candidates": {"*": Perm.EVENTS_DISPATCH},
    "/api/v1/events/<code>/dispatch": {"*": Perm.EVENTS_DISPATCH},
    "/api/v1/responders": {"*": Perm.RESPONDERS_READ},
    "/api/v1/responders/<code>/positions": {"*": Perm.RESPONDERS_TRACK},
    "/api/v1/kpis": {"*": Perm.KPIS},
    # the API's own 404/405/OPTIONS answers for unknown paths under its prefixes (no data)
    "/api/v1/": {"*": ANY},
    "/api/v1/<path:rest>": {"*": ANY},
    "/open311/v2/": {"*": ANY},
    "/open311/v2/<path:rest>": {"*": ANY},
    "/tiles/buildings/<int:z>/<int:x>/<int:y>.pbf": {"*": Perm.SCREEN},
    "/admin": {"*": Perm.ADMIN},
    "/admin/users": {"*": Perm.ADMIN},
    "/admin/tokens": {"*": Perm.ADMIN},
    "/admin/audit": {"*": Perm.ADMIN},
    # Dash's own routes: the page shell, scripts and the callback endpoint (checked per page)
    "/_dash-layout": {"*": ANY},
    "/_dash-dependencies": {"*": ANY},
    "/_dash-update-component": {"*": ANY},
    "/_dash-component-suites/<string:package_name>/<path:fingerprinted_path>": {"*": ANY},
    "/_reload-hash": {"*": ANY},
    "/_favicon.ico": {"*": ANY},
    "/assets/<path:filename>": {"*": ANY},
    "/static/<path:filename>": {"*": ANY},
    "/": {"*": ANY},
    "/<path:path>": {"*": ANY},
}
# the pages Dash serves under "/" and "/<path:path>", by path
PAGES: dict[str, Perm] = {
    "/": Perm.SCREEN,
    "/desk": Perm.EVENTS_READ,
    "/planner": Perm.PLANS_READ,
    "/reports": Perm.REPORTS,
}
# Dash callbacks, by the page prefix of their first output's id
CALLBACK_PAGES: dict[str, Perm | str] = {
    "frame": ANY,
    "cmd": Perm.SCREEN,
    "desk": Perm.EVENTS_READ,
    "planner": Perm.PLANS_READ,
    "reports": Perm.REPORTS,
}
# callbacks that change or export something, by their first output: they need more than reading
CALLBACK_WRITES: dict[str, Perm] = {
    "desk-msg.children": Perm.EVENTS_ACT,
    "desk-new-msg.children": Perm.EVENTS_REPORT,
    "planner-work.data": Perm.PLANS_READ,  # propose and move blocks: nothing saved
    "planner-message.children": Perm.PLANS_WRITE,  # save (approve also needs plans.approve)
    "planner-download.data": Perm.EXPORT,
    "reports-download.data": Perm.EXPORT,
}
# fmt: on
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_COOKIE = "_csrf_token"
CSRF_HEADER = "X-CSRFToken"


class Denied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def current_principal() -> Principal | None:
    return flask.g.get("principal") if flask.has_app_context() else None


def current_scope() -> Scope:
    """The request's jurisdiction for ``etl.queries``: the principal's unit and all below it.

    Without a principal it names no unit at all (``"-"``), so even the owner's engine, which
    bypasses row-level security, returns nothing.
    """
    who = current_principal()
    if who is None:
        return Scope(user="anonymous", unit_codes=("-",))
    return Scope(user=who.name, unit_codes=(who.unit_code,))


def may(perm: Perm) -> bool:
    who = current_principal()
    return who is not None and allowed(who.role, perm)


def narrow_to(unit_code: str) -> None:
    """For the rest of this request, let the database scope be ``unit_code`` alone: a unit the
    caller has just been shown (so inside their jurisdiction) and is looking at.

    PostgreSQL applies a query's own conditions (``unit_path @> {township}``) only after the
    row-level-security policy unless they are leakproof, so a county commander's drill-down
    scanned the whole county through the policy; a policy of the viewed unit uses its index.
    """
    who = current_principal()
    if who is not None and flask.g.get("scope_token") is not None:
        _db_scope.set(DbScope((unit_code,), who.role.value))


def may_open(path: str) -> bool:
    """Whether the current principal may open the page at ``path`` (the nav shows no others)."""
    need = PAGES.get(path)
    who = current_principal()
    return who is not None and (need is None or allowed(who.role, need))


def csrf_token() -> str:
    """The session's CSRF token (made on first use)."""
    token = flask.session.get("csrf")
    if not token:
        token = flask.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def install(
    server: flask.Flask, engine: Engine, settings: Settings, clock: Callable[[], datetime]
) -> None:
    """Guard every request of ``server``; add security headers to every response."""
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.env == "production",
        SESSION_COOKIE_NAME="gridgov_session",
        PERMANENT_SESSION_LIFETIME=12 * 3600,
    )

    @server.before_request
    def guard() -> flask.Response | WerkzeugResponse | None:
        try:
            _guard(engine, settings, clock)
        except Denied as exc:
            return _refusal(exc)
        return None

    @server.teardown_request
    def release(_exc: BaseException | None) -> None:
        token: Token | None = flask.g.pop("scope_token", None)
        if token is not None:
            _db_scope.reset(token)

    @server.after_request
    def headers(response: flask.Response) -> flask.Response:
        return _security_headers(response, settings)


def _guard(engine: Engine, settings: Settings, clock: Callable[[], datetime]) -> None:
    request = flask.request
    need = _route_need(request)
    who, by_cookie = _authenticate(engine, clock)
    flask.g.principal = who
    if need == PUBLIC:
        if request.method in UNSAFE_METHODS and request.path == "/login":
            _check_csrf()
        return
    if who is None:
        raise Denied(401, "log in first")
    if by_cookie and request.method in UNSAFE_METHODS:
        _check_csrf()
    if who.must_change_password and request.path not in ("/account/password", "/logout"):
        raise Denied(403, "change your password first")
    if need != ANY and not allowed(who.role, Perm(need)):
        raise Denied(403, f"role {who.role.value} may not do {need}")
    _check_page_or_callback(who)
    flask.g.scope_token = _db_scope.set(DbScope((who.unit_code,), who.role.value))


def _route_need(request: flask.Request) -> Need:
    rule = request.url_rule.rule if request.url_rule is not None else None
    if rule is None:  # 404/405 follow: answer them only to someone logged in
        return ANY
    needs = ROUTES.get(rule)
    if needs is None:
        raise Denied(403, f"route {rule} has no entry in the permission table")
    need = needs.get(request.method, needs.get("*"))
    if need is None:
        raise Denied(405, f"{request.method} is not allowed on {rule}")
    return need


def _authenticate(engine: Engine, clock: Callable[[], datetime]) -> tuple[Principal | None, bool]:
    """(principal, came by cookie). A bearer header wins over a cookie; a bad one is refused."""
    header = flask.request.headers.get("Authorization", "")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Denied(401, "Authorization must be 'Bearer <token>'")
        with transaction(engine) as conn:
            who = accounts.token_principal(conn, secret.strip(), now=clock())
        if who is None:
            raise Denied(401, "unknown or revoked token")
        return who, False
    uid, epoch = flask.session.get("uid"), flask.session.get("epoch")
    if not isinstance(uid, int) or not isinstance(epoch, int):
        return None, False
    with engine.connect() as conn:
        who = accounts.session_user(conn, uid, epoch)
    if who is None:
        flask.session.clear()
    return who, who is not None


def _same_origin(value: str) -> bool:
    parts = urlsplit(value)
    return f"{parts.scheme}://{parts.netloc}" == flask.request.host_url.rstrip("/")


def _check_csrf() -> None:
    request = flask.request
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin or not _same_origin(origin):
        raise Denied(403, "cross-origin request refused")
    sent = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token", "")
    expected = flask.session.get("csrf", "")
    if not expected or not hmac.compare_digest(str(sent), str(expected)):
        raise Denied(403, "missing or wrong CSRF token: reload the page")


def _check_page_or_callback(who: Principal) -> None:
    request = flask.request
    rule = request.url_rule.rule if request.url_rule is not None else ""
    if rule in ("/", "/<path:path>"):
        need = PAGES.get(_page_path(request.path))
        if need is None:
            return  # Dash answers its own "not found" page
        if not allowed(who.role, need):
            raise Denied(403, f"role {who.role.value} may not open {request.path}")
    elif rule == "/_dash-update-component":
        need_cb = _callback_need(request.get_data(cache=True))
        if need_cb != ANY and not allowed(who.role, Perm(need_cb)):
            raise Denied(403, f"role {who.role.value} may not do {need_cb}")


def _callback_need(body: bytes) -> Need:
    try:
        payload = orjson.loads(body)
        output = str(payload.get("output", ""))
    except (orjson.JSONDecodeError, AttributeError):
        raise Denied(400, "a Dash callback body must be a JSON object") from None
    first = output.lstrip(".").split("...")[0].split("@")[0]
    if first == "_pages_content.children":  # Dash Pages renders the layout of a path
        return _page_need(payload)
    if first in CALLBACK_WRITES:
        return CALLBACK_WRITES[first]
    if first.startswith("{"):  # a pattern-matching id: its "type" carries the page prefix
        try:
            first = str(orjson.loads(first[: first.rindex("}") + 1]).get("type", ""))
        except (orjson.JSONDecodeError, ValueError, AttributeError):
            raise Denied(400, "unreadable callback output") from None
    match = re.match(r"[A-Za-z0-9_]+", first)
    need = CALLBACK_PAGES.get(match[0] if match else "")
    if need is None:
        raise Denied(403, f"callback {first!r} has no entry in the permission table")
    return need


def _page_need(payload: dict[str, Any]) -> Need:
    inputs = payload.get("inputs") or []
    paths = [
        i.get("value") for i in inputs if isinstance(i, dict) and i.get("property") == "pathname"
    ]
    path = str(paths[0]) if paths and paths[0] else "/"
    return PAGES.get(_page_path(path), ANY)


def _page_path(path: str) -> str:
    """The page a URL path belongs to (``/desk/x`` → ``/desk``), as keyed in :data:`PAGES`."""
    first = path.strip("/").split("/")[0].lower()
    return "/" + first if first else "/"


def _wants_json(request: flask.Request) -> bool:
    path = request.path
    return (
        path.startswith(("/api/", "/open311/", "/tiles/", "/_dash-"))
        or request.headers.get("Authorization") is not None
        or request.accept_mimetypes.best == "application/json"
    )


def _refusal(exc: Denied) -> flask.Response | WerkzeugResponse:
    request = flask.request
    if exc.status == 401 and not _wants_json(request):
        target = request.full_path.rstrip("?")
        return flask.redirect(flask.url_for("login.login", next=target))
    if (
        exc.status == 403
        and exc.message == "change your password first"
        and not _wants_json(request)
    ):
        return flask.redirect("/account/password")
    body: dict[str, Any] = {"error": {"status": exc.status, "message": exc.message, "fields": []}}
    response = flask.Response(orjson.dumps(body), status=exc.status, mimetype="application/json")
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="gridgov"'
    return response


def _security_headers(response: flask.Response, settings: Settings) -> flask.Response:
    request = flask.request
    framers = " ".join(settings.wall_frame_origins) if request.args.get("wall") == "1" else ""
    tiles = _origin_of(settings.tile_url) if settings.tile_url else ""
    h = response.headers
    h["Content-Security-Policy"] = (
        "default-src 'self'; "
        # Dash's renderer starts from an inline script and runs clientside callbacks with eval
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data: blob: {tiles}; connect-src 'self'; worker-src 'self' blob:; "
        "font-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
        f"frame-ancestors {framers or chr(39) + 'none' + chr(39)}"
    )
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "same-origin"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(self)"
    if not framers:
        h["X-Frame-Options"] = "DENY"
    if settings.env == "production":
        h["Strict-Transport-Security"] = "max-age=31536000"
    if not request.path.startswith(("/assets/", "/_dash-component-suites/")):
        h["Cache-Control"] = "no-store"
    who = current_principal()
    if (
        who is not None
        and who.kind == "user"
        and flask.request.cookies.get(CSRF_COOKIE) != flask.session.get("csrf")
    ):
        response.set_cookie(CSRF_COOKIE, csrf_token(), samesite="Strict", httponly=False,
                            secure=settings.env == "production")  # fmt: skip
    return response


def _origin_of(url: str) -> str:
    parts = urlsplit(
        url.replace("{s}", "a").replace("{z}", "0").replace("{x}", "0").replace("{y}", "0")
    )
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""
