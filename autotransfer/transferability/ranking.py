"""Score candidate backbones with every estimator and aggregate the scores into a ranking."""

from __future__ import annotations

import functools
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import rankdata

from autotransfer import plugins
from autotransfer.backbones.families import other_family
from autotransfer.cache import atomic_write, resolve_cache_dir
from autotransfer.errors import BudgetSpent
from autotransfer.transferability.base import Estimator, ScoringInput

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.backbones.feature_cache import FeatureSet
    from autotransfer.backbones.spec import BackboneSpec


@dataclass(frozen=True)
class RankingRow:
    """One backbone: every estimator's score, the aggregate, and what it cost."""

    backbone: str
    scores: dict[str, float]
    aggregate: float
    rank: int
    params_m: float | None = None  # parameters, millions
    feature_dim: int = 0
    images: int = 0
    extract_seconds: float = 0.0  # time of the forward pass when it was computed
    from_cache: bool = False
    score_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "scores": {k: _json_float(v) for k, v in self.scores.items()},
            "aggregate": _json_float(self.aggregate),
            "rank": self.rank,
            "params_m": self.params_m,
            "feature_dim": self.feature_dim,
            "images": self.images,
            "extract_seconds": self.extract_seconds,
            "from_cache": self.from_cache,
            "score_seconds": self.score_seconds,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RankingRow:
        d = dict(d)
        d["scores"] = {k: _float(v) for k, v in d["scores"].items()}
        d["aggregate"] = _float(d["aggregate"])
        return cls(**d)


def _json_float(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _float(x: float | None) -> float:
    return float("nan") if x is None else float(x)


@dataclass(frozen=True)
class Ranking:
    """Backbones best first. ``shortlist`` holds the ids of the top ``top_k`` and, with
    ``hedge``, when none of them is, the best whole network of another architecture
    family than the top one (:mod:`autotransfer.backbones.families`).

    ``aggregate_estimators`` are the estimators whose per-estimator ranks were
    averaged into ``aggregate`` (by default every estimator that reads features; the
    zero-cost ImageNet prior is shown beside them as the baseline to beat).
    """

    rows: tuple[RankingRow, ...]
    estimators: tuple[str, ...]
    aggregate_estimators: tuple[str, ...]
    top_k: int
    dataset: str = ""
    split: str = "train"
    seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)  # backbone -> why it was not ranked
    hedge: bool = False  # also shortlist another family's best (rank's default: True)
    images: int = 0  # images of the split the scores came from (a stratified sample)...
    split_images: int = 0  # ...of this many (0: not recorded, a ranking saved before)
    pilot: int = 0  # the sample's first part, which sized it to the time (0: not sized)

    def sample_note(self) -> str:
        """One line on what the scores were computed from.

        >>> Ranking((), (), (), 1, images=2000, split_images=48000).sample_note()
        'scores from a stratified sample of 2000 of the 48000 train images'
        >>> Ranking((), (), (), 1, images=900, split_images=48000, pilot=500).sample_note()[-46:]
        'images (sized to the time from a pilot of 500)'
        """
        if not self.images:
            return ""
        if self.images >= self.split_images:
            return f"scores from all {self.images} {self.split} images"
        sized = f" (sized to the time from a pilot of {self.pilot})" if self.pilot else ""
        return (
            f"scores from a stratified sample of {self.images} of the {self.split_images} "
            f"{self.split} images{sized}"
        )

    @property
    def hedged(self) -> str | None:
        """The other family's best network the shortlist adds to the top ``top_k``, if any."""
        top = [r.backbone for r in self.rows[: self.top_k]]
        pick = other_family([r.backbone for r in self.rows]) if self.hedge else None
        return pick if pick is not None and pick not in top else None

    @property
    def shortlist(self) -> list[str]:
        hedged = self.hedged
        return [r.backbone for r in self.rows[: self.top_k]] + ([hedged] if hedged else [])

    @property
    def best(self) -> str:
        return self.rows[0].backbone

    def table(self, digits: int = 3) -> str:
        """A plain-text table: rank, backbone, aggregate, every estimator, cost."""
        head = ["#", "backbone", "aggregate", *self.estimators, "params(M)", "extract(s)", "cached"]
        lines = []
        shortlist = set(self.shortlist)
        for r in self.rows:
            lines.append(
                [
                    str(r.rank) + ("*" if r.backbone in shortlist else ""),
                    r.backbone,
                    _fmt(r.aggregate, digits),
                    *(_fmt(r.scores.get(e, float("nan")), digits) for e in self.estimators),
                    "" if r.params_m is None else f"{r.params_m:.1f}",
                    f"{r.extract_seconds:.1f}",
                    "yes" if r.from_cache else "no",
                ]
            )
        widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(head)]
        out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
        out.append("  ".join("-" * w for w in widths))
        out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in lines]
        hedged = f" and {self.hedged}, another family's best" if self.hedged else ""
        out.append(
            f"* shortlist (top {self.top_k}{hedged}); aggregate = mean normalised rank over "
            + ", ".join(self.aggregate_estimators)
        )
        if self.images:
            out.append(self.sample_note())
        for bid, why in self.skipped.items():
            out.append(f"not ranked: {bid}: {why}")
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [r.to_dict() for r in self.rows],
            "estimators": list(self.estimators),
            "aggregate_estimators": list(self.aggregate_estimators),
            "top_k": self.top_k,
            "dataset": self.dataset,
            "split": self.split,
            "seconds": self.seconds,
            "skipped": dict(self.skipped),
            "hedge": self.hedge,
            "images": self.images,
            "split_images": self.split_images,
            "pilot": self.pilot,
            "shortlist": self.shortlist,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **{"indent": 2, **kwargs})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Ranking:
        return cls(
            rows=tuple(RankingRow.from_dict(r) for r in d["rows"]),
            estimators=tuple(d["estimators"]),
            aggregate_estimators=tuple(d["aggregate_estimators"]),
            top_k=int(d["top_k"]),
            dataset=d.get("dataset", ""),
            split=d.get("split", "train"),
            seconds=float(d.get("seconds", 0.0)),
            skipped=dict(d.get("skipped", {})),
            hedge=bool(d.get("hedge", False)),  # saved before the hedge: as it was
            images=int(d.get("images", 0)),
            split_images=int(d.get("split_images", 0)),
            pilot=int(d.get("pilot", 0)),
        )


