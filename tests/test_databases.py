"""Database URLs get the driver they need, or an error that names the extra."""

import doctest
import subprocess
import sys

import pytest

from autotransfer import databases
from autotransfer.config import FitSettings


def test_doctests():
    assert doctest.testmod(databases).failed == 0


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "POSTGRESQL"])
def test_a_postgres_url_gets_the_psycopg_driver(scheme):
    url = databases.database_url(f"{scheme}://me:pw@db.lan:5432/optuna", "storage")
    assert url == "postgresql+psycopg://me:pw@db.lan:5432/optuna"


def test_without_the_driver_the_error_names_the_setting_and_the_extra_and_hides_the_password():
    code = (
        "import sys; sys.modules['psycopg'] = None  # a Python without the driver\n"
        "from autotransfer.config import FitSettings\n"
        "try:\n"
        "    FitSettings(n_trials=1, storage='postgresql://me:secret@db.lan/optuna')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ConfigError The storage postgresql://me:***@db.lan/optuna")
    assert "pip install 'autotransfer[postgres]'" in out.stdout and "secret" not in out.stdout


def test_settings_check_the_heartbeat():
    assert FitSettings(n_trials=1).heartbeat_seconds == 30
    for bad in (0, -3, True):
        with pytest.raises(Exception, match="heartbeat_seconds"):
            FitSettings(n_trials=1, heartbeat_seconds=bad)
