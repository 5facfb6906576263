"""Reads of the grid planner: a unit's grids, buildings and roads, saved plans, comparisons.

Levels are data, but the planner works on three of them by key: ``community`` (the parent a
grid never crosses), ``grid`` and ``microgrid``. Geometries come back in EPSG:4490.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely
from sqlalchemy import Connection, text

from etl.queries import Scope

SRID = 4490
PLANNABLE_LEVELS = ("county", "township", "community")


def _frame(rows: Sequence[Any], columns: list[str], index: str | None = None) -> gpd.GeoDataFrame:
    data = {c: [getattr(r, c) for r in rows] for c in columns}
    geoms = [shapely.from_wkb(bytes(r.wkb)) for r in rows]
    frame = gpd.GeoDataFrame(data, geometry=geoms, crs=SRID)
    return frame.set_index(index) if index else frame


def planning_units(conn: Connection, scope: Scope) -> list[dict[str, Any]]:
    """Current counties, townships and communities in scope, in code order (for a picker)."""
    sql = f"""SELECT code, name, level, depth FROM units u
              WHERE valid_to IS NULL AND level = ANY(:levels) AND {scope.sql("u")}
              ORDER BY code"""
    rows = conn.execute(text(sql), {"levels": list(PLANNABLE_LEVELS), **scope.params()})
    return [dict(r._mapping) for r in rows]


def unit_info(conn: Connection, scope: Scope, code: str) -> dict[str, Any] | None:
    """One current unit (id, code, name, level, kind, depth, unit_path, geometry) or None."""
    sql = f"""SELECT id, code, name, level, kind, depth, unit_path, parent_code,
                     ST_AsBinary(geom) AS wkb FROM units u
              WHERE valid_to IS NULL AND code = :code AND {scope.sql("u")}"""
    row = conn.execute(text(sql), {"code": code, **scope.params()}).first()
    if row is None:
        return None
    info = {k: v for k, v in row._mapping.items() if k != "wkb"}
    info["geometry"] = shapely.from_wkb(bytes(row.wkb))
    return info


def area_units(conn: Connection, scope: Scope, code: str, level: str) -> gpd.GeoDataFrame:
    """Current units of ``level`` inside the unit ``code`` (itself included), indexed by code."""
    sql = f"""SELECT id, code, name, kind, depth, parent_code, unit_path, households, residents,
                     buildings, valid_from, ST_AsBinary(geom) AS wkb FROM units u
              WHERE valid_to IS NULL AND level = :level AND :code = ANY(unit_path)
                AND {scope.sql("u")} ORDER BY code"""
    rows = conn.execute(text(sql), {"code": code, "level": level, **scope.params()}).all()
    cols = ["id", "code", "name", "kind", "depth", "parent_code", "unit_path", "households"]
    return _frame(rows, cols + ["residents", "buildings", "valid_from"], index="code")


def area_buildings(conn: Connection, scope: Scope, code: str) -> gpd.GeoDataFrame:
    """Buildings of the unit ``code`` with their current community, grid and micro-grid codes
    (None where the building has none), indexed by building id."""
    sql = f"""
        SELECT b.id, b.code, b.address, b.households, b.residents, ST_AsBinary(b.geom) AS wkb,
               (SELECT u.code FROM units u WHERE u.code = ANY(b.unit_path)
                  AND u.valid_to IS NULL AND u.level = 'community' LIMIT 1) AS community,
               (SELECT u.code FROM units u WHERE u.code = ANY(b.unit_path)
                  AND u.valid_to IS NULL AND u.level = 'grid' LIMIT 1) AS grid,
               (SELECT u.code FROM units u WHERE u.code = ANY(b.unit_path)
                  AND u.valid_to IS NULL AND u.level = 'microgrid' LIMIT 1) AS microgrid
        FROM buildings b
        WHERE b.unit_path @> ARRAY[CAST(:code AS varchar)] AND {scope.sql("b")}
        ORDER BY b.id"""
    rows = conn.execute(text(sql), {"code": code, **scope.params()}).all()
    cols = ["id", "code", "address", "households", "residents", "community", "grid", "microgrid"]
    return _frame(rows, cols, index="id")


def area_roads(conn: Connection, scope: Scope, code: str) -> gpd.GeoDataFrame:
    """Road lines touching the unit ``code`` (roads belong to no unit, so scope is the unit's)."""
    sql = f"""SELECT r.id, r.name, r.road_class, ST_AsBinary(r.geom) AS wkb FROM roads r
              JOIN units u ON u.code = :code AND u.valid_to IS NULL AND {scope.sql("u")}
              WHERE ST_Intersects(r.geom, u.geom) ORDER BY r.id"""
    rows = conn.execute(text(sql), {"code": code, **scope.params()}).all()
    return _frame(rows, ["id", "name", "road_class"], index="id")


def codes_ever_used(conn: Connection, scope: Scope, parent_codes: list[str]) -> set[str]:
    """Codes of every unit, current or retired, whose parent is one of ``parent_codes``."""
    sql = f"SELECT DISTINCT code FROM units u WHERE parent_code = ANY(:p) AND {scope.sql('u')}"
    return set(conn.execute(text(sql), {"p": parent_codes, **scope.params()}).scalars())


# --- saved plans ---------------------------------------------------------------------------------


def list_plans(
    conn: Connection, scope: Scope, unit_code: str | None = None
) -> list[dict[str, Any]]:
    """Saved plans (newest first), of one unit when ``unit_code`` is given."""
    where = "AND p.unit_code = :u" if unit_code else ""
    sql = f"""SELECT p.id, p.name, p.unit_code, p.status, p.band_low, p.band_high, p.full_redraw,
                     p.seed, p.created_by, p.created_at, p.approved_at, p.effective_date, p.metrics,
                     (SELECT count(*) FROM plan_grids g
                       WHERE g.plan_id = p.id AND g.level = 'grid') AS n_grids
              FROM plans p WHERE {scope.sql("p")} {where} ORDER BY p.created_at DESC, p.id DESC"""
    rows = conn.execute(text(sql), {"u": unit_code, **scope.params()})
    return [dict(r._mapping) for r in rows]


def plan_meta(conn: Connection, scope: Scope, plan_id: int) -> dict[str, Any] | None:
    sql = f"SELECT * FROM plans p WHERE p.id = :id AND {scope.sql('p')}"
    row = conn.execute(text(sql), {"id": plan_id, **scope.params()}).first()
    return dict(row._mapping) if row else None


def plan_grids(
    conn: Connection, scope: Scope, plan_id: int, *, level: str = "grid"
) -> gpd.GeoDataFrame:
    """The grids (or micro-grids) of a plan, indexed by code."""
    sql = f"""SELECT g.code, g.parent_code, g.name, g.label, g.households, g.residents,
                     g.buildings, g.status, g.polsby_popper, g.kept, g.locked,
                     ST_AsBinary(g.geom) AS wkb
              FROM plan_grids g JOIN plans p ON p.id = g.plan_id
              WHERE g.plan_id = :id AND g.level = :level AND {scope.sql("p")} ORDER BY g.code"""
    rows = conn.execute(text(sql), {"id": plan_id, "level": level, **scope.params()}).all()
    cols = ["code", "parent_code", "name", "label", "households", "residents", "buildings"]
    return _frame(rows, cols + ["status", "polsby_popper", "kept", "locked"], index="code")


def plan_assignments(conn: Connection, scope: Scope, plan_id: int) -> pd.DataFrame:
    """Building → grid / micro-grid of a plan with the building's code, address and tallies."""
    sql = f"""SELECT a.building_id, b.code AS building_code, b.address, b.households,
                     b.residents, a.previous_code, a.grid_code, a.microgrid_code
              FROM plan_assignments a JOIN plans p ON p.id = a.plan_id
              JOIN buildings b ON b.id = a.building_id
              WHERE a.plan_id = :id AND {scope.sql("p")} ORDER BY b.code"""
    rows = conn.execute(text(sql), {"id": plan_id, **scope.params()}).all()
    cols = ["building_id", "building_code", "address", "households", "residents"]
    cols += ["previous_code", "grid_code", "microgrid_code"]
    return pd.DataFrame([tuple(r) for r in rows], columns=cols)


@dataclass(frozen=True)
class PlanComparison:
    """``buildings``: one row per building in either plan (grid in A, grid in B, moved);
    ``grids``: households per grid code in A and in B; ``summary``: the headline counts."""

    buildings: pd.DataFrame
    grids: pd.DataFrame
    summary: dict[str, Any]


def compare_plans(conn: Connection, scope: Scope, a: int, b: int) -> PlanComparison:
    """Which buildings and households change grid between plans ``a`` and ``b``."""
    left = plan_assignments(conn, scope, a).set_index("building_id")
    right = plan_assignments(conn, scope, b).set_index("building_id")
    both = left[["building_code", "households"]].combine_first(
        right[["building_code", "households"]]
    )
    both["grid_a"] = left["grid_code"].reindex(both.index)
    both["grid_b"] = right["grid_code"].reindex(both.index)
    both["moved"] = both["grid_a"].ne(both["grid_b"])
    grids = pd.concat(
        {
            "households_a": both.groupby("grid_a")["households"].sum(),
            "households_b": both.groupby("grid_b")["households"].sum(),
        },
        axis=1,
    ).fillna(0)
    ga, gb = set(left["grid_code"]), set(right["grid_code"])
    summary = {
        "buildings_moved": int(both["moved"].sum()),
        "households_moved": int(both.loc[both["moved"], "households"].sum()),
        "grids_a": len(ga),
        "grids_b": len(gb),
        "only_in_a": sorted(ga - gb),
        "only_in_b": sorted(gb - ga),
    }
    return PlanComparison(both.reset_index(), grids.rename_axis("grid_code"), summary)
