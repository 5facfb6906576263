"""dashboard.markup: html components to an HTML string (the command centre's panels)."""

from __future__ import annotations

import pytest
from dash import dcc, html

from dashboard import layers as L
from dashboard.markup import to_html


def test_attributes_children_and_escaping() -> None:
    tree = html.Div(
        id="x",
        className="kpi ok",
        style={"backgroundColor": "#fff", "height": "12%"},
        title='a "quoted" <title>',
        children=[html.Span("<b>&</b>", className="v"), 42, None, html.Br()],
        **{"data-code": "510000"},
    )
    assert to_html(tree) == (
        '<div id="x" class="kpi ok" style="background-color:#fff;height:12%" '
        'title="a &#34;quoted&#34; &lt;title&gt;" data-code="510000">'
        '<span class="v">&lt;b&gt;&amp;&lt;/b&gt;</span>42<br></div>'
    )


def test_click_counters_are_not_attributes() -> None:
    assert to_html(html.Button("go", n_clicks=3)) == "<button>go</button>"


def test_only_html_components_render() -> None:
    with pytest.raises(TypeError, match="only dash.html"):
        to_html(html.Div(dcc.Input(id="i")))
    with pytest.raises(TypeError, match="string ids"):
        to_html(html.Div(id={"type": "rank", "code": "1"}))


def test_ranking_rows_carry_codes_for_the_click_handler() -> None:
    rows = [{"code": "510000001", "name": "乡镇<1>", "open": 3, "overdue": 1, "reported": 9,
             "closure_rate": 0.5}]  # fmt: skip
    markup = to_html(L.ranking_table(rows, lang="zh", page="cmd"))
    assert '<tr class="rank-row pick" data-code="510000001">' in markup
    assert "乡镇&lt;1&gt;" in markup and "<1>" not in markup
