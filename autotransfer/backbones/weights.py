"""The weight-source contract. Built-in sources live in ``weight_sources.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from autotransfer.backbones.spec import BackboneSpec


@runtime_checkable
class WeightSource(Protocol):
    """Finds and loads the weights of a :class:`BackboneSpec` whose ``weights.source`` is ``name``.

    Implementations must load without executing code from the file (safetensors, or
    ``torch.load(..., weights_only=True)``) and return keys in timm's naming (apply
    ``spec.weights.key_map`` where the file's names differ).
    """

    name: str

    def is_available(self, spec: BackboneSpec) -> bool:
        """True when the weights are on this machine (no network needed)."""

    def load_state_dict(self, spec: BackboneSpec) -> dict[str, torch.Tensor]:
        """The state dict in timm key naming; raise WeightsUnavailableError when missing."""

    def fingerprint(self, spec: BackboneSpec) -> str:
        """A short string that changes whenever the weights change (used in cache keys)."""

    def missing_hint(self, spec: BackboneSpec) -> str:
        """One sentence telling the user how to make the weights available."""
