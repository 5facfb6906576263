"""The login page, logout and password change: plain server-rendered forms (zh/en).

They are the only pages an anonymous caller can open, so they load no script at all. Login is
rate-limited per address (Flask-Limiter, :data:`LOGIN_LIMIT`) on top of the per-account lockout
in ``etl.accounts``; every success and failure goes to the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from html import escape
from typing import Any

import flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from sqlalchemy import Engine

from dashboard.auth import csrf_token, current_principal
from etl import accounts
from etl.db import transaction

LOGIN_LIMIT = "10 per minute"

TEXT = {
    "title": ("网格化服务管理 · 登录", "Grid governance · Log in"),
    "name": ("用户名", "User name"),
    "password": ("密码", "Password"),
    "submit": ("登录", "Log in"),
    "refused": ("用户名或密码错误，或账号已锁定（连续 5 次错误锁定 15 分钟）",
                "Wrong user name or password, or the account is locked (5 failures lock it for 15 minutes)"),
    "limited": ("尝试过于频繁，请稍后再试", "Too many attempts: wait a minute"),
    "change": ("修改密码", "Change password"),
    "old": ("当前密码", "Current password"),
    "new": ("新密码（至少 10 位）", "New password (at least 10 characters)"),
    "again": ("再次输入新密码", "New password again"),
    "mismatch": ("两次输入的新密码不一致", "The new passwords differ"),
    "wrong_old": ("当前密码错误", "The current password is wrong"),
    "must": ("首次登录请先修改密码", "Set your own password before you go on"),
    "other": ("English", "中文"),
}  # fmt: skip

STYLE = """
html{font-size:clamp(16px,calc(100vw / 120),36px)}
body{margin:0;font-family:"Noto Sans CJK SC","Noto Sans",sans-serif;background:#0b1a2e;color:#e6edf5;
display:flex;align-items:center;justify-content:center;min-height:100vh}
form{background:#12263f;padding:2.5rem 3rem;border-radius:8px;min-width:22rem;font-size:1rem;box-shadow:0 0 30px #0008}
h1{font-size:1.4rem;margin:0 0 1.5rem}label{display:block;margin:.9rem 0 .3rem;color:#9fb3c8}
input{width:100%;box-sizing:border-box;padding:.6rem;border-radius:4px;border:1px solid #2f4a6b;
background:#0b1a2e;color:#e6edf5;font-size:1rem}button{margin-top:1.5rem;width:100%;padding:.7rem;
border:0;border-radius:4px;background:#1f7ae0;color:#fff;font-size:1rem;cursor:pointer}
.err{color:#ff8a80;margin-top:1rem;max-width:22rem}.lang{display:block;margin-top:1rem;color:#9fb3c8;
font-size:.9rem;text-align:right}
"""


def _lang() -> int:
    return 1 if flask.request.args.get("lang") == "en" else 0


def _t(key: str) -> str:
    return TEXT[key][_lang()]


def _page(title: str, fields: str, error: str = "", action: str = "") -> str:
    lang = "en" if _lang() else "zh"
    other = "zh" if _lang() else "en"
    switch = escape(f"{flask.request.path}?lang={other}")
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{escape(title)}'
        f'</title><style>{STYLE}</style></head><body><form method=post action="{escape(action)}">'
        f"<h1>{escape(title)}</h1>{fields}"
        f'<input type=hidden name=csrf_token value="{escape(csrf_token())}">'
        f"<button type=submit>{escape(_t('submit') if 'login' in action else _t('change'))}</button>"
        + (f"<div class=err role=alert>{escape(error)}</div>" if error else "")
        + f'<a class=lang href="{switch}">{escape(_t("other"))}</a></form></body></html>'
    )


def _field(name: str, label: str, kind: str = "text", auto: str = "") -> str:
    return (f'<label for="{name}">{escape(label)}</label><input id="{name}" name="{name}" '
            f'type="{kind}" autocomplete="{auto}" required maxlength=128>')  # fmt: skip


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def make_blueprint(
    engine: Engine, clock: Callable[[], datetime], limiter: Limiter
) -> flask.Blueprint:
    bp = flask.Blueprint("login", __name__)

    def login_form(error: str = "", status: int = 200) -> tuple[str, int]:
        nxt = _safe_next(flask.request.args.get("next"))
        action = flask.url_for("login.login", next=nxt, lang="en" if _lang() else None)
        fields = _field("name", _t("name"), auto="username") + _field(
            "password", _t("password"), "password", "current-password"
        )
        return _page(_t("title"), fields, error, action), status

    @bp.route("/login", methods=["GET", "POST"])
    @limiter.limit(LOGIN_LIMIT, methods=["POST"], error_message=TEXT["limited"][1])
    def login() -> Any:
        if flask.request.method == "GET":
            return login_form()
        name = flask.request.form.get("name", "")[:64]
        password = flask.request.form.get("password", "")[:128]
        ip = flask.request.remote_addr
        with transaction(engine) as conn:  # a refusal commits too: it counts towards lockout
            try:
                who = accounts.authenticate(conn, name, password, now=clock())
            except accounts.LoginRefused:
                accounts.audit(conn, name or "?", "login_failed", name, ip=ip)
                who = None
        if who is not None:
            with transaction(engine) as conn:
                accounts.audit(conn, who, "login", name, ip=ip)
        if who is None:
            return login_form(_t("refused"), 401)
        flask.session.clear()  # a new session id for the new user: no fixation
        flask.session.update(uid=who.user_id, epoch=who.epoch)
        flask.session.permanent = True
        csrf_token()
        return flask.redirect(_safe_next(flask.request.args.get("next")))

    @bp.route("/logout", methods=["POST"])
    def logout() -> Any:
        who = current_principal()
        if who is not None and who.user_id is not None:
            with transaction(engine) as conn:
                accounts.audit(conn, who, "logout", who.name, ip=flask.request.remote_addr)
        flask.session.clear()
        response = flask.redirect(flask.url_for("login.login"))
        response.delete_cookie("_csrf_token")
        return response

    @bp.route("/account/password", methods=["GET", "POST"])
    def change_password() -> Any:
        who = current_principal()
        if who is None or who.user_id is None:
            flask.abort(403)
        error = _t("must") if who.must_change_password else ""
        if flask.request.method == "POST":
            form = flask.request.form
            old, new, again = (form.get(k, "")[:128] for k in ("old", "new", "again"))
            error = _change(engine, clock, who, old, new, again)
            if not error:
                flask.session.clear()
                return flask.redirect(flask.url_for("login.login"))
        fields = (_field("old", _t("old"), "password", "current-password")
                  + _field("new", _t("new"), "password", "new-password")
                  + _field("again", _t("again"), "password", "new-password"))  # fmt: skip
        return _page(_t("change"), fields, error, flask.url_for("login.change_password"))

    return bp


def _change(
    engine: Engine, clock: Callable[[], datetime], who: accounts.Principal, old: str, new: str,
    again: str,
) -> str:  # fmt: skip
    if new != again:
        return _t("mismatch")
    with transaction(engine) as conn:  # a wrong current password counts towards lockout
        try:
            accounts.authenticate(conn, who.name, old, now=clock())
        except accounts.LoginRefused:
            return _t("wrong_old")
    try:
        with transaction(engine) as conn:
            accounts.set_password(conn, who.name, new)
            accounts.audit(conn, who, "password_changed", who.name, ip=flask.request.remote_addr)
    except accounts.AccountError as exc:
        return str(exc)
    return ""


def install(server: flask.Flask, engine: Engine, clock: Callable[[], datetime]) -> Limiter:
    limiter = Limiter(get_remote_address, app=server, storage_uri="memory://",
                      default_limits=[], headers_enabled=True)  # fmt: skip
    server.register_blueprint(make_blueprint(engine, clock, limiter))
    return limiter
