"""Routing on a real street network (OpenStreetMap, central Helsinki) against a networkx oracle.

The oracle builds its graph independently: one edge per pair of consecutive vertices of every
road (OSM semantics: ways meet at shared nodes), geodesic lengths from pyproj, nearest node by
brute force. pgRouting must give the same ETAs and the same ranking.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import shapely
from pyproj import Geod
from sqlalchemy import Connection, text

from etl import routing
from etl.load import load_file

ROADS = Path("/work/shared/data/helsinki_osm.gpkg")
GEOD = Geod(ellps="GRS80")


@pytest.fixture
def helsinki(conn: Connection) -> Connection:
    load_file(conn, "roads", ROADS, layer="roads", mapping={"code": "osm_id"})
    return conn


def _oracle_graph(conn: Connection) -> tuple[nx.Graph, set]:
    g, ends = nx.Graph(), set()
    rows = conn.execute(text("SELECT speed_kmh, ST_AsBinary(geom) AS wkb FROM roads")).all()
    for r in rows:
        xy = shapely.get_coordinates(shapely.from_wkb(bytes(r.wkb)))
        ends |= {tuple(xy[0]), tuple(xy[-1])}
        for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:], strict=True):
            if (x0, y0) == (x1, y1):
                continue
            secs = GEOD.inv(x0, y0, x1, y1)[2] / (float(r.speed_kmh) / 3.6)
            a, b = (x0, y0), (x1, y1)
            if not g.has_edge(a, b) or g[a][b]["w"] > secs:
                g.add_edge(a, b, w=secs)
    return g, ends


def _nearest(nodes: np.ndarray, lon: float, lat: float) -> tuple[tuple, float]:
    d = GEOD.inv(np.full(len(nodes), lon), np.full(len(nodes), lat), nodes[:, 0], nodes[:, 1])[2]
    i = int(np.argmin(d))
    return (nodes[i, 0], nodes[i, 1]), float(d[i])


def _oracle_etas(g: nx.Graph, ends: set, event: tuple, responders: dict) -> dict[str, float]:
    """Snap to the nearest junction or road end (a bend inside a road is no place to stop)."""
    nodes = np.array([n for n, d in g.degree if d != 2 or n in ends])
    target, t_snap = _nearest(nodes, *event)
    times = nx.single_source_dijkstra_path_length(g, target, weight="w")
    out = {}
    for code, (lon, lat) in responders.items():
        node, snap = _nearest(nodes, lon, lat)
        if node in times:
            out[code] = times[node] + (snap + t_snap) / (routing.ACCESS_KMH / 3.6)
        else:
            line = GEOD.inv(lon, lat, *event)[2]
            out[code] = line * routing.DETOUR / (routing.FALLBACK_KMH / 3.6)
    return out


def _add_responders(conn: Connection, points: dict, kind: str = "grid_team") -> None:
    for code, (lon, lat) in points.items():
        conn.execute(
            text("""INSERT INTO responders (code, name, type, status, geom)
                    VALUES (:c, :c, :t, 'available', ST_SetSRID(ST_MakePoint(:x, :y), 4490))"""),
            {"c": code, "t": kind, "x": lon, "y": lat},
        )


def test_network_is_noded_at_shared_vertices(helsinki: Connection) -> None:
    stats = routing.build_network(helsinki)
    g, ends = _oracle_graph(helsinki)
    # same junctions: the oracle's nodes of degree != 2 are all vertices of the built network
    junctions = {n for n, d in g.degree if d != 2} | (ends & set(g.nodes))
    rows = helsinki.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM road_vertices")).all()
    assert junctions == {tuple(r) for r in rows}
    assert stats.roads == helsinki.execute(text("SELECT count(*) FROM roads")).scalar()
    total = helsinki.execute(text("SELECT sum(cost) FROM road_edges")).scalar()
    assert total == pytest.approx(sum(w for *_, w in g.edges(data="w")), rel=1e-6)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ranking_matches_networkx(helsinki: Connection, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = helsinki.execute(
        text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
            "(SELECT ST_Extent(geom) e FROM roads) s"
        )  # fmt: skip
    ).one()
    pts = rng.uniform([x0, y0], [x1, y1], size=(13, 2))
    event, responders = tuple(pts[0]), {f"R{i:02d}": tuple(p) for i, p in enumerate(pts[1:])}
    _add_responders(helsinki, responders)
    ranked = routing.rank_responders(helsinki, *event, limit=20)
    expected = _oracle_etas(*_oracle_graph(helsinki), event, responders)
    assert {c.code for c in ranked} == set(responders)
    for c in ranked:
        assert c.eta_s == pytest.approx(expected[c.code], rel=1e-6, abs=1e-3), c
    order = sorted(expected, key=lambda k: (expected[k], k))
    assert [c.code for c in ranked] == order


def test_unreachable_and_busy_and_type_filter(helsinki: Connection) -> None:
    # a responder far outside the extract snaps to the network but one cut off from it
    # would fall back; here: an isolated road of its own far away
    helsinki.execute(
        text("""INSERT INTO roads (code, road_class, speed_kmh, geom) VALUES
            ('island', 'service', 20, ST_SetSRID(ST_MakeLine(ST_MakePoint(25.5, 60.5),
                                                             ST_MakePoint(25.501, 60.5)), 4490))""")
    )
    _add_responders(helsinki, {"FAR": (25.5005, 60.5), "NEAR": (24.945, 60.168)})
    _add_responders(helsinki, {"COP": (24.9451, 60.1681)}, kind="police")
    helsinki.execute(
        text("""INSERT INTO responders (code, name, type, status, geom) VALUES
            ('BUSY', 'b', 'grid_team', 'busy', ST_SetSRID(ST_MakePoint(24.945, 60.168), 4490))""")
    )
    ranked = routing.rank_responders(helsinki, 24.946, 60.168, types=["grid_team"])
    by = {c.code: c for c in ranked}
    assert set(by) == {"FAR", "NEAR"}
    assert (by["NEAR"].method, by["FAR"].method) == ("network", "straight_line")
    line = GEOD.inv(25.5005, 60.5, 24.946, 60.168)[2]
    assert by["FAR"].eta_s == pytest.approx(line * routing.DETOUR / (routing.FALLBACK_KMH / 3.6))
    assert [c.code for c in ranked] == ["NEAR", "FAR"]
