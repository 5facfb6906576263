"""One typed settings object, read from the environment once and passed explicitly.

Every field is documented in README.md ("Configuration"). Unsafe defaults are refused when
``GRIDGOV_ENV=production``.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent
OWNER_ROLE = "gridgov"
APP_ROLE = "gridgov_app"
INSECURE_SECRET = "dev-insecure-secret-change-me"
DEFAULT_BANDS = {"grid": (300, 500), "microgrid": (30, 100)}


class UnsafeSettingsError(ValueError):
    """A setting is unsafe for production."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDGOV_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    app_database_url: str | None = None
    pg_port: int = 55432
    pg_dir: Path = PROJECT_ROOT / "var" / "pg"
    host: str = "127.0.0.1"
    port: int = 8050
    secret_key: str = INSECURE_SECRET
    county_code: str = "511781"
    timezone: str = "Asia/Shanghai"
    map_center: tuple[float, float] = (32.06, 108.04)
    map_zoom: int = 10
    tile_url: str | None = None
    tile_attribution: str = ""
    bands: dict[str, tuple[int, int]] = Field(default_factory=lambda: dict(DEFAULT_BANDS))
    live_interval_ms: int = 1000
    language: Literal["zh", "en"] = "zh"
    demo_seed: int = 7
    holidays: list[str] | None = None
    wall_frame_origins: list[str] = Field(default_factory=list)
    max_upload_mb: int = 50
    trusted_proxy: bool = False
    makeup_workdays: list[str] | None = None

    @field_validator("bands", mode="before")
    @classmethod
    def _parse_bands(cls, value: object) -> object:
        if isinstance(value, str):
            value = json.loads(value)
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env != "production":
            return self
        weak = _weak_secret(self.secret_key)
        if weak:
            raise UnsafeSettingsError(f"GRIDGOV_SECRET_KEY {weak} in production")
        if not self.database_url:
            raise UnsafeSettingsError("DATABASE_URL must name the production PostGIS")
        for name, url in (("DATABASE_URL", self.database_url),
                          ("GRIDGOV_APP_DATABASE_URL", self.app_database_url)):  # fmt: skip
            if url and not make_url(normalise_url(url)).password:
                raise UnsafeSettingsError(f"{name} has no password")
        if not self.app_database_url:
            raise UnsafeSettingsError(
                "GRIDGOV_APP_DATABASE_URL must name the app's own role (not the owner of the "
                "tables, not a superuser) so that row-level security applies"
            )
        loopback = self.host in ("127.0.0.1", "localhost", "::1")
        if not loopback and not self.trusted_proxy:
            raise UnsafeSettingsError(
                "serving beyond loopback needs TLS: put the app behind a TLS-terminating proxy "
                "and set GRIDGOV_TRUSTED_PROXY=true"
            )
        if not loopback and self.tile_url and "http://" in self.tile_url:
            raise UnsafeSettingsError(
                "GRIDGOV_TILE_URL must use https when serving beyond loopback"
            )
        return self

    @property
    def managed_cluster(self) -> bool:
        """True when the project runs its own PostGIS (no DATABASE_URL given)."""
        return not self.database_url

    @property
    def secrets_file(self) -> Path:
        """Passwords of the managed cluster's roles (created by ``etl db start``, mode 0600)."""
        return self.pg_dir / "secrets.json"

    def _managed_url(self, role: str, database: str = "gridgov") -> str:
        password = managed_password(self.secrets_file, role)
        return f"postgresql+psycopg://{role}:{password}@127.0.0.1:{self.pg_port}/{database}"

    @property
    def sqlalchemy_url(self) -> str:
        """The owner's URL: migrations, loads and the CLI (bypasses row-level security)."""
        if self.database_url:
            return normalise_url(self.database_url)
        return self._managed_url(OWNER_ROLE)

    @property
    def app_sqlalchemy_url(self) -> str:
        """The web app's URL: a non-owner, non-superuser role subject to row-level security.

        Managed cluster: ``gridgov_app``. With ``DATABASE_URL`` and no ``GRIDGOV_APP_DATABASE_URL``
        the owner's URL is used outside production (and refused in production).
        """
        if self.app_database_url:
            return normalise_url(self.app_database_url)
        if self.database_url:
            return normalise_url(self.database_url)
        return self._managed_url(APP_ROLE)

    @property
    def admin_sqlalchemy_url(self) -> str | None:
        """The managed cluster's superuser (creates databases and extensions); None otherwise."""
        return None if self.database_url else self._managed_url("postgres", "postgres")

    def band(self, level: str) -> tuple[int, int] | None:
        return self.bands.get(level)


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _weak_secret(secret: str) -> str | None:
    """Why ``secret`` is too weak to sign sessions, or None (length, padding, variety)."""
    if secret == INSECURE_SECRET or INSECURE_SECRET in secret:
        return "is the development default"
    if len(secret) < 32:
        return "must be at least 32 characters"
    if len(set(secret)) < 12:
        return "has too few different characters (padded or repeated): generate a random one"
    longest_run = max(len(m.group(0)) for m in re.finditer(r"(.)\1*", secret))
    if longest_run >= 6:
        return "contains a long run of one character (padding): generate a random one"
    return None


class MissingSecretsError(RuntimeError):
    """The managed cluster's passwords are not there yet."""


def managed_password(path: Path, role: str) -> str:
    """The generated password of ``role`` in the managed cluster's secrets file."""
    try:
        return str(json.loads(path.read_text())[role])
    except FileNotFoundError:
        raise MissingSecretsError(
            f"{path} does not exist: start the managed cluster first (`python -m etl db start`)"
        ) from None
    except (KeyError, ValueError) as exc:
        raise MissingSecretsError(f"{path} has no password for {role}: {exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
