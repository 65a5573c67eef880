"""Every hook autotransfer calls, in one place.

A plugin is a module or object with functions marked ``@autotransfer.hookimpl``
and named after the specifications below; it is found through the
``autotransfer`` entry-point group::

    # pyproject.toml of your plugin distribution
    [project.entry-points.autotransfer]
    my_plugin = "my_package.plugin"

    # my_package/plugin.py
    import autotransfer

    @autotransfer.hookimpl
    def autotransfer_register_estimators():
        return [MyEstimator()]

The built-ins register through the very same group (see ``autotransfer/builtin``).
Hooks are always called with keyword arguments, so a specification can grow new
arguments without breaking existing plugins. Registration hooks return a list of
objects; each object has a ``name`` that must be unique within its kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.backbones.spec import BackboneSpec
    from autotransfer.backbones.weights import WeightSource
    from autotransfer.data.descriptors import Descriptor
    from autotransfer.strategies.base import Strategy
    from autotransfer.tracking.base import Tracker
    from autotransfer.transferability.base import Estimator

PROJECT = "autotransfer"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def autotransfer_register_backbones() -> list[BackboneSpec]:
    """Return candidate backbones: a timm architecture plus where its weights come from.

    Each :class:`~autotransfer.backbones.spec.BackboneSpec` has an id of the form
    ``source:arch.tag`` (for example ``package:efficientnet_lite0``). Candidates whose
    weights are not on this machine may still be registered: ``autotransfer zoo`` shows
    them as unavailable, and ``rank`` skips them unless asked for by name.
    """


@hookspec
def autotransfer_register_weight_sources() -> list[WeightSource]:
    """Return weight sources: objects that find and load a backbone's weights.

    A :class:`~autotransfer.backbones.weights.WeightSource` has a ``name`` (the part of
    a backbone id before the colon), says whether a spec's weights are available
    offline, and returns a state dict in timm's key naming.
    """


@hookspec
def autotransfer_register_estimators() -> list[Estimator]:
    """Return transferability estimators (higher score = better expected transfer).

    An :class:`~autotransfer.transferability.base.Estimator` scores one backbone on one
    dataset from its frozen features (and source-head logits when ``needs_logits``).
    """


@hookspec
def autotransfer_register_descriptors() -> list[Descriptor]:
    """Return dataset descriptors: objects that compute named facts about a dataset.

    A :class:`~autotransfer.data.descriptors.Descriptor` returns a dict; keys that match
    :class:`~autotransfer.data.descriptors.DatasetDescriptor` fields fill them, other
    keys land in its ``extra`` mapping under the descriptor's name.
    """


@hookspec
def autotransfer_register_strategies() -> list[Strategy]:
    """Return training strategies: ways to adapt a pretrained backbone to the data.

    A :class:`~autotransfer.strategies.base.Strategy` declares its Optuna search space,
    its prior configuration (enqueued first) and how it trains, reporting validation
    accuracy after each epoch so that the study can prune it. ``fit`` searches over
    every registered strategy unless told otherwise.
    """


@hookspec
def autotransfer_register_trackers() -> list[Tracker]:
    """Return trackers: objects told about each fit, trial and epoch (MLflow is built in).

    A :class:`~autotransfer.tracking.base.Tracker` is used when its name is in
    ``FitSettings.trackers``. Errors it raises are logged with its plugin's name and the
    study goes on.
    """
