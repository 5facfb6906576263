"""Read the files Chinese GIS offices send: GeoJSON, GeoPackage, Shapefile (also zipped), CSV,
XLSX and KML, in UTF-8, UTF-8 with BOM or GBK/GB18030. Returns a frame and the CRS the file states.
"""

from __future__ import annotations

import io
import queue
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyogrio
import shapely
from pyogrio.geopandas import _try_parse_datetime  # pinned pyogrio: same parse as reads
from pyproj import CRS

from etl.errors import FileFormatError

LON_NAMES = ("lon", "lng", "longitude", "x", "经度", "東經", "横坐标", "x坐标")
LAT_NAMES = ("lat", "latitude", "y", "纬度", "纵坐标", "y坐标")
WKT_NAMES = ("wkt", "geometry", "geom", "the_geom", "shape", "几何", "空间信息")
VECTOR_SUFFIXES = {".geojson", ".json", ".gpkg", ".shp", ".kml"}

T = TypeVar("T")


@dataclass
class Source:
    """What was read: the rows, the CRS the file itself states (None if it states none)."""

    frame: gpd.GeoDataFrame | pd.DataFrame
    stated_crs: CRS | None
    encoding: str | None
    path: Path


def detect_encoding(data: bytes) -> str:
    """UTF-8 (with or without BOM) when it decodes as such, else GB18030 (a superset of GBK)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        data.decode("gb18030")
        return "gb18030"
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            f"cannot tell the text encoding (tried UTF-8 and GB18030): byte {exc.start}; "
            "state it with --encoding"
        ) from None


# Formats whose text is always UTF-8, read through GDAL's Arrow stream when no encoding is forced.
ARROW_SUFFIXES = {".gpkg", ".geojson", ".json"}


def read_source(
    path: str | Path, *, encoding: str | None = None, layer: str | None = None
) -> Source:
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return _read_zip(path, encoding=encoding, layer=layer)
    if suffix in (".csv", ".txt"):
        return _read_csv(path, encoding=encoding)
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(path)
    if suffix in VECTOR_SUFFIXES:
        return _read_vector(path, encoding=encoding, layer=layer)
    raise FileFormatError(
        f"{path}: unsupported format {suffix!r} (GeoJSON, GeoPackage, Shapefile or .zip, CSV, XLSX, KML)"
    )


def feature_count(path: str | Path, *, layer: str | None = None) -> int | None:
    """Features in a GeoPackage layer, from its metadata (None for other formats, or unknown)."""
    path = Path(path)
    if path.suffix.lower() != ".gpkg" or not path.is_file():
        return None
    try:
        count = int(pyogrio.read_info(path, layer=layer)["features"])
    except Exception as exc:
        raise FileFormatError(f"{path}: cannot be read ({_short(exc)})") from None
    return count if count >= 0 else None


def read_batches(
    path: str | Path, *, rows: int, layer: str | None = None
) -> Iterator[tuple[int, Source]]:
    """A GeoPackage in slices of ``rows`` features, from one pass of GDAL's Arrow stream:
    (position of the first feature, slice). Each slice is converted as ``read_source``
    converts the whole file (``pyogrio.read_dataframe`` with ``use_arrow``)."""
    path = Path(path)
    kwargs: dict[str, object] = {"layer": layer} if layer else {}
    try:
        with pyogrio.open_arrow(
            path, use_pyarrow=True, batch_size=rows, datetime_as_string=True, **kwargs
        ) as (meta, reader):
            stated = CRS.from_user_input(meta["crs"]) if meta["crs"] else None
            dates = [
                field
                for dtype, field in zip(meta["dtypes"], meta["fields"], strict=True)
                if dtype is not None and dtype.startswith("datetime") and dtype != "datetime64[D]"
            ]
            geometry_name = meta["geometry_name"] or "wkb_geometry"
            start = 0
            for batch in reader:
                geoms = _from_wkb(batch.column(geometry_name))
                frame = batch.drop_columns([geometry_name]).to_pandas()
                for field in dates:  # as read_dataframe does: strings keep mixed UTC offsets
                    frame[field] = _try_parse_datetime(frame[field], False, False)
                geo = gpd.GeoDataFrame(frame, geometry=geoms, crs=meta["crs"])
                yield start, Source(frame=geo, stated_crs=stated, encoding=None, path=path)
                start += len(geo)
    except Exception as exc:  # GDAL, Arrow or a broken geometry blob, mid-file too
        raise FileFormatError(f"{path}: cannot be read ({_short(exc)})") from None


class ReadAhead(Iterator[T]):
    """``items`` produced by a worker thread, up to ``depth`` ahead of the consumer: reading the
    next slice (GDAL, Arrow and shapely release the GIL) overlaps validating this one. Reading
    starts at once. An error in the worker is raised to the consumer; ``close()`` (or leaving
    the ``with`` block) stops the worker, whether or not everything was consumed."""

    def __init__(self, items: Iterator[T], depth: int = 2) -> None:
        self._slots: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._worker = threading.Thread(
            target=self._work, args=(items,), name="read-ahead", daemon=True
        )
        self._worker.start()

    def _offer(self, kind: str, value: object) -> bool:
        while not self._stop.is_set():
            try:
                self._slots.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._offer("item", item):
                    return
            self._offer("end", None)
        except BaseException as exc:  # handed to the consumer, raised there
            self._offer("error", exc)

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        kind, value = self._slots.get()
        if kind == "item":
            return value  # type: ignore[return-value]
        self.close()
        if kind == "error":
            raise value  # type: ignore[misc]
        raise StopIteration

    def close(self) -> None:
        self._done = True
        self._stop.set()
        self._worker.join()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


_WKB_POINT = np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])


def _from_wkb(wkb: pa.Array) -> np.ndarray:
    """Shapely geometries from a WKB column. A column of 2-D little-endian points (an event
    layer) is decoded by numpy, 5-10x faster than ``shapely.from_wkb``; the rest by shapely."""
    if isinstance(wkb, pa.ChunkedArray):
        wkb = wkb.combine_chunks()
    n = len(wkb)
    if n and wkb.null_count == 0 and pa.types.is_binary(wkb.type):
        offsets = np.frombuffer(
            wkb.buffers()[1], dtype=np.int32, count=n + 1, offset=wkb.offset * 4
        )
        if np.all(np.diff(offsets) == _WKB_POINT.itemsize):  # every row a 21-byte 2-D point
            data = wkb.buffers()[2]
            records = np.frombuffer(data, _WKB_POINT, count=n, offset=int(offsets[0]))
            if np.all(records["order"] == 1) and np.all(records["type"] == 1):
                points = shapely.points(records["x"], records["y"])
                empty = np.isnan(records["x"]) & np.isnan(records["y"])  # WKB's empty point
                points[empty] = shapely.from_wkt("POINT EMPTY")
                return points
    return shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))


def _read_zip(path: Path, *, encoding: str | None, layer: str | None) -> Source:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise FileFormatError(f"{path}: not a valid zip archive") from None
    tmp = Path(tempfile.mkdtemp(prefix="gridgov-zip-"))
    archive.extractall(tmp)
    inner = sorted(p for p in tmp.rglob("*") if p.suffix.lower() in VECTOR_SUFFIXES | {".csv"})
    if not inner:
        raise FileFormatError(f"{path}: the archive holds no .shp, .gpkg, .geojson, .kml or .csv")
    source = read_source(inner[0], encoding=encoding, layer=layer)
    source.path = path
    return source


def _read_vector(path: Path, *, encoding: str | None, layer: str | None) -> Source:
    if path.suffix.lower() == ".shp":
        encoding = encoding or _shapefile_encoding(path)
    kwargs: dict[str, object] = {"layer": layer} if layer else {}
    if encoding:
        kwargs["encoding"] = encoding
    elif path.suffix.lower() in ARROW_SUFFIXES:
        kwargs["use_arrow"] = True  # GDAL's columnar path: ~3x faster on a million features
    try:
        frame = pyogrio.read_dataframe(path, **kwargs)
    except Exception as exc:  # pyogrio raises DataSourceError/DataLayerError and GDAL errors
        raise FileFormatError(f"{path}: cannot be read ({_short(exc)})") from None
    stated = _stated_crs(path, frame)
    return Source(frame=frame, stated_crs=stated, encoding=encoding, path=path)


def _stated_crs(path: Path, frame: gpd.GeoDataFrame) -> CRS | None:
    if path.suffix.lower() == ".shp" and _sibling(path, ".prj") is None:
        return None
    return CRS.from_user_input(frame.crs) if frame.crs is not None else None


def _shapefile_encoding(path: Path) -> str:
    """Honour .cpg; otherwise look at the .dbf bytes (Chinese exports are often GBK with no .cpg)."""
    dbf = _sibling(path, ".dbf")
    if dbf is None:
        raise FileFormatError(
            f"{path}: the Shapefile has no .dbf beside it, so its attributes are missing"
        )
    cpg = _sibling(path, ".cpg")
    if cpg is not None:
        declared = cpg.read_text(errors="ignore").strip()
        if declared:
            return {"936": "gb18030", "gbk": "gb18030", "cp936": "gb18030"}.get(
                declared.lower(), declared
            )
    raw = dbf.read_bytes()
    header_len = int.from_bytes(raw[8:10], "little")
    return detect_encoding(raw[header_len:]).replace("utf-8-sig", "utf-8")


def _sibling(path: Path, suffix: str) -> Path | None:
    for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
        if candidate.exists():
            return candidate
    return None


def _read_csv(path: Path, *, encoding: str | None) -> Source:
    data = path.read_bytes()
    enc = encoding or detect_encoding(data)
    try:
        frame = pd.read_csv(io.StringIO(data.decode(enc)), dtype=str, keep_default_na=False)
    except (UnicodeDecodeError, LookupError) as exc:
        raise FileFormatError(
            f"{path}: cannot decode as {enc} ({_short(exc)}); try --encoding"
        ) from None
    except pd.errors.EmptyDataError:
        raise FileFormatError(f"{path}: the file is empty (no header row)") from None
    except pd.errors.ParserError as exc:
        raise FileFormatError(f"{path}: malformed CSV ({_short(exc)})") from None
    return Source(frame=_with_geometry(frame, path), stated_crs=None, encoding=enc, path=path)


def _read_xlsx(path: Path) -> Source:
    try:
        frame = pd.read_excel(path, dtype=str, engine="openpyxl").fillna("")
    except Exception as exc:
        raise FileFormatError(f"{path}: cannot be read as XLSX ({_short(exc)})") from None
    return Source(frame=_with_geometry(frame, path), stated_crs=None, encoding=None, path=path)


def _find(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {c.strip().lower(): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)


def _with_geometry(frame: pd.DataFrame, path: Path) -> gpd.GeoDataFrame | pd.DataFrame:
    """Build point geometry from lon/lat columns, or any geometry from a WKT column."""
    cols = list(frame.columns)
    lon, lat, wkt = _find(cols, LON_NAMES), _find(cols, LAT_NAMES), _find(cols, WKT_NAMES)
    if lon and lat:
        x = pd.to_numeric(frame[lon].replace("", None), errors="coerce")
        y = pd.to_numeric(frame[lat].replace("", None), errors="coerce")
        geoms = shapely.points(x.to_numpy(float), y.to_numpy(float))
        geoms[x.isna().to_numpy() | y.isna().to_numpy()] = None
        return gpd.GeoDataFrame(frame.drop(columns=[lon, lat]), geometry=list(geoms))
    if wkt:
        values = frame[wkt].replace("", None)
        try:
            geoms = shapely.from_wkt(values.to_numpy(), on_invalid="raise")
        except shapely.errors.GEOSException as exc:
            raise FileFormatError(
                f"{path}: column {wkt!r} holds invalid WKT ({_short(exc)})"
            ) from None
        return gpd.GeoDataFrame(frame.drop(columns=[wkt]), geometry=list(geoms))
    return frame


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
