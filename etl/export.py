"""Writers for coverage reports: CSV, XLSX, GeoPackage, Shapefile and a printable PDF.

Every writer takes a :class:`~etl.queries.reports.Report` and a path and returns the files it
wrote. ``lang`` ('zh' default, or 'en') picks headers and labels; codes and numbers never change.

* CSV: UTF-8 with a byte-order mark so Excel opens Chinese correctly; rates as fractions.
* XLSX (openpyxl): title, frozen header and code/name columns, number formats, subtotal rows
  bold, total row shaded; a second sheet explains every column.
* GeoPackage: layers ``grids`` and ``subtotals`` (EPSG:4490) plus a ``fields`` table.
* Shapefile: ``<stem>.shp`` (grids) and ``<stem>_subtotals.shp``, UTF-8 with ``.cpg``; field
  names are the ≤10-byte column keys, explained in the ``<stem>.fields.csv`` sidecar.
* PDF (reportlab): a map of the grids coloured by one indicator (matplotlib), the daily trend and
  category charts, and the table. Chinese text uses reportlab's built-in CID font STSong-Light
  (Adobe-GB1), because reportlab cannot embed the CFF-outline Noto CJK fonts Debian ships.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from etl.privacy import neutralise_frame
from etl.queries.reports import (
    BAND_TEXT,
    CLASS_TEXT,
    COLUMN_BY_KEY,
    COLUMN_KEYS,
    COLUMNS,
    Report,
    labels,
)

FORMATS = ("xlsx", "csv", "gpkg", "shp", "pdf")
ROW_KIND_TEXT = {
    "grid": ("网格", "grid"),
    "subtotal": ("小计", "subtotal"),
    "total": ("合计", "total"),
}
Progress = Callable[[str], None]


class ExportError(ValueError):
    """An export was asked for an unknown format, language or indicator."""


# --- shared shaping ----------------------------------------------------------------------------


def _check_lang(lang: str) -> int:
    if lang not in ("zh", "en"):
        raise ExportError(f"language must be 'zh' or 'en', not {lang!r}")
    return 0 if lang == "zh" else 1


def display_table(report: Report, *, lang: str = "zh") -> pd.DataFrame:
    """The report rows with labels translated (level, row kind, band, hot-spot class, top
    categories); numbers untouched; text that would start a formula neutralised. Columns are
    the keys of :data:`COLUMNS`."""
    i = _check_lang(lang)
    rows = report.rows.copy()
    names = report.level_names
    rows["level"] = rows["level"].map(lambda k: names.get(k, (k, k))[i])
    rows["row_kind"] = rows["row_kind"].map(lambda k: ROW_KIND_TEXT[k][i])
    rows["band"] = rows["band"].map(lambda k: BAND_TEXT[k][i] if isinstance(k, str) else None)
    rows["gi_class"] = rows["gi_class"].map(
        lambda k: CLASS_TEXT[k][i] if isinstance(k, str) else None
    )
    if lang == "en":
        rows["top_cat"] = rows["top_cat_en"]
    # names and categories come from loaded files: no cell may start a spreadsheet formula
    return neutralise_frame(rows[list(COLUMN_KEYS)])


def field_dictionary(*, lang: str = "zh") -> pd.DataFrame:
    """One row per column: the key (Shapefile field), both headers and the meaning."""
    _check_lang(lang)
    return pd.DataFrame(
        [(c.key, c.zh, c.en, c.meaning) for c in COLUMNS],
        columns=["field", "header_zh", "header_en", "meaning"],
    )


def _title(report: Report, lang: str) -> tuple[str, str]:
    asof = report.asof.strftime("%Y-%m-%d %H:%M")
    last = (report.end - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    span = f"{report.start:%Y-%m-%d} – {last}"
    if lang == "zh":
        return (
            f"{report.unit_name}网格工作报表（{report.period.label}）",
            f"统计期 {span}，数据截至 {asof}",
        )
    return (f"Grid coverage report: {report.unit_name} ({report.period.label})",
            f"Period {span}, data as of {asof}")  # fmt: skip


# --- CSV ---------------------------------------------------------------------------------------


def write_csv(report: Report, path: Path, *, lang: str = "zh") -> list[Path]:
    table = display_table(report, lang=lang)
    table.columns = labels(table.columns, lang)
    table.to_csv(path, index=False, encoding="utf-8-sig")
    return [Path(path)]


# --- XLSX --------------------------------------------------------------------------------------

_NUMBER_FORMATS = {"int": "#,##0", "float": "0.0", "pct": "0.0%", "text": "@"}


def write_xlsx(report: Report, path: Path, *, lang: str = "zh") -> list[Path]:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "报表" if lang == "zh" else "Report"
    _xlsx_report(ws, report, lang)
    _xlsx_fields(wb.create_sheet("字段说明" if lang == "zh" else "Fields"), lang)
    wb.save(path)
    return [Path(path)]


def _xlsx_report(ws: Any, report: Report, lang: str) -> None:
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    table = display_table(report, lang=lang)
    title, subtitle = _title(report, lang)
    ws.append([title])
    ws.append([subtitle])
    ws.append(labels(table.columns, lang))
    ws["A1"].font = Font(bold=True, size=14)
    header_fill = PatternFill("solid", fgColor="DDEBF7")
    for cell in ws[3]:
        cell.font, cell.fill = Font(bold=True), header_fill
        cell.alignment = Alignment(wrap_text=True, vertical="center", horizontal="center")
    kinds = report.rows["row_kind"].tolist()
    for values, kind in zip(table.itertuples(index=False), kinds, strict=True):
        ws.append([_cell(v) for v in values])
        if kind != "grid":
            for cell in ws[ws.max_row]:
                cell.font = Font(bold=True)
                if kind == "total":
                    cell.fill = PatternFill("solid", fgColor="FFF2CC")
    for j, key in enumerate(table.columns, start=1):
        fmt = _NUMBER_FORMATS[COLUMN_BY_KEY[key].kind]
        for (cell,) in ws.iter_rows(min_row=4, min_col=j, max_col=j):
            cell.number_format = fmt
        ws.column_dimensions[get_column_letter(j)].width = 28 if key in ("name", "top_cat") else 12
    ws.column_dimensions["A"].width = 20
    ws.freeze_panes = "C4"
    ws.auto_filter.ref = f"A3:{get_column_letter(len(table.columns))}{ws.max_row}"


def _cell(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _xlsx_fields(ws: Any, lang: str) -> None:
    from openpyxl.styles import Font

    fields = field_dictionary(lang=lang)
    ws.append(list(fields.columns))
    for row in fields.itertuples(index=False):
        ws.append(list(row))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for col, width in zip("ABCD", (12, 16, 18, 60), strict=True):
        ws.column_dimensions[col].width = width


# --- GeoPackage and Shapefile ------------------------------------------------------------------


def _geo_layers(report: Report, lang: str) -> dict[str, gpd.GeoDataFrame]:
    """Machine values (level keys, band and class keys) for GIS; top categories in ``lang``."""
    rows = report.rows.copy()
    if lang == "en":
        rows["top_cat"] = rows["top_cat_en"]
    frame = gpd.GeoDataFrame(rows[list(COLUMN_KEYS)], geometry=report.geometry.values, crs=4490)
    is_grid = (report.rows["row_kind"] == "grid").to_numpy()
    return {"grids": frame[is_grid], "subtotals": frame[~is_grid]}


def write_gpkg(report: Report, path: Path, *, lang: str = "zh") -> list[Path]:
    import pyogrio

    _check_lang(lang)
    path = Path(path)
    path.unlink(missing_ok=True)
    for layer, frame in _geo_layers(report, lang).items():
        pyogrio.write_dataframe(frame, path, layer=layer, driver="GPKG")
    pyogrio.write_dataframe(field_dictionary(lang=lang), path, layer="fields", driver="GPKG")
    return [path]


def write_shp(report: Report, path: Path, *, lang: str = "zh") -> list[Path]:
    import pyogrio

    _check_lang(lang)
    path = Path(path).with_suffix(".shp")
    written = []
    for layer, frame in _geo_layers(report, lang).items():
        target = path if layer == "grids" else path.with_name(f"{path.stem}_subtotals.shp")
        pyogrio.write_dataframe(frame, target, driver="ESRI Shapefile", encoding="UTF-8")
        written += [target.with_suffix(s) for s in (".shp", ".shx", ".dbf", ".prj", ".cpg")]
    sidecar = path.with_name(f"{path.stem}.fields.csv")
    field_dictionary(lang=lang).to_csv(sidecar, index=False, encoding="utf-8-sig")
    return [*written, sidecar]


# --- PDF ---------------------------------------------------------------------------------------

PDF_FONT = "STSong-Light"
PDF_COLUMNS = ("code", "name", "hh", "band", "ft", "hh_per_ft", "patrol_cov", "visits", "reported",
               "closed", "overdue", "close_rt", "ontime_rt", "resp_min", "handl_h", "satisf",
               "gi_class")  # fmt: skip
MAP_FONTS = ["Noto Sans CJK SC", "Noto Sans CJK JP", "DejaVu Sans"]


def numeric_indicators() -> list[str]:
    """Column keys a map can be coloured by."""
    return [c.key for c in COLUMNS if c.kind in ("int", "float", "pct")]


def write_pdf(
    report: Report,
    path: Path,
    *,
    lang: str = "zh",
    indicator: str = "reported",
    progress: Progress | None = None,
) -> list[Path]:
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.platypus import SimpleDocTemplate

    _check_lang(lang)
    if indicator not in numeric_indicators():
        raise ExportError(f"indicator {indicator!r} is not one of {numeric_indicators()}")
    say = progress or (lambda _m: None)
    styles = _pdf_styles()
    doc = SimpleDocTemplate(str(path), pagesize=landscape(A4), leftMargin=28, rightMargin=28,
                            topMargin=28, bottomMargin=28, title=_title(report, lang)[0])  # fmt: skip
    say("rendering the map")
    story = _pdf_header(report, lang, styles) + _pdf_figures(report, lang, indicator, doc.width)
    say("laying out the table")
    story += _pdf_table(report, lang, styles)
    doc.build(story)
    say(f"wrote {path}")
    return [Path(path)]


def _pdf_styles() -> dict[str, Any]:
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    if PDF_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(PDF_FONT))
    return {
        "title": ParagraphStyle("t", fontName=PDF_FONT, fontSize=16, leading=22),
        "sub": ParagraphStyle("s", fontName=PDF_FONT, fontSize=9, leading=13),
        "cell": ParagraphStyle("c", fontName=PDF_FONT, fontSize=6.5, leading=8),
    }


def _pdf_header(report: Report, lang: str, styles: dict[str, Any]) -> list[Any]:
    from reportlab.platypus import Paragraph, Spacer

    title, subtitle = _title(report, lang)
    total = report.total
    summary = _summary_line(total, lang)
    return [Paragraph(title, styles["title"]), Paragraph(subtitle, styles["sub"]),
            Paragraph(summary, styles["sub"]), Spacer(1, 6)]  # fmt: skip


def _fmt(value: object, kind: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if kind == "pct":
        return f"{float(value):.1%}"  # type: ignore[arg-type]
    if kind == "float":
        return f"{float(value):.1f}"  # type: ignore[arg-type]
    if kind == "int":
        return f"{int(value):d}"  # type: ignore[call-overload]
    return str(value)


def _summary_line(total: pd.Series, lang: str) -> str:
    keys = ("grids", "hh", "reported", "closed", "close_rt", "ontime_rt", "overdue", "patrol_cov")
    parts = [f"{labels([k], lang)[0]} {_fmt(total[k], COLUMN_BY_KEY[k].kind)}" for k in keys]
    return ("；" if lang == "zh" else "; ").join(parts)


def _pdf_figures(report: Report, lang: str, indicator: str, width: float) -> list[Any]:
    from reportlab.platypus import Image, Table

    map_png = render_map(report, indicator=indicator, lang=lang)
    chart_png = render_charts(report, lang=lang)
    half = width / 2 - 6
    cells = [[Image(io.BytesIO(map_png), width=half, height=half * 0.75),
              Image(io.BytesIO(chart_png), width=half, height=half * 0.75)]]  # fmt: skip
    return [Table(cells, colWidths=[half + 6, half + 6])]


def _pdf_table(report: Report, lang: str, styles: dict[str, Any]) -> list[Any]:
    from reportlab.lib import colors
    from reportlab.platypus import LongTable, PageBreak, Paragraph

    table = display_table(report, lang=lang)[list(PDF_COLUMNS)]
    head = [Paragraph(h, styles["cell"]) for h in labels(PDF_COLUMNS, lang)]
    body = [[Paragraph(_fmt(v, COLUMN_BY_KEY[k].kind), styles["cell"]) for k, v in zip(PDF_COLUMNS, row, strict=True)]
            for row in table.itertuples(index=False)]  # fmt: skip
    t = LongTable([head, *body], repeatRows=1)
    style = [("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
             ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DDEBF7")),
             ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]  # fmt: skip
    # STSong-Light has no bold face: subtotal rows are shaded instead
    for i, kind in enumerate(report.rows["row_kind"], start=1):
        if kind != "grid":
            shade = "#FFF2CC" if kind == "total" else "#F2F2F2"
            style.append(("BACKGROUND", (0, i), (-1, i), colors.HexColor(shade)))
    t.setStyle(style)
    return [PageBreak(), t]


def render_map(report: Report, *, indicator: str, lang: str = "zh", dpi: int = 150) -> bytes:
    """PNG of the grids coloured by ``indicator``, subtotal boundaries drawn over them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = report.frame()
    grids = frame[report.rows["row_kind"] == "grid"]
    outlines = frame[report.rows["row_kind"] != "grid"]
    col = COLUMN_BY_KEY[indicator]
    with plt.rc_context({"font.family": MAP_FONTS, "axes.unicode_minus": False}):
        fig, ax = plt.subplots(figsize=(8, 6))
        values = pd.to_numeric(grids[indicator], errors="coerce").astype(float)
        grids.assign(v=values).plot(column="v", ax=ax, cmap="YlOrRd", legend=True, edgecolor="white",
                                    linewidth=0.3, missing_kwds={"color": "lightgrey"},
                                    legend_kwds={"shrink": 0.7, "label": col.zh if lang == "zh" else col.en})  # fmt: skip
        if len(outlines):
            outlines.boundary.plot(ax=ax, color="#333333", linewidth=0.8)
        _mark_hotspots(ax, grids)
        ax.set_title(f"{report.unit_name} · {col.zh if lang == 'zh' else col.en}")
        ax.set_axis_off()
        return _png(fig, dpi)


