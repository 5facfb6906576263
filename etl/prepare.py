"""Turn a raw source frame into the normalised, validated frame of one kind.

Reference data (existing units, categories, staff) is read from the database through
``etl.reference`` inside the load's transaction, so validation sees what the write will see.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError as PyprojCRSError

from etl import validate
from etl.errors import CRSInvalidError, CRSMissingError, LoadError
from etl.models import Event
from etl.readers import Source
from etl.reference import Reference
from etl.schema import (
    CHANNEL_VALUES,
    DESCRIPTION_MAX,
    EARLIEST,
    KIND_VALUES,
    LATEST_LOADED,
    LEVEL_BY_CODE_LENGTH,
    PATROL_KINDS,
    RESERVED_EVENT_CODES,
    RESPONDER_TYPES,
    ROAD_SPEEDS,
    ROLE_VALUES,
    SCHEMAS,
    code_pattern,
    max_length,
    resolve_columns,
)
from geo import workflow as wf
from geo.coords import CRSError, to_storage_crs

TZ = "Asia/Shanghai"


@dataclass
class Prepared:
    kind: str
    frame: pd.DataFrame  # good rows, normalised columns (+ geometry in EPSG:4490)
    rejects: list[tuple[str, str]] = field(default_factory=list)  # (row label, reason)
    warnings: list[str] = field(default_factory=list)
    total: int = 0


def prepare(
    kind: str,
    source: Source,
    ref: Reference,
    *,
    crs: str | None = None,
    level: str | None = None,
    mapping: dict[str, str] | None = None,
    first_row: int = 0,
    seen_codes: set[str] | None = None,
) -> Prepared:
    """Normalise and validate ``source``. For a file read in slices, ``first_row`` is the
    slice's position in the file (for row labels) and ``seen_codes`` the codes of the slices
    before it (repeats are duplicates); the slice's codes are added to it."""
    schema = SCHEMAS[kind]
    raw = source.frame
    try:
        columns = resolve_columns([c for c in raw.columns if c != "geometry"], kind, mapping or {})
    except KeyError as exc:
        raise LoadError(f"{source.path}: {exc.args[0]}") from None
    missing = [f for f in schema.required if f not in columns and not (f == "level" and level)]
    if missing:
        raise LoadError(
            f"{source.path}: missing required column(s) {missing} for {kind}; "
            f"recognised names are e.g. {[schema.synonyms[m][:3] for m in missing]}; "
            "map others with --map target=source"
        )
    frame = pd.DataFrame({t: _column(raw, s) for t, s in columns.items()})
    frame = frame.replace({"": None})
    tabular = source.path.suffix.lower() in (".csv", ".txt", ".xlsx", ".xlsm")
    problems: list[validate.Problem] = validate.check_required(frame, schema.required)
    if "code" in frame:
        frame["code"] = _clean_codes(frame["code"])
        problems += validate.check_duplicates(frame["code"], seen_codes)
    if schema.geometry:
        frame, geo_problems = _geometry(frame, raw, source, schema.geometry, crs=crs)
        problems += geo_problems
    normalise = NORMALISERS[kind]
    frame, kind_problems, warnings = normalise(frame, ref, level=level)
    problems += kind_problems
    labels = frame[["code"]].copy() if "code" in frame else pd.DataFrame(index=frame.index)
    return _split(kind, frame, problems, labels, warnings, tabular=tabular, first_row=first_row)


def _column(raw: pd.DataFrame, spec: str) -> np.ndarray | pd.Series:
    """One source column, or the first non-empty of several (``--map code=osm_id|osm_way_id``).

    A single column keeps its dtype (typed datetimes stay typed: re-parsing a million
    timestamps from objects costs seconds)."""
    parts = spec.split("|")
    if len(parts) == 1:
        return raw[parts[0]].reset_index(drop=True)
    values = raw[parts[0]].astype(object)
    for part in parts[1:]:
        values = values.where(values.map(_present), raw[part].astype(object))
    return values.to_numpy()


