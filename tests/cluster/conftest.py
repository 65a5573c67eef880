"""Real servers for the multi-machine tests: PostgreSQL and an MLflow tracking server
(tests/servers.py). Those that ``.ci/run`` started are used; else they are started here,
once per session, where PostgreSQL is installed. Without it a test skips with the reason,
and fails under ``CI=true`` (a test that skips in CI tests nothing)."""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest

from .. import servers


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def _servers():
    """(PostgreSQL server URL, MLflow tracking server address)."""
    pg, tracking = os.environ.get(servers.POSTGRES_ENV), os.environ.get(servers.MLFLOW_ENV)
    if pg and tracking:
        yield pg, tracking
        return
    with contextlib.ExitStack() as stack:
        try:
            pg = pg or stack.enter_context(servers.postgres())
        except servers.ServersMissing as missing:
            if _in_ci():
                pytest.fail(f"CI=true and {missing}")
            pytest.skip(str(missing))
        tracking = tracking or stack.enter_context(servers.mlflow_server(pg))
        yield pg, tracking


@pytest.fixture
def postgres_url(_servers) -> str:
    """A new, empty PostgreSQL database for this test."""
    return servers.create_database(_servers[0], f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def tracking_server(_servers) -> str:
    """The MLflow tracking server's address (shared by the session's tests)."""
    return _servers[1]
