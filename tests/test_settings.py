"""Settings: read from the environment, unsafe production values refused
(pydantic reports the UnsafeSettingsError as a ValidationError, a ValueError)."""

from __future__ import annotations

import pytest

from etl.settings import Settings, normalise_url


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDGOV_PORT", "9001")
    monkeypatch.setenv("GRIDGOV_BANDS", '{"grid": [200, 300]}')
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db.example/gov")
    settings = Settings()
    assert settings.port == 9001 and settings.band("grid") == (200, 300)
    assert settings.sqlalchemy_url == "postgresql+psycopg://u:p@db.example/gov"
    assert not settings.managed_cluster


def test_production_refuses_the_default_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDGOV_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db/gov")
    with pytest.raises(ValueError, match="SECRET_KEY"):
        Settings()
    monkeypatch.setenv("GRIDGOV_SECRET_KEY", "x" * 40)
    assert Settings().env == "production"


def test_production_needs_a_named_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDGOV_ENV", "production")
    monkeypatch.setenv("GRIDGOV_SECRET_KEY", "y" * 40)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ValueError, match="DATABASE_URL"):
        Settings()


def test_plain_postgres_urls_use_psycopg3() -> None:
    assert normalise_url("postgres://a@b/c") == "postgresql+psycopg://a@b/c"
    assert normalise_url("postgresql+psycopg://a@b/c") == "postgresql+psycopg://a@b/c"
