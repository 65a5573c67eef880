"""The ``autotransfer`` command line: the parser, logging set-up and ``main``.

The modules of this package are the only ones that print.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from autotransfer.cli import explore, report, train
from autotransfer.errors import AutoTransferError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autotransfer",
        description="From a folder of labelled images to the best transfer-learning model.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log output: -v autotransfer's debug lines, -vv every library's",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="only results, warnings and errors; no progress bars",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    explore.add_commands(sub)
    train.add_commands(sub)
    report.add_commands(sub)
    return parser


def _logging_flags(argv: Sequence[str]) -> tuple[int, bool, list[str]]:
    """``-v``/``-vv``/``-q`` wherever they are (``autotransfer fit data -q`` too), and the
    other arguments in their order. Nothing after a ``--`` is looked at."""
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("-v", "--verbose", action="count", default=0)
    pre.add_argument("-q", "--quiet", action="store_true")
    flags, rest = pre.parse_known_args(argv[:cut])
    return flags.verbose, flags.quiet, rest + argv[cut:]


def _configure_logging(verbose: int, quiet: bool) -> None:
    """Standard logging to stderr. ``-q``: warnings and errors only (and no progress
    bars); default: autotransfer's info lines; ``-v``: its debug lines too; ``-vv``:
    debug lines of every library (MLflow, Optuna, timm, ...)."""
    if quiet:
        ours, others = logging.WARNING, logging.WARNING
    else:
        ours = logging.INFO if verbose == 0 else logging.DEBUG
        others = logging.DEBUG if verbose > 1 else logging.WARNING
    logging.basicConfig(
        level=others, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger().setLevel(others)
    logging.getLogger("autotransfer").setLevel(ours)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    verbose, quiet, rest = _logging_flags(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(rest)
    args.verbose, args.quiet = verbose, quiet
    _configure_logging(args.verbose, args.quiet)
    args.progress = False if args.quiet else None
    args.main = main  # for commands that run others as typed (demo)
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
