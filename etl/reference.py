"""Reference data a load validates against, read inside the load's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import geopandas as gpd
import shapely
from sqlalchemy import Connection, text


@dataclass
class Reference:
    conn: Connection

    @cached_property
    def levels(self) -> set[str]:
        return set(self.conn.execute(text("SELECT key FROM levels")).scalars())

    @cached_property
    def unit_codes(self) -> set[str]:
        sql = "SELECT code FROM units WHERE valid_to IS NULL"
        return set(self.conn.execute(text(sql)).scalars())

    @cached_property
    def categories(self) -> dict[str, tuple[int, bool]]:
        rows = self.conn.execute(
            text("SELECT code, default_priority, emergency FROM event_categories")
        )
        return {code: (prio, emergency) for code, prio, emergency in rows}

    @cached_property
    def staff_codes(self) -> set[str]:
        return set(self.conn.execute(text("SELECT code FROM staff")).scalars())

    def has_root(self) -> bool:
        sql = "SELECT 1 FROM units WHERE parent_id IS NULL AND valid_to IS NULL LIMIT 1"
        return self.conn.execute(text(sql)).first() is not None

    @cached_property
    def territory(self) -> shapely.Geometry | None:
        """Union of the root units (None when nothing is loaded yet)."""
        sql = "SELECT ST_AsBinary(ST_Union(geom)) FROM units WHERE parent_id IS NULL AND valid_to IS NULL"
        wkb = self.conn.execute(text(sql)).scalar()
        if wkb is None:
            return None
        geom = shapely.from_wkb(bytes(wkb))
        shapely.prepare(geom)
        return geom

    def unit_geometries(self, codes: set[str]) -> dict[str, shapely.Geometry]:
        if not codes:
            return {}
        sql = text(
            "SELECT code, ST_AsBinary(geom) FROM units WHERE valid_to IS NULL AND code = ANY(:codes)"
        )
        rows = self.conn.execute(sql, {"codes": sorted(codes)})
        return {code: shapely.from_wkb(bytes(wkb)) for code, wkb in rows}


def leaf_units(conn: Connection) -> gpd.GeoDataFrame:
    """Current units without current children, sorted by code (the tie-break order)."""
    sql = """
        SELECT u.id, u.code, u.unit_path, ST_AsBinary(u.geom) AS wkb FROM units u
        WHERE u.valid_to IS NULL AND NOT EXISTS (
            SELECT 1 FROM units c WHERE c.parent_id = u.id AND c.valid_to IS NULL)
        ORDER BY u.code
    """
    rows = conn.execute(text(sql)).all()
    geoms = shapely.from_wkb([bytes(r.wkb) for r in rows]) if rows else []
    return gpd.GeoDataFrame(
        {
            "id": [r.id for r in rows],
            "code": [r.code for r in rows],
            "unit_path": [r.unit_path for r in rows],
        },
        geometry=geoms,
        crs=4490,
    )
