"""Travel times on the road network with pgRouting, and ranking responders for an event.

The network (``road_vertices``, ``road_edges``) is built from ``roads`` on demand: a road is cut
wherever it shares a vertex with another road (OpenStreetMap connects ways only at shared nodes,
so a bridge over a street is no junction), and every piece costs ``length / speed`` seconds, the
same both ways (emergency vehicles; one-way tags are not read). Lengths are geodesic (metres on
the ellipsoid), so no projection is needed.

Ranking: the event and each candidate are snapped to their nearest vertex; the ETA is the
``pgr_dijkstraCost`` network time plus the two snap legs at :data:`ACCESS_KMH`. Where the two
vertices are not connected (or there is no network) the ETA falls back to the straight line at
:data:`FALLBACK_KMH` times :data:`DETOUR`, and the candidate says so (``method``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, text

from etl.write import copy_frame

ACCESS_KMH = 15.0
FALLBACK_KMH = 30.0
DETOUR = 1.3
CANDIDATES = 25
"""How many responders, nearest in a straight line, are routed on the network."""
DEPARTMENT_TYPES: dict[str, tuple[str, ...]] = {
    "消防救援大队": ("fire",),
    "公安局": ("police",),
    "卫健局": ("medical",),
    "供电公司": ("power",),
    "应急管理局": ("fire", "grid_team"),
}
"""Responder types suited to a category's owning department; others get grid teams."""
DEFAULT_TYPES: tuple[str, ...] = ("grid_team",)


@dataclass(frozen=True)
class NetworkStats:
    vertices: int
    edges: int
    roads: int


@dataclass(frozen=True)
class Candidate:
    code: str
    name: str
    type: str
    eta_s: float
    distance_m: float
    method: str  # "network" or "straight_line"
    lon: float
    lat: float


