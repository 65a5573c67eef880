"""Rank candidate backbones on a dataset without training them: extract features of a
stratified sample of the training split, one pass per network, and score them with every
estimator, keeping a time limit inside each step (see :func:`autotransfer.rank`)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

from autotransfer import plugins
from autotransfer.backbones.candidates import candidate_backbones, candidate_info
from autotransfer.backbones.decoded import DecodedImages
from autotransfer.backbones.extraction import extract_one
from autotransfer.backbones.feature_cache import FeatureSet, cache_slot, concat_features
from autotransfer.backbones.spec import BackboneSpec
from autotransfer.config import (
    RANK_PILOT_SIZE,
    RANK_SCORING_ALLOWANCE,
    DataSettings,
    ExtractionSettings,
    RankSettings,
)
from autotransfer.data.ingest import open_folder
from autotransfer.data.sample import rank_sample_size, ranking_sample, sample_parts
from autotransfer.data.types import ImageDataset
from autotransfer.errors import BudgetSpent, ConfigError
from autotransfer.memory import default_memory_cap
from autotransfer.transferability.ranking import (
    Ranking,
    RankingRow,
    aggregate_scores,
    score_backbone,
)

log = logging.getLogger(__name__)


def rank_backbones(
    data: str | os.PathLike[str] | ImageDataset,
    settings: RankSettings,
    *,
    seed: int = 0,
    time_limit: float | None = None,
    sample_seconds: float | None = None,
    data_settings: DataSettings | None = None,
    extraction: ExtractionSettings | None = None,
    progress: bool | None = None,
) -> Ranking:
    """The ranking of :func:`autotransfer.rank` (its arguments, the ranking's own gathered
    in ``settings``)."""
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
                got = extract_one(
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
                        more = extract_one(
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

    def key(spec: BackboneSpec) -> tuple[bool, float]:
        cached = cache_slot(ds, spec, "train", ex.resolution, ex.cache_dir, ex.use_cache).cached
        top1 = spec.weights.imagenet_top1
        return (not cached, -(top1 if top1 is not None else float("-inf")))

    return sorted(specs, key=key)


def _nan_low(x: float) -> float:
    return float("-inf") if x != x else x
