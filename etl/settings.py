"""One typed settings object, read from the environment once and passed explicitly.

Every field is documented in README.md ("Configuration"). Unsafe defaults are refused when
``GRIDGOV_ENV=production``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
        if self.secret_key == INSECURE_SECRET or len(self.secret_key) < 32:
            raise UnsafeSettingsError(
                "GRIDGOV_SECRET_KEY must be set to a random string of at least 32 characters "
                "in production"
            )
        if not self.database_url:
            raise UnsafeSettingsError("DATABASE_URL must name the production PostGIS")
        if (
            self.host not in ("127.0.0.1", "localhost")
            and self.tile_url
            and "http://" in self.tile_url
        ):
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
