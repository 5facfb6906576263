"""The app factory: Dash Pages, a shared top bar, and extension points for Flask routes.

Pages live in ``dashboard/pages`` (one module each, ``register_page``); the top bar lists them from
``dash.page_registry``. Other modules add Flask routes by appending a ``register(server, engine,
settings)`` callable to :data:`ROUTE_REGISTRARS` or by being named in :data:`OPTIONAL_ROUTE_MODULES`
(each exposing ``register_routes``); a missing optional module is skipped, not fatal.

Nothing here touches the database at import time; callbacks reach the engine, settings and clock
through :func:`context` (stored on the Flask app by :func:`create_app`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dash
import flask
from dash import Input, Output, dcc, html
from sqlalchemy import Engine

from dashboard.i18n import TEXT, t
from etl.queries import WHOLE_TERRITORY, Scope
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
    scope: Scope = field(default=WHOLE_TERRITORY)

    def now(self) -> datetime:
        return self.clock().astimezone(ZoneInfo(self.settings.timezone))


def context() -> AppContext:
    """The :class:`AppContext` of the app serving the current request."""
    return flask.current_app.extensions["gridgov"]


def create_app(
    settings: Settings, *, engine: Engine | None = None, clock: Callable[[], datetime] | None = None
) -> dash.Dash:
    """A ready Dash app: pages registered, routes attached, nothing loaded yet.

    ``clock`` (default: the real time) lets tests and replays look at data as of another moment.
    """
    from etl.db import get_engine

    engine = engine or get_engine(settings)
    app = dash.Dash(
        __name__, use_pages=True, pages_folder=str(HERE / "pages"), assets_folder=str(HERE / "assets"),
        title=t("app.title", settings.language), suppress_callback_exceptions=True,
        update_title=None,  # type: ignore[arg-type]
    )  # fmt: skip
    app.server.config["SECRET_KEY"] = settings.secret_key
    app.server.extensions["gridgov"] = AppContext(
        engine=engine, settings=settings, clock=clock or (lambda: datetime.now(ZoneInfo("UTC")))
    )
    app.layout = _frame
    _register_routes(app.server, engine, settings)
    _register_frame_callbacks(app)
    return app


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


def _nav_label(page: dict) -> list[html.Span]:
    key = page.get("i18n_key")
    zh, en = TEXT[key] if key in TEXT else (page["name"], page["name"])
    return [html.Span(zh, className="lang-zh"), html.Span(en, className="lang-en")]


def _frame() -> html.Div:
    """The shared frame: top bar built from the page registry, then the page container."""
    pages = sorted(dash.page_registry.values(), key=lambda p: (p.get("order") or 0, p["path"]))
    zh, en = TEXT["app.title"]
    return html.Div(id="frame", className="frame lang-is-zh", children=[
        dcc.Location(id="frame-url", refresh=False),
        html.Header(className="topbar", children=[
            html.Div(className="brand", children=[html.Span(zh, className="lang-zh"),
                                                  html.Span(en, className="lang-en")]),
            html.Nav(className="nav", children=[
                dcc.Link(_nav_label(p), href=p["relative_path"], className="nav-link")
                for p in pages
            ]),
            html.Div(id="frame-slot", className="topbar-slot"),
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
