"""``python -m etl check``: topology and completeness of what is loaded."""

from __future__ import annotations

import argparse
import json

from sqlalchemy import Connection, text

from etl.settings import Settings, get_settings

MIN_AREA_M2 = 1.0

_OVERLAPS = """
    SELECT a.code, b.code, ST_Area(ST_Intersection(a.geom, b.geom)::geography) AS m2
    FROM units a JOIN units b ON a.parent_id = b.parent_id AND a.id < b.id
      AND a.valid_to IS NULL AND b.valid_to IS NULL AND ST_Intersects(a.geom, b.geom)
    WHERE ST_Area(ST_Intersection(a.geom, b.geom)::geography) > :min_m2 ORDER BY m2 DESC"""
_GAPS = """
    SELECT p.code, ST_Area(ST_Difference(p.geom, ST_Union(c.geom))::geography) AS m2
    FROM units p JOIN units c ON c.parent_id = p.id AND c.valid_to IS NULL
    WHERE p.valid_to IS NULL GROUP BY p.id, p.code, p.geom
    HAVING ST_Area(ST_Difference(p.geom, ST_Union(c.geom))::geography) > :min_m2 ORDER BY m2 DESC"""
_OUTSIDE = """
    SELECT c.code, p.code, ST_Area(ST_Difference(c.geom, p.geom)::geography) AS m2
    FROM units c JOIN units p ON p.id = c.parent_id
    WHERE c.valid_to IS NULL AND NOT ST_CoveredBy(c.geom, p.geom)
      AND ST_Area(ST_Difference(c.geom, p.geom)::geography) > :min_m2"""
_ORPHANS = """
    SELECT code, parent_code FROM units
    WHERE valid_to IS NULL AND parent_id IS NULL AND (depth > 0 OR parent_code IS NOT NULL)"""
_BAND = """
    SELECT code, name, level, households FROM units
    WHERE valid_to IS NULL AND level = :level AND (households < :low OR households > :high) ORDER BY code"""
_NO_STAFF = """
    SELECT u.code, u.name FROM units u WHERE u.valid_to IS NULL AND u.level = 'grid'
      AND NOT EXISTS (SELECT 1 FROM staff s WHERE s.unit_path @> ARRAY[u.code]::varchar[]) ORDER BY u.code"""
_NO_GRID = "SELECT code, address FROM buildings WHERE unit_id IS NULL ORDER BY code"


def run_checks(conn: Connection, settings: Settings) -> dict[str, list[dict[str, object]]]:
    p = {"min_m2": MIN_AREA_M2}

    def rows(
        sql: str, keys: tuple[str, ...], params: dict[str, object] | None = None
    ) -> list[dict[str, object]]:
        return [dict(zip(keys, r, strict=True)) for r in conn.execute(text(sql), params or p)]

    report = {
        "overlaps": rows(_OVERLAPS, ("unit", "other", "m2")),
        "gaps": rows(_GAPS, ("parent", "m2")),
        "outside_parent": rows(_OUTSIDE, ("unit", "parent", "m2")),
        "orphans": rows(_ORPHANS, ("unit", "parent_code")),
        "units_without_staff": rows(_NO_STAFF, ("unit", "name")),
        "buildings_without_grid": rows(_NO_GRID, ("building", "address")),
        "out_of_band": [],
    }
    for level, (low, high) in settings.bands.items():
        report["out_of_band"] += rows(
            _BAND,
            ("unit", "name", "level", "households"),
            {"level": level, "low": low, "high": high},
        )
    return report


def _print_human(report: dict[str, list[dict[str, object]]]) -> None:
    for section, items in report.items():
        print(f"{section.replace('_', ' ')}: {len(items)}")
        for item in items[:15]:
            print(
                "   ",
                ", ".join(
                    f"{k}={v:,.0f}" if isinstance(v, float) else f"{k}={v}" for k, v in item.items()
                ),
            )
        if len(items) > 15:
            print(f"    … and {len(items) - 15} more")


def _cmd_check(args: argparse.Namespace) -> int:
    from etl.db import get_engine

    with get_engine().connect() as conn:
        report = run_checks(conn, get_settings())
    if args.json:
        print(json.dumps(report, ensure_ascii=False, default=float))
    else:
        _print_human(report)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="topology and completeness: gaps, overlaps, orphans, bands, staff"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_check)