def _fmt(x: float, digits: int) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def estimator_identity(est: Estimator, seed: int) -> str:
    """What a score depends on besides the features: the class, its settings, its
    ``revision`` (an estimator bumps it when the same inputs score differently, so that
    cached scores of the old code are not reused) and the seed."""
    params = {k: repr(v) for k, v in sorted(vars(est).items()) if not k.startswith("_")}
    revision = getattr(est, "revision", None)
    rev = "" if revision is None else f"@rev={revision}"
    return f"{type(est).__module__}.{type(est).__qualname__}{params}{rev}@seed={seed}"


class ScoreCache:
    """Scores already computed for one feature set, in ``<cache_dir>/scores/<key>.json``."""

    def __init__(self, cache_dir, key: str) -> None:
        self.path = resolve_cache_dir(cache_dir) / "scores" / f"{key}.json"
        try:
            self.values: dict[str, float] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.values = {}
        self.dirty = False

    def get(self, ident: str) -> float | None:
        v = self.values.get(ident)
        return _float(v) if ident in self.values else None

    def put(self, ident: str, value: float) -> None:
        self.values[ident] = _json_float(value)
        self.dirty = True

    def save(self) -> None:
        """Write the file once, after a backbone's estimators have run (if any score is new)."""
        if self.dirty:
            atomic_write(self.path, lambda p: p.write_text(json.dumps(self.values, indent=1)))
            self.dirty = False


