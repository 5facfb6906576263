"""Residents' personal data on its way out: masked unless the caller's role needs it, and every
unmasked view written to the audit log.

What counts as personal in an event: who reported it (the ``report`` step's actor: a resident,
a caller of the hotline) and phone or ID numbers anywhere in the description and notes. Staff
names on later steps are work records and stay. The wall role and anonymous callers never reach
these routes at all (``dashboard.auth``); roles without ``Perm.PERSONAL`` get masked values.
"""

from __future__ import annotations

import re
from typing import Any

import flask
from sqlalchemy import Connection, Engine

from dashboard.auth import current_principal
from etl import accounts
from etl.access import Perm, allowed
from etl.db import transaction
from etl.privacy import mask_name, mask_text


def sees_personal() -> bool:
    who = current_principal()
    return who is not None and allowed(who.role, Perm.PERSONAL)


def _masked_step(step: dict[str, Any]) -> dict[str, Any]:
    out = {**step, "note": mask_text(step.get("note"))}
    if step.get("action") == "report":
        out["actor"] = mask_name(step.get("actor"))
    return out


def _masked(row: dict[str, Any]) -> dict[str, Any]:
    out = {**row, "description": mask_text(row.get("description"))}
    if "history" in row:
        out["history"] = [_masked_step(s) for s in row["history"]]
    return out


def protect(
    engine: Engine | Connection, rows: list[dict[str, Any]], *, what: str
) -> list[dict[str, Any]]:
    """The rows as this caller may see them; an unmasked view is audited (one entry per call)."""
    if not sees_personal():
        return [_masked(r) for r in rows]
    who = current_principal()
    if rows and who is not None:
        codes = [str(r.get("code")) for r in rows[:20]]
        with transaction(engine) as conn:
            accounts.audit(conn, who, "view_personal", what,
                           detail={"events": len(rows), "codes": codes},
                           ip=flask.request.remote_addr if flask.has_request_context() else None)  # fmt: skip
    return rows


def protect_one(engine: Engine | Connection, row: dict[str, Any], *, what: str) -> dict[str, Any]:
    return protect(engine, [row], what=what)[0]


def audit_export(engine: Engine | Connection, filename: str, **detail: Any) -> None:
    """Every export (spreadsheets, GIS files, PDFs) goes to the audit log."""
    who = current_principal()
    if who is None:
        return
    with transaction(engine) as conn:
        accounts.audit(conn, who, "export", filename, detail=detail,
                       ip=flask.request.remote_addr if flask.has_request_context() else None)  # fmt: skip


PERSONAL_NUMBER = re.compile(r"\d{7,}")


def search_refusal(text_query: str | None) -> str | None:
    """Why this search may not run for the caller: looking events up by a phone or ID number
    finds a person, so it needs ``Perm.PERSONAL`` (and is audited like a view)."""
    if not text_query or not PERSONAL_NUMBER.search(text_query.replace(" ", "").replace("-", "")):
        return None
    if not sees_personal():
        return "searching by phone or ID numbers needs the personal-data permission"
    return None
