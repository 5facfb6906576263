"""Flask routes serving vector tiles straight from PostGIS (``ST_AsMVT`` in etl.queries.screen).

A tile holds only the buildings of the caller's jurisdiction (its scope and row-level security),
so it is cached privately by the browser, never by a shared proxy.
"""

from __future__ import annotations

import flask
from sqlalchemy import Engine

from dashboard.auth import current_scope
from etl.queries.screen import building_tile
from etl.settings import Settings

MAX_ZOOM = 22
MIN_BUILDING_ZOOM = 13
"""Below this zoom a tile would hold too many buildings to be useful; the route answers empty."""


def register_routes(server: flask.Flask, engine: Engine, settings: Settings) -> None:
    @server.get("/tiles/buildings/<int:z>/<int:x>/<int:y>.pbf")
    def buildings_tile(z: int, x: int, y: int) -> flask.Response:
        if not (0 <= z <= MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z):
            flask.abort(404)
        body = (
            b"" if z < MIN_BUILDING_ZOOM else building_tile(engine, current_scope(), z=z, x=x, y=y)
        )
        response = flask.Response(body, mimetype="application/vnd.mapbox-vector-tile")
        response.headers["Cache-Control"] = "private, max-age=300"
        return response