def score_backbone(
    estimators: Sequence[Estimator],
    fs: FeatureSet | None,
    spec: BackboneSpec,
    *,
    seed: int = 0,
    cache_dir=None,
    use_cache: bool = True,
    deadline: float | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Every estimator's score for one backbone (nan where it does not apply) and its time.

    Scores of cached features are themselves cached (keyed by the features' key and the
    estimator's class, settings and seed), so a second ranking costs almost nothing.
    With ``deadline`` (a :func:`time.monotonic` time), each estimator runs only while time
    is left and is waited for until the deadline at most; past it,
    :class:`~autotransfer.errors.BudgetSpent` is raised (the scores finished before it stay
    cached).
    """
    scores: dict[str, float] = {}
    seconds: dict[str, float] = {}
    cache = ScoreCache(cache_dir, fs.key) if (use_cache and fs is not None and fs.key) else None
    reg = plugins.registered("estimators")
    if fs is not None:
        inputs = ScoringInput(
            features=fs.features, labels=fs.labels, logits=fs.logits, backbone=spec, seed=seed
        )
    else:
        inputs = ScoringInput(
            features=np.zeros((0, 0), np.float32), labels=np.zeros(0, np.int64), backbone=spec
        )
    try:
        for est in estimators:
            if (est.needs_logits and inputs.logits is None) or (est.needs_features and fs is None):
                scores[est.name] = float("nan")
                continue
            ident = estimator_identity(est, seed)
            cached = cache.get(ident) if cache is not None else None
            if cached is not None:
                scores[est.name], seconds[est.name] = cached, 0.0
                continue
            plugin = reg[est.name].plugin if est.name in reg else "(passed in)"
            t0 = time.perf_counter()
            call = functools.partial(
                plugins.call_plugin, plugin, f"estimator {est.name!r}", est.score, inputs=inputs
            )
            value = call() if deadline is None else _call_by(deadline, est.name, call)
            seconds[est.name] = round(time.perf_counter() - t0, 4)
            scores[est.name] = float(value) if value is not None else float("nan")
            if cache is not None:
                cache.put(ident, scores[est.name])
    finally:  # scores finished before an estimator raised are kept
        if cache is not None:
            cache.save()
    return scores, seconds


def _call_by(deadline: float, name: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, waited for until ``deadline`` at most. It runs on a daemon thread, which is
    abandoned (and finishes in the background, its result dropped) when the deadline
    passes first: Python cannot stop a thread, and the budget must hold."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise BudgetSpent(f"no time was left to run estimator {name!r}")
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"estimator-{name}", daemon=True)
    thread.start()
    thread.join(left)
    if thread.is_alive():
        raise BudgetSpent(f"estimator {name!r} did not finish within the time left ({left:.0f} s)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def aggregate_scores(
    scores: Mapping[str, Mapping[str, float]], estimators: Sequence[str]
) -> dict[str, float]:
    """Mean normalised rank per backbone over ``estimators`` (1 = best by all, 0 = worst).

    Per estimator, backbones are ranked by score (ties share their mean rank) and the
    ranks scaled to [0, 1]; a backbone without a score for an estimator (nan) is left
    out of that estimator's mean. Rank averaging is robust to the estimators' very
    different scales.

    >>> aggregate_scores({"a": {"x": 1.0, "y": 5.0}, "b": {"x": 0.0, "y": 9.0}}, ["x", "y"])
    {'a': 0.5, 'b': 0.5}
    """
    ids = list(scores)
    sums = dict.fromkeys(ids, 0.0)
    counts = dict.fromkeys(ids, 0)
    for est in estimators:
        have = [b for b in ids if not math.isnan(scores[b].get(est, float("nan")))]
        if len(have) == 0:
            continue
        if len(have) == 1:
            sums[have[0]] += 1.0
            counts[have[0]] += 1
            continue
        ranks = rankdata([scores[b][est] for b in have])  # 1 = lowest score
        for b, r in zip(have, ranks):
            sums[b] += float(r - 1) / (len(have) - 1)
            counts[b] += 1
    return {b: (sums[b] / counts[b] if counts[b] else float("nan")) for b in ids}
