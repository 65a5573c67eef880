"""The plan of a study and its priors: what stays fixed for its life (shortlist,
strategies, resolution, class weights, from the descriptors), which strategies to try
first, and the trials enqueued before Optuna's sampler takes over.

The rule of thumb from the transfer-learning literature (Yosinski et al. 2014; the
"size and similarity" quadrant): small data close to the source wants a frozen
backbone, large or dissimilar data wants fine-tuning. The study enqueues the cheapest
trials first (a linear head on each shortlisted backbone's cached features, seconds
each), then each strategy's prior configuration on the best-ranked backbone in the
order the rule gives, the BiT-HyperRule full fine-tune among them; the rule's first
choice also runs on the best shortlisted network of another architecture family, right
after the top backbone's: the ranking estimates frozen features, and how well a network
fine-tunes varies more between families than within one. Where the budget is short (the
BiT-HyperRule's schedule would not fit a trial's time at the estimated pace), a recipe
that converges in few steps (fastai's ``fine_tune``: a warm head, then one cycle) is the
first fine-tune instead.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from autotransfer import plugins
from autotransfer.backbones.families import other_family
from autotransfer.backbones.inputs import resolve_device
from autotransfer.config import FitSettings
from autotransfer.data.statistics import bit_hyperrule
from autotransfer.data.types import ImageDataset
from autotransfer.plugins import plugin_error
from autotransfer.strategies.base import SearchContext, Strategy, converges_quickly, transfers
from autotransfer.strategies.schedules import hyperrule_steps

log = logging.getLogger(__name__)

SMALL = 2_000  # training images per dataset under which data count as "small"
CHEAP = 0.1  # strategies under this relative cost (frozen features) run first, on every backbone
SIMILAR = 0.5  # similarity (0..1) above which data count as close to the source
FAR = 0.25  # ...and under which it counts as far: the no-transfer baselines run early
TINY = 48  # median image side (pixels) at or under which images count as tiny


def strategy_order(strategies: Sequence[Strategy], search: SearchContext) -> list[Strategy]:
    """Strategies in the order the size x similarity rule prefers them.

    Small and similar: cheapest (most frozen) first. Otherwise: most adaptive first.
    Unknown similarity counts as dissimilar for large data and as similar for small.

    >>> from autotransfer.builtin.strategies import autotransfer_register_strategies as reg
    >>> s = SearchContext(300, 5, 200.0, 0.9, "cpu", 32)
    >>> [x.name for x in strategy_order([x for x in reg() if transfers(x)], s)][:2]
    ['feature_extraction', 'partial_freeze']
    """
    small = search.num_train < SMALL
    similar = search.similarity is None and small or (search.similarity or 0.0) >= SIMILAR
    freeze_first = small and similar
    return sorted(strategies, key=lambda s: s.relative_cost if freeze_first else -s.relative_cost)


def prior_trials(
    shortlist: Sequence[str], strategies: Sequence[Strategy], search: SearchContext
) -> list[dict[str, Any]]:
    """The enqueued trials as Optuna parameter dicts (strategy parameters prefixed).

    Every strategy cheaper than 0.1 (frozen features) runs on every shortlisted backbone
    first; then each other strategy's defaults on the top backbone, in rule order, the
    first of them also on the best whole network of another family in the shortlist
    (:func:`~autotransfer.backbones.families.other_family`) right after the top's. The
    strategies that do not transfer run once each: where the data are :func:`doubtful`,
    the cheap ones first and the others right after the frozen heads; else the cheap ones
    right after the frozen heads and the others last.

    >>> from autotransfer.builtin.strategies import autotransfer_register_strategies as reg
    >>> s = SearchContext(300, 5, 200.0, 0.9, "cpu", 32)
    >>> [(p["backbone"], p["strategy"]) for p in prior_trials(["t:vit", "t:resnet"], reg(), s)]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('t:vit', 'feature_extraction'), ('t:resnet', 'feature_extraction'),
     ('t:vit', 'raw_pixels'), ('t:vit', 'partial_freeze'), ('t:resnet', 'partial_freeze'),
     ('t:vit', 'fine_tune'), ('t:vit', 'discriminative_lr'), ('t:vit', 'full_finetune'),
     ('t:vit', 'from_scratch')]

    Where the budget is :func:`short_budget`, the quick recipe is the first fine-tune:

    >>> s = SearchContext(300, 5, 200.0, 0.9, "cpu", 32, step_seconds=0.8, trial_seconds=120)
    >>> [(p["backbone"], p["strategy"]) for p in prior_trials(["t:vit", "t:resnet"], reg(), s)][3:6]
    [('t:vit', 'fine_tune'), ('t:resnet', 'fine_tune'), ('t:vit', 'partial_freeze')]
    """
    ordered = strategy_order([s for s in strategies if transfers(s)], search)
    if short_budget(search):  # the quick recipe first (a stable sort keeps the rest's order)
        ordered.sort(key=lambda s: not converges_quickly(s))
    cheap = [s for s in ordered if s.relative_cost < CHEAP]
    pairs = [(b, s) for s in cheap for b in shortlist]
    tuning = [s for s in ordered if s not in cheap]
    pairs += [(shortlist[0], s) for s in tuning]
    hedge = other_family(shortlist)
    if hedge is not None and tuning:
        pairs.insert(len(cheap) * len(shortlist) + 1, (hedge, tuning[0]))
    # the no-transfer baselines, once each (they do not use the backbone). Where transfer
    # is in doubt, the cheap ones first and the others right after the frozen heads;
    # else the cheap ones after the frozen heads and the others last
    baselines = sorted((s for s in strategies if not transfers(s)), key=lambda s: s.relative_cost)
    quick = [(shortlist[0], s) for s in baselines if s.relative_cost < CHEAP]
    slow = [(shortlist[0], s) for s in baselines if s.relative_cost >= CHEAP]
    heads = len(cheap) * len(shortlist)
    if doubtful(search):
        pairs = quick + pairs[:heads] + slow + pairs[heads:]
    else:
        pairs = pairs[:heads] + quick + pairs[heads:] + slow
    out = []
    for b, s in pairs:
        try:
            out.append(_params(b, s, search))
        except Exception as exc:  # plugin code: name it, skip its prior, go on
            log.error(
                "%s. Its prior trial is skipped; the study goes on.\n%s",
                plugin_error(s.name, "defaults", exc),
                traceback.format_exc().rstrip(),
            )
    return out


def short_budget(search: SearchContext) -> bool:
    """Whether the BiT-HyperRule's schedule would not fit a trial's time at the estimated
    pace (unknown pace or time: no).

    >>> s = SearchContext(1000, 10, 200.0, None, "cpu", 32, step_seconds=0.8, trial_seconds=240)
    >>> short_budget(s), hyperrule_steps(s)  # 3,200 steps of 0.8 s: 43 minutes
    (True, 3200)
    """
    if search.step_seconds is None or search.trial_seconds is None:
        return False
    return hyperrule_steps(search) * search.step_seconds > search.trial_seconds


def doubtful(search: SearchContext) -> bool:
    """Whether the descriptors put the data where transfer may not help: tiny images
    (at most :data:`TINY` pixels a side) or far from the source (similarity under
    :data:`FAR`).

    >>> doubtful(SearchContext(300, 5, 28.0, 0.9, "cpu", 32))
    True
    >>> doubtful(SearchContext(300, 5, 200.0, None, "cpu", 32))
    False
    """
    far = search.similarity is not None and search.similarity < FAR
    return search.median_side <= TINY or far


def _params(backbone: str, strategy: Strategy, search: SearchContext) -> dict[str, Any]:
    defaults = strategy.defaults(search=search)
    return {
        "backbone": backbone,
        "strategy": strategy.name,
        **{f"{strategy.name}.{k}": v for k, v in defaults.items()},
    }


def similarity_score(descriptor: Any, backbone: str) -> float | None:
    """A 0..1 closeness to the source for one backbone from the descriptors, or None.

    Mapped from the batch-norm KL (0 identical, about 1 for digits on ImageNet
    backbones): ``exp(-2 * bn_kl)``.
    """
    import math

    sims = getattr(descriptor, "source_similarity", None) or {}
    s = sims.get(backbone)
    kl = s.get("bn_kl") if isinstance(s, dict) else getattr(s, "bn_kl", None)
    if kl is None or kl != kl:
        return None
    return float(math.exp(-2.0 * float(kl)))


def make_plan(
    dataset: ImageDataset, settings: FitSettings, descriptor: Any, shortlist: list[str]
) -> dict[str, Any]:
    """What stays fixed for the life of a study: data, shortlist, strategies, resolution."""
    device = resolve_device(settings.device).type
    side = median_side(descriptor)
    res = settings.resolution or auto_resolution(device, side)
    weights = class_weights(
        dataset, settings.class_weights, float(getattr(descriptor, "imbalance_ratio", 1.0))
    )
    return {
        "root": dataset.root,
        "shortlist": list(shortlist),
        "strategies": list(settings.strategies or plugins.registered("strategies")),
        "resolution": int(res),
        "median_side": side,
        "similarity": similarity_score(descriptor, shortlist[0]) if shortlist else None,
        "class_weights": None if weights is None else [float(w) for w in weights],
    }


def auto_resolution(device: str, median_side: float) -> int:
    """The training resolution when none is set: what a CPU budget affords, else BiT's.

    >>> auto_resolution("cpu", 64.0), auto_resolution("cpu", 500.0), auto_resolution("cuda", 500.0)
    (128, 160, 384)
    """
    if device == "cuda":
        return int(bit_hyperrule(1, median_side)["crop"])
    return 128 if median_side < 96 else 160


def rank_sample(ranking: Any, settings: FitSettings) -> tuple[int | None, int | None, int]:
    """The ranking's sample as :func:`~autotransfer.data.sample.sample_parts` rebuilds it
    (size, per class, pilot): the size the ranking read, else the settings' cap."""
    if ranking is None or not ranking.images:
        return settings.rank_sample_size, settings.rank_sample_per_class, 0
    return ranking.images, settings.rank_sample_per_class, ranking.pilot


def median_side(descriptor: Any) -> float:
    size = getattr(descriptor, "image_size", None) or {}
    w, h = size.get("width_median"), size.get("height_median")
    return float(min(w, h)) if w and h else 224.0


def class_weights(dataset: ImageDataset, mode: str, imbalance_ratio: float) -> np.ndarray | None:
    """Inverse-frequency weights (scikit-learn's "balanced") when asked, or for "auto" when
    the largest class has at least twice the images of the smallest."""
    if mode == "none" or (mode == "auto" and imbalance_ratio < 2.0):
        return None
    y = np.array([r.label for r in dataset.train])
    k = len(dataset.classes)
    present = np.unique(y)
    w = np.ones(k, dtype=np.float32)
    w[present] = compute_class_weight("balanced", classes=present, y=y)
    return w
