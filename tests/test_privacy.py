"""Masking of personal data and neutralising of spreadsheet formulas (pure functions), and a
report export whose unit name is a formula."""

from __future__ import annotations

import pandas as pd
import pytest

from etl.privacy import mask_name, mask_phone, mask_text, neutralise_formula, neutralise_frame


@pytest.mark.parametrize(
    ("name", "masked"),
    [("张三", "张*"), ("欧阳小明", "欧***"), ("A", "A"), ("", ""), (None, None)],
)
def test_names_keep_their_first_character(name: str | None, masked: str | None) -> None:
    assert mask_name(name) == masked


def test_phones_and_id_numbers_are_masked_inside_text() -> None:
    text = "王女士 13812345678 反映，身份证 11010519491231002X，座机 0717-4214580"
    out = mask_text(text)
    assert "13812345678" not in out and "138****5678" in out
    assert "11010519491231002X" not in out and "110105********002X" in out
    assert "4214580" not in out and out.endswith("4580")
    assert mask_phone("13812345678") == "138****5678"
    assert mask_text("no numbers here") == "no numbers here"


@pytest.mark.parametrize("cell", ["=cmd|' /C calc'!A0", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_formula_cells_are_neutralised(cell: str) -> None:
    assert neutralise_formula(cell) == "'" + cell


def test_numbers_and_plain_text_pass_unchanged() -> None:
    frame = pd.DataFrame({"name": ["=HYPERLINK(1)", "网格"], "households": [-3, 400]})
    out = neutralise_frame(frame)
    assert out["name"].tolist() == ["'=HYPERLINK(1)", "网格"]
    assert out["households"].tolist() == [-3, 400]
    assert frame["name"].iloc[0] == "=HYPERLINK(1)"  # the input is not changed
