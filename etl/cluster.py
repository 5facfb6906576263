"""The project-managed PostGIS cluster: its own data directory, port and socket.

It never touches a system cluster. PostgreSQL refuses to run as root, so when we are root
the server runs as the ``postgres`` system user (created by Debian's postgresql package).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from etl.db import DATABASE_OPTIONS
from etl.settings import Settings

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class ClusterError(RuntimeError):
    """The managed cluster could not be created, started or stopped."""


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _run(cmd: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(_as_owner(cmd), capture_output=True, text=True)
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
        # postgres must be able to reach the folder through the work tree
        for parent in root.parents:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)


def _initdb(settings: Settings) -> None:
    data, run, _ = _paths(settings)
    _run(
        [
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]
    )
    conf = data / "postgresql.conf"
    extra = (
        f"\nport = {settings.pg_port}\nlisten_addresses = '127.0.0.1'\n"
        f"unix_socket_directories = '{run}'\nfsync = on\nshared_buffers = 512MB\n"
        "work_mem = 64MB\nmaintenance_work_mem = 512MB\nmax_connections = 100\n"
        "max_wal_size = 4GB\njit = off\n"
    )
    _run(["sh", "-c", f"cat >> {conf} <<'EOF'\n{extra}\nEOF"])


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
    if not (data / "PG_VERSION").exists():
        _initdb(settings)
    if not is_running(settings):
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"])
    _wait_ready(settings)
    _bootstrap(settings)
    return f"PostGIS running on 127.0.0.1:{settings.pg_port} (data {data})"


def stop(settings: Settings) -> str:
    data, _, _ = _paths(settings)
    if is_running(settings):
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        return "stopped"
    return "not running"


def _psql(settings: Settings, sql: str, db: str = "postgres") -> str:
    _, run, _ = _paths(settings)
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
        ]
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


def _bootstrap(settings: Settings) -> None:
    if _psql(settings, "SELECT 1 FROM pg_roles WHERE rolname='gridgov'") != "1":
        _psql(settings, "CREATE ROLE gridgov LOGIN SUPERUSER")
    for db in ("gridgov", "gridgov_test"):
        if _psql(settings, f"SELECT 1 FROM pg_database WHERE datname='{db}'") != "1":
            _psql(settings, f"CREATE DATABASE {db} OWNER gridgov {DATABASE_OPTIONS}")
        _psql(settings, "CREATE EXTENSION IF NOT EXISTS postgis", db=db)
        _psql(settings, "CREATE EXTENSION IF NOT EXISTS pgrouting", db=db)
