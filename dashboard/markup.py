"""Dash ``html`` components rendered to an HTML string, for panels the browser fills in one go.

Every Dash component on a page costs the renderer about a millisecond to mount and a selector
on every store update; the KPI cards, ranking, trend and feed are ~350 elements that change
together on every refresh and never take input. They are built with the same ``html``
components as everywhere else, sent as one escaped string, and set as ``innerHTML`` by
screen.js. Clicks reach the page through delegated handlers on ``data-*`` attributes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from dash.development.base_component import Component
from markupsafe import escape

# Dash prop -> HTML attribute, where they differ
_ATTRIBUTES = {"className": "class", "htmlFor": "for"}
_SKIPPED = {"children", "n_clicks", "n_clicks_timestamp", "disable_n_clicks", "loading_state"}
_VOID = {"br", "hr", "img", "input", "wbr"}
_ATTR_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_:.-]*$")


def to_html(node: Any) -> str:
    """HTML of a component tree (``dash.html`` only), text and numbers escaped."""
    if node is None:
        return ""
    if isinstance(node, str | int | float):
        return str(escape(node))
    if isinstance(node, Iterable) and not isinstance(node, Component):
        return "".join(to_html(child) for child in node)
    if not isinstance(node, Component) or node._namespace != "dash_html_components":
        raise TypeError(f"only dash.html components render to HTML, not {node!r}")
    tag = node._type.lower()
    props = node.to_plotly_json()["props"]
    attrs = "".join(_attribute(name, value) for name, value in props.items())
    if tag in _VOID:
        return f"<{tag}{attrs}>"
    return f"<{tag}{attrs}>{to_html(props.get('children'))}</{tag}>"


def _attribute(name: str, value: Any) -> str:
    if name in _SKIPPED or value is None or value is False:
        return ""
    if name == "id" and not isinstance(value, str):
        raise TypeError(f"a rendered panel needs string ids, not {value!r}")
    attr = _ATTRIBUTES.get(name, name)
    if not _ATTR_NAME.match(attr):
        raise ValueError(f"not an HTML attribute name: {attr!r}")
    if name == "style":
        value = ";".join(f"{_kebab(k)}:{v}" for k, v in value.items())
    if value is True:
        return f" {attr}"
    return f' {attr}="{escape(value)}"'


def _kebab(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "-" + m.group(0).lower(), name)
