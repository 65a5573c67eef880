"""What the benchmarks' command lines share."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first line of the script's docstring."""
    return argparse.ArgumentParser(description=(doc or "").split("\n")[0])


def add_rerun_flags(p: argparse.ArgumentParser, again: str, render: str) -> None:
    """``--again`` (measure what has results again) and ``--render`` (only write the
    tables and the plot from the results), with these helps."""
    p.add_argument("--again", action="store_true", help=again)
    p.add_argument("--render", action="store_true", help=render)


def parse_quietly(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments, with only warnings logged (the tables are the output)."""
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args
