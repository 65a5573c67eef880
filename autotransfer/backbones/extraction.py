"""Features of the candidate backbones on a dataset: one pass per network, its cuts taken
from the same pass (:mod:`~autotransfer.backbones.cut_taps`), each part of a sampled
split extracted and cached on its own and the features concatenated."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict

from autotransfer.backbones.cut_taps import extract_group
from autotransfer.backbones.cuts import cuts_of
from autotransfer.backbones.decoded import DecodedImages
from autotransfer.backbones.feature_cache import FeatureSet, concat_features
from autotransfer.backbones.features import extract_features
from autotransfer.backbones.spec import BackboneSpec
from autotransfer.config import ExtractionSettings
from autotransfer.data.types import ImageDataset
from autotransfer.progress import progress_bar

log = logging.getLogger(__name__)


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
            out.update(extract_one(dataset, spec, s, split, label, progress, specs, deadline))
    return {spec.id: out[spec.id] for spec in specs}


def extract_one(
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
    parts = [dataset] if isinstance(dataset, ImageDataset) else list(dataset)
    if split != "train":  # the parts share their other splits
        parts = parts[:1]
    pieces: list[dict[str, FeatureSet]] = []
    for part in parts:
        with progress_bar(f"{label} {spec.id}", enabled=progress) as update:
            # the settings' fields are the extraction's keyword arguments, by name
            opts = dict(
                split=split, progress=update, deadline=deadline, decoded=decoded, **asdict(s)
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
