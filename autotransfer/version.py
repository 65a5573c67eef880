"""The package's version, read from its installed metadata (``pyproject.toml`` writes it once)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("autotransfer")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
