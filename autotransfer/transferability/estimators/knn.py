"""Leave-one-out k-nearest-neighbour accuracy on frozen features.

A simple non-parametric baseline used throughout the transferability literature, e.g.
Kornblith, Shlens, Le. "Do Better ImageNet Models Transfer Better?", CVPR 2019, and
Renggli et al. "Which Model to Transfer? Finding the Needle in the Growing Haystack",
CVPR 2022 (kNN accuracy as a cheap proxy of fine-tuned accuracy).
"""

from __future__ import annotations

import numpy as np

from autotransfer.transferability.base import ScoringInput
from autotransfer.transferability.estimators._util import (
    check_inputs,
    check_positive,
    l2_normalise,
    standardise,
)


def loo_neighbours(
    x: np.ndarray, k: int, block: int = 1024, device: str | None = None
) -> np.ndarray:
    """(N, k) indices of each row's k most cosine-similar other rows, nearest first.

    The row itself is excluded; equal similarities are ordered by lower index first.
    Rows of ``x`` must already be L2-normalised (zero rows are similar to nothing).
    Blocks of rows against all rows (memory ``block`` x N), and top-k selection
    (``argpartition``) instead of a sort of every row: O(N^2 D + N^2) time. The blocks'
    products (the N^2 D part) run on ``device`` through torch, in ``x``'s precision;
    None: on a CUDA device when there is one, else with numpy. The selection stays on
    the host, so ties are broken the same way everywhere.
    """
    n = x.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    on = _product_device(device)
    xt = None if on is None else _as_tensor(x, on)
    for start in range(0, n, block):
        stop = min(start + block, n)
        if xt is None:
            sim = x[start:stop] @ x.T
        else:
            sim = (xt[start:stop] @ xt.T).cpu().numpy()
        sim[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        out[start:stop] = _top_k(sim, k)
    return out


def _product_device(device: str | None) -> str | None:
    """Where the blocks' products run: ``device``, else CUDA when present, else None (numpy)."""
    if device is not None:
        return device
    import torch  # heavy: only to ask whether there is a GPU

    return "cuda" if torch.cuda.is_available() else None


def _as_tensor(x: np.ndarray, device: str):
    import torch  # heavy: only on the torch path

    return torch.from_numpy(np.ascontiguousarray(x)).to(device)


def _top_k(sim: np.ndarray, k: int) -> np.ndarray:
    """Per row, the columns of the ``k`` largest values, largest first, ties by lower column.

    Exact, ties at the k-th value included: every column at least as similar as the k-th
    largest is a candidate; the candidates (about k per row) are then sorted.

    >>> _top_k(np.array([[0.5, 0.9, 0.5, 0.1], [1.0, 1.0, 1.0, 0.0]]), 2).tolist()
    [[1, 0], [0, 1]]
    """
    rows, n = sim.shape
    if k >= n:
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]
    kth = -np.partition(-sim, k - 1, axis=1)[:, k - 1]
    r, c = np.nonzero(sim >= kth[:, None])  # row-major: columns ascending within a row
    order = np.lexsort((c, -sim[r, c], r))  # by row, then similarity down, then column
    r, c = r[order], c[order]
    first = np.searchsorted(r, np.arange(rows))  # where each row's candidates begin
    return c[first[:, None] + np.arange(k)[None, :]]


def vote(neighbour_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Majority label per row; a tie goes to the tied class with the nearest neighbour."""
    n, k = neighbour_labels.shape
    counts = np.zeros((n, num_classes), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(n), k), neighbour_labels.ravel()), 1)
    best = counts.max(axis=1, keepdims=True)
    tied = counts == best  # (N, C)
    # walk the neighbours nearest first; the first whose class is tied wins
    is_tied = tied[np.arange(n)[:, None], neighbour_labels]  # (N, k)
    first = is_tied.argmax(axis=1)
    return neighbour_labels[np.arange(n), first]


class KNNLeaveOneOut:
    """Leave-one-out accuracy of a k-nearest-neighbour classifier with cosine similarity.

    Features are standardised per column (so that no high-variance channel dominates and
    the common mean direction of post-ReLU features does not make every pair similar),
    then L2-normalised; similarity is the dot product (cosine). Each sample is
    classified by its ``k`` most similar *other* samples. Ties are broken
    deterministically: equally similar neighbours by lower index, and a tied vote by
    the class of the nearest neighbour among the tied classes. Score in [0, 1]; NaN
    ("cannot score") when every class has a single image, since no image then has a
    neighbour of its own class (a one-shot dataset).

    >>> import numpy as np
    >>> from autotransfer.transferability.base import ScoringInput
    >>> y = np.repeat([0, 1], 10)
    >>> x = np.random.default_rng(0).normal(size=(20, 3)) + 5 * y[:, None]
    >>> KNNLeaveOneOut(k=1).score(ScoringInput(features=x, labels=y))
    1.0
    """

    needs_logits = False
    needs_features = True
    revision = 2  # 2: NaN instead of 0 when every class is a singleton

    def __init__(self, *, k: int = 1, name: str | None = None):
        self.k = k
        self.name = name or f"knn_loo_k{k}"

    def __repr__(self) -> str:
        return f"KNNLeaveOneOut(k={self.k}, name={self.name!r})"

    def score(self, inputs: ScoringInput) -> float:
        check_positive(self.name, "k", self.k, integer=True)
        data = check_inputs(inputs, self.name)
        if data.all_singletons:
            return float("nan")
        x = l2_normalise(standardise(data.features))
        k = min(self.k, x.shape[0] - 1)
        neighbours = loo_neighbours(x, k)
        predicted = vote(data.labels[neighbours], data.num_classes)
        return float(np.mean(predicted == data.labels))
