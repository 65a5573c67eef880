"""The ``autotransfer`` command line: the parser, logging set-up and ``main``.

The modules of this package are the only ones that print.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from autotransfer.errors import AutoTransferError


def build_parser() -> argparse.ArgumentParser:
    from autotransfer.cli import explore, report, train

    parser = argparse.ArgumentParser(
        prog="autotransfer",
        description="From a folder of labelled images to the best transfer-learning model.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only results and errors")
    sub = parser.add_subparsers(dest="command", required=True)
    explore.add_commands(sub)
    train.add_commands(sub)
    report.add_commands(sub)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("autotransfer").setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    args.progress = False if args.quiet else None
    try:
        return int(args.func(args) or 0)
    except AutoTransferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
