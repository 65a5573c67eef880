"""Architectures of our own, registered with timm so that a saved model rebuilds through
``timm.create_model`` like any other: the raw-pixel model of the no-transfer baseline
(:mod:`.pixels`) and the ensemble served as one model (:mod:`.ensemble`).

Importing this package registers them; :mod:`autotransfer.model` does, so that
``Classifier.load`` knows their names.
"""

from __future__ import annotations

from autotransfer.architectures import ensemble, pixels  # noqa: F401 (registers them)
