"""The ``autotransfer`` command line (``python -m autotransfer`` works too)."""

from autotransfer.cli.explore import format_descriptor
from autotransfer.cli.main import build_parser, main

__all__ = ["build_parser", "format_descriptor", "main"]
