"""BLAS threads for the small linear-algebra fits of the ranking and the linear heads.

A logistic-regression probe on a few thousand pooled features calls BLAS thousands of
times on small matrices (scipy's L-BFGS-B, scikit-learn's loss and gradient). OpenBLAS's
threads cost more there than they save: on a 2-core machine a 5-fold
``linear_probe_cv`` on 800 x 1280 features (30 classes) took 4.5 s with its default two
threads and 1.1 s with one, with the same score
(benchmarks/results/blas_threads_cpu.md, ``python benchmarks/blas_threads.py``); scipy
and OpenBLAS track the slowdown (scipy/scipy#23161, OpenMathLib/OpenBLAS#5383), and
scikit-learn measured no gain from threads below 10^4 samples (scikit-learn#32162).

:func:`on_one_blas_thread` runs such a fit with BLAS limited to one thread (threadpoolctl,
which scikit-learn itself uses). PyTorch's own thread pool is not a BLAS one here and
keeps its threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def on_one_blas_thread(fn: F) -> F:
    """``fn`` run with BLAS (OpenBLAS, MKL, BLIS) limited to one thread; restored after.

    >>> import numpy as np
    >>> from threadpoolctl import threadpool_info
    >>> @on_one_blas_thread
    ... def blas_threads():
    ...     return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}
    >>> blas_threads() <= {1}
    True
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits.wrap(limits=1, user_api="blas")(fn)