def build_network(conn: Connection) -> NetworkStats:
    """(Re)build ``road_vertices`` and ``road_edges`` from ``roads`` in the caller's transaction."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('road_network'))"))
    rows = conn.execute(
        text("SELECT id, speed_kmh, ST_AsBinary(geom) AS wkb FROM roads ORDER BY id")
    ).all()
    conn.execute(text("DELETE FROM road_edges"))
    conn.execute(text("DELETE FROM road_vertices"))
    if not rows:
        return NetworkStats(0, 0, 0)
    lines = [shapely.from_wkb(bytes(r.wkb)) for r in rows]
    coords, pieces = _split_at_shared_vertices(lines)
    _write_network(conn, rows, coords, pieces)
    return NetworkStats(len(coords), len(pieces), len(rows))


def _split_at_shared_vertices(
    lines: Sequence[shapely.LineString],
) -> tuple[np.ndarray, list[tuple[int, int, int, np.ndarray]]]:
    """Vertex table and pieces (line index, source, target, coordinates) cut at junctions."""
    arrays = [np.asarray(shapely.get_coordinates(g)) for g in lines]
    every = np.concatenate(arrays)
    keys, inverse, counts = np.unique(every, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    pieces: list[tuple[int, int, int, np.ndarray]] = []
    offset = 0
    for i, xy in enumerate(arrays):
        ids = inverse[offset : offset + len(xy)]
        offset += len(xy)
        cut = [0, *[k for k in range(1, len(xy) - 1) if counts[ids[k]] > 1], len(xy) - 1]
        for a, b in zip(cut[:-1], cut[1:], strict=True):
            if ids[a] != ids[b] or b - a > 1:
                pieces.append((i, int(ids[a]), int(ids[b]), xy[a : b + 1]))
    # only piece ends are vertices: snapping to a bend in the middle of a piece would strand
    used = np.unique([v for _, s, t, _ in pieces for v in (s, t)])
    renumber = {int(old): new for new, old in enumerate(used)}
    pieces = [(i, renumber[s], renumber[t], xy) for i, s, t, xy in pieces]
    return keys[used], pieces


def _write_network(conn: Connection, rows: Sequence, coords: np.ndarray, pieces: list) -> None:
    vertices = pd.DataFrame(
        {"id": np.arange(len(coords)) + 1, "x": coords[:, 0], "y": coords[:, 1]}
    )
    copy_frame(conn, "stg_vertices", vertices)
    conn.execute(
        text("""INSERT INTO road_vertices (id, geom) SELECT id::bigint,
        ST_SetSRID(ST_MakePoint(x::float8, y::float8), 4490) FROM stg_vertices""")
    )
    edges = pd.DataFrame({
        "road_id": [rows[i].id for i, *_ in pieces],
        "speed": [float(rows[i].speed_kmh or 30) for i, *_ in pieces],
        "source": [s + 1 for _, s, _, _ in pieces],
        "target": [t + 1 for _, _, t, _ in pieces],
        "wkb": shapely.to_wkb([shapely.LineString(p) for *_, p in pieces], hex=True),
    })  # fmt: skip
    copy_frame(conn, "stg_edges", edges)
    conn.execute(
        text("""
        INSERT INTO road_edges (id, road_id, source, target, length_m, cost, reverse_cost, geom)
        SELECT row_number() OVER (), road_id::int, source::bigint, target::bigint, len, sec, sec, g
        FROM (SELECT s.*, ST_SetSRID(ST_GeomFromWKB(decode(s.wkb, 'hex')), 4490) AS g FROM stg_edges s) x
        CROSS JOIN LATERAL (SELECT ST_Length(g::geography) AS len) l
        CROSS JOIN LATERAL (SELECT l.len / (GREATEST(x.speed::float8, 1) / 3.6) AS sec) c""")
    )


def ensure_network(conn: Connection) -> None:
    """Build the network when roads exist that no edge comes from (first use, or reloaded)."""
    stale = conn.execute(
        text("""
        SELECT EXISTS (SELECT 1 FROM roads r WHERE NOT EXISTS (
                        SELECT 1 FROM road_edges e WHERE e.road_id = r.id))
            OR EXISTS (SELECT 1 FROM road_edges WHERE road_id IS NULL)""")
    ).scalar()
    if stale:
        build_network(conn)


def suitable_types(department: str | None) -> tuple[str, ...]:
    return DEPARTMENT_TYPES.get(department or "", DEFAULT_TYPES)


def rank_responders(
    conn: Connection,
    lon: float,
    lat: float,
    *,
    types: Sequence[str] | None = None,
    limit: int = 10,
) -> list[Candidate]:
    """Available responders of ``types`` (all types if None), fastest first, with ETA."""
    ensure_network(conn)
    cands = _nearest_available(conn, lon, lat, types)
    if not cands:
        return []
    target = _snap(conn, lon, lat)
    network = _network_costs(conn, [c["vid"] for c in cands], target)
    ranked = [_candidate(c, target, network) for c in cands]
    ranked.sort(key=lambda c: (c.eta_s, c.code))
    return ranked[:limit]


def _nearest_available(
    conn: Connection, lon: float, lat: float, types: Sequence[str] | None
) -> list[dict]:
    rows = conn.execute(text("""
        SELECT r.code, r.name, r.type, ST_X(r.geom) AS lon, ST_Y(r.geom) AS lat,
               ST_Distance(r.geom::geography, p.g::geography) AS line_m, v.id AS vid, v.snap_m
        FROM responders r CROSS JOIN (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4490) AS g) p
        LEFT JOIN LATERAL (
            SELECT rv.id, ST_Distance(rv.geom::geography, r.geom::geography) AS snap_m
            FROM (SELECT id, geom FROM road_vertices ORDER BY geom <-> r.geom LIMIT 8) rv
            ORDER BY 2, 1 LIMIT 1) v ON TRUE
        WHERE r.status = 'available' AND r.geom IS NOT NULL
          AND (CAST(:types AS varchar[]) IS NULL OR r.type = ANY(CAST(:types AS varchar[])))
        ORDER BY r.geom <-> p.g LIMIT :k"""),
        {"lon": lon, "lat": lat, "types": list(types) if types else None, "k": CANDIDATES},
    ).mappings().all()  # fmt: skip
    return [dict(r) for r in rows]


def _snap(conn: Connection, lon: float, lat: float) -> dict | None:
    row = conn.execute(text("""
        SELECT rv.id AS vid, ST_Distance(rv.geom::geography, p.g::geography) AS snap_m
        FROM (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4490) AS g) p,
             LATERAL (SELECT id, geom FROM road_vertices ORDER BY geom <-> p.g LIMIT 8) rv
        ORDER BY 2, 1 LIMIT 1"""), {"lon": lon, "lat": lat}).mappings().one_or_none()  # fmt: skip
    return dict(row) if row else None


def _network_costs(conn: Connection, sources: list, target: dict | None) -> dict[int, float]:
    """Network seconds from each source vertex to the target vertex (absent: no path)."""
    starts = sorted({int(s) for s in sources if s is not None})
    if target is None or not starts:
        return {}
    rows = conn.execute(text("""
        SELECT start_vid, agg_cost FROM pgr_dijkstraCost(
            'SELECT id, source, target, cost, reverse_cost FROM road_edges',
            CAST(:starts AS bigint[]), CAST(:target AS bigint), directed => false)"""),
        {"starts": starts, "target": int(target["vid"])}).all()  # fmt: skip
    costs = {int(r.start_vid): float(r.agg_cost) for r in rows}
    if int(target["vid"]) in starts:
        costs[int(target["vid"])] = 0.0
    return costs


def _candidate(c: dict, target: dict | None, network: dict[int, float]) -> Candidate:
    vid = c.get("vid")
    if target is not None and vid is not None and int(vid) in network:
        access = (float(c["snap_m"]) + float(target["snap_m"])) / (ACCESS_KMH / 3.6)
        eta, method = network[int(vid)] + access, "network"
    else:
        eta, method = float(c["line_m"]) * DETOUR / (FALLBACK_KMH / 3.6), "straight_line"
    return Candidate(c["code"], c["name"], c["type"], eta, float(c["line_m"]), method,
                     float(c["lon"]), float(c["lat"]))  # fmt: skip
