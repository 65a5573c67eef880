"""A classifier as a standalone file: TorchScript or ONNX, plus a JSON sidecar.

The exported module takes float NCHW RGB pixels in [0, 1] at the classifier's resolution
and returns logits; normalisation happens inside, resizing and cropping do not: the
sidecar ``<path>.json`` says how to prepare images, with the classes and versions.

>>> write_onnx(clf, "cats.onnx")                                # doctest: +SKIP
PosixPath('cats.onnx')
"""

from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from autotransfer.errors import AutoTransferError
from autotransfer.model_files import library_versions

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.model import Classifier

log = logging.getLogger(__name__)


class MissingDependencyError(AutoTransferError, ImportError):
    """An optional dependency is not installed; the message says what to install."""


def write_torchscript(classifier: Classifier, path: str | os.PathLike[str]) -> Path:
    """:meth:`Classifier.export_torchscript <autotransfer.model.Classifier.export_torchscript>`:
    trace the normalised model, check the trace against it, save it and its sidecar.

    >>> write_torchscript(clf, "cats.torchscript.pt")          # doctest: +SKIP
    PosixPath('cats.torchscript.pt')
    """
    path = Path(path).expanduser()
    wrapped = _export_module(classifier)
    example = _example(classifier, 2)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        traced = torch.jit.trace(wrapped, example)
        check = _example(classifier, 3)
        with torch.inference_mode():
            expected, got = wrapped(check), traced(check)
        if not torch.allclose(expected, got, rtol=1e-4, atol=1e-4):
            diff = float((expected - got).abs().max())
            raise AutoTransferError(
                f"The traced {classifier.arch} disagrees with the model (max |diff| {diff:.3g}); "
                "its forward pass depends on the input in ways tracing cannot record. "
                "Use export_onnx instead."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.jit.save(traced, str(path))
    _write_sidecar(classifier, path, "torchscript")
    log.info("exported TorchScript to %s", path)
    return path


def write_onnx(classifier: Classifier, path: str | os.PathLike[str]) -> Path:
    """:meth:`Classifier.export_onnx <autotransfer.model.Classifier.export_onnx>`: export the
    normalised model with torch.onnx (dynamo, dynamic batch axis) and write its sidecar.

    >>> write_onnx(clf, "cats.onnx")                            # doctest: +SKIP
    PosixPath('cats.onnx')
    """
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError as exc:
            raise MissingDependencyError(
                f"ONNX export needs the {name!r} package, which is not installed. "
                "Install it with: pip install 'autotransfer[onnx]'."
            ) from exc
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = _export_module(classifier)
    big = sum(p.numel() * p.element_size() for p in wrapped.parameters()) > 1.5e9
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(
        wrapped,
        (_example(classifier, 2),),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes={"images": {0: batch}},
        external_data=big,  # protobuf cannot hold more than 2 GB in one file
        dynamo=True,
        verbose=False,
    )
    _write_sidecar(classifier, path, "onnx")
    log.info("exported ONNX to %s", path)
    return path


def _export_module(classifier: Classifier) -> torch.nn.Module:
    module = copy.deepcopy(classifier.module).to("cpu", torch.float32).eval()
    return _Normalised(module, classifier.preprocessing.mean, classifier.preprocessing.std).eval()


def _example(classifier: Classifier, n: int) -> torch.Tensor:
    res = classifier.preprocessing.resolution
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(n))


def _write_sidecar(classifier: Classifier, path: Path, fmt: str) -> None:
    p = classifier.preprocessing
    sidecar = {
        "format": fmt,
        "arch": classifier.arch,
        "classes": list(classifier.classes),
        "input": {
            "name": "images",
            "shape": ["batch", 3, p.resolution, p.resolution],
            "dtype": "float32",
            "layout": "NCHW",
            "channels": "RGB",
            "range": [0.0, 1.0],
        },
        "output": {"name": "logits", "shape": ["batch", len(classifier.classes)]},
        "normalization_inside": {"mean": list(p.mean), "std": list(p.std)},
        "before_input": (
            f"resize the short side to {int(p.resolution / p.crop_pct)} px "
            f"({p.interpolation}), centre-crop {p.resolution} px, divide by 255"
        ),
        "preprocessing": p.to_dict(),
        "versions": library_versions(),
    }
    Path(f"{path}.json").write_text(json.dumps(sidecar, indent=2) + "\n")


class _Normalised(torch.nn.Module):
    """``module`` after (x - mean) / std: takes pixels in [0, 1], returns logits."""

    def __init__(
        self, module: torch.nn.Module, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.module((images - self.mean) / self.std)
