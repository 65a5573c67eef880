"""The report command: one self-contained HTML page about a finished fit."""

from __future__ import annotations

import argparse


def cmd_report(args: argparse.Namespace) -> int:
    from autotransfer.report import write_report  # torch, Optuna: only when the command runs

    path = write_report(
        args.run_dir,
        args.output,
        log_to_mlflow=not args.no_mlflow,
        device=args.device,
        max_misclassified=args.max_misclassified,
    )
    print(path)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register report."""
    p = sub.add_parser(
        "report",
        help="write an HTML report of a fit (ranking, trials, the pick's mistakes); "
        "also logged to its MLflow run",
    )
    p.add_argument("run_dir", help="the run folder a fit wrote")
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT.html",
        default=None,
        help="the HTML file (default: RUN_DIR/report.html)",
    )
    p.add_argument(
        "--no-mlflow", action="store_true", help="do not log the page to the fit's MLflow run"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if present)")
    p.add_argument(
        "--max-misclassified",
        type=int,
        metavar="N",
        default=48,
        help="misclassified images shown at most (default 48)",
    )
    p.set_defaults(func=cmd_report)
