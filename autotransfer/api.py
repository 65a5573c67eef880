"""The public entry points: open a folder, describe it, rank backbones, fit. Orchestration only."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autotransfer.backbones.candidates import candidate_backbones
from autotransfer.backbones.extraction import extract_all
from autotransfer.backbones.inputs import resolve_device
from autotransfer.config import DataSettings, ExtractionSettings, FitSettings, RankSettings
from autotransfer.data.descriptors import DatasetDescriptor, describe_dataset
from autotransfer.data.ingest import open_folder
from autotransfer.data.sample import ranking_sample, sample_parts
from autotransfer.data.types import ImageDataset
from autotransfer.errors import ConfigError, WeightsUnavailableError, unknown_name
from autotransfer.results import FitResult, mark_result, result_if_last, result_of_study
from autotransfer.search import runner
from autotransfer.search.budget import Budget
from autotransfer.search.device_workers import sharing_cores, start_workers, wait_for
from autotransfer.search.plan import auto_resolution, make_plan, median_side, rank_sample
from autotransfer.search.shared_study import join
from autotransfer.search.study import load_plan, save_plan, worker_id
from autotransfer.tracking.base import notify
from autotransfer.transferability.rank import rank_backbones
from autotransfer.transferability.ranking import Ranking

__all__ = ["describe", "fit", "load", "open_folder", "rank", "run_worker"]

log = logging.getLogger(__name__)


def describe(
    data: str | os.PathLike[str] | ImageDataset,
    *,
    backbones: Sequence[str] | None = None,
    similarity: bool = True,
    sample_size: int | None = RankSettings.sample_size,
    sample_per_class: int | None = RankSettings.sample_per_class,
    data_settings: DataSettings | None = None,
    extraction: ExtractionSettings | None = None,
    progress: bool | None = None,
) -> DatasetDescriptor:
    """Dataset descriptors, with similarity to each backbone's source when ``similarity``,
    measured on the ranking's stratified sample of the training split (its size is each
    similarity's ``images``; ``sample_size=None``: every image).

    >>> d = describe("data/", backbones=["efficientnet_lite0"])   # doctest: +SKIP
    >>> d.num_classes, d.source_similarity["package:efficientnet_lite0"].bn_kl  # doctest: +SKIP
    (10, 1.93)
    """
    ex = extraction or ExtractionSettings()
    ds = open_folder(data, data_settings, cache_dir=ex.cache_dir, progress=progress)
    features = {}
    if similarity:
        try:
            specs = candidate_backbones(backbones)
        except WeightsUnavailableError as exc:
            if backbones:  # asked for by name: say what is missing
                raise
            log.warning("No source similarity: %s", exc)
            specs = []
        seed = (data_settings or DataSettings()).seed
        sampled = ranking_sample(ds, sample_size, sample_per_class, seed)
        features = extract_all(sampled, specs, ex, progress=progress)
    return describe_dataset(ds, features)


def rank(
    data: str | os.PathLike[str] | ImageDataset,
    *,
    backbones: Sequence[str] | None = None,
    estimators: Sequence[str] | None = None,
    top_k: int = 3,
    hedge: bool = True,
    aggregate: Sequence[str] | None = None,
    include_controls: bool = False,
    cuts: Sequence[int] = (),
    seed: int = 0,
    time_limit: float | None = None,
    sample_size: int | None = RankSettings.sample_size,
    sample_per_class: int | None = RankSettings.sample_per_class,
    sample_seconds: float | None = None,
    data_settings: DataSettings | None = None,
    extraction: ExtractionSettings | None = None,
    progress: bool | None = None,
) -> Ranking:
    """Rank candidate backbones on a dataset without training them.

    One forward pass per backbone (cached) gives features of a stratified, seeded sample
    of the training split (at most ``sample_size`` images, ``sample_per_class`` of a
    class; ``None``: every image), so the cost stops growing with the dataset; every
    estimator scores them; the aggregate is the mean normalised rank over the
    estimators in ``aggregate`` (default: those that read features). The result's
    ``shortlist`` holds the best ``top_k`` backbone ids and, with ``hedge``, when they
    are all of one architecture family, the best whole network of another (the
    estimators err alike within a family; see :mod:`autotransfer.backbones.families`).
    ``cuts`` adds each candidate cut
    after those feature stages (``(2, 3)``; ``-2`` is the stage before the last) as
    candidates of their own (``package:efficientnet_lite0@3``); their features come from
    their whole network's pass (:mod:`autotransfer.backbones.cut_taps`).

    With ``sample_seconds``, the sample is sized to the time: the first candidate reads a
    pilot of :data:`~autotransfer.config.RANK_PILOT_SIZE` images of it, and from the
    seconds that took, the sample grows to what every candidate is expected to extract
    and score in ``sample_seconds`` (at most ``sample_size``, at least the pilot); the
    pilot's features are kept as a part of the sample's.

    With ``time_limit`` (seconds), candidates are scored cached ones first, then by
    published ImageNet top-1 (a network's cuts right after it: their features are in
    hand); the limit is kept inside each step, batch by batch in extraction and
    estimator by estimator in scoring. A candidate not expected to finish in time (by the
    mean cost of those computed so far), or stopped by the limit, is left out of the
    ranking and listed in its ``skipped`` with the reason. When none could be scored, the
    candidates are ordered by the estimators that need no features (the ImageNet prior).

    >>> r = autotransfer.rank("data/", top_k=2)   # doctest: +SKIP
    >>> print(r.table()); r.shortlist              # doctest: +SKIP
    """
    settings = RankSettings(
        backbones=tuple(backbones) if backbones else None,
        estimators=tuple(estimators) if estimators else None,
        aggregate=tuple(aggregate) if aggregate else None,
        top_k=top_k,
        hedge=hedge,
        include_controls=include_controls,
        cuts=cuts,
        sample_size=sample_size,
        sample_per_class=sample_per_class,
    )
    return rank_backbones(
        data,
        settings,
        seed=seed,
        time_limit=time_limit,
        sample_seconds=sample_seconds,
        data_settings=data_settings,
        extraction=extraction,
        progress=progress,
    )


def fit(
    data: str | os.PathLike[str] | ImageDataset,
    settings: FitSettings | None = None,
    *,
    data_settings: DataSettings | None = None,
    progress: bool | None = None,
    **options: Any,
) -> FitResult:
    """Find the best model for a folder of labelled images within a budget.

    Reads and checks the data, ranks the candidate backbones from one cached forward
    pass each, and runs an Optuna study over the shortlist x the strategies x their
    hyperparameters: frozen-feature trials first, then each strategy's prior (the
    BiT-HyperRule for full fine-tuning), then Optuna's sampler, pruning poor trials.
    Every trial is tracked in MLflow in the run folder. Running ``fit`` again on the
    same run folder resumes the study. ``options`` are :class:`FitSettings` fields.

    >>> result = autotransfer.fit("data/", time_budget="10m")   # doctest: +SKIP
    >>> print(result.leaderboard_table())                        # doctest: +SKIP
    >>> result.predict(["new/cat.jpg"])                          # doctest: +SKIP
    ['cat']
    """
    s = _fit_settings(settings, options)
    budget = Budget.start(s.time_budget_seconds)  # ranking counts against the budget
    start = time.perf_counter()
    ds_settings = data_settings or DataSettings(seed=s.seed)
    ds = open_folder(data, ds_settings, progress=progress)
    phases = {"scan": time.perf_counter() - start}
    run_dir = Path(s.run_dir or Path("autotransfer-runs") / Path(ds.root).name).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = load_plan(run_dir)
    if plan is not None and plan["data"] != _split_fingerprints(ds):
        raise ConfigError(
            f"The run folder {run_dir} holds a study of other data, or of another split of "
            f"it ({plan['root']}). Pass another run_dir to start a new study, or delete that "
            "folder."
        )
    t0 = time.perf_counter()
    descriptor, ranking = _describe_and_rank(ds, s, run_dir, plan, budget, progress)
    phases["rank"] = time.perf_counter() - t0
    if plan is None:
        plan = make_plan(ds, s, descriptor, ranking.shortlist)
        plan["data"] = _split_fingerprints(ds)
        plan["data_settings"] = ds_settings.to_dict()
        save_plan(run_dir, plan)
    else:
        log.info("Resuming the study in %s.", run_dir)
    study, sr = runner.prepare(
        run_dir, ds, s, plan, descriptor=descriptor, ranking=ranking, budget=budget
    )
    runner.enqueue_priors(study, sr)
    t0 = time.perf_counter()
    workers = start_workers(run_dir, s.devices[1:], budget.left()) if s.devices else []
    try:
        with sharing_cores(s.devices or ()):
            runner.run_trials(study, sr, s, progress=progress)
    except BaseException:  # Ctrl-C twice, an error: the workers stop with the fit
        for w in workers:
            w.stop()
        raise
    wait_for(workers)  # they stop when the study has its trials, or their time is out
    phases["search"] = time.perf_counter() - t0
    result = result_of_study(study, sr, start, phases)
    mark_result(study)  # a worker that ends later with more trials builds it again
    return result


def run_worker(
    run_dir: str | os.PathLike[str] | None = None,
    *,
    storage: str | None = None,
    study_name: str = "autotransfer",
    device: str | None = None,
    time_budget: str | float | None = None,
    n_trials: int | None = None,
    progress: bool | None = None,
) -> int:
    """Join the study a ``fit`` started and run trials until the budget (or the study's
    trial count) is spent; returns the number of trials this worker ran. Any number of
    workers, on this machine or others sharing the study's storage, can run at once; the
    ``fit`` that started the study builds the result.

    On the fit's machine, ``run_dir`` is the fit's run folder. On another machine, give
    the ``storage`` URL (and ``study_name``) alone: the worker reads the plan and the
    settings from the study into a run folder of its own (``run_dir``, default
    ``autotransfer-runs/<study_name>-worker``); the data folder must be at the same path.
    ``device`` (``"cuda:1"``) overrides the fit's.
    """
    if run_dir is None and storage is None:
        raise ConfigError(
            "Give the worker the fit's run folder, or the study's --storage URL (another machine)."
        )
    root = Path(run_dir or Path("autotransfer-runs") / f"{study_name}-worker").resolve()
    if storage is not None and not (root / "plan.json").exists():
        join(storage, study_name, root)
    plan = load_plan(root)
    settings_file = root / "fit_settings.json"
    if plan is None or not settings_file.exists():
        raise ConfigError(
            f"{root} has no study to join (no plan.json / fit_settings.json). Start one with "
            "`autotransfer fit DATA --run-dir RUN_DIR` first, or give the study's --storage."
        )
    s = FitSettings.from_dict(json.loads(settings_file.read_text()))
    s = dataclasses.replace(
        s,
        time_budget=time_budget if (time_budget, n_trials) != (None, None) else s.time_budget,
        n_trials=n_trials if n_trials is not None else s.n_trials,
        device=device if device is not None else s.device,
        devices=None,  # a worker trains on one device; the fit starts the others
    )
    ds = open_folder(plan["root"], DataSettings(**plan["data_settings"]), progress=progress)
    if _split_fingerprints(ds) != plan["data"]:
        raise ConfigError(f"The data in {plan['root']} changed since the study in {root} began.")
    start = time.perf_counter()
    study, sr = runner.prepare(root, ds, s, plan, is_worker=True)
    result = None
    try:
        runner.run_trials(study, sr, s, progress=progress)
        result = result_if_last(study, sr, start)  # the fit's result, unless it ended first
    finally:  # a worker leaves the result to the fit, but closes what it opened
        if result is None:
            notify(sr.trackers, "fit_end", sr.run, None)
    me = worker_id()
    return sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == me)


def _split_fingerprints(ds: ImageDataset) -> dict[str, str]:
    """Content hashes of each split: the same images split differently is other data."""
    return {split: ds.fingerprint(split) for split in ("train", "val", "test")}


def _fit_settings(settings: FitSettings | None, options: dict[str, Any]) -> FitSettings:
    known = {f.name for f in dataclasses.fields(FitSettings)}
    for k in options:
        if k not in known:
            raise unknown_name("fit option", k, known)
    for k in ("strategies", "backbones", "trackers", "devices"):
        if isinstance(options.get(k), (list, str)):
            v = options[k]
            options[k] = (v,) if isinstance(v, str) else tuple(v)
    if settings is None:
        return FitSettings(**options)
    return dataclasses.replace(settings, **options) if options else settings


def _describe_and_rank(ds, s: FitSettings, run_dir, plan, budget, progress):
    """Descriptors and ranking of a new study, or the saved ones of a resumed study."""
    d_file, r_file = run_dir / "descriptor.json", run_dir / "ranking.json"
    if plan is not None and d_file.exists() and r_file.exists():
        return (
            DatasetDescriptor.from_dict(json.loads(d_file.read_text())),
            Ranking.from_dict(json.loads(r_file.read_text())),
        )
    (run_dir / "fit_settings.json").write_text(json.dumps(s.to_dict(), indent=2))
    basic = describe_dataset(ds, {})
    res = s.resolution or auto_resolution(resolve_device(s.device).type, median_side(basic))
    ex = ExtractionSettings(
        resolution=res, device=s.device, num_workers=s.num_workers, jpeg_decode=s.jpeg_decode
    )
    left = budget.left()
    ranking = rank(
        ds,
        backbones=s.backbones,
        top_k=s.top_k,
        hedge=s.hedge,
        cuts=s.cuts,
        seed=s.seed,
        time_limit=None if left is None or s.rank_share >= 1 else s.rank_share * left,
        sample_size=s.rank_sample_size,
        sample_per_class=s.rank_sample_per_class,
        sample_seconds=None
        if left is None or s.rank_sample_share is None
        else s.rank_sample_share * left,
        extraction=ex,
        progress=progress,
    )
    # the ranking's features (cached) of the candidates it scored
    scored = [r.backbone for r in ranking.rows if r.images]
    specs = candidate_backbones(scored) if scored else []
    size, per_class, pilot = rank_sample(ranking, s)
    parts = sample_parts(ds, size, per_class, s.seed, pilot)
    descriptor = describe_dataset(ds, extract_all(parts, specs, ex, progress=False))
    d_file.write_text(descriptor.to_json(indent=2))
    r_file.write_text(ranking.to_json(indent=2))
    log.info("Ranking:\n%s", ranking.table())
    return descriptor, ranking


def load(directory: str | os.PathLike[str]) -> FitResult:
    """A saved fit: a folder written by ``FitResult.save``, or a run folder (its ``model``).

    Nothing is unpickled: the weights are safetensors, the rest JSON.

    >>> result = autotransfer.load("autotransfer-runs/flowers")   # doctest: +SKIP
    >>> result.predict("rose.jpg")                                # doctest: +SKIP
    ['rose']
    """
    return FitResult.load(directory)
