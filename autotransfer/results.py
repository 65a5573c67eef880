"""What a fit returns: the fitted model, its trial record and the leaderboard."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from autotransfer.errors import AutoTransferError, ConfigError
from autotransfer.model import Classifier
from autotransfer.model_files import model_folder
from autotransfer.report import write_report
from autotransfer.search.checkpoints import prune_checkpoints
from autotransfer.search.ensemble import EnsembleChoice
from autotransfer.search.finish import (
    decide_flip,
    refit_pick,
    served_model,
    serving_rate,
    with_flip,
)
from autotransfer.search.pick import load_best
from autotransfer.search.records import TrialRecord
from autotransfer.search.search_run import FULL_VAL_SHARE, SearchRun
from autotransfer.search.study import leaderboard, record_of
from autotransfer.search.trial_limit import claim_lock, finished_trials
from autotransfer.search.val_probas import load_val_probas
from autotransfer.search.verdict import TransferVerdict, transfer_verdict
from autotransfer.strategies.base import transfers
from autotransfer.tracking.base import notify

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """The outcome of :func:`autotransfer.fit`: the best model and how it was found.

    ``model`` is the trained :class:`~autotransfer.model.Classifier` of the best trial;
    ``best`` its :class:`TrialRecord`; ``leaderboard`` every trial of the study, best
    first (complete trials by validation accuracy, then pruned, then failed);
    ``val_metrics`` and ``test_metrics`` the best model's scores (test: None when the
    folder has no test split). ``tracking`` holds what the trackers recorded (MLflow
    tracking URI, parent run id, model URI).

    >>> result = autotransfer.fit("data/", time_budget="10m")    # doctest: +SKIP
    >>> result.predict(["new/cat.jpg"])                           # doctest: +SKIP
    ['cat']
    """

    model: Any  # autotransfer.model.Classifier
    best: TrialRecord
    leaderboard: tuple[TrialRecord, ...]
    val_metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] | None = None
    run_dir: str | None = None
    descriptor: Any = None  # DatasetDescriptor
    ranking: Any = None  # Ranking
    tracking: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    # wall seconds of each step of the fit: scan, rank, search, final_scoring (the pick on
    # the test split and, when affordable, the whole validation split), close (saving,
    # tracking); a resumed fit's rank is 0 (the saved ranking is read)
    phases: dict[str, float] = field(default_factory=dict)
    # the best transfer trial against the best one without transfer (None: no trial of
    # one of the kinds finished)
    verdict: TransferVerdict | None = None
    # the ensemble selection after the search (kept: ``model`` is the ensemble); None when
    # fewer than two trials could take part or ensembles are off
    ensemble: EnsembleChoice | None = None
    # the refit on train + validation: done, why (and images, seconds, steps when done)
    refit: dict[str, Any] = field(default_factory=dict)
    # flip test-time augmentation: on, why (and difference, se when measured)
    flip_tta: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.model.classes)

    def predict(self, inputs: Any, **kwargs: Any) -> list[str]:
        """Class names for paths, PIL images or image tensors (see ``Classifier.predict``)."""
        return self.model.predict(inputs, **kwargs)

    def predict_proba(self, inputs: Any, **kwargs: Any) -> Any:
        """Class probabilities, shape (N, num_classes), columns in ``classes`` order."""
        return self.model.predict_proba(inputs, **kwargs)

    def evaluate(self, data: Any, **kwargs: Any) -> dict[str, float]:
        """Accuracy, balanced accuracy, macro-F1 and log-loss on a labelled folder."""
        return self.model.evaluate(data, **kwargs)

    def export_torchscript(self, path: Any) -> Any:
        return self.model.export_torchscript(path)

    def export_onnx(self, path: Any) -> Any:
        return self.model.export_onnx(path)

    def report(self, path: Any = None, **kwargs: Any) -> Any:
        """Write the HTML report of this fit to ``path`` (default ``<run_dir>/report.html``),
        log it to the fit's MLflow run, and return its path; ``autotransfer report RUN_DIR``
        does the same. ``kwargs``: ``log_to_mlflow``, ``device``, ``max_misclassified``.

        >>> result.report()                              # doctest: +SKIP
        PosixPath('autotransfer-runs/data/report.html')
        """
        if not self.run_dir:
            raise ConfigError(
                "This result has no run folder, and the report reads the study, ranking and "
                "data of one. Run `autotransfer report RUN_DIR` on the folder the fit wrote."
            )
        return write_report(self.run_dir, path, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the model itself, JSON-ready."""
        return {
            "best": self.best.to_dict(),
            "leaderboard": [r.to_dict() for r in self.leaderboard],
            "val_metrics": dict(self.val_metrics),
            "test_metrics": None if self.test_metrics is None else dict(self.test_metrics),
            "run_dir": self.run_dir,
            "descriptor": None if self.descriptor is None else self.descriptor.to_dict(),
            "tracking": dict(self.tracking),
            "seconds": self.seconds,
            "phases": dict(self.phases),
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "ensemble": None if self.ensemble is None else self.ensemble.to_dict(),
            "refit": dict(self.refit),
            "flip_tta": dict(self.flip_tta),
        }

    def leaderboard_table(self, limit: int | None = 20) -> str:
        """The leaderboard as a plain-text table, best first; then why the trials shown
        as skipped were not trained."""
        head = f"{'#':>4}  {'state':<8}  {'val acc':>7}  {'time':>7}  {'strategy':<22}  backbone"
        lines = [head, "-" * len(head)]
        shown = self.leaderboard[: limit or None]
        for r in shown:
            acc = "" if r.val_accuracy is None else f"{r.val_accuracy:.4f}"
            secs = "" if r.seconds is None else f"{r.seconds:.0f}s"
            state = "skipped" if r.skipped else r.state
            lines.append(
                f"{r.number:>4}  {state:<8}  {acc:>7}  {secs:>7}  {r.strategy:<22}  {r.source}"
            )
        lines += [f"skipped #{r.number}: {r.skipped}" for r in shown if r.skipped]
        return "\n".join(lines)

    def save(self, directory: Any) -> Any:
        """Write the model and this result's records to ``directory``; ``autotransfer.load``
        reads it back. Returns the directory as a Path."""
        path = Path(self.model.save(directory, metadata={"fit": self.to_dict()}))
        (path / "fit_result.json").write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return path

    @classmethod
    def load(cls, directory: Any) -> FitResult:
        """Read a result written by :meth:`save`, from that folder or from the run folder
        that holds it as ``model`` (the model loads without executing code)."""
        path = model_folder(directory)
        model = Classifier.load(path)
        meta_file = path / "fit_result.json"
        d = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        best = TrialRecord.from_dict(d["best"]) if d.get("best") else _record_of(model)
        return cls(
            model=model,
            best=best,
            leaderboard=tuple(TrialRecord.from_dict(r) for r in d.get("leaderboard", ())),
            val_metrics=d.get("val_metrics") or {},
            test_metrics=d.get("test_metrics"),
            run_dir=d.get("run_dir"),
            tracking=d.get("tracking") or {},
            seconds=float(d.get("seconds") or 0.0),
            phases=dict(d.get("phases") or {}),
            verdict=TransferVerdict.from_dict(d["verdict"]) if d.get("verdict") else None,
            ensemble=EnsembleChoice.from_dict(d["ensemble"]) if d.get("ensemble") else None,
            refit=dict(d.get("refit") or {}),
            flip_tta=dict(d.get("flip_tta") or {}),
        )


