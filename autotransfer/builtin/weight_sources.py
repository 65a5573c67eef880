"""Registers the built-in weight sources (see :mod:`autotransfer.backbones.weight_sources`)."""

from __future__ import annotations

from autotransfer.backbones.weight_sources import builtin_weight_sources
from autotransfer.hookspecs import hookimpl


@hookimpl
def autotransfer_register_weight_sources():
    return builtin_weight_sources()
