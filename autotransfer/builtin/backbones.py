"""Registers the built-in candidate backbones (see :mod:`autotransfer.backbones.zoo`)."""

from __future__ import annotations

from autotransfer.backbones.zoo import builtin_backbones
from autotransfer.hookspecs import hookimpl


@hookimpl
def autotransfer_register_backbones():
    return builtin_backbones()
