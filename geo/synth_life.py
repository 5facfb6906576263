"""People and events of the demo county: staff, responders, patrols and a year of events.

Pure: takes the territory and buildings built by :mod:`geo.synth` (working CRS, metres) and an
``rng``; returns frames in the same working CRS.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

WORK_EPSG = 4545
SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = list(
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉建国文斌宇浩凯健俊帆帅"
)
ROLES = ("grid_chief", "full_time", "part_time", "auxiliary")
RESPONDER_TYPES = {
    "police": ("派出所巡逻组", 0.3),
    "fire": ("消防救援站", 0.15),
    "medical": ("120急救车", 0.2),
    "power": ("供电抢修队", 0.1),
    "grid_team": ("网格应急小分队", 0.25),
}
CHANNELS = (
    ["patrol", "hotline_12345", "app", "110", "sensor", "instruction"],
    [0.55, 0.2, 0.12, 0.05, 0.05, 0.03],
)
LEVELS = (["grid", "community", "township", "county"], [0.75, 0.15, 0.08, 0.02])
TZ = "Asia/Shanghai"


def _names(n: int, rng: np.random.Generator) -> list[str]:
    s = rng.choice(SURNAMES, n)
    g1 = rng.choice(GIVEN, n)
    g2 = np.where(rng.random(n) < 0.6, rng.choice(GIVEN, n), "")
    return [a + b + c for a, b, c in zip(s, g1, g2, strict=True)]


def _grid_points(terr: Any, bld: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per grid: the building points inside it (or its representative point)."""
    grid_of_mg = terr.mgs["grid"].to_numpy()
    mg = np.asarray(bld.mg)
    pts = shapely.point_on_surface(np.asarray(bld.frame.geometry.values, dtype=object))
    xy = np.column_stack([shapely.get_x(pts), shapely.get_y(pts)])
    grid = np.where(mg >= 0, grid_of_mg[np.clip(mg, 0, None)], -1)
    order = np.argsort(grid, kind="stable")
    bounds = np.searchsorted(grid[order], np.arange(len(terr.grids) + 1))
    reps = shapely.point_on_surface(np.asarray(terr.grid_geom, dtype=object))
    rep_xy = np.column_stack([shapely.get_x(reps), shapely.get_y(reps)])
    per_grid = [xy[order[bounds[g] : bounds[g + 1]]] for g in range(len(terr.grids))]
    return rep_xy, per_grid


