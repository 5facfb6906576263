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


RANDOM_SECRET = "q8ZP3vN1-xR7kT0wYb2Lm9eHcF4sJ6uA"


def _production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDGOV_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://owner:pw@db/gov")
    monkeypatch.setenv("GRIDGOV_APP_DATABASE_URL", "postgresql://app:pw@db/gov")
    monkeypatch.setenv("GRIDGOV_SECRET_KEY", RANDOM_SECRET)


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("dev-insecure-secret-change-me", "development default"),
        ("short-but-random-9Zq", "at least 32"),
        ("x" * 40, "too few different"),
        ("Zq81kLm2Xy7Wv" + "0" * 30, "long run"),
    ],
)
def test_production_refuses_weak_secrets(
    monkeypatch: pytest.MonkeyPatch, secret: str, why: str
) -> None:
    _production(monkeypatch)
    assert Settings().env == "production"
    monkeypatch.setenv("GRIDGOV_SECRET_KEY", secret)
    with pytest.raises(ValueError, match=why):
        Settings()


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("DATABASE_URL", "postgresql://owner@db/gov", "DATABASE_URL has no password"),
        ("GRIDGOV_APP_DATABASE_URL", "postgresql://app@db/gov", "APP_DATABASE_URL has no pass"),
        ("GRIDGOV_APP_DATABASE_URL", None, "row-level security"),
        ("GRIDGOV_HOST", "0.0.0.0", "TLS"),
    ],
)
def test_production_refuses_unsafe_deployments(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str | None, why: str
) -> None:
    _production(monkeypatch)
    if value is None:
        monkeypatch.delenv(name)
    else:
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=why):
        Settings()
    if name == "GRIDGOV_HOST":
        monkeypatch.setenv("GRIDGOV_TRUSTED_PROXY", "true")
        assert Settings().trusted_proxy


def test_production_needs_a_named_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDGOV_ENV", "production")
    monkeypatch.setenv("GRIDGOV_SECRET_KEY", RANDOM_SECRET)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ValueError, match="DATABASE_URL"):
        Settings()


def test_plain_postgres_urls_use_psycopg3() -> None:
    assert normalise_url("postgres://a@b/c") == "postgresql+psycopg://a@b/c"
    assert normalise_url("postgresql+psycopg://a@b/c") == "postgresql+psycopg://a@b/c"
