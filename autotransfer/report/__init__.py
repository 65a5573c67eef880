"""One self-contained HTML page about a finished fit, also logged to its MLflow run.

The page shows the dataset descriptors, the ranking with every estimator's score, the
leaderboard of every trial, each estimator's score against the accuracy its backbones
reached, the trials' learning curves, the pick's confusion matrix and per-class accuracy
(on the test split when the data has one, else validation) and a grid of the images it
gets wrong. It needs nothing but the file to open: no script, no external style, font or
image.

The steps: :mod:`~autotransfer.report.collect` reads the run folder,
:mod:`~autotransfer.report.pick` scores the saved model again,
:mod:`~autotransfer.report.figures` draws, :mod:`~autotransfer.report.html` renders, and
:mod:`~autotransfer.report.artifact` logs the page to the fit's MLflow parent run.

>>> write_report("autotransfer-runs/flowers")             # doctest: +SKIP
PosixPath('autotransfer-runs/flowers/report.html')
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from autotransfer.errors import AutoTransferError
from autotransfer.report import figures
from autotransfer.report.artifact import log_report
from autotransfer.report.collect import collect_run
from autotransfer.report.html import render
from autotransfer.report.pick import evaluate_pick
from autotransfer.version import __version__

__all__ = ["write_report"]

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"


def write_report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    log_to_mlflow: bool = True,
    device: str | None = None,
    max_misclassified: int = 48,
) -> Path:
    """Write the report of the fit in ``run_dir`` to ``out`` (default
    ``<run_dir>/report.html``) and return its path.

    With ``log_to_mlflow`` the page is also logged as ``report/report.html`` to the fit's
    MLflow parent run (skipped, with a log message, when the fit was not tracked).
    ``device`` runs the pick on the evaluation images (default: CUDA when present);
    ``max_misclassified`` caps the grid of misclassified images.

    >>> path = write_report("autotransfer-runs/flowers", "flowers.html")  # doctest: +SKIP
    """
    import datetime

    facts = collect_run(run_dir)
    evaluation, why = None, ""
    if facts.best is not None:
        try:
            evaluation = evaluate_pick(facts, device=device, max_examples=max_misclassified)
        except (AutoTransferError, OSError) as exc:  # the data moved or changed: say so
            why = str(exc)
            log.warning("The pick was not scored for the report: %s", exc)
    pick = facts.best
    svgs = {
        "estimators": None
        if facts.ranking is None
        else figures.estimator_scatter(
            facts.ranking, facts.best_accuracy_by_backbone(), pick.backbone if pick else None
        ),
        "curves": figures.learning_curves(
            facts.curves,
            {t.number: (t.strategy, t.state) for t in facts.trials},
            pick.number if pick else None,
        ),
        "confusion": None
        if evaluation is None
        else figures.confusion_matrix(evaluation.confusion, evaluation.classes),
    }
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = render(
        facts,
        evaluation,
        svgs,
        evaluation_error=why,
        generated=now,
        version=__version__,
    )
    path = Path(out) if out is not None else facts.run_dir / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    log.info("Wrote the report to %s", path)
    if log_to_mlflow:
        log_report(facts.run_dir, page)
    return path
