"""Dataset descriptors: the facts about a dataset that decide how to transfer to it.

Each fact comes from a registered :class:`Descriptor` (the built-ins register through
the same hook as third-party plugins). Keys a descriptor returns that name a
:class:`DatasetDescriptor` field fill it; other keys go to ``extra[descriptor.name]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from autotransfer import plugins
from autotransfer.data.similarity import SourceSimilarity

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.backbones.feature_cache import FeatureSet
    from autotransfer.data.types import ImageDataset


@runtime_checkable
class Descriptor(Protocol):
    """Computes named facts about a dataset.

    ``needs_features``: the descriptor reads ``features`` (backbone id → FeatureSet of the
    training split) and is skipped when none were extracted.
    """

    name: str
    needs_features: bool

    def compute(
        self, *, dataset: ImageDataset, features: Mapping[str, FeatureSet]
    ) -> dict[str, Any]:
        """Return a dict of facts (JSON-serialisable values)."""


@dataclass(frozen=True)
class DatasetDescriptor:
    """What :func:`autotransfer.describe` reports; JSON round-trips with to_dict/from_dict."""

    root: str = ""
    layout: str = ""
    num_images: int = 0
    split_sizes: dict[str, int] = field(default_factory=dict)
    num_classes: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)  # all splits together
    train_per_class: dict[str, float] = field(default_factory=dict)  # min, median, mean, max
    imbalance_ratio: float = 1.0  # largest / smallest class (training split)
    image_size: dict[str, float] = field(default_factory=dict)  # widths, heights, aspects
    color_modes: dict[str, int] = field(default_factory=dict)  # on-disk PIL mode -> images
    channels: dict[str, int] = field(default_factory=dict)  # channel count -> images
    regime: dict[str, Any] = field(default_factory=dict)  # BiT-HyperRule size regime
    skipped_files: int = 0
    duplicates_dropped: int = 0
    source_similarity: dict[str, SourceSimilarity] = field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["source_similarity"] = {k: v.to_dict() for k, v in self.source_similarity.items()}
        return d

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **{"indent": 2, **kwargs})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DatasetDescriptor:
        d = dict(d)
        d["source_similarity"] = {
            k: SourceSimilarity.from_dict(v) for k, v in d.get("source_similarity", {}).items()
        }
        return cls(**d)


FIELD_NAMES = frozenset(f.name for f in fields(DatasetDescriptor))


def describe_dataset(
    dataset: ImageDataset, features: Mapping[str, FeatureSet] | None = None
) -> DatasetDescriptor:
    """Run every registered descriptor and assemble a :class:`DatasetDescriptor`.

    >>> describe_dataset(open_dataset("data/")).num_classes  # doctest: +SKIP
    10
    """
    features = dict(features or {})
    values: dict[str, Any] = {}
    extra: dict[str, dict[str, Any]] = {}
    for reg in plugins.registered("descriptors").values():
        desc = reg.obj
        if desc.needs_features and not features:
            continue
        out = plugins.call_plugin(
            reg.plugin,
            f"descriptor {desc.name!r}",
            desc.compute,
            dataset=dataset,
            features=features,
        )
        for key, value in (out or {}).items():
            if key in FIELD_NAMES and key != "extra":
                if key == "source_similarity":
                    value = {
                        k: v if isinstance(v, SourceSimilarity) else SourceSimilarity(**v)
                        for k, v in value.items()
                    }
                values[key] = value
            else:
                extra.setdefault(desc.name, {})[key] = value
    return DatasetDescriptor(**values, extra=extra)
