"""Accounts, machine tokens, the audit log, and row-level security on every jurisdictional table.

* users (argon2id hashes, lockout counters, a session epoch), api_tokens (SHA-256 of a random
  token, a role and a unit each), audit_log (append-only for the app role, admins read it);
* ``app_scope()``: the unit codes of the current transaction (``app.unit_codes``, set with
  ``set_config(..., true)`` by the app's engine from the logged-in user or token); empty when
  unset, so a transaction without a scope sees no row;
* ``FORCE ROW LEVEL SECURITY`` and one policy per table: a row is visible and writable when its
  ``unit_path`` shares a code with ``app_scope()``; rows without a path (history, AVL tracks,
  dispatches, plan grids) follow their event, responder or plan. The owner role bypasses RLS
  (loads and migrations); the app role does not.

Grants to the app role are applied by ``etl.roles.apply_grants`` after every migration (the role
may be created after the schema).

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PATH_TABLES = ("units", "buildings", "events", "staff", "responders", "patrols", "plans")
# table -> (its key column, the parent table whose visibility it follows)
CHILD_TABLES = {
    "event_history": ("event_id", "events"),
    "dispatch_assignments": ("event_id", "events"),
    "responder_positions": ("responder_id", "responders"),
    "plan_grids": ("plan_id", "plans"),
    "plan_assignments": ("plan_id", "plans"),
}
SCOPE_FUNCTION = """
CREATE OR REPLACE FUNCTION app_scope() RETURNS varchar[] LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT coalesce(nullif(current_setting('app.unit_codes', true), ''), '{}')::varchar[] $$
"""


def _accounts() -> None:
    now = sa.text("now()")
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("display_name", sa.String(64)),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("unit_code", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False, comment="argon2id"),
        sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("active", sa.Boolean(), nullable=False, server_default="true"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("last_login_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(12), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("unit_code", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16)),
        sa.Column("unit_code", sa.String(32)),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(256)),
        sa.Column("detail", postgresql.JSONB(), nullable=False, server_default="{}"),
        sa.Column("ip", sa.String(64)),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def _row_security() -> None:
    op.execute(SCOPE_FUNCTION)
    for table in PATH_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY jurisdiction ON {table} USING (unit_path && app_scope()) "
            "WITH CHECK (unit_path && app_scope())"
        )
    for table, (key, parent) in CHILD_TABLES.items():
        visible = f"EXISTS (SELECT 1 FROM {parent} p WHERE p.id = {table}.{key})"
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY jurisdiction ON {table} USING ({visible}) WITH CHECK ({visible})"
        )
    op.execute("ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE audit_log FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY admins_read ON audit_log FOR SELECT "
        "USING (current_setting('app.role', true) = 'admin')"
    )
    op.execute("CREATE POLICY anyone_appends ON audit_log FOR INSERT WITH CHECK (true)")


def upgrade() -> None:
    _accounts()
    _row_security()


def downgrade() -> None:
    for table in (*PATH_TABLES, *CHILD_TABLES):
        op.execute(f"DROP POLICY IF EXISTS jurisdiction ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION IF EXISTS app_scope()")
    op.drop_table("audit_log")
    op.drop_table("api_tokens")
    op.drop_table("users")
