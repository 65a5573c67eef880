"""The linear head of the frozen-feature strategy on the smallest data a user brings."""

import warnings

import numpy as np

from autotransfer.strategies.probe import fit_linear_head


def test_one_image_per_class_fits_without_warnings():
    # a 1-shot set of 30 classes (the aerial scenes' 1-shot): past 20 images scikit-learn
    # warns that so many distinct labels may be a regression target
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 64)).astype(np.float32)
    y = np.arange(30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w, b, _ = fit_linear_head(x, y, 30)
    assert (x @ w.T + b).argmax(1).tolist() == y.tolist()
