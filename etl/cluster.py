"""The project-managed PostGIS cluster: its own data directory, port and socket.

It never touches a system cluster. PostgreSQL refuses to run as root, so when we are root
the server runs as the ``postgres`` system user (created by Debian's postgresql package).

Three roles, each with a generated scram-sha-256 password kept in ``secrets.json`` (mode 0600,
readable by whoever ran ``etl db start``): ``postgres`` (superuser: creates databases and
extensions), ``gridgov`` (owner of the databases and tables: migrations and loads; bypasses
row-level security) and ``gridgov_app`` (the web app: no superuser, no ownership, subject to
row-level security, so ``COPY … PROGRAM`` and policy bypass are impossible for it).
``pg_hba.conf`` accepts only scram-sha-256 on the socket and 127.0.0.1, with no replication
entry; the socket directory is private to the server's OS user.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from etl.db import DATABASE_OPTIONS, LEAKPROOF_SQL
from etl.settings import APP_ROLE, OWNER_ROLE, Settings

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class ClusterError(RuntimeError):
    """The managed cluster could not be created, started or stopped."""


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _run(
    cmd: list[str],
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(_as_owner(cmd), capture_output=True, text=True, env=full_env, input=stdin)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _paths(settings: Settings) -> tuple[Path, Path, Path]:
    root = settings.pg_dir
    return root / "data", root / "run", root / "server.log"


def _prepare_dirs(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "run").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        for path in (root, root / "run"):
            os.chown(path, pg.pw_uid, pg.pw_gid)
    # the socket, log and secrets are the server's own: no other OS user may even reach them
    for path in (root, root / "run"):
        os.chmod(path, 0o700)
    if os.geteuid() == 0:
        # postgres must be able to reach the folder through the work tree
        for parent in root.parents:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)


ROLES = ("postgres", OWNER_ROLE, APP_ROLE)
HBA = """# written by etl/cluster.py: passwords (scram-sha-256) only, no trust, no replication
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
"""


def ensure_secrets(settings: Settings) -> dict[str, str]:
    """The roles' passwords, generated once into a file only its owner can read."""
    path = settings.secrets_file
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [r for r in ROLES if r not in known]
    if missing:
        known |= {r: secrets.token_hex(24) for r in missing}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(known, out)
    os.chmod(path, 0o600)
    return known


def _initdb(settings: Settings, superuser_password: str) -> None:
    data, run, _ = _paths(settings)
    pwfile = settings.pg_dir / ".initdb-pw"
    _run(["sh", "-c", f"umask 077; cat > {pwfile}"], stdin=superuser_password + "\n")
    try:
        _run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
              "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
              "--locale=C.UTF-8"])  # fmt: skip
    finally:
        _run(["rm", "-f", str(pwfile)], check=False)
    conf = data / "postgresql.conf"
    extra = (
        f"\nport = {settings.pg_port}\nlisten_addresses = '127.0.0.1'\n"
        f"unix_socket_directories = '{run}'\nfsync = on\nshared_buffers = 512MB\n"
        "work_mem = 64MB\nmaintenance_work_mem = 512MB\nmax_connections = 100\n"
        "max_wal_size = 4GB\njit = off\n"
    )
    _run(["sh", "-c", f"cat >> {conf} <<'EOF'\n{extra}\nEOF"])


def _harden(settings: Settings) -> None:
    """Only passwords, a private socket: applied at every start, so older clusters catch up."""
    data, _, _ = _paths(settings)
    _run(["sh", "-c", f"cat > {data / 'pg_hba.conf'}"], stdin=HBA)
    conf = data / "postgresql.conf"
    lines = "\nunix_socket_permissions = 0700\npassword_encryption = 'scram-sha-256'\n"
    _run(["sh", "-c", f"grep -q '^unix_socket_permissions' {conf} || cat >> {conf}"],
         stdin=lines)  # fmt: skip


def is_running(settings: Settings) -> bool:
    data, _, _ = _paths(settings)
    if not (data / "PG_VERSION").exists():
        return False
    return _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "status"], check=False).returncode == 0


def start(settings: Settings) -> str:
    """Create (first time) and start the cluster; make sure role, database and PostGIS exist."""
    if not PG_BIN.exists() or shutil.which("runuser") is None:
        raise ClusterError(f"PostgreSQL 15 not found in {PG_BIN}: run `make deps` first")
    data, run, log = _paths(settings)
    _prepare_dirs(settings.pg_dir)
    passwords = ensure_secrets(settings)
    if not (data / "PG_VERSION").exists():
        _initdb(settings, passwords["postgres"])
        _harden(settings)  # before the first start: the socket is made 0700 from the outset
    if not is_running(settings):
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"])
    _wait_ready(settings)
    _bootstrap(settings, passwords)
    # after the roles have their passwords: a cluster made by older code trusted every local
    # connection until here
    _harden(settings)
    _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "reload"])
    return f"PostGIS running on 127.0.0.1:{settings.pg_port} (data {data})"


def stop(settings: Settings) -> str:
    data, _, _ = _paths(settings)
    if is_running(settings):
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        return "stopped"
    return "not running"


def _psql(settings: Settings, sql: str, db: str = "postgres") -> str:
    _, run, _ = _paths(settings)
    password = ensure_secrets(settings)["postgres"]
    proc = _run(
        [
            str(PG_BIN / "psql"),
            "-h",
            str(run),
            "-p",
            str(settings.pg_port),
            "-U",
            "postgres",
            "-d",
            db,
            "-tAc",
            sql,
        ],
        env={"PGPASSWORD": password},
    )
    return proc.stdout.strip()


def _wait_ready(settings: Settings, timeout_s: float = 30) -> None:
    _, run, _ = _paths(settings)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cmd = [str(PG_BIN / "pg_isready"), "-h", str(run), "-p", str(settings.pg_port)]
        if _run(cmd, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise ClusterError(f"PostgreSQL did not become ready on port {settings.pg_port}")


ROLE_ATTRIBUTES = {
    "postgres": "SUPERUSER",
    # owns the databases and tables; loads bypass row-level security (COPY needs it)
    OWNER_ROLE: "LOGIN NOSUPERUSER CREATEDB NOCREATEROLE BYPASSRLS",
    APP_ROLE: "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION",
}


def _bootstrap(settings: Settings, passwords: dict[str, str]) -> None:
    for role, attributes in ROLE_ATTRIBUTES.items():
        if _psql(settings, f"SELECT 1 FROM pg_roles WHERE rolname='{role}'") != "1":
            _psql(settings, f"CREATE ROLE {role}")
        # passwords are generated hex: nothing to escape
        _psql(settings, f"ALTER ROLE {role} {attributes} PASSWORD '{passwords[role]}'")
    # the owner may act as the app (tests check row-level security through SET ROLE)
    _psql(settings, f"GRANT {APP_ROLE} TO {OWNER_ROLE}")
    for db in ("gridgov", "gridgov_test"):
        if _psql(settings, f"SELECT 1 FROM pg_database WHERE datname='{db}'") != "1":
            _psql(settings, f"CREATE DATABASE {db} OWNER gridgov {DATABASE_OPTIONS}")
        _psql(settings, "CREATE EXTENSION IF NOT EXISTS postgis", db=db)
        _psql(settings, "CREATE EXTENSION IF NOT EXISTS pgrouting", db=db)
        _psql(settings, LEAKPROOF_SQL, db=db)
