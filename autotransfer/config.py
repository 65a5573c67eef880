"""Settings as frozen dataclasses: every default and every check in one place."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from autotransfer.errors import ConfigError


@dataclass(frozen=True)
class DataSettings:
    """How a folder becomes an :class:`~autotransfer.data.types.ImageDataset`."""

    val_fraction: float = 0.2  # carved from train (stratified, seeded) when there is no val split
    seed: int = 0
    strict: bool = False  # unreadable files are an error instead of a skip

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(
                f"val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ExtractionSettings:
    """How the frozen-feature pass runs. ``resolution=None`` uses each backbone's own."""

    resolution: int | None = None
    batch_size: int | None = None  # None: 8 on CPU, 128 on CUDA (what runs fastest there)
    num_workers: int | None = None  # None: a default that suits the machine
    device: str | None = None  # None: CUDA when present, else CPU
    cache_dir: str | os.PathLike[str] | None = None  # None: autotransfer.cache.default_cache_dir()
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.resolution is not None and not 16 <= int(self.resolution) <= 1024:
            raise ConfigError(
                f"resolution must be between 16 and 1024 pixels, got {self.resolution!r}; "
                "leave it unset to use each backbone's default input size."
            )
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size!r}.")
        if self.num_workers is not None and int(self.num_workers) < 0:
            raise ConfigError(f"num_workers must be 0 or more, got {self.num_workers!r}.")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cache_dir"] = None if self.cache_dir is None else str(self.cache_dir)
        return d


@dataclass(frozen=True)
class RankSettings:
    """Which backbones and estimators :func:`autotransfer.rank` uses and how many it keeps."""

    backbones: tuple[str, ...] | None = None  # None: every candidate available offline
    estimators: tuple[str, ...] | None = None  # None: every registered estimator
    aggregate: tuple[str, ...] | None = None  # None: the estimators that read features
    top_k: int = 3
    include_controls: bool = False  # add random-init control backbones to the default set

    def __post_init__(self) -> None:
        if int(self.top_k) < 1:
            raise ConfigError(f"top_k must be at least 1, got {self.top_k!r}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