def _present(value: object) -> bool:
    """Not None/NaN/NA and not blank (pandas 3 strings use NaN for missing)."""
    return (
        value is not None
        and not (pd.api.types.is_scalar(value) and pd.isna(value))
        and str(value).strip() != ""
    )


def _clean_code(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text[:-2] if text.endswith(".0") and text[:-2].isdigit() else text


def _clean_codes(values: pd.Series) -> pd.Series:
    """``_clean_code`` over a column; string columns vectorised (a million codes in ~0.3 s)."""
    if values.dtype == object or not pd.api.types.is_string_dtype(values):
        return _map_distinct(values, _clean_code)
    text = values.str.strip()
    floaty = text.str.endswith(".0").fillna(False).to_numpy(dtype=bool)
    if floaty.any():
        text[floaty] = [_clean_code(v) for v in text[floaty]]
    return text.astype(object).where(text.notna(), None)


def _map_distinct(values: pd.Series, func) -> pd.Series:  # noqa: ANN001
    """``values.map(func)`` computed once per distinct value (categories, channels, levels)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped = [func(u) for u in uniques] + [func(None)]  # position -1: missing values
    if all(m is None or isinstance(m, str) for m in mapped):  # text: Arrow's take, no objects
        taken = pa.array(mapped, pa.string()).take(pa.array(codes % len(mapped)))
        return pd.Series(pd.array(taken, dtype="str"), index=values.index)
    return pd.Series(np.array(mapped, dtype=object)[codes], index=values.index)


def _split(
    kind, frame, problems, labels, warnings, *, tabular: bool, first_row: int = 0
) -> Prepared:  # noqa: ANN001
    bad: dict[int, list[str]] = {}
    for pos, why in problems:
        bad.setdefault(pos, []).append(why)
    rejects = [
        (validate.row_label(labels, pos, tabular=tabular, first_row=first_row), "; ".join(reasons))
        for pos, reasons in sorted(bad.items())
    ]
    keep = np.ones(len(frame), dtype=bool)
    keep[list(bad)] = False
    good = frame[keep].reset_index(drop=True) if bad else frame
    return Prepared(kind, good, rejects, warnings, total=len(frame))


def _geometry(
    frame: pd.DataFrame, raw: pd.DataFrame, source: Source, expected: str, *, crs: str | None
) -> tuple[gpd.GeoDataFrame, list[validate.Problem]]:
    if not isinstance(raw, gpd.GeoDataFrame) or raw.geometry.name not in raw:
        raise LoadError(
            f"{source.path}: no geometry found (needs lon/lat columns such as 经度/纬度, "
            "a WKT column, or a spatial format)"
        )
    stated = source.stated_crs
    if stated is None and crs is None:
        raise CRSMissingError(
            f"{source.path}: the file states no coordinate system; give one with --crs "
            "(4326 WGS 84/GPS, 4490 CGCS2000, 4545 a Gauss-Krüger zone, GCJ02 Amap/Tencent, BD09 Baidu)"
        )
    gdf = gpd.GeoDataFrame(frame, geometry=raw.geometry.to_numpy(), crs=stated)
    geoms, problems = validate.check_geometry(gdf.geometry, expected)
    gdf = gdf.set_geometry(geoms)
    try:
        source_crs = CRS.from_user_input(int(crs)) if crs and crs.isdigit() else crs
    except PyprojCRSError:
        raise CRSInvalidError(f"{source.path}: {crs!r} is not an EPSG code we know") from None
    geographic = _is_geographic(stated if crs is None else source_crs)
    problems += validate.check_coordinates(gdf.geometry, geographic=geographic)
    try:
        gdf = to_storage_crs(gdf, source_crs=source_crs)
    except CRSError as exc:
        raise (CRSInvalidError if crs else LoadError)(f"{source.path}: {exc}") from None
    return gdf, problems


def _is_geographic(crs: object) -> bool:
    if crs is None or isinstance(crs, str) and crs.upper().replace("-", "") in ("GCJ02", "BD09"):
        return True
    try:
        return bool(CRS.from_user_input(crs).is_geographic)
    except Exception:
        return True


# --- per kind -------------------------------------------------------------------------------


def _as_multi(geoms: gpd.GeoSeries) -> gpd.GeoSeries:
    values = [
        shapely.MultiPolygon([g]) if g is not None and g.geom_type == "Polygon" else g
        for g in geoms
    ]
    return gpd.GeoSeries(values, index=geoms.index, crs=geoms.crs)


def _units(frame: gpd.GeoDataFrame, ref: Reference, *, level: str | None):  # noqa: ANN202
    problems: list[validate.Problem] = []
    frame = frame.copy()
    frame["geometry"] = _as_multi(frame.geometry)
    if "level" not in frame or level:
        frame["level"] = level
    if frame["level"].isna().any():
        guessed = frame["code"].map(lambda c: LEVEL_BY_CODE_LENGTH.get(len(c or "")))
        frame["level"] = frame["level"].fillna(guessed)
    for pos in np.flatnonzero(~frame["level"].isin(ref.levels).to_numpy()):
        problems.append(
            (int(pos), f"unknown level {frame['level'].iloc[pos]!r}; known: {sorted(ref.levels)}")
        )
    if "kind" not in frame:
        frame["kind"] = None
    frame["kind"] = [
        KIND_VALUES.get(str(k).strip().lower(), KIND_VALUES.get(str(k).strip()))
        if _present(k)
        else ("rural" if str(n).endswith("村") else "urban")
        for k, n in zip(frame["kind"], frame["name"], strict=True)
    ]
    for pos in np.flatnonzero(frame["kind"].isna().to_numpy()):
        problems.append((int(pos), "unknown kind; use urban/城镇, rural/农村 or special/专属"))
    frame, parent_problems, warnings = _resolve_parents(frame, ref)
    return frame, problems + parent_problems, warnings


def _resolve_parents(frame: gpd.GeoDataFrame, ref: Reference):  # noqa: ANN202
    """Fill parent codes (longest code prefix when absent), then check containment and siblings."""
    problems: list[validate.Problem] = []
    known = set(ref.unit_codes) | set(frame["code"].dropna())
    if "parent_code" not in frame:
        frame["parent_code"] = None
    frame["parent_code"] = [
        _clean_code(p) or _longest_prefix(c, known)
        for p, c in zip(frame["parent_code"], frame["code"], strict=True)
    ]
    for pos, (code, parent) in enumerate(zip(frame["code"], frame["parent_code"], strict=True)):
        if _present(parent) and parent not in known:
            problems.append((pos, f"parent {parent!r} is neither loaded nor in this file"))
        elif (
            not _present(parent)
            and _present(code)
            and ref.has_root()
            and code not in ref.unit_codes
        ):
            problems.append((pos, "no parent: the territory already has a root unit"))
    parents = ref.unit_geometries(set(frame["parent_code"].dropna()) - set(frame["code"].dropna()))
    in_file = dict(zip(frame["code"], frame.geometry, strict=True))
    utm = frame.estimate_utm_crs() if len(frame) else None
    problems += _outside_parent(frame, parents | in_file, utm)
    warnings, overlap = _sibling_topology(frame, parents | in_file, utm)
    return frame, problems + overlap, warnings


def _longest_prefix(code: str | None, known: set[str]) -> str | None:
    if not code:
        return None
    for n in range(len(code) - 1, 0, -1):
        if code[:n] in known:
            return code[:n]
    return None


def _outside_parent(frame, geometries, utm):  # noqa: ANN001, ANN202
    """Area of each unit outside its parent (vectorised; measured in a projected CRS)."""
    parents = np.array(
        [geometries.get(p) if _present(p) else None for p in frame["parent_code"]], dtype=object
    )
    geoms = np.asarray(frame.geometry.values, dtype=object)
    has = ~pd.isna(parents) & ~pd.isna(geoms)
    if not has.any():
        return []
    outside = (
        gpd.GeoSeries(shapely.difference(geoms[has], parents[has]), crs=4490)
        .to_crs(utm)
        .area.to_numpy()
    )
    area = gpd.GeoSeries(geoms[has], crs=4490).to_crs(utm).area.to_numpy()
    positions = np.flatnonzero(has)
    parent_codes = frame["parent_code"].to_numpy()
    return [
        (
            int(positions[k]),
            f"{outside[k]:,.0f} m² of it lies outside its parent {parent_codes[positions[k]]}",
        )
        for k in np.flatnonzero(outside > np.maximum(1.0, 0.001 * area))
    ]


def _sibling_topology(frame, geometries, utm):  # noqa: ANN001, ANN202
    """Overlaps between siblings are errors; gaps inside a parent are warnings (areas in m²)."""
    if not len(frame):
        return [], []
    projected = frame.geometry.to_crs(utm)
    group = frame["parent_code"].fillna("")
    pairs = validate.overlap_problems(frame.assign(_g=group), projected, group_col="_g")
    codes = frame["code"].tolist()
    problems = [(b, f"overlaps its sibling {codes[a]} by {area:,.0f} m²") for a, b, area in pairs]
    warnings = []
    for parent, members in frame.groupby(group):
        pgeom = geometries.get(parent)
        if not parent or pgeom is None:
            continue
        gap = gpd.GeoSeries(
            [pgeom.difference(shapely.union_all(members.geometry.values))], crs=4490
        )
        gap_m2 = float(gap.to_crs(utm).area.iloc[0])
        if gap_m2 > 1.0:
            warnings.append(f"children of {parent} leave {gap_m2:,.0f} m² of it uncovered (gap)")
    return warnings, problems


def _to_int(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").round().astype("Int64")


def _buildings(frame: gpd.GeoDataFrame, ref: Reference, *, level: str | None):  # noqa: ANN202
    frame = frame.copy()
    frame["geometry"] = _as_multi(frame.geometry)
    for col in ("address", "floors", "households", "residents"):
        if col not in frame:
            frame[col] = None
    frame["floors"] = _to_int(frame["floors"])
    frame["households"] = _to_int(frame["households"]).fillna(0)
    frame["residents"] = _to_int(frame["residents"]).fillna(0)
    problems = [
        (int(i), "households is negative")
        for i in np.flatnonzero((frame["households"] < 0).to_numpy())
    ]
    return frame, problems, []


def _parse_times(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = series
    else:
        parsed = pd.to_datetime(series, errors="coerce", format="mixed")
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize(TZ, ambiguous="NaT", nonexistent="NaT")
    return parsed, (parsed.isna() & series.notna()).to_numpy()


def _events(frame: gpd.GeoDataFrame, ref: Reference, *, level: str | None):  # noqa: ANN202
    frame = frame.copy()
    problems: list[validate.Problem] = []
    frame["reported_at"], bad_time = _parse_times(frame["reported_at"])
    problems += [(int(i), "reported_at is not a date-time") for i in np.flatnonzero(bad_time)]
    frame["category_code"] = _map_distinct(frame["category_code"], _clean_code)
    unknown = ~frame["category_code"].isin(ref.categories) & frame["category_code"].notna()
    problems += [
        (int(i), f"unknown category code {frame['category_code'].iloc[i]!r}")
        for i in np.flatnonzero(unknown.to_numpy())
    ]
    channel = frame["channel"] if "channel" in frame else pd.Series("patrol", index=frame.index)
    frame["channel"] = _map_distinct(
        channel, lambda c: CHANNEL_VALUES.get(str(c).strip().lower()) if _present(c) else "patrol"
    )
    problems += [
        (int(i), "unknown source channel")
        for i in np.flatnonzero(frame["channel"].isna().to_numpy())
    ]
    defaults = _map_distinct(frame["category_code"], lambda c: ref.categories.get(c, (3, False))[0])
    priority = (
        _to_int(frame["priority"]) if "priority" in frame else pd.Series(pd.NA, index=frame.index)
    )
    frame["priority"] = priority.fillna(defaults).astype("Int64")
    emergency = _map_distinct(
        frame["category_code"], lambda c: ref.categories.get(c, (3, False))[1]
    )
    default_level = np.where(emergency.fillna(False).astype(bool), "county", "grid")
    given = (
        frame["handling_level"] if "handling_level" in frame else pd.Series(None, index=frame.index)
    ).astype(object)
    frame["handling_level"] = given.where(
        _map_distinct(given, _present).astype(bool), default_level
    )
    for col in ("dispatched_at", "handled_at", "closed_at", "due_at"):
        if col in frame:
            frame[col], bad = _parse_times(frame[col])
            problems += [(int(i), f"{col} is not a date-time") for i in np.flatnonzero(bad)]
    if "satisfaction" in frame:
        frame["satisfaction"] = _to_int(frame["satisfaction"])
    problems += _outside_territory(frame, ref)
    frame["status"] = frame["status"].fillna("reported") if "status" in frame else "reported"
    frame["description"] = frame.get("description")
    problems += _event_rules(frame)
    return frame, problems, []


EVENT_CODE = code_pattern(max_length(Event, "code"))
STATUSES = [s.value for s in wf.Status]


def _event_rules(frame: gpd.GeoDataFrame) -> list[validate.Problem]:
    """What the database would refuse halfway through the COPY (a code longer than its column,
    a NUL byte, a priority beyond smallint) or take silently (a status the workflow does not
    know, a code no URL can address, a date in year 1): each bad row named with its reason."""
    codes = frame["code"].astype("string")
    checks = [
        (codes.notna() & ~codes.str.fullmatch(EVENT_CODE).fillna(False),
         f"code must match {EVENT_CODE} (letters, digits, '.', '_', '-'; no spaces or '/')"),
        (codes.isin(RESERVED_EVENT_CODES).fillna(False),
         f"code may not be one of {list(RESERVED_EVENT_CODES)} (it names an API path)"),
        (~frame["status"].isin(STATUSES), f"status must be one of {STATUSES}"),
        (~frame["handling_level"].isin(wf.DEFAULT_LADDER),
         f"handling_level must be one of {list(wf.DEFAULT_LADDER)}"),
    ]  # fmt: skip
    for col in ("priority", "satisfaction"):
        if col in frame:
            checks.append((frame[col].notna() & ~frame[col].between(1, 5), f"{col} must be 1-5"))
    text = frame["description"].astype("string")
    checks += [
        (text.str.len().gt(DESCRIPTION_MAX).fillna(False),
         f"description is longer than {DESCRIPTION_MAX} characters"),
        (text.str.contains("\x00", regex=False).fillna(False), "description holds a NUL byte"),
    ]  # fmt: skip
    for col in ("reported_at", "dispatched_at", "handled_at", "closed_at", "due_at"):
        if col in frame:
            times = frame[col]
            outside = times.notna() & ((times < EARLIEST) | (times >= LATEST_LOADED))
            checks.append((outside, f"{col} lies outside {EARLIEST:%Y} to {LATEST_LOADED:%Y}"))
    return [(int(i), why) for mask, why in checks for i in np.flatnonzero(mask.to_numpy(bool))]


def _outside_territory(frame: gpd.GeoDataFrame, ref: Reference) -> list[validate.Problem]:
    territory = ref.territory
    if territory is None:
        return []
    pts = np.asarray(frame.geometry.values, dtype=object)
    present = ~(pd.isna(pts) | shapely.is_empty(pts))
    inside = np.zeros(len(pts), dtype=bool)
    inside[present] = shapely.intersects(territory, pts[present])
    return [
        (int(i), "the point lies outside the territory (no loaded unit contains it)")
        for i in np.flatnonzero(present & ~inside)
    ]


def _staff(frame: pd.DataFrame, ref: Reference, *, level: str | None):  # noqa: ANN202
    frame = frame.copy()
    frame["role"] = frame["role"].map(
        lambda r: ROLE_VALUES.get(str(r).strip()) if _present(r) else None
    )
    problems = [
        (int(i), "unknown role (网格长/专职网格员/兼职网格员/网格辅助员)")
        for i in np.flatnonzero(frame["role"].isna().to_numpy())
    ]
    frame["unit_code"] = frame["unit_code"].map(_clean_code)
    unknown = ~frame["unit_code"].isin(ref.unit_codes)
    problems += [
        (int(i), f"unit {frame['unit_code'].iloc[i]!r} is not loaded")
        for i in np.flatnonzero(unknown.to_numpy())
    ]
    if "phone" not in frame:
        frame["phone"] = None
    return frame, problems, []


def _responders(frame: gpd.GeoDataFrame, ref: Reference, *, level: str | None):  # noqa: ANN202
    frame = frame.copy()
    frame["type"] = frame["type"].map(
        lambda t: (
            RESPONDER_TYPES.get(str(t).strip().lower(), RESPONDER_TYPES.get(str(t).strip()))
            if _present(t)
            else None
        )
    )
    problems = [
        (int(i), "unknown responder type") for i in np.flatnonzero(frame["type"].isna().to_numpy())
    ]
    frame["status"] = frame["status"].fillna("available") if "status" in frame else "available"
    return frame, problems, []


def _patrols(frame: gpd.GeoDataFrame, ref: Reference, *, level: str | None):  # noqa: ANN202
    frame = frame.copy()
    frame["at"], bad_time = _parse_times(frame["at"])
    problems = [(int(i), "time is not a date-time") for i in np.flatnonzero(bad_time)]
    kind = frame["kind"] if "kind" in frame else pd.Series("patrol", index=frame.index)
    frame["kind"] = kind.fillna("patrol").map(
        lambda k: PATROL_KINDS.get(str(k).strip().lower(), PATROL_KINDS.get(str(k).strip()))
    )
    problems += [
        (int(i), "kind must be patrol/巡查 or visit/走访")
        for i in np.flatnonzero(frame["kind"].isna().to_numpy())
    ]
    frame["staff_code"] = frame["staff_code"].map(_clean_code)
    unknown = ~frame["staff_code"].isin(ref.staff_codes)
    problems += [
        (int(i), f"staff {frame['staff_code'].iloc[i]!r} is not loaded")
        for i in np.flatnonzero(unknown.to_numpy())
    ]
    return frame, problems, []


def _roads(frame: gpd.GeoDataFrame, ref: Reference, *, level: str | None):  # noqa: ANN202
    frame = frame.copy()
    if "road_class" not in frame:
        frame["road_class"] = "unclassified"
    frame["road_class"] = frame["road_class"].fillna("unclassified").astype(str)
    default_speed = frame["road_class"].map(lambda c: ROAD_SPEEDS.get(c, 30))
    speed = (
        pd.to_numeric(frame["speed_kmh"], errors="coerce")
        if "speed_kmh" in frame
        else default_speed
    )
    frame["speed_kmh"] = speed.fillna(default_speed)
    if "name" not in frame:
        frame["name"] = None
    return frame, [], []


NORMALISERS = {
    "units": _units,
    "buildings": _buildings,
    "events": _events,
    "staff": _staff,
    "responders": _responders,
    "patrols": _patrols,
    "roads": _roads,
}
