"""``python -m etl redraw`` on real OSM footprints (Helsinki, ODbL) and on a synthetic lattice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely

from etl.cli import main

ROOT = Path(__file__).resolve().parent.parent
HELSINKI = Path("/work/shared/data/helsinki_osm.gpkg")
M2_PER_HOUSEHOLD = 80.0
DEFAULT_LEVELS = 4  # where OSM has no building:levels (central Helsinki is mostly 4-7 floors)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etl", "redraw", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def helsinki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Footprints with households = area (EPSG:3067) × levels / 80 m², in a temp GeoPackage."""
    frame = gpd.read_file(HELSINKI, layer="buildings")
    levels = frame["other_tags"].fillna("").str.extract(r'"building:levels"=>"(\d+)"')[0]
    levels = levels.astype(float).fillna(DEFAULT_LEVELS)
    frame["hh"] = np.round(frame.to_crs(3067).area * levels / M2_PER_HOUSEHOLD).astype(int)
    path = tmp_path_factory.mktemp("helsinki") / "buildings.gpkg"
    frame[["osm_id", "name", "hh", "geometry"]].to_file(path, layer="buildings")
    return path


def test_helsinki_buildings(helsinki: Path, tmp_path: Path) -> None:
    out = tmp_path / "grids.gpkg"
    done = run_cli(str(helsinki), "--layer", "buildings", "--households", "hh", "--band",
                   "300,500", "--seed", "2", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = last_json(done.stdout)
    features = pyogrio.read_dataframe(out, layer="features")
    source = pyogrio.read_dataframe(helsinki)
    assert len(features) == len(source) == summary["features"]
    assert features["grid_code"].notna().all() and (features["grid_code"] != "").all()
    assert summary["as"] == "buildings"
    # the grids' households are the sum of their buildings' (a recount, not the solver's tally)
    recount = features.groupby("grid_code")["hh"].sum()
    grids = pyogrio.read_dataframe(out, layer="grids").set_index("grid_code")
    assert np.allclose(grids["households"].reindex(recount.index), recount)
    assert summary["grids"] == features["grid_code"].nunique() == len(grids)
    # every grid outside the band is reported with a reason; one building alone is over 500
    out_of_band = set(grids.index[(grids["households"] < 300) | (grids["households"] > 500)])
    reported = {v["grid"] for v in summary["violations"] if v["kind"] in ("under", "over")}
    assert out_of_band == reported
    assert all(v["reason"] for v in summary["violations"])
    assert "compactness" in done.stdout and 0 < summary["mean_polsby_popper"] <= 1


def lattice(n: int = 8) -> gpd.GeoDataFrame:
    cells = [shapely.box(x * 100, y * 100, (x + 1) * 100, (y + 1) * 100)
             for y in range(n) for x in range(n)]  # fmt: skip
    rng = np.random.default_rng(4)
    return gpd.GeoDataFrame(
        {"户数": rng.integers(40, 120, n * n), "社区": ["东区" if i % n < n // 2 else "西区"
                                                    for i in range(n * n)]},
        geometry=cells, crs=4545,
    )  # fmt: skip


def test_lattice_blocks_with_parents(tmp_path: Path) -> None:
    src = tmp_path / "lattice.gpkg"
    lattice().to_file(src)
    out = tmp_path / "out.gpkg"
    code = main(["redraw", str(src), "--households", "户数", "--parent", "社区",
                 "--band", "300,500", "--seed", "1", "--out", str(out)])  # fmt: skip
    assert code == 0
    features = pyogrio.read_dataframe(out, layer="features")
    assert features["grid_code"].notna().all()
    # grids never cross the parent field, and each grid's blocks touch (one connected shape)
    assert (features.groupby("grid_code")["社区"].nunique() == 1).all()
    for _, group in features.groupby("grid_code"):
        assert shapely.get_num_geometries(shapely.union_all(group.geometry.values)) == 1
    hh = features.groupby("grid_code")["户数"].sum()
    status = features.groupby("grid_code")["grid_status"].first()
    assert ((hh >= 300) & (hh <= 500)).eq(status == "in").all()


def test_lattice_with_digit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = lattice(6)
    frame["community"] = "511781001001"
    src = tmp_path / "codes.geojson"
    frame.to_file(src)
    out = tmp_path / "codes.gpkg"
    code = main(["redraw", str(src), "--households", "户数", "--parent", "community",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    summary = last_json(capsys.readouterr().out)
    codes = pyogrio.read_dataframe(out, layer="grids")["grid_code"]
    assert codes.str.fullmatch(r"511781001001\d{3}").all()
    assert sorted(codes) == [f"511781001001{i:03d}" for i in range(1, summary["grids"] + 1)]


def test_errors_exit_non_zero(tmp_path: Path) -> None:
    src = tmp_path / "nocrs.shp"
    lattice(3).to_file(src, encoding="UTF-8")
    src.with_suffix(".prj").unlink()
    done = run_cli(str(src), "--households", "户数", "--out", str(tmp_path / "x.gpkg"))
    assert done.returncode == 2 and "coordinate system" in done.stderr
    done = run_cli(
        str(src), "--households", "户数", "--crs", "4490", "--out", str(tmp_path / "x.gpkg")
    )
    assert done.returncode == 2 and "outside longitude/latitude" in done.stderr
    src2 = tmp_path / "ok.gpkg"
    lattice(3).to_file(src2)
    done = run_cli(str(src2), "--households", "hh", "--out", str(tmp_path / "y.gpkg"))
    assert done.returncode == 2 and "no field 'hh'" in done.stderr
