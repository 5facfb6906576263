"""The app factory: Dash Pages, a shared top bar, and extension points for Flask routes.

Pages live in ``dashboard/pages`` (one module each, ``register_page``); the top bar lists them from
``dash.page_registry``. Other modules add Flask routes by appending a ``register(server, engine,
settings)`` callable to :data:`ROUTE_REGISTRARS` or by being named in :data:`OPTIONAL_ROUTE_MODULES`
(each exposing ``register_routes``); a missing optional module is skipped, not fatal.

Nothing here touches the database at import time; callbacks reach the engine, settings and clock
through :func:`context` (stored on the Flask app by :func:`create_app`).
"""

from __future__ import annotations

import gzip
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dash
import flask
from dash import Input, Output, dcc, html
from sqlalchemy import Engine

from dashboard import admin, auth, login
from dashboard.auth import current_principal, current_scope
from dashboard.i18n import TEXT, t
from etl.accounts import Principal
from etl.queries import Scope
from etl.settings import Settings

HERE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)

RouteRegistrar = Callable[[flask.Flask, Engine, Settings], None]
ROUTE_REGISTRARS: list[RouteRegistrar] = []
"""Callables ``(server, engine, settings)`` run by :func:`create_app`; append to add routes."""

OPTIONAL_ROUTE_MODULES: list[str] = ["dashboard.tiles", "dashboard.api"]
"""Modules whose ``register_routes(server, engine, settings)`` is called when they import."""


@dataclass(frozen=True)
class AppContext:
    """What callbacks need from the outside world, kept on ``flask.current_app``."""

    engine: Engine
    settings: Settings
    clock: Callable[[], datetime]

    def now(self) -> datetime:
        return self.clock().astimezone(ZoneInfo(self.settings.timezone))

    @property
    def scope(self) -> Scope:
        """The logged-in principal's jurisdiction (nothing at all without one)."""
        return current_scope()

    @property
    def principal(self) -> Principal | None:
        return current_principal()


def context() -> AppContext:
    """The :class:`AppContext` of the app serving the current request."""
    return flask.current_app.extensions["gridgov"]


def create_app(
    settings: Settings, *, engine: Engine | None = None, clock: Callable[[], datetime] | None = None
) -> dash.Dash:
    """A ready Dash app: pages registered, routes attached, nothing loaded yet.

    ``engine`` defaults to the app role's (row-level security applies); ``clock`` (default: the
    real time) lets tests and replays look at data as of another moment.
    """
    from etl.db import get_app_engine

    engine = engine or get_app_engine(settings)
    if settings.env == "production":
        _refuse_unfit_app_role(engine)
    clock = clock or (lambda: datetime.now(ZoneInfo("UTC")))
    app = dash.Dash(
        __name__, use_pages=True, pages_folder="", assets_folder=str(HERE / "assets"),
        title=t("app.title", settings.language), suppress_callback_exceptions=True,
        update_title=None,  # type: ignore[arg-type]
    )  # fmt: skip
    # Leaflet positions every marker and label with translate3d, which makes each its own
    # compositor layer; with several hundred on a wall map, committing them held the main
    # thread ~0.3 s. Plain left/top positioning (set before Leaflet loads) keeps one layer.
    app.index_string = app.index_string.replace(
        "{%scripts%}", "<script>window.L_DISABLE_3D = true;</script>{%scripts%}"
    )
    _import_pages()
    _attach_page_callbacks(app)
    app.server.config["SECRET_KEY"] = settings.secret_key
    app.server.config["MAX_CONTENT_LENGTH"] = settings.max_upload_mb * 1024 * 1024
    app.server.extensions["gridgov"] = AppContext(engine=engine, settings=settings, clock=clock)
    app.layout = _frame
    if settings.trusted_proxy:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.server.wsgi_app = ProxyFix(app.server.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    auth.install(app.server, engine, settings, clock)
    login.install(app.server, engine, clock)
    admin.install(app.server, engine, clock)
    _answer_outages(app.server)
    _compress_responses(app.server)
    _register_routes(app.server, engine, settings)
    _register_frame_callbacks(app)
    return app


COMPRESSIBLE = (
    "application/javascript",
    "text/javascript",
    "application/json",
    "text/css",
    "text/html",
)


def _compress_responses(server: flask.Flask) -> None:
    """gzip text responses: plotly.js alone is 4.6 MB raw, about 1.4 MB compressed.

    Dash's fingerprinted bundles and assets never change under one URL, so their compressed
    bytes are kept per URL; callback responses are compressed each time.
    """
    cache: dict[str, bytes] = {}

    @server.after_request
    def gzip_response(response: flask.Response) -> flask.Response:
        accepts = "gzip" in flask.request.headers.get("Accept-Encoding", "")
        if (
            not accepts
            or response.status_code != 200
            or response.mimetype not in COMPRESSIBLE
            or "Content-Encoding" in response.headers
        ):
            return response  # fmt: skip
        static = flask.request.path.startswith(("/_dash-component-suites/", "/assets/"))
        if response.direct_passthrough:  # a file sent by send_from_directory: read it
            if not static:
                return response
            response.direct_passthrough = False
        key = flask.request.full_path
        body = cache.get(key) if static else None
        if body is None:
            raw = response.get_data()
            if len(raw) < 1024:
                return response
            body = gzip.compress(raw, compresslevel=6)
            if static:
                cache[key] = body
        response.set_data(body)
        response.headers["Content-Encoding"] = "gzip"
        response.headers["Vary"] = "Accept-Encoding"
        return response


def _refuse_unfit_app_role(engine: Engine) -> None:
    """Production: the app's database role must be bound by row-level security."""
    from etl.roles import app_role_problems
    from etl.settings import UnsafeSettingsError

    with engine.connect() as conn:
        problems = app_role_problems(conn)
    if problems:
        raise UnsafeSettingsError("the app's database role " + ", ".join(problems)
                                  + ": set GRIDGOV_APP_DATABASE_URL to a role of its own")  # fmt: skip


def _answer_outages(server: flask.Flask) -> None:
    """Database unreachable: 503 with Retry-After, as JSON, instead of a 500 with a traceback."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    @server.errorhandler(OperationalError)
    @server.errorhandler(DBAPIError)
    def unavailable(exc: Exception) -> flask.Response:
        if isinstance(exc, DBAPIError) and not (
            isinstance(exc, OperationalError) or exc.connection_invalidated
        ):
            raise exc
        log.warning("database unavailable: %s", str(exc).splitlines()[0])
        body = b'{"error": {"status": 503, "message": "the database is unavailable", "fields": []}}'
        response = flask.Response(body, status=503, mimetype="application/json")
        response.headers["Retry-After"] = "5"
        return response


def _import_pages() -> None:
    """Import every page module under its canonical name (``dashboard.pages.x``).

    Dash's own folder scan imports pages under a name inferred from the path, so a test (or a
    module) that imports ``dashboard.pages.x`` directly would register the same path twice.
    """
    for path in sorted((HERE / "pages").glob("*.py")):
        if path.name.startswith("_"):
            continue
        name = f"dashboard.pages.{path.stem}"
        module = importlib.import_module(name)
        entry = dash.page_registry.get(name)
        if entry is not None and not entry.get("supplied_layout"):
            entry["layout"] = module.layout  # what Dash's folder scan would have done


_PAGE_CALLBACKS: dict[str, list] = {"map": [], "list": [], "scripts": []}


def _attach_page_callbacks(app: dash.Dash) -> None:
    """Give this app the callbacks the page modules registered with ``dash.callback``.

    Dash hands globally registered callbacks to the first app that serves a request and then
    forgets them; keeping our own copy lets every app made by the factory (one per test, or
    several in one process) get all of them.
    """
    from dash import _callback

    _PAGE_CALLBACKS["map"].extend(_callback.GLOBAL_CALLBACK_MAP.items())
    _PAGE_CALLBACKS["list"].extend(_callback.GLOBAL_CALLBACK_LIST)
    _PAGE_CALLBACKS["scripts"].extend(_callback.GLOBAL_INLINE_SCRIPTS)
    _callback.GLOBAL_CALLBACK_MAP.clear()
    _callback.GLOBAL_CALLBACK_LIST.clear()
    _callback.GLOBAL_INLINE_SCRIPTS.clear()
    app.callback_map.update(dict(_PAGE_CALLBACKS["map"]))
    app._callback_list.extend(_PAGE_CALLBACKS["list"])
    app._inline_scripts.extend(_PAGE_CALLBACKS["scripts"])


def _register_routes(server: flask.Flask, engine: Engine, settings: Settings) -> None:
    registrars = list(ROUTE_REGISTRARS)
    for name in OPTIONAL_ROUTE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but one of its imports is broken: say so
                raise
            log.info("optional route module %s not present", name)
            continue
        registrars.append(module.register_routes)
    for register in registrars:
        register(server, engine, settings)


def _both(texts: tuple[str, str]) -> list[html.Span]:
    """Both languages; the frame's class shows the one the URL asks for."""
    return [html.Span(texts[0], className="lang-zh"), html.Span(texts[1], className="lang-en")]


