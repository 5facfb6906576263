"""``python -m etl users …`` and ``python -m etl tokens …``: accounts from the command line.

Runs as the database owner. Passwords come from standard input when it is not a terminal
(``echo "$PW" | python -m etl users add …``), otherwise one is generated and printed once.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from sqlalchemy import Connection

from etl import accounts
from etl.access import Role


def _password_from_stdin_or_new() -> tuple[str, bool]:
    if not sys.stdin.isatty():
        given = sys.stdin.readline().rstrip("\n")
        if given:
            return given, False
    return accounts.generate_password(), True


def _root_code(conn: Connection, preferred: str) -> str:
    roots = accounts.root_units(conn)
    if not roots:
        raise accounts.AccountError("no units are loaded yet: load the territory first")
    return preferred if preferred in roots else roots[0]


def _run(args: argparse.Namespace) -> int:
    from etl.db import get_engine, transaction
    from etl.settings import get_settings

    try:
        with transaction(get_engine()) as conn:
            return int(args.action(conn, args, get_settings()))
    except accounts.AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # an unknown role
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _users_add(conn: Connection, args: argparse.Namespace, _s: object) -> int:
    password, generated = _password_from_stdin_or_new()
    accounts.add_user(conn, args.name, role=args.role, unit_code=args.unit, password=password,
                      display_name=args.display_name, must_change=generated)  # fmt: skip
    print(f"user {args.name} ({args.role} at {args.unit}) created")
    if generated:
        print(f"password (shown once; to be changed at first login): {password}")
    return 0


def _users_reset(conn: Connection, args: argparse.Namespace, _s: object) -> int:
    password, generated = _password_from_stdin_or_new()
    accounts.set_password(conn, args.name, password, must_change=generated)
    print(f"password of {args.name} reset; every session of it ended")
    if generated:
        print(f"new password (shown once; to be changed at first login): {password}")
    return 0


def _users_list(conn: Connection, _a: argparse.Namespace, _s: object) -> int:
    for u in accounts.list_users(conn):
        state = "active" if u["active"] else "disabled"
        print(f"{u['name']:<20} {u['role']:<12} {u['unit_code']:<16} {state}")
    return 0


def _users_disable(conn: Connection, args: argparse.Namespace, _s: object) -> int:
    accounts.set_active(conn, args.name, args.enable)
    print(f"user {args.name} {'enabled' if args.enable else 'disabled'}")
    return 0


def _users_ensure_admin(conn: Connection, _a: argparse.Namespace, settings: object) -> int:
    unit = _root_code(conn, getattr(settings, "county_code", ""))
    password = accounts.ensure_admin(conn, unit_code=unit)
    if password is None:
        print("an administrator account exists already")
    else:
        print(f"created user 'admin' (admin at {unit}); password, shown once and to be changed "
              f"at first login: {password}")  # fmt: skip
    return 0


def _tokens_add(conn: Connection, args: argparse.Namespace, _s: object) -> int:
    token_id, secret = accounts.add_token(conn, args.name, role=args.role, unit_code=args.unit,
                                          created_by="cli")  # fmt: skip
    print(f"token {token_id} ({args.name}, {args.role} at {args.unit}); send it as "
          f"'Authorization: Bearer <token>'. Shown once:\n{secret}")  # fmt: skip
    return 0


def _tokens_revoke(conn: Connection, args: argparse.Namespace, _s: object) -> int:
    accounts.revoke_token(conn, args.id, now=datetime.now(UTC))
    print(f"token {args.id} revoked")
    return 0


def _tokens_list(conn: Connection, _a: argparse.Namespace, _s: object) -> int:
    for t in accounts.list_tokens(conn):
        state = "revoked" if t["revoked_at"] else "active"
        print(f"{t['id']:>4} {t['name']:<20} {t['prefix']}… {t['role']:<12} {t['unit_code']:<16} "
              f"{state}")  # fmt: skip
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    roles = [r.value for r in Role]
    users = sub.add_parser("users", help="user accounts: add, reset-password, list, disable")
    us = users.add_subparsers(dest="users_command", required=True)
    p = us.add_parser("add", help="add a user (password from stdin, or generated and printed)")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=roles)
    p.add_argument("--unit", required=True, help="unit code the user is bound to")
    p.add_argument("--display-name")
    p.set_defaults(func=_run, action=_users_add)
    p = us.add_parser("reset-password", help="new password (stdin or generated); ends sessions")
    p.add_argument("name")
    p.set_defaults(func=_run, action=_users_reset)
    p = us.add_parser("list", help="list users")
    p.set_defaults(func=_run, action=_users_list)
    for verb, enable in (("disable", False), ("enable", True)):
        p = us.add_parser(verb, help=f"{verb} a user")
        p.add_argument("name")
        p.set_defaults(func=_run, action=_users_disable, enable=enable)
    p = us.add_parser("ensure-admin", help="create 'admin' at the root unit if no admin exists")
    p.set_defaults(func=_run, action=_users_ensure_admin)

    tokens = sub.add_parser("tokens", help="API tokens for machine clients: add, revoke, list")
    ts = tokens.add_subparsers(dest="tokens_command", required=True)
    p = ts.add_parser("add", help="create a token bound to a role and a unit (printed once)")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=roles)
    p.add_argument("--unit", required=True)
    p.set_defaults(func=_run, action=_tokens_add)
    p = ts.add_parser("revoke", help="revoke a token by id")
    p.add_argument("id", type=int)
    p.set_defaults(func=_run, action=_tokens_revoke)
    p = ts.add_parser("list", help="list tokens (never their secrets)")
    p.set_defaults(func=_run, action=_tokens_list)
