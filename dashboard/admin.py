"""The administrator's page (``/admin``): users, API tokens and the audit log.

Server-rendered forms (each with the session's CSRF token), admins only (``Perm.ADMIN`` in
``dashboard.auth.ROUTES``). An admin manages accounts of their own unit and below: a unit they
cannot see (row-level security) cannot be given to an account. New passwords and tokens are
shown once on the page that made them, and every change is written to the audit log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from html import escape
from typing import Any

import flask
from sqlalchemy import Engine

from dashboard.auth import csrf_token, current_principal
from dashboard.login import STYLE as LOGIN_STYLE
from etl import accounts
from etl.access import PERMISSIONS, Perm, Role
from etl.db import transaction

STYLE = (
    LOGIN_STYLE.replace("display:flex;align-items:center;justify-content:center;", "")
    + """
body{display:block;padding:1.5rem 2rem}main{max-width:110rem;margin:auto}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem;font-size:.95rem}
th,td{border-bottom:1px solid #2f4a6b;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{color:#9fb3c8}form{display:inline;background:none;padding:0;box-shadow:none;min-width:0}
form.block{display:flex;gap:.6rem;align-items:end;flex-wrap:wrap;margin:.5rem 0 1rem}
form.block label{margin:0}input,select{width:auto;padding:.35rem;background:#0b1a2e;color:#e6edf5;
border:1px solid #2f4a6b;border-radius:4px}button{width:auto;margin:0;padding:.35rem .9rem}
.once{background:#1b5e20;padding:.8rem 1rem;border-radius:6px;font-family:monospace;
word-break:break-all}a{color:#7cc4ff}h2{margin-top:2rem}.muted{color:#9fb3c8}
"""
)


def _form(action: str, fields: str, button: str, cls: str = "") -> str:
    return (f'<form method=post action="{action}" class="{cls}">{fields}'
            f'<input type=hidden name=csrf_token value="{escape(csrf_token())}">'
            f"<button type=submit>{escape(button)}</button></form>")  # fmt: skip


def _hidden(**values: object) -> str:
    return "".join(
        f'<input type=hidden name="{k}" value="{escape(str(v))}">' for k, v in values.items()
    )


def _table(headers: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{c if isinstance(c, Raw) else escape(_fmt(c))}</td>" for c in r)
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


class Raw(str):
    """Markup we built ourselves (forms), not to be escaped again."""


def _fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def _role_select() -> str:
    options = "".join(f'<option value="{r.value}">{r.value}</option>' for r in Role)
    return f"<label>角色 role <select name=role>{options}</select></label>"


def _users_section(users: list[dict[str, Any]]) -> str:
    rows = []
    for u in users:
        toggle = "enable" if not u["active"] else "disable"
        actions = Raw(
            _form("/admin/users", _hidden(action="reset", name=u["name"]), "重置密码 reset password")
            + " "
            + _form("/admin/users", _hidden(action=toggle, name=u["name"]),
                    "启用 enable" if toggle == "enable" else "停用 disable")
        )  # fmt: skip
        rows.append((u["name"], u["display_name"], u["role"], u["unit_code"],
                     "active" if u["active"] else "disabled", u["locked_until"],
                     u["last_login_at"], actions))  # fmt: skip
    add = _form("/admin/users", _hidden(action="add")
                + "<label>用户名 name <input name=name required maxlength=64></label>"
                + "<label>姓名 display name <input name=display_name maxlength=64></label>"
                + _role_select() + "<label>单位编码 unit <input name=unit required maxlength=32></label>",
                "新增用户 add user", "block")  # fmt: skip
    table = _table(
        ["name", "display name", "role", "unit", "state", "locked until", "last login", ""], rows
    )
    return "<h2>用户 Users</h2>" + add + table


def _tokens_section(tokens: list[dict[str, Any]]) -> str:
    rows = [
        (t["id"], t["name"], t["prefix"] + "…", t["role"], t["unit_code"], t["created_at"],
         t["last_used_at"], t["revoked_at"] or Raw(_form("/admin/tokens", _hidden(action="revoke", id=t["id"]),
                                                       "吊销 revoke")))
        for t in tokens
    ]  # fmt: skip
    add = _form("/admin/tokens", _hidden(action="add")
                + "<label>名称 name <input name=name required maxlength=64></label>" + _role_select()
                + "<label>单位编码 unit <input name=unit required maxlength=32></label>",
                "新增令牌 add token", "block")  # fmt: skip
    table = _table(
        ["id", "name", "prefix", "role", "unit", "created", "last used", "revoked"], rows
    )
    return "<h2>API 令牌 Tokens</h2>" + add + table


def _audit_section(entries: list[dict[str, Any]]) -> str:
    rows = [(e["at"], e["actor"], e["role"], e["unit_code"], e["action"], e["target"],
             ", ".join(f"{k}={v}" for k, v in (e["detail"] or {}).items()), e["ip"]) for e in entries]  # fmt: skip
    return "<h2>审计日志 Audit log</h2>" + _table(
        ["at", "actor", "role", "unit", "action", "target", "detail", "ip"], rows
    )


def _page(body: str, notice: str = "") -> str:
    once = f"<div class=once role=status>{escape(notice)}</div>" if notice else ""
    return (f'<!doctype html><html lang=zh><head><meta charset=utf-8><title>管理 Admin</title>'
            f"<style>{STYLE}</style></head><body><main><h1>管理 Administration</h1>"
            f'<p><a href="/">← 返回 back</a></p>{once}{body}</main></body></html>')  # fmt: skip


def make_blueprint(engine: Engine, clock: Callable[[], datetime]) -> flask.Blueprint:
    bp = flask.Blueprint("admin", __name__)

    def overview(notice: str = "", status: int = 200) -> tuple[str, int]:
        who = current_principal()
        assert who is not None  # the guard let only admins in
        with engine.connect() as conn:
            users = accounts.list_users(conn, under=who.unit_code)
            tokens = [
                t for t in accounts.list_tokens(conn) if t["unit_code"].startswith(who.unit_code)
            ]
            entries = accounts.read_audit(conn, limit=100)
        body = _users_section(users) + _tokens_section(tokens) + _audit_section(entries)
        body += "<h2>权限表 Permissions</h2>" + _table(
            ["permission", *(r.value for r in Role)],
            [(p.value, *("✓" if r in PERMISSIONS[p] else "" for r in Role)) for p in Perm],
        )
        return _page(body, notice), status

    @bp.get("/admin")
    def admin() -> tuple[str, int]:
        return overview()

    @bp.get("/admin/audit")
    def audit_page() -> tuple[str, int]:
        with engine.connect() as conn:
            entries = accounts.read_audit(conn, limit=1000, action=flask.request.args.get("action"))
        return _page(_audit_section(entries)), 200

    @bp.post("/admin/users")
    def users() -> tuple[str, int]:
        return overview(*_act(engine, clock, _user_action))

    @bp.post("/admin/tokens")
    def tokens() -> tuple[str, int]:
        return overview(*_act(engine, clock, _token_action))

    return bp


Action = Callable[[Any, accounts.Principal, dict[str, str], datetime], str]


def _act(engine: Engine, clock: Callable[[], datetime], action: Action) -> tuple[str, int]:
    who = current_principal()
    assert who is not None
    form = {k: v[:128] for k, v in flask.request.form.items()}
    try:
        with transaction(engine) as conn:
            notice = action(conn, who, form, clock())
            accounts.audit(conn, who, f"{action.__name__.strip('_')}:{form.get('action', '')}"[:32],
                           form.get("name") or form.get("id"), ip=flask.request.remote_addr)  # fmt: skip
    except (accounts.AccountError, ValueError) as exc:
        return f"✗ {exc}", 422
    return notice, 200


def _inside(who: accounts.Principal, unit_code: str) -> None:
    if not unit_code.startswith(who.unit_code):
        raise accounts.AccountError(
            f"unit {unit_code} is outside your jurisdiction {who.unit_code}"
        )


def _target_user(conn: Any, who: accounts.Principal, name: str) -> None:
    found = [u for u in accounts.list_users(conn, under=who.unit_code) if u["name"] == name]
    if not found:
        raise accounts.AccountError(f"no user {name!r} in your jurisdiction")


def _user_action(conn: Any, who: accounts.Principal, form: dict[str, str], _now: datetime) -> str:
    name, action = form.get("name", ""), form.get("action")
    if action == "add":
        _inside(who, form.get("unit", ""))
        password = accounts.generate_password()
        accounts.add_user(conn, name, role=form.get("role", ""), unit_code=form.get("unit", ""),
                          password=password, display_name=form.get("display_name") or None,
                          must_change=True)  # fmt: skip
        return f"用户 {name} 已创建；初始密码（仅显示一次，首次登录须修改）: {password}"
    _target_user(conn, who, name)
    if action == "reset":
        password = accounts.generate_password()
        accounts.set_password(conn, name, password, must_change=True)
        return f"{name} 的新密码（仅显示一次，首次登录须修改）: {password}"
    if action in ("enable", "disable"):
        if name == who.name:
            raise accounts.AccountError("you cannot disable yourself")
        accounts.set_active(conn, name, action == "enable")
        return f"{name}: {action}d"
    raise accounts.AccountError(f"unknown action {action!r}")


def _token_action(conn: Any, who: accounts.Principal, form: dict[str, str], now: datetime) -> str:
    if form.get("action") == "add":
        _inside(who, form.get("unit", ""))
        token_id, secret = accounts.add_token(conn, form.get("name", ""), role=form.get("role", ""),
                                              unit_code=form.get("unit", ""), created_by=who.name)  # fmt: skip
        return f"令牌 {token_id} 已创建（仅显示一次）token, shown once: {secret}"
    if form.get("action") == "revoke":
        token_id = int(form.get("id", "0")) if form.get("id", "").isdigit() else 0
        owned = [t for t in accounts.list_tokens(conn) if t["id"] == token_id]
        if not owned or not owned[0]["unit_code"].startswith(who.unit_code):
            raise accounts.AccountError(f"no token {token_id} in your jurisdiction")
        accounts.revoke_token(conn, token_id, now=now)
        return f"token {token_id} revoked"
    raise accounts.AccountError(f"unknown action {form.get('action')!r}")


def install(server: flask.Flask, engine: Engine, clock: Callable[[], datetime]) -> None:
    server.register_blueprint(make_blueprint(engine, clock))