def _mark_hotspots(ax: Any, grids: gpd.GeoDataFrame) -> None:
    hot = grids[grids["gi_class"].astype(str).str.startswith("hot")]
    cold = grids[grids["gi_class"].astype(str).str.startswith("cold")]
    if len(hot):
        hot.boundary.plot(ax=ax, color="#B00000", linewidth=1.6)
    if len(cold):
        cold.boundary.plot(ax=ax, color="#1F4E9C", linewidth=1.6)


def render_charts(report: Report, *, lang: str = "zh", dpi: int = 150) -> bytes:
    """PNG of the daily reported/closed trend above the top-10 categories."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    zh = lang == "zh"
    with plt.rc_context({"font.family": MAP_FONTS, "axes.unicode_minus": False}):
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6))
        daily = report.daily
        top.plot(
            pd.to_datetime(daily["day"]), daily["reported"], label="上报" if zh else "reported"
        )
        top.plot(pd.to_datetime(daily["day"]), daily["closed"], label="结案" if zh else "closed")
        top.set_title("每日事件" if zh else "Events per day")
        top.legend(loc="upper left")
        top.tick_params(axis="x", labelsize=7)
        cats = report.categories.head(10).iloc[::-1]
        bottom.barh(cats["name"] if zh else cats["name_en"], cats["n"], color="#C0504D")
        bottom.set_title("主要事件类别" if zh else "Top categories")
        fig.tight_layout()
        return _png(fig, dpi)


def _png(fig: Any, dpi: int) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# --- one entry point ---------------------------------------------------------------------------

WRITERS: dict[str, Callable[..., list[Path]]] = {
    "csv": write_csv, "xlsx": write_xlsx, "gpkg": write_gpkg, "shp": write_shp, "pdf": write_pdf,
}  # fmt: skip


def export(
    report: Report,
    path: Path,
    *,
    fmt: str,
    lang: str = "zh",
    indicator: str = "reported",
    progress: Progress | None = None,
) -> list[Path]:
    """Write ``report`` as ``fmt`` (one of :data:`FORMATS`) to ``path``; the files written."""
    if fmt not in WRITERS:
        raise ExportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "pdf":
        return write_pdf(report, path, lang=lang, indicator=indicator, progress=progress)
    return WRITERS[fmt](report, path, lang=lang)


def export_bytes(
    report: Report, *, fmt: str, lang: str = "zh", indicator: str = "reported", workdir: Path
) -> tuple[str, bytes]:
    """(filename, content) for a browser download; a Shapefile comes zipped with its sidecars."""
    stem = f"report_{report.unit_code}_{report.period.label.replace('..', '_')}"
    target = Path(workdir) / f"{stem}.{fmt}"
    files = export(report, target, fmt=fmt, lang=lang, indicator=indicator)
    if fmt != "shp":
        return target.name, target.read_bytes()
    return f"{stem}_shp.zip", _zip(files)


def _zip(files: Sequence[Path]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, arcname=f.name)
    return buf.getvalue()
