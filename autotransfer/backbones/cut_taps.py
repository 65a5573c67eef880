"""A network and its cuts from one forward pass.

A cut (``<id>@<stage>``, :mod:`autotransfer.backbones.cuts`) is the same network's first
stages: the whole network's pass computes its stage output anyway. :func:`extract_group`
extracts a whole network and reads each of its cuts from that pass (a hook on the
stage's module, pooled by the cut model's own head), instead of a pass per cut.

Each tap checks itself on the first batch: the cut model's own ``forward_features`` must
give what the hook read. Architectures that keep layers after the cut stage (a ViT keeps
its final norm) fail the check and are extracted in a pass of their own, as before. The
features, and the statistics entering the cut's last BatchNorm layer, are those a pass of
the cut alone gives (tests/backbones/test_cut_taps.py).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from autotransfer.backbones.cuts import cut_model, cuts_of
from autotransfer.backbones.feature_cache import FeatureSet, cache_slot
from autotransfer.backbones.features import (
    ChannelStats,
    PassOptions,
    cached_pass,
    extract_features,
    last_batchnorm,
    running_stats,
)
from autotransfer.backbones.spec import BackboneSpec
from autotransfer.data.types import ImageDataset

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger(__name__)


class CutTap:
    """Reads one cut of ``model`` from the whole network's pass (see the module doc)."""

    def __init__(self, whole: torch.nn.Module, spec: BackboneSpec) -> None:
        self.spec = spec
        self.model = cut_model(copy.deepcopy(whole), spec.cut, spec.arch).eval()
        self.module_name = whole.feature_info[spec.cut]["module"]
        bn = last_batchnorm(self.model)
        self.bn_name = None
        if bn is not None:
            self.bn_name = next(n for n, m in self.model.named_modules() if m is bn)
        self.ok = True  # until the first batch says otherwise
        self._out: torch.Tensor | None = None
        self._feats: list[torch.Tensor] = []
        self._stats = ChannelStats()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._bn: torch.nn.Module | None = None

    def attach(self, whole: torch.nn.Module, dev: torch.device) -> None:
        self.model.to(dev)
        module = whole.get_submodule(self.module_name)
        self._handles.append(module.register_forward_hook(self._keep))
        if self.bn_name is not None:
            self._bn = whole.get_submodule(self.bn_name)
            self._handles.append(self._bn.register_forward_pre_hook(self._stats))

    def _keep(self, module, args, output) -> None:
        self._out = output

    def collect(self, x: torch.Tensor) -> None:
        """After the whole network's forward of batch ``x``: pool the stage's output."""
        if not self.ok or self._out is None:
            self.ok = False
            self.detach()
            return
        pooled = self.model.forward_head(self._out, pre_logits=True)
        if not self._feats:  # first batch: the cut alone must agree
            own = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
            if own.shape != pooled.shape or not torch.allclose(
                own.float(), pooled.float(), rtol=1e-3, atol=1e-4
            ):
                log.debug("%s: its stage output differs from the cut's; own pass", self.spec.id)
                self.ok = False
                self.detach()
                return
        self._feats.append(pooled.float().cpu())
        self._out = None

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def result(self, labels: np.ndarray) -> FeatureSet | None:
        if not self.ok or not self._feats:
            return None
        return FeatureSet(
            features=torch.cat(self._feats).numpy().astype(np.float32),
            labels=labels,
            logits=None,  # a cut has no source classifier
            target_bn=self._stats.result(),
            source_bn=running_stats(self._bn),
        )


def extract_group(
    dataset: ImageDataset,
    spec: BackboneSpec,
    cuts: Sequence[BackboneSpec],
    *,
    split: str = "train",
    resolution: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    **opts: Unpack[PassOptions],
) -> dict[str, FeatureSet]:
    """Features of the whole network ``spec`` and of ``cuts`` (its own cuts), by id.

    Cached ones are read from the cache. When the whole network is computed, the cuts
    that are not cached come from its pass (their ``seconds`` is the shared pass's, their
    ``meta["pass"]`` the whole network's id); a cut the pass cannot give, or any cut when
    the whole network is cached, gets a pass of its own (:func:`extract_features`).
    ``opts``: how the passes run (:class:`~autotransfer.backbones.features.PassOptions`).
    """
    if spec.cut is not None or len(cuts_of(spec, cuts)) != len(cuts):
        raise ValueError(f"extract_group takes a whole network and its cuts, got {spec.id!r}")
    where = dict(split=split, resolution=resolution, cache_dir=cache_dir, use_cache=use_cache)
    slot = cache_slot(dataset, spec, **where)
    whole = slot.read()
    out: dict[str, FeatureSet] = {}
    if whole is None:
        missing = []
        for c in cuts:
            cslot = cache_slot(dataset, c, **where)
            cached = cslot.read()
            if cached is not None:
                out[c.id] = cached
            elif cslot.cfg == slot.cfg:  # same preprocessing: the whole network's pass serves it
                missing.append(cslot)
        taps: list[CutTap] = []

        def taps_for(model: torch.nn.Module) -> list[CutTap]:
            taps.extend(CutTap(model, cslot.spec) for cslot in missing)
            return taps

        whole = cached_pass(dataset, slot, taps_for, **opts)
        for tap, cslot in zip(taps, missing):
            fs = tap.result(whole.labels)
            if fs is not None:
                out[cslot.spec.id] = cslot.keep(fs, whole.seconds, **{"pass": spec.id})
    out[spec.id] = whole
    for c in cuts:
        if c.id not in out:
            out[c.id] = extract_features(dataset, c, **where, **opts)
    return {s.id: out[s.id] for s in (spec, *cuts)}