def people(
    terr: Any,
    towns: pd.DataFrame,
    bld: Any,
    county: shapely.Geometry,
    end: pd.Timestamp,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    staff = _staff(terr, rng)
    responders = _responders(terr, towns, county, rng)
    patrols = _patrols(terr, bld, staff, end, rng)
    return staff, responders, patrols


def _staff(terr: Any, rng: np.random.Generator) -> pd.DataFrame:
    codes = terr.grids["code"].to_numpy()
    n = len(codes)
    without = set(rng.choice(n, size=min(3, n), replace=False).tolist()) if n > 10 else set()
    rows = []
    for g, code in enumerate(codes):
        if g in without:  # deliberate: grids nobody staffs, for `etl check`
            continue
        counts = (1, 1, int(rng.integers(0, 4)), int(rng.integers(2, 6)))
        k = 0
        for role, count in zip(ROLES, counts, strict=True):
            for _ in range(count):
                k += 1
                rows.append((f"S{code}{k:02d}", role, code))
    frame = pd.DataFrame(rows, columns=["code", "role", "unit_code"])
    frame["name"] = _names(len(frame), rng)
    frame["phone"] = ["1" + str(p) for p in rng.integers(3_000_000_000, 9_999_999_999, len(frame))]
    return frame[["code", "name", "role", "unit_code", "phone"]]


def _responders(
    terr: Any, towns: pd.DataFrame, county: shapely.Geometry, rng: np.random.Generator
) -> gpd.GeoDataFrame:
    seats = np.asarray(terr.seats, dtype=float)
    n = 60
    town = np.sort(rng.integers(0, len(seats), n))
    xy = seats[town] + rng.normal(0, 600, (n, 2))
    inside = shapely.contains_xy(county, xy[:, 0], xy[:, 1])
    xy[~inside] = seats[town[~inside]]
    types = rng.choice(list(RESPONDER_TYPES), n, p=[v[1] for v in RESPONDER_TYPES.values()])
    short = towns["name"].str.replace(r"(街道|镇|乡)$", "", regex=True).to_numpy()
    names = [
        f"{short[t]}{RESPONDER_TYPES[k][0]}{i + 1}号"
        for i, (t, k) in enumerate(zip(town, types, strict=True))
    ]
    status = rng.choice(["available", "busy", "offline"], n, p=[0.7, 0.2, 0.1])
    return gpd.GeoDataFrame(
        {
            "code": [f"R{i + 1:03d}" for i in range(n)],
            "name": names,
            "type": types,
            "status": status,
        },
        geometry=shapely.points(xy),
        crs=WORK_EPSG,
    )


def _patrols(
    terr: Any, bld: Any, staff: pd.DataFrame, end: pd.Timestamp, rng: np.random.Generator
) -> gpd.GeoDataFrame:
    rep_xy, per_grid = _grid_points(terr, bld)
    walker = (
        staff[staff["role"] == "full_time"]
        .drop_duplicates("unit_code")
        .set_index("unit_code")["code"]
    )
    chief = (
        staff[staff["role"] == "grid_chief"]
        .drop_duplicates("unit_code")
        .set_index("unit_code")["code"]
    )
    codes = terr.grids["code"].to_numpy()
    diligence = np.where(rng.random(len(codes)) < 0.1, 0.45, 0.9)  # some grids often missed
    days = pd.date_range(end.normalize() - pd.Timedelta(days=29), periods=30, freq="D")
    rows_xy, rows = [], []
    for g, code in enumerate(codes):
        if code not in walker.index:
            continue
        pts = per_grid[g] if len(per_grid[g]) else rep_xy[g : g + 1]
        for kind, who, p in (
            ("patrol", walker[code], diligence[g]),
            ("visit", chief.get(code), 0.4),
        ):
            if who is None:
                continue
            hit = rng.random(len(days)) < p
            for day in days[hit]:
                at = day + pd.Timedelta(
                    minutes=int(rng.integers(8 * 60, 17 * 60)), seconds=int(rng.integers(0, 60))
                )
                if at > end:
                    continue
                rows.append((who, kind, at))
                rows_xy.append(pts[rng.integers(0, len(pts))])
    frame = pd.DataFrame(rows, columns=["staff_code", "kind", "at"])
    xy = np.asarray(rows_xy, dtype=float).reshape(-1, 2)
    return gpd.GeoDataFrame(frame, geometry=shapely.points(xy), crs=WORK_EPSG)


def _limit_hours(limit: float, unit: str) -> float:
    """Calendar hours a case of this limit usually spans."""
    return {
        "work_hours": limit * 3.0,
        "hours": limit * 3.0,
        "clock_hours": limit,
        "work_days": limit * 34.0,
        "days": limit * 34.0,
    }.get(unit, 48.0)


def events(
    terr: Any,
    towns: pd.DataFrame,
    comms: pd.DataFrame,
    bld: Any,
    cats: pd.DataFrame,
    county: shapely.Geometry,
    end: pd.Timestamp,
    scale: float,
    rng: np.random.Generator,
) -> gpd.GeoDataFrame:
    n = max(50, int(round(25_000 * scale)))
    reported = _times(n, end, rng)
    xy = _places(n, bld, county, rng)
    cat = _categories(n, cats, rng)
    frame = pd.DataFrame({"reported_at": reported, "x": xy[:, 0], "y": xy[:, 1]})
    frame = (
        pd.concat([frame, cat.reset_index(drop=True)], axis=1)
        .sort_values("reported_at")
        .reset_index(drop=True)
    )
    frame = _handling(frame, end, rng)
    day = frame["reported_at"].dt.strftime("%Y%m%d")
    seq = frame.groupby(day).cumcount() + 1
    frame["code"] = "EV" + day + seq.map("{:04d}".format)
    frame["description"] = frame["name"] + "（" + frame["channel"].map(CHANNEL_LABELS) + "）"
    cols = [
        "code",
        "category_code",
        "priority",
        "channel",
        "description",
        "reported_at",
        "dispatched_at",
        "handled_at",
        "closed_at",
        "status",
        "handling_level",
        "satisfaction",
    ]
    return gpd.GeoDataFrame(
        frame[cols], geometry=shapely.points(frame[["x", "y"]].to_numpy()), crs=WORK_EPSG
    )


CHANNEL_LABELS = {
    "patrol": "网格员巡查",
    "hotline_12345": "12345热线",
    "app": "居民小程序",
    "110": "110转办",
    "sensor": "物联感知",
    "instruction": "上级交办",
}


def _times(n: int, end: pd.Timestamp, rng: np.random.Generator) -> pd.Series:
    start = end - pd.Timedelta(days=365)
    days = pd.date_range(start.normalize(), end.normalize(), freq="D")
    weight = np.where(days.day_of_week >= 5, 0.6, 1.0) * (
        1 + 0.15 * np.sin(np.arange(len(days)) / 58.0)
    )
    day = rng.choice(len(days), n, p=weight / weight.sum())
    hour_w = np.array(
        [1, 1, 1, 1, 1, 2, 4, 8, 14, 18, 18, 14, 8, 9, 14, 17, 16, 14, 10, 8, 6, 4, 3, 2], float
    )
    hour = rng.choice(24, n, p=hour_w / hour_w.sum())
    t = days[day] + pd.to_timedelta(hour * 3600 + rng.integers(0, 3600, n), unit="s")
    t = pd.Series(t)
    # today's hours after ``end`` have not happened yet: move those reports a week back
    t = t.where(t <= end, t - pd.Timedelta(days=7))
    return t.dt.tz_convert(TZ) if t.dt.tz is not None else t.dt.tz_localize(TZ)


def _places(n: int, bld: Any, county: shapely.Geometry, rng: np.random.Generator) -> np.ndarray:
    frame = bld.frame
    ok = np.asarray(bld.mg) >= 0
    pts = shapely.point_on_surface(np.asarray(frame.geometry.values, dtype=object)[ok])
    bxy = np.column_stack([shapely.get_x(pts), shapely.get_y(pts)])
    hh = frame["households"].to_numpy(float)[ok]
    kind = rng.choice(3, n, p=[0.6, 0.25, 0.15])
    xy = bxy[rng.choice(len(bxy), n, p=hh / hh.sum())] + rng.normal(0, 3, (n, 2))
    urban = np.argsort(-hh)[: max(5, len(hh) // 200)]
    hot = bxy[rng.choice(urban, 5, replace=False)]
    k = kind == 1
    xy[k] = hot[rng.integers(0, len(hot), k.sum())] + rng.normal(0, 150, (k.sum(), 2))
    k = kind == 2
    x0, y0, x1, y1 = shapely.bounds(county)
    xy[k] = np.column_stack([rng.uniform(x0, x1, k.sum()), rng.uniform(y0, y1, k.sum())])
    outside = ~shapely.contains_xy(county, xy[:, 0], xy[:, 1])
    xy[outside] = bxy[rng.choice(len(bxy), outside.sum(), p=hh / hh.sum())]
    return xy


def _categories(n: int, cats: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    emergency = cats["emergency"].to_numpy(bool)
    base = np.where(emergency, 0.01 / max(emergency.sum(), 1), 0.99 / max((~emergency).sum(), 1))
    common = cats["code"].isin(["0201", "0101", "0204", "0302", "0202"]).to_numpy()
    weight = base * np.where(common, 3.0, 1.0)
    weight = np.where(emergency, base, weight * 0.99 / weight[~emergency].sum())
    pick = rng.choice(len(cats), n, p=weight / weight.sum())
    chosen = cats.iloc[pick].reset_index(drop=True)
    out = pd.DataFrame(
        {
            "category_code": chosen["code"].to_numpy(),
            "name": chosen.get("name", chosen["code"]).to_numpy(),
            "priority": chosen["default_priority"].to_numpy(int),
            "emergency": chosen["emergency"].to_numpy(bool),
            "limit_h": [
                _limit_hours(float(a), str(b))
                for a, b in zip(chosen["time_limit"], chosen["time_unit"], strict=True)
            ],
        }
    )
    ch = rng.choice(CHANNELS[0], n, p=CHANNELS[1])
    out["channel"] = np.where(
        out["emergency"], rng.choice(["110", "hotline_12345"], n, p=[0.8, 0.2]), ch
    )
    level = rng.choice(LEVELS[0], n, p=LEVELS[1])
    out["handling_level"] = np.where(out["emergency"], "county", level)
    return out


def _handling(frame: pd.DataFrame, end: pd.Timestamp, rng: np.random.Generator) -> pd.DataFrame:
    n = len(frame)
    emergency = frame["emergency"].to_numpy(bool)
    response_min = np.where(
        emergency, rng.lognormal(np.log(6), 0.5, n), rng.lognormal(np.log(40), 0.8, n)
    )
    late = rng.random(n) < 0.07
    share = np.where(late, rng.uniform(1.05, 2.5, n), rng.beta(2.2, 2.8, n))
    handle_h = frame["limit_h"].to_numpy(float) * share
    dispatched = frame["reported_at"] + pd.to_timedelta(response_min * 60, unit="s")
    closed = dispatched + pd.to_timedelta(handle_h * 3600, unit="s")
    handled = dispatched + pd.to_timedelta(handle_h * 3600 * 0.85, unit="s")
    stuck = (rng.random(n) < 0.015) & (frame["reported_at"] < end - pd.Timedelta(days=20))
    status = np.full(n, "closed", dtype=object)
    evaluated = rng.random(n) < 0.7
    status[evaluated] = "evaluated"
    status[(closed > end).to_numpy() | stuck] = "handled"
    status[(handled > end).to_numpy() | stuck] = "in_progress"
    status[(dispatched > end).to_numpy()] = "filed"
    newest = (frame["reported_at"] > end - pd.Timedelta(minutes=20)).to_numpy()
    status[newest & (status == "filed")] = "reported"
    frame["status"] = status
    frame["dispatched_at"] = dispatched.where(~np.isin(status, ["reported", "filed"]))
    frame["handled_at"] = handled.where(np.isin(status, ["handled", "closed", "evaluated"]))
    frame["closed_at"] = closed.where(np.isin(status, ["closed", "evaluated"]))
    sat = rng.choice([5, 4, 3, 2, 1], n, p=[0.6, 0.28, 0.08, 0.03, 0.01])
    frame["satisfaction"] = pd.array(np.where(status == "evaluated", sat, 0), dtype="Int64")
    frame.loc[status != "evaluated", "satisfaction"] = pd.NA
    return frame