def _nav_label(page: dict) -> list[html.Span]:
    key = page.get("i18n_key")
    return _both(TEXT[key] if key in TEXT else (page["name"], page["name"]))


def _user_box() -> html.Div:
    """Who is logged in, their role and unit, the password form and logout (a plain POST)."""
    who = current_principal()
    if who is None:
        return html.Div()
    links = (
        [html.A("管理 Admin", href="/admin", className="nav-link")] if who.role == "admin" else []
    )
    return html.Div(className="userbox", children=[
        *links,
        html.A([f"{who.name} · ", *_both(TEXT["role." + who.role.value])], href="/account/password",
               className="user-name", title=f"{who.role.value} @ {who.unit_code}"),
        html.Form(method="POST", action="/logout", className="logout", children=[
            dcc.Input(type="hidden", name="csrf_token", value=auth.csrf_token()),
            html.Button(_both(("退出", "Log out")),
                        type="submit", className="logout-btn"),
        ]),
    ])  # fmt: skip


def _frame() -> html.Div:
    """The shared frame: top bar built from the page registry, then the page container."""
    pages = sorted(dash.page_registry.values(), key=lambda p: (p.get("order") or 0, p["path"]))
    pages = [p for p in pages if auth.may_open(p["path"])]
    return html.Div(id="frame", className="frame lang-is-zh", children=[
        dcc.Location(id="frame-url", refresh=False),
        html.Header(className="topbar", children=[
            html.Div(className="brand", children=_both(TEXT["app.title"])),
            html.Nav(className="nav", children=[
                dcc.Link(_nav_label(p), href=p["relative_path"], className="nav-link")
                for p in pages
            ]),
            html.Div(id="frame-slot", className="topbar-slot"),
            _user_box(),
        ]),
        html.Main(dash.page_container, className="page"),
    ])  # fmt: skip


def _register_frame_callbacks(app: dash.Dash) -> None:
    # The frame shows both languages' nav labels; one CSS class picks the one the URL asks for.
    app.clientside_callback(
        """function(search){
            const lang = new URLSearchParams(search || '').get('lang') === 'en' ? 'en' : 'zh';
            return 'frame lang-is-' + lang;
        }""",
        Output("frame", "className"),
        Input("frame-url", "search"),
    )
