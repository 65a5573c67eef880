"""Settings as frozen dataclasses: every default and every check in one place."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from autotransfer.databases import database_url
from autotransfer.errors import ConfigError
from autotransfer.units import parse_duration, parse_size

# the ranking's sample and the search's validation sample (benchmarks/rank_sample.py)
RANK_SAMPLE_SIZE = 2000
RANK_SAMPLE_PER_CLASS = 250
VAL_SAMPLE_SIZE = 2000
# under a time budget the ranking's sample is sized to a share of it: a pilot of this many
# images (raised for many classes) measures the first candidate's rate...
RANK_PILOT_SIZE = 500
RANK_SAMPLE_SHARE = 0.2  # ...and the sample grows to what this share of the time left allows
RANK_SCORING_ALLOWANCE = 0.5  # the estimators' seconds, as a share of the extraction's

# where JPEGs are decoded (ExtractionSettings.jpeg_decode); the first is the default
JPEG_DECODE = ("auto", "device", "host")


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
    # where JPEGs are decoded: "auto" (on a CUDA device, in batches; else on the host),
    # "device" or "host" (PIL in the loader workers)
    jpeg_decode: str = JPEG_DECODE[0]

    def __post_init__(self) -> None:
        if self.jpeg_decode not in JPEG_DECODE:
            raise ConfigError(
                f"jpeg_decode must be 'auto', 'device' or 'host', got {self.jpeg_decode!r}."
            )
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
    hedge: bool = True  # also shortlist another architecture family's best (families.py)
    include_controls: bool = False  # add random-init control backbones to the default set
    cuts: tuple[int, ...] = ()  # also each candidate cut after these stages (-2: before last)
    # the estimators score a stratified sample of the training split: at most sample_size
    # images (raised to 10 per class for many classes), sample_per_class of a class; None:
    # every image. Chosen by measurement: benchmarks/rank_sample.py
    sample_size: int | None = RANK_SAMPLE_SIZE
    sample_per_class: int | None = RANK_SAMPLE_PER_CLASS

    def __post_init__(self) -> None:
        if int(self.top_k) < 1:
            raise ConfigError(f"top_k must be at least 1, got {self.top_k!r}.")
        object.__setattr__(self, "cuts", check_cuts(self.cuts))
        check_sample("sample_size", self.sample_size)
        check_sample("sample_per_class", self.sample_per_class)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cuts"] = list(self.cuts)
        return d


def check_sample(name: str, value: Any) -> None:
    """A sample cap is None (no cap) or a whole number of images, at least 2."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or int(value) < 2
    ):
        raise ConfigError(
            f"{name} must be a whole number of images (at least 2), or None for every image; "
            f"got {value!r}."
        )


def check_cuts(cuts: Any) -> tuple[int, ...]:
    """``cuts`` as a tuple of stage numbers; none may be -1 (the whole network)."""
    if isinstance(cuts, int) and not isinstance(cuts, bool):
        cuts = (cuts,)
    if isinstance(cuts, (str, bytes)) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in cuts
    ):
        raise ConfigError(
            f"cuts must be a tuple of stage numbers (e.g. (2, 3), or (-2,) for the stage "
            f"before the last), got {cuts!r}."
        )
    if -1 in cuts:
        raise ConfigError(
            "cuts must not hold -1: the last stage is the whole network, which is always a "
            "candidate. Use -2 for the stage before the last."
        )
    return tuple(cuts)


PRUNERS = ("median", "none")
FLIP_TTA = ("auto", "on", "off")  # auto: measured on validation after the search, on if it wins
AUGMENTATIONS = ("crop_flip", "crop", "none")  # see strategies.images
CLASS_WEIGHTS = ("auto", "balanced", "none")