def _record_of(model: Any) -> TrialRecord:
    meta = getattr(model, "metadata", {}) or {}
    return TrialRecord(
        number=-1,
        backbone=str(meta.get("backbone", model.arch)),
        strategy=str(meta.get("strategy", "")),
        params=dict(meta.get("params", {})),
        state="complete",
    )


def result_of_study(
    study: optuna.Study, sr: SearchRun, start: float, phases: dict[str, float]
) -> FitResult:
    """The fit's result from its finished study: the pick's model (rebuilt when its
    checkpoint is damaged), scored once on the test split and, when affordable, on the
    whole validation split; told to the trackers, saved as the run folder's ``model``,
    the other checkpoints pruned. ``start`` (:func:`time.perf_counter`) and ``phases``
    time the fit."""
    board = leaderboard(study)
    ds = sr.full_dataset or sr.dataset
    best, model = load_best(study, sr)  # a damaged checkpoint is rebuilt
    if best is None:
        notify(sr.trackers, "fit_end", sr.run, None)
        errors = "; ".join(f"#{r.number} {r.strategy}: {r.error}" for r in board if r.error)
        raise AutoTransferError(
            "No trial finished, so there is no model. "
            + (f"Errors: {errors}. " if errors else "")
            + "Give the fit more time (time_budget) or look at the log above."
        )
    t0 = time.perf_counter()
    sr.pick_rate = serving_rate(sr, best, model)  # the final scoring's pace, not the slowest's
    served = served_model(study, sr, best, model)
    val = served.metrics
    flip = decide_flip(sr, served.model, served.proba)
    if flip["on"]:  # each test image is scored twice
        sr.pick_rate = 2 * sr.closing_rate()
    if served.is_ensemble:
        model = served.model
        refit = {"done": False, "why": "the pick is an ensemble: its members keep their weights"}
    else:
        model, refit = refit_pick(sr, best, model)
    if flip["on"]:
        model = with_flip(model)
    phases["last_mile"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    test = None
    if sr.dataset.test:
        test = model.evaluate(sr.dataset, split="test", device=str(sr.device))
    if refit.get("done") and sr.full_dataset is not None:
        log.info(
            "The pick's validation figures are the search's: the refit model trained on "
            "the validation sample, so scoring it on the whole split would flatter it."
        )
    elif (
        not served.is_ensemble and not flip["on"] and sr.rescore_full_val()
    ):  # the search validated on a sample
        log.info("Scoring the pick on the whole validation split (%d images).", len(ds.val))
        val = model.evaluate(ds, split="val", device=str(sr.device))
    elif sr.full_dataset is not None:
        log.info(
            "The pick's validation figures come from the search's sample of %d of the %d "
            "validation images (the whole split would take over %.0f %% of the budget).",
            len(sr.dataset.val),
            len(ds.val),
            100 * FULL_VAL_SHARE,
        )
    phases["final_scoring"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    verdict = verdict_of_study(study, sr)
    if verdict is not None:
        log.info("Transfer verdict: %s.", verdict.sentence)
    result = FitResult(
        model=model,
        best=record_of(best),
        leaderboard=board,
        val_metrics=val,
        test_metrics=test,
        run_dir=str(sr.run_dir),
        descriptor=sr.run.descriptor,
        ranking=sr.run.ranking,
        seconds=round(time.perf_counter() - start, 2),
        phases={k: round(v, 2) for k, v in phases.items()},
        verdict=verdict,
        ensemble=served.choice,
        refit=refit,
        flip_tta=flip,
    )
    notify(sr.trackers, "fit_end", sr.run, result)
    result.tracking = dict(sr.run.state.get("mlflow", {}))
    result.save(sr.run_dir / "model")
    prune_checkpoints(sr.run_dir, keep=best.number)  # an ensemble is whole in model/
    # the saved record's times end with the scoring; the result's include the closing
    result.phases["close"] = round(time.perf_counter() - t0, 2)
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def verdict_of_study(study: optuna.Study, sr: SearchRun) -> TransferVerdict | None:
    """The transfer verdict of the study (:func:`~autotransfer.search.verdict.transfer_verdict`),
    paired on the validation probabilities the trials kept in this run folder."""
    baselines = {name for name, s in sr.strategies.items() if not transfers(s)}
    trials = study.get_trials(deepcopy=False)
    labels = [r.label for r in sr.dataset.val]
    numbers = [t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    probas = load_val_probas(sr.run_dir, numbers, n=len(labels))
    return transfer_verdict(trials, baselines, probas, labels)


RESULT_MARK = "autotransfer.result_of"  # study attribute: the trials the last result counted


def mark_result(study: optuna.Study) -> None:
    """Note in the study how many trials the result just built counts."""
    study.set_user_attr(RESULT_MARK, len(finished_trials(study.get_trials(deepcopy=False))))


def result_if_last(study: optuna.Study, sr: SearchRun, start: float) -> FitResult | None:
    """The result built again, in this worker's run folder, when the fit has built its own
    and this worker ends last with trials the fit's result did not count (workers that
    outlived it); else None. One worker builds it: the claim is taken under the study's
    lock (:func:`~autotransfer.search.trial_limit.claim_lock`)."""
    with claim_lock(study):
        counted = study.user_attrs.get(RESULT_MARK)
        trials = study.get_trials(deepcopy=False)
        running = any(t.state == optuna.trial.TrialState.RUNNING for t in trials)
        n = len(finished_trials(trials))
        if counted is None or running or n <= int(counted):
            return None
        study.set_user_attr(RESULT_MARK, n)
    log.info(
        "The fit ended before %d of the %d trials did; this worker, the last, builds the "
        "result from every worker's trials in %s.",
        n - int(counted),
        n,
        sr.run_dir,
    )
    return result_of_study(study, sr, start, {})
