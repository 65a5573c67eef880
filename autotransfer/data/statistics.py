"""The built-in dataset statistics: counts, balance, image sizes, colour modes, size regime."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from autotransfer.data.similarity import source_similarity

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.backbones.feature_cache import FeatureSet
    from autotransfer.data.types import ImageDataset

MODE_CHANNELS = {"1": 1, "L": 1, "P": 1, "I": 1, "F": 1, "I;16": 1, "I;16B": 1, "I;16L": 1,
                 "LA": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3,
                 "RGBA": 4, "CMYK": 4, "RGBX": 4}  # fmt: skip


def bit_hyperrule(num_train: int, median_side: float) -> dict[str, Any]:
    """The BiT-HyperRule (Kolesnikov et al., 2020, section 3.3) for a dataset.

    Size regime: small < 20k labelled examples, medium < 500k, large otherwise; schedule
    500 / 10k / 20k steps; MixUp (alpha 0.1) for medium and large only; images whose
    side is under 96 px are resized to 160 and cropped to 128, larger ones 448 → 384.

    >>> bit_hyperrule(1000, 64)["regime"], bit_hyperrule(1000, 64)["crop"]
    ('small', 128)
    """
    if num_train < 20_000:
        regime, steps = "small", 500
    elif num_train < 500_000:
        regime, steps = "medium", 10_000
    else:
        regime, steps = "large", 20_000
    small_images = median_side < 96
    return {
        "regime": regime,
        "schedule_steps": steps,
        "mixup_alpha": 0.0 if regime == "small" else 0.1,
        "resize": 160 if small_images else 448,
        "crop": 128 if small_images else 384,
    }


def _summary(values: np.ndarray) -> dict[str, float]:
    return {
        "min": float(values.min()),
        "median": float(np.median(values)),
        "mean": round(float(values.mean()), 3),
        "max": float(values.max()),
    }


class DatasetStatistics:
    """Counts, class balance, image sizes, colour modes and the BiT size regime."""

    name = "statistics"
    needs_features = False

    def compute(
        self, *, dataset: ImageDataset, features: Mapping[str, FeatureSet]
    ) -> dict[str, Any]:
        recs = dataset.records
        counts = Counter(dataset.classes[r.label] for r in recs)
        train_counts = Counter(r.label for r in dataset.train)
        per_class = np.array([train_counts.get(i, 0) for i in range(len(dataset.classes))])
        widths = np.array([r.width for r in recs], dtype=float)
        heights = np.array([r.height for r in recs], dtype=float)
        aspects = widths / np.maximum(heights, 1)
        modes = Counter(r.mode for r in recs)
        channels = Counter(str(MODE_CHANNELS.get(r.mode, 3)) for r in recs)
        median_side = float(np.median(np.minimum(widths, heights)))
        return {
            "root": dataset.root,
            "layout": dataset.layout,
            "num_images": len(recs),
            "split_sizes": {s: len(dataset.split(s)) for s in ("train", "val", "test")},
            "num_classes": len(dataset.classes),
            "class_counts": {c: counts.get(c, 0) for c in dataset.classes},
            "train_per_class": _summary(per_class),
            "imbalance_ratio": round(float(per_class.max() / max(per_class.min(), 1)), 3),
            "image_size": {
                **{f"width_{k}": v for k, v in _summary(widths).items()},
                **{f"height_{k}": v for k, v in _summary(heights).items()},
                **{f"aspect_{k}": round(v, 3) for k, v in _summary(aspects).items()},
            },
            "color_modes": dict(sorted(modes.items())),
            "channels": dict(sorted(channels.items())),
            "regime": bit_hyperrule(len(dataset.train), median_side),
            "skipped_files": len(dataset.report.skipped),
            "duplicates_dropped": len(dataset.report.duplicates_dropped),
        }


class SourceSimilarityDescriptor:
    """Similarity of the data to each backbone's pretraining source (needs features)."""

    name = "source_similarity"
    needs_features = True

    def compute(
        self, *, dataset: ImageDataset, features: Mapping[str, FeatureSet]
    ) -> dict[str, Any]:
        return {
            "source_similarity": {bid: source_similarity(bid, fs) for bid, fs in features.items()}
        }