@dataclass(frozen=True)
class FitSettings:
    """What :func:`autotransfer.fit` searches and within which budget.

    ``time_budget`` bounds the whole fit's wall clock (``"10m"``, ``"1h"``, seconds),
    ``n_trials`` the number of trials in the study (counting those of earlier runs on the
    same run folder); at least one must be set. ``resolution=None`` picks one for the
    device: on CPU 128 px for small images (median side under 96 px) and 160 px
    otherwise; on CUDA the BiT-HyperRule crop (128 or 384). ``trial_time_limit=None``
    gives one trial at most 40 % of the time budget. The ranking may take at most
    ``rank_share`` of the time budget: candidates it cannot score by then are left out.
    Its sample is sized to ``rank_sample_share`` of the time left, from a pilot's measured
    extraction rate, within ``rank_sample_size``.
    """

    time_budget: str | float | None = "10m"
    n_trials: int | None = None
    # after the search: a weighted ensemble of the trials (Caruana's greedy selection on
    # their validation probabilities), kept only when it wins by more than one standard
    # error; and the pick retrained on train + validation when the time left allows
    ensemble: bool = True
    refit: bool = True
    # flip test-time augmentation (each image and its mirror image, averaged): "auto" turns
    # it on when it beats the plain pick on validation by more than one standard error
    # (never where augment forbids flips); "on", "off"
    flip_tta: str = "auto"
    strategies: tuple[str, ...] | None = None  # None: every registered strategy
    backbones: tuple[str, ...] | None = None  # None: every candidate available offline
    top_k: int = 3  # backbones kept from the ranking for the study
    hedge: bool = True  # and another architecture family's best, if the top_k are one family
    rank_share: float = 0.75  # the most of time_budget the ranking may take (1.0: no limit)
    rank_sample_size: int | None = RANK_SAMPLE_SIZE  # RankSettings.sample_size
    rank_sample_per_class: int | None = RANK_SAMPLE_PER_CLASS  # RankSettings.sample_per_class
    # the ranking's sample is sized, from a pilot's measured rate, to this share of the time
    # left (at most rank_sample_size); None: rank_sample_size whatever the time
    rank_sample_share: float | None = RANK_SAMPLE_SHARE
    # validation images of each evaluation during the search (a stratified sample; None:
    # all); the pick is scored once on the whole validation split at the end
    val_sample_size: int | None = VAL_SAMPLE_SIZE
    cuts: tuple[int, ...] = ()  # also rank each candidate cut after these stages
    resolution: int | None = None
    batch_size: int | None = None  # None: 32 on CPU, 128 on CUDA; halved on out-of-memory
    augment: str = "crop_flip"  # "crop" for orientation-sensitive labels, "none"
    class_weights: str = "auto"  # "auto": balanced when the largest class is 2x the smallest
    trial_time_limit: str | float | None = None
    pruner: str = "median"
    seed: int = 0
    device: str | None = None
    # one process per device on the same study: the fit trains on the first, an
    # `autotransfer worker` on each other one (["cuda:0", "cuda:1"]); None: the fit alone
    devices: tuple[str, ...] | None = None
    num_workers: int | None = None
    jpeg_decode: str = JPEG_DECODE[0]  # as ExtractionSettings'; the image cache too
    # decoded training images kept in memory ("2GB"; None: 25 % of the available memory);
    # past it they live in a memory map on disk, under the cache folder
    image_cache_memory: str | float | None = None
    run_dir: str | None = None  # None: ./autotransfer-runs/<folder name>
    storage: str | None = None  # None: SQLite file in the run folder; else an Optuna URL
    study_name: str = "autotransfer"
    # a running trial's worker says it is alive this often; after 4 missed beats (a dead
    # worker, on any machine) its trial is failed and queued for another worker
    heartbeat_seconds: int = 30
    # where kept trial models also go, so that a pick trained on another machine loads:
    # "mlflow" (the trials' MLflow runs: a tracking server's artifact store), a folder
    # every machine mounts, or None (the run folder only: one machine)
    shared_checkpoints: str | None = None
    trackers: tuple[str, ...] = ("mlflow",)
    tracking_uri: str | None = None  # None: an MLflow store in the run folder
    experiment: str | None = None  # None: the run folder's name

    def __post_init__(self) -> None:
        if self.time_budget is None and self.n_trials is None:
            raise ConfigError(
                "Set a time_budget (e.g. '10m') or n_trials, or both; with neither the "
                "search would never end."
            )
        parse_duration(self.time_budget)
        parse_duration(self.trial_time_limit)
        if self.n_trials is not None and int(self.n_trials) < 1:
            raise ConfigError(f"n_trials must be at least 1, got {self.n_trials!r}.")
        if int(self.top_k) < 1:
            raise ConfigError(f"top_k must be at least 1, got {self.top_k!r}.")
        if not 0 < float(self.rank_share) <= 1:
            raise ConfigError(
                f"rank_share must be above 0 and at most 1 (a share of time_budget), got "
                f"{self.rank_share!r}."
            )
        if self.rank_sample_share is not None and not 0 < float(self.rank_sample_share) <= 1:
            raise ConfigError(
                f"rank_sample_share must be above 0 and at most 1 (a share of the time left), "
                f"or None for a sample of rank_sample_size, got {self.rank_sample_share!r}."
            )
        object.__setattr__(self, "cuts", check_cuts(self.cuts))
        for name in ("rank_sample_size", "rank_sample_per_class", "val_sample_size"):
            check_sample(name, getattr(self, name))
        if self.resolution is not None and not 16 <= int(self.resolution) <= 1024:
            raise ConfigError(f"resolution must be 16-1024 pixels, got {self.resolution!r}.")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size!r}.")
        parse_size(self.image_cache_memory, "image_cache_memory")
        if self.devices is not None:
            devices = (self.devices,) if isinstance(self.devices, str) else tuple(self.devices)
            if not devices or not all(isinstance(d, str) and d for d in devices):
                raise ConfigError(f"devices must name one or more devices, got {self.devices!r}.")
            if self.device is not None and self.device != devices[0]:
                raise ConfigError(
                    f"device={self.device!r} and devices={list(devices)!r}: give devices alone "
                    "(the fit trains on the first), or device alone."
                )
            object.__setattr__(self, "devices", devices)
            object.__setattr__(self, "device", devices[0])
        if self.storage is not None:
            database_url(str(self.storage), "storage")  # its driver is installed
        if self.shared_checkpoints == "mlflow" and "mlflow" not in self.trackers:
            raise ConfigError(
                "shared_checkpoints='mlflow' keeps the trials' models in their MLflow runs; "
                "add 'mlflow' to trackers, or give a folder that every machine mounts."
            )
        if isinstance(self.heartbeat_seconds, bool) or int(self.heartbeat_seconds) < 1:
            raise ConfigError(
                f"heartbeat_seconds must be a whole number of seconds, at least 1, got "
                f"{self.heartbeat_seconds!r}."
            )
        ExtractionSettings(jpeg_decode=self.jpeg_decode)  # checks it
        for name, value, allowed in (
            ("augment", self.augment, AUGMENTATIONS),
            ("class_weights", self.class_weights, CLASS_WEIGHTS),
            ("pruner", self.pruner, PRUNERS),
            ("flip_tta", self.flip_tta, FLIP_TTA),
        ):
            if value not in allowed:
                raise ConfigError(
                    f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}."
                )

    @property
    def time_budget_seconds(self) -> float | None:
        return parse_duration(self.time_budget)

    @property
    def trial_time_limit_seconds(self) -> float | None:
        limit = parse_duration(self.trial_time_limit)
        if limit is None and self.time_budget_seconds is not None:
            return 0.4 * self.time_budget_seconds
        return limit

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("strategies", "backbones", "trackers", "cuts", "devices"):
            d[k] = None if d[k] is None else list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitSettings:
        d = dict(d)
        for k in ("strategies", "backbones", "trackers", "cuts", "devices"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)
