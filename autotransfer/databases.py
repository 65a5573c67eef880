"""Database URLs (an Optuna storage, an MLflow backend store): the driver each needs, and
a clear error naming the extra that installs it when it is missing."""

from __future__ import annotations

from autotransfer.errors import ConfigError

POSTGRES_SCHEMES = ("postgresql", "postgres")
POSTGRES_DRIVER = "psycopg"  # psycopg 3: `pip install 'autotransfer[postgres]'`


def database_url(url: str, setting: str) -> str:
    """``url`` as SQLAlchemy should open it. ``postgresql://`` (or ``postgres://``) gets
    the psycopg 3 driver (SQLAlchemy's default, psycopg2, is not a dependency); an explicit
    ``postgresql+driver://`` is kept. Raises :class:`ConfigError`, naming ``setting`` and
    the extra, when the driver is not installed.

    >>> database_url("sqlite:///runs/a/study.db", "storage")
    'sqlite:///runs/a/study.db'
    >>> database_url("postgresql+pg8000://u@db/optuna", "storage")
    'postgresql+pg8000://u@db/optuna'
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in POSTGRES_SCHEMES:
        return url
    try:
        import psycopg  # noqa: F401  (optional: the 'postgres' extra)
    except ImportError:
        raise ConfigError(
            f"The {setting} {_without_password(url)} is a PostgreSQL database, and its driver "
            f"({POSTGRES_DRIVER}) is not installed. Install it with: "
            "pip install 'autotransfer[postgres]'"
        ) from None
    return f"postgresql+{POSTGRES_DRIVER}://{rest}"


def _without_password(url: str) -> str:
    """``url`` with any password replaced by ``***`` (errors end up in logs)."""
    scheme, _, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
