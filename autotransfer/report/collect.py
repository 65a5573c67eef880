"""A finished run folder read back into plain data: what the report shows, nothing computed.

Everything comes from the files a fit leaves behind: ``fit_settings.json`` and
``plan.json`` (how the study was set up, where the data is), ``descriptor.json`` and
``ranking.json``, the Optuna study (every trial, including those of workers and resumed
fits, with the validation accuracy it reported after each epoch), ``model/fit_result.json``
(the pick and its scores) and ``tracking/mlflow.json`` (the MLflow parent run). What is
missing or unreadable becomes a note that the report shows, not an error; a folder that
holds no fit at all is an error.

>>> facts = collect_run("autotransfer-runs/flowers")       # doctest: +SKIP
>>> facts.best.backbone, len(facts.trials), facts.curves[0]  # doctest: +SKIP
('package:efficientnet_lite2', 9, [(0, 0.918)])
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotransfer.data.descriptors import DatasetDescriptor
from autotransfer.errors import ConfigError
from autotransfer.search.records import TrialRecord
from autotransfer.search.study import leaderboard, storage_url
from autotransfer.tracking.store import read_record
from autotransfer.transferability.ranking import Ranking

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.data.descriptors import DatasetDescriptor
    from autotransfer.transferability.ranking import Ranking

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFacts:
    """What a run folder records about its fit.

    ``trials`` is the leaderboard, best first; ``curves`` maps a trial number to its
    ``(epoch, val_accuracy)`` points; ``best`` is the trial whose model is in ``model/``;
    ``tracking`` what ``tracking/mlflow.json`` holds (empty when the fit was not tracked);
    ``notes`` says what could not be read.
    """

    run_dir: Path
    settings: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    descriptor: DatasetDescriptor | None = None
    ranking: Ranking | None = None
    trials: tuple[TrialRecord, ...] = ()
    curves: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    best: TrialRecord | None = None
    val_metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] | None = None
    fit_seconds: float | None = None
    tracking: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    verdict: dict[str, Any] | None = None  # TransferVerdict.to_dict() of the fit
    ensemble: dict[str, Any] | None = None  # EnsembleChoice.to_dict() of the fit
    refit: dict[str, Any] = field(default_factory=dict)  # FitResult.refit
    flip_tta: dict[str, Any] = field(default_factory=dict)  # FitResult.flip_tta

    @property
    def dataset_root(self) -> str:
        if self.plan.get("root"):
            return str(self.plan["root"])
        return self.descriptor.root if self.descriptor is not None else ""

    @property
    def dataset_name(self) -> str:
        return Path(self.dataset_root).name or self.run_dir.name

    def best_accuracy_by_backbone(self) -> dict[str, float]:
        """The best validation accuracy of each backbone's complete trials."""
        out: dict[str, float] = {}
        for t in self.trials:
            if t.state == "complete" and t.val_accuracy is not None:
                out[t.backbone] = max(out.get(t.backbone, float("-inf")), t.val_accuracy)
        return out


def collect_run(run_dir: str | os.PathLike[str]) -> RunFacts:
    """Read the run folder ``run_dir`` of a fit (see the module docstring)."""
    root = Path(run_dir).expanduser().resolve()
    if not (root / "plan.json").exists() and not (root / "model").is_dir():
        raise ConfigError(
            f"{root} is not the run folder of a fit: it has neither plan.json nor model/. "
            "Pass the folder `autotransfer fit` wrote (by default "
            "./autotransfer-runs/<data folder name>, or its --run-dir)."
        )
    notes: list[str] = []
    settings = _json(root / "fit_settings.json", notes) or {}
    plan = _json(root / "plan.json", notes) or {}
    fit = _json(root / "model" / "fit_result.json", notes) or {}
    descriptor = _saved(root, "descriptor.json", DatasetDescriptor, notes)
    ranking = _saved(root, "ranking.json", Ranking, notes)
    trials, curves = _study(root, settings, notes)
    if trials is None:  # no study to read: the leaderboard the fit saved with its model
        trials = tuple(TrialRecord.from_dict(r) for r in fit.get("leaderboard", ()))
        curves = {t.number: _history_curve(t) for t in trials}
    best = TrialRecord.from_dict(fit["best"]) if fit.get("best") else None
    if best is None:
        notes.append("No model/fit_result.json: the fit has not finished, so there is no pick.")
    return RunFacts(
        run_dir=root,
        settings=settings,
        plan=plan,
        descriptor=descriptor,
        ranking=ranking,
        trials=trials,
        curves=curves,
        best=best,
        val_metrics=dict(fit.get("val_metrics") or (best.metrics if best else {})),
        test_metrics=fit.get("test_metrics"),
        fit_seconds=fit.get("seconds"),
        tracking=read_record(root),
        notes=tuple(notes),
        verdict=fit.get("verdict"),
        ensemble=fit.get("ensemble"),
        refit=dict(fit.get("refit") or {}),
        flip_tta=dict(fit.get("flip_tta") or {}),
    )


def _json(path: Path, notes: list[str]) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        notes.append(f"{path.name} is unreadable ({exc}).")
        return None


def _saved(root: Path, name: str, kind: Any, notes: list[str]) -> Any:
    """``kind.from_dict`` of the run folder's ``name`` (descriptor.json, ranking.json), or
    None with a note when it is missing or unreadable."""
    d = _json(root / name, notes)
    if d is None:
        notes.append(f"No {name} in the run folder.")
        return None
    return kind.from_dict(d)


def _study(
    root: Path, settings: dict[str, Any], notes: list[str]
) -> tuple[tuple[TrialRecord, ...] | None, dict[int, list[tuple[int, float]]]]:
    """Every trial of the run folder's Optuna study, best first, and the validation
    accuracy each reported per epoch (``trial.report``, what the pruner judged)."""
    import optuna

    url = storage_url(root, settings.get("storage"))
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        notes.append("No study.db: the leaderboard is the one saved with the model.")
        return None, {}
    try:
        study = optuna.load_study(
            study_name=str(settings.get("study_name") or "autotransfer"), storage=url
        )
        trials = study.get_trials(deepcopy=False)
    except Exception as exc:  # storage gone, another study name, a server down: say so
        log.warning("Cannot read the study in %s (%s); using the saved leaderboard.", url, exc)
        notes.append(f"The study could not be read ({type(exc).__name__}: {exc}).")
        return None, {}
    board = leaderboard(study)
    by_number = {t.number: t for t in trials}
    curves = {}
    for r in board:
        values = sorted(by_number[r.number].intermediate_values.items())
        curves[r.number] = [(int(s), float(v)) for s, v in values] or _history_curve(r)
    return board, curves


def _history_curve(record: TrialRecord) -> list[tuple[int, float]]:
    return [
        (i, float(h["val_accuracy"])) for i, h in enumerate(record.history) if "val_accuracy" in h
    ]
