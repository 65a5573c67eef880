"""The entry point autotransfer loads (``[project.entry-points.autotransfer] lpft``).

Installed, the distribution registers the ``lp_ft`` strategy: ``autotransfer.fit`` then
searches it along with the built-in strategies, or alone with ``strategies=("lp_ft",)``.

>>> [s.name for s in autotransfer_register_strategies()]
['lp_ft']
"""

from __future__ import annotations

import autotransfer

from autotransfer_lpft.strategy import LinearProbeThenFinetune


@autotransfer.hookimpl
def autotransfer_register_strategies() -> list[LinearProbeThenFinetune]:
    """LP-FT: a linear probe on frozen features, then every weight fine-tuned from it."""
    return [LinearProbeThenFinetune()]
