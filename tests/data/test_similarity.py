import numpy as np
import pytest
from scipy import integrate, stats

from autotransfer.data.similarity import gaussian_kl, head_statistics


def _kl_by_integration(mt, vt, ms, vs):
    p, q = stats.norm(mt, np.sqrt(vt)), stats.norm(ms, np.sqrt(vs))
    f = lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x))  # noqa: E731
    lo, hi = mt - 12 * np.sqrt(vt), mt + 12 * np.sqrt(vt)
    return integrate.quad(f, lo, hi, limit=200)[0]


def test_gaussian_kl_matches_numerical_integration():
    mt, vt = np.array([0.3, -1.0, 2.0]), np.array([0.5, 2.0, 1.0])
    ms, vs = np.array([0.0, 0.0, 1.5]), np.array([1.0, 1.0, 4.0])
    expected = np.mean([_kl_by_integration(*a) for a in zip(mt, vt, ms, vs)])
    assert gaussian_kl(mt, vt, ms, vs, eps=0.0) == pytest.approx(expected, rel=1e-6)
    assert gaussian_kl(ms, vs, ms, vs) == pytest.approx(0.0, abs=1e-12)


def test_head_statistics_by_hand():
    # one certain prediction, one uniform over 4 classes
    logits = np.array([[100.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    entropy, confidence, mutual_info = head_statistics(logits)
    assert entropy == pytest.approx((0.0 + 1.0) / 2, abs=1e-6)
    assert confidence == pytest.approx((1.0 + 0.25) / 2, abs=1e-6)
    # mean prediction (5/8, 1/8, 1/8, 1/8); I = H(mean) - mean H, over log 4
    h_mean = -(5 / 8 * np.log(5 / 8) + 3 * (1 / 8) * np.log(1 / 8))
    assert mutual_info == pytest.approx((h_mean - np.log(4) / 2) / np.log(4), abs=1e-6)


def test_a_confident_head_that_says_one_class_for_everything_carries_no_information():
    logits = np.tile([20.0, 0.0, 0.0], (10, 1))
    entropy, confidence, mutual_info = head_statistics(logits)
    assert confidence > 0.99 and entropy < 0.01 and mutual_info == pytest.approx(0, abs=1e-6)
    varied = np.array([np.roll([20.0, 0.0, 0.0], i % 3) for i in range(9)])
    assert head_statistics(varied)[2] == pytest.approx(1.0, abs=1e-6)
