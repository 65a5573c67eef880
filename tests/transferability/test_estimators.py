"""All built-in estimators: registration, ranking sanity, degenerate inputs, input errors."""

from __future__ import annotations

import numpy as np
import pluggy
import pytest

from autotransfer import hookspecs
from autotransfer.builtin import estimators as builtin_estimators
from autotransfer.errors import DataError
from autotransfer.transferability.base import Estimator, ScoringInput
from autotransfer.transferability.estimators._util import standardise

BUILTINS = builtin_estimators.autotransfer_register_estimators()
DATA_ESTIMATORS = [e for e in BUILTINS if e.needs_features]


def test_registers_every_builtin_through_the_hook(builtin_estimator_names) -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin_estimators, name="builtin_estimators")
    (registered,) = pm.hook.autotransfer_register_estimators()
    assert {e.name for e in registered} == builtin_estimator_names
    assert all(isinstance(e, Estimator) for e in registered)


def structured(seed: int) -> ScoringInput:
    """5 classes living on a low-dimensional subspace of 64-d post-ReLU-like features."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(150) % 5)
    latent = rng.normal(size=(5, 8))[labels] * 1.5 + rng.normal(size=(150, 8))
    features = np.maximum(latent @ rng.normal(size=(8, 64)) + 0.3 * rng.normal(size=(150, 64)), 0)
    logits = latent @ rng.normal(size=(8, 20))
    return ScoringInput(features=features.astype(np.float32), labels=labels, logits=logits)


@pytest.mark.parametrize("estimator", DATA_ESTIMATORS, ids=lambda e: e.name)
def test_informative_features_beat_shuffled_labels(estimator: Estimator) -> None:
    for seed in (0, 1):
        inputs = structured(seed)
        shuffled = np.random.default_rng(seed).permutation(inputs.labels)
        good = estimator.score(inputs)
        bad = estimator.score(
            ScoringInput(features=inputs.features, labels=shuffled, logits=inputs.logits)
        )
        assert good > bad, f"{estimator.name}: {good} <= {bad} (seed {seed})"


@pytest.mark.parametrize("estimator", DATA_ESTIMATORS, ids=lambda e: e.name)
def test_class_ids_with_gaps_score_like_consecutive_ones(estimator: Estimator) -> None:
    inputs = structured(2)
    gapped = ScoringInput(
        features=inputs.features, labels=inputs.labels * 3 + 1, logits=inputs.logits
    )
    assert estimator.score(gapped) == pytest.approx(estimator.score(inputs), abs=1e-9)


@pytest.mark.parametrize("estimator", DATA_ESTIMATORS, ids=lambda e: e.name)
@pytest.mark.parametrize(
    "case", ["all_constant", "two_samples", "one_column", "singletons_and_one_pair"]
)
def test_degenerate_inputs_give_finite_scores_or_decline(estimator: Estimator, case: str) -> None:
    rng = np.random.default_rng(0)
    features = {
        "all_constant": np.full((10, 5), 3.0),
        "two_samples": rng.normal(size=(2, 5)),
        "one_column": rng.normal(size=(12, 1)),
        "singletons_and_one_pair": rng.normal(size=(4, 6)),
    }[case]
    labels = {
        "all_constant": np.arange(10) % 2,
        "two_samples": np.array([0, 1]),
        "one_column": np.arange(12) % 3,
        "singletons_and_one_pair": np.array([0, 1, 2, 2]),
    }[case]
    logits = rng.normal(size=(features.shape[0], 4))
    value = estimator.score(ScoringInput(features=features, labels=labels, logits=logits))
    assert isinstance(value, float)
    # singleton classes leave nothing to hold out (kNN, probe) or to model (NLEEP): NaN
    declines = {
        "two_samples": {"knn_loo_k1", "knn_loo_k5", "linear_probe_cv", "nleep", "hscore"},
        "singletons_and_one_pair": {"nleep"},  # 4 images, 3 classes: under 2 per class
    }.get(case, set())
    assert np.isnan(value) if estimator.name in declines else np.isfinite(value)


@pytest.mark.parametrize("estimator", DATA_ESTIMATORS, ids=lambda e: e.name)
@pytest.mark.parametrize(
    ("features", "labels", "match"),
    [
        (np.zeros(6), np.zeros(6, int), r"shape \(N, D\)"),
        (np.zeros((6, 2)), np.zeros(5, int), "one label per feature row"),
        (np.zeros((6, 2)), np.zeros(6, int), "at least 2 classes"),
        (np.zeros((1, 2)), np.zeros(1, int), "at least 2 samples"),
        (np.full((4, 2), np.nan), np.array([0, 0, 1, 1]), "non-finite features"),
        (np.zeros((4, 2)), np.array([0.0, 0.5, 1.0, 1.0]), "integer class ids"),
    ],
    ids=["1d", "length", "one_class", "one_sample", "nan", "float_labels"],
)
def test_bad_inputs_raise_data_errors_naming_the_estimator(
    estimator: Estimator, features: np.ndarray, labels: np.ndarray, match: str
) -> None:
    logits = np.zeros((len(labels), 3))
    with pytest.raises(DataError, match=match) as info:
        estimator.score(ScoringInput(features=features, labels=labels, logits=logits))
    assert repr(estimator.name) in str(info.value)


def test_standardise_matches_scikit_learn() -> None:
    from sklearn.preprocessing import StandardScaler

    x = np.random.default_rng(0).normal(size=(20, 4)) * [1, 10, 0, 3] + [0, 5, 7, -2]
    np.testing.assert_allclose(standardise(x), StandardScaler().fit_transform(x), atol=1e-12)


def test_large_inputs_are_fast_enough() -> None:
    import time

    rng = np.random.default_rng(0)
    labels = np.arange(300) % 10
    features = np.maximum(rng.normal(size=(300, 256)) + 0.3 * rng.normal(size=(10, 256))[labels], 0)
    inputs = ScoringInput(features=features, labels=labels, logits=rng.normal(size=(300, 100)))
    for estimator in BUILTINS:  # a guard against pathological slowness, not a benchmark
        start = time.perf_counter()
        estimator.score(inputs)
        assert time.perf_counter() - start < 10.0, estimator.name


def test_the_entry_point_registers_the_builtins(builtin_estimator_names) -> None:
    from autotransfer.plugins import registered, reset_plugin_manager

    reset_plugin_manager()
    found = registered("estimators")
    assert builtin_estimator_names <= set(found)
    assert all(found[name].plugin == "builtin_estimators" for name in builtin_estimator_names)
