"""What the web app's database role may do: grants applied after every migration.

The app role (``gridgov_app`` on the managed cluster, or the user of ``GRIDGOV_APP_DATABASE_URL``)
owns nothing, so row-level security always applies to it (migration 0008). It reads every
table, writes only the tables the pages and API change (and deletes only the derived road
network, to rebuild it), may never change reference data, rewrite
an event's history, or update or delete the audit log.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from etl.settings import APP_ROLE

# reference data the app reads but only loads (the owner) change
READ_ONLY = ("levels", "event_categories", "roads", "spatial_ref_sys")
# the routable network is derived from roads and rebuilt on demand by the first dispatch
DERIVED = ("road_vertices", "road_edges")
# history is appended to, never rewritten
APPEND_ONLY = ("event_history", "audit_log", "etl_runs", "responder_positions")


def apply_grants(conn: Connection, role: str = APP_ROLE) -> bool:
    """Grant ``role`` what the app needs; False (and nothing done) when the role does not exist."""
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    if not exists:
        return False
    r = f'"{role}"'
    statements = [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {r}",
        f"GRANT USAGE ON SCHEMA public TO {r}",
        f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {r}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r}",
        *(f"REVOKE INSERT, UPDATE ON {t} FROM {r}" for t in READ_ONLY),
        *(f"REVOKE UPDATE ON {t} FROM {r}" for t in APPEND_ONLY),
        *(f"GRANT DELETE ON {t} TO {r}" for t in DERIVED),
    ]
    for sql in statements:
        conn.execute(text(sql))
    return True


def app_role_problems(conn: Connection) -> list[str]:
    """Why the current connection's role is unfit to serve the app (empty when it is fit): a
    superuser or a role with BYPASSRLS skips row-level security, and so does a table's owner."""
    row = conn.execute(
        text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    ).one()
    problems = []
    if row.rolsuper:
        problems.append("is a superuser")
    if row.rolbypassrls:
        problems.append("has BYPASSRLS")
    owned = conn.execute(
        text(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user"
        )
    ).scalar_one()
    if owned:
        problems.append(f"owns {owned} tables (row-level security does not bind an owner here)")
    return problems
