"""The trained classifier: predict, evaluate, save and load without pickle, export.

A :class:`Classifier` is a timm model whose head outputs ``classes``, plus the
:class:`Preprocessing` that feeds it. Every kind of input (file paths, PIL images,
HWC arrays, CHW/NCHW tensors) becomes an 8-bit RGB PIL image and then goes through the
same timm evaluation transform, so the same picture gets the same answer whatever its
form. A saved model is a folder holding ``model.safetensors`` (the weights) and
``autotransfer.json`` (architecture, classes, preprocessing, metadata, versions):
loading it never unpickles anything.

Around the :class:`Classifier`: :mod:`autotransfer.preprocessing` (how images are fed),
:mod:`autotransfer.model_inputs` (the input forms), :mod:`autotransfer.model_files` (the
saved folder) and :mod:`autotransfer.export` (TorchScript and ONNX).

>>> clf = Classifier.load("runs/best")                      # doctest: +SKIP
>>> clf.predict(["new/cat.jpg", "new/dog.png"])             # doctest: +SKIP
['cat', 'dog']
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

import autotransfer.architectures  # noqa: F401 (our architectures, for Classifier.load)
from autotransfer.backbones.cuts import build_cut_model, cut_of
from autotransfer.backbones.inputs import (
    default_batch_size,
    default_num_workers,
    resize_side,
    resolve_device,
)
from autotransfer.data.ingest import open_folder
from autotransfer.errors import ConfigError, DataError
from autotransfer.export import MissingDependencyError, write_onnx, write_torchscript
from autotransfer.metrics import classification_metrics
from autotransfer.model_files import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    ModelFileError,
    check_replaceable,
    library_versions,
    read_folder,
    write_folder,
)
from autotransfer.model_inputs import flatten_inputs, input_batches
from autotransfer.preprocessing import Preprocessing

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.data.types import ImageDataset

__all__ = ["Classifier", "MissingDependencyError", "ModelFileError", "Preprocessing"]

log = logging.getLogger(__name__)


class Classifier:
    """A trained image classifier: a timm model whose classifier outputs ``classes``,
    plus how to feed it (:class:`Preprocessing`).

    ``arch`` and ``model_kwargs`` rebuild the module with ``timm.create_model`` when the
    saved folder is loaded, cut after feature stage ``cut`` when the backbone was cut
    (default: what :func:`~autotransfer.backbones.cuts.cut_model` recorded on the module);
    ``metadata`` is anything JSON-able worth keeping with it.

    >>> clf = Classifier(model, classes=["cat", "dog"], preprocessing=prep,
    ...                  arch="resnet18")                       # doctest: +SKIP
    >>> clf.predict("cat.jpg"), clf.predict_proba("cat.jpg").shape   # doctest: +SKIP
    (['cat'], (1, 2))
    """

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        classes: Sequence[str],
        preprocessing: Preprocessing | dict[str, Any],
        arch: str,
        model_kwargs: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        cut: int | None = None,
    ) -> None:
        classes = tuple(str(c) for c in classes)
        if not classes or len(set(classes)) != len(classes):
            raise ConfigError(f"classes must be distinct names, at least one; got {classes}.")
        if isinstance(preprocessing, dict):
            preprocessing = Preprocessing.from_dict(preprocessing)
        kwargs = dict(model_kwargs or {})
        clash = sorted({"num_classes", "pretrained"} & set(kwargs))
        if clash:
            raise ConfigError(
                f"model_kwargs must not set {', '.join(clash)}: the classifier sets them "
                "(num_classes from classes, pretrained=False with its own weights)."
            )
        head = getattr(module, "num_classes", None)
        if isinstance(head, int) and head != len(classes):
            raise ConfigError(
                f"The module outputs {head} classes but {len(classes)} class names were "
                "given; reset its classifier (model.reset_classifier(n)) or fix classes."
            )
        _check_arch(str(arch))
        self.module = module.eval()
        self.classes = classes
        self.preprocessing = preprocessing
        self.arch = str(arch)
        self.model_kwargs = kwargs
        self.metadata = dict(metadata or {})
        self.cut = cut_of(module) if cut is None else int(cut)
        self._transform: Callable[[Image.Image], torch.Tensor] | None = None

    def __repr__(self) -> str:
        return (
            f"Classifier(arch={self.arch!r}, classes={len(self.classes)}, "
            f"resolution={self.preprocessing.resolution})"
        )

    def predict(
        self, inputs: Any, *, batch_size: int | None = None, device: str | None = None
    ) -> list[str]:
        """The most likely class name of each image (a single image gives a list of one).

        ``inputs``: a path, PIL image, HWC array or CHW/NCHW tensor, or a list of them.

        >>> clf.predict(["a.jpg", Image.open("b.png")])   # doctest: +SKIP
        ['cat', 'dog']
        """
        proba = self.predict_proba(inputs, batch_size=batch_size, device=device)
        return [self.classes[i] for i in proba.argmax(axis=1)]

    def predict_proba(
        self, inputs: Any, *, batch_size: int | None = None, device: str | None = None
    ) -> np.ndarray:
        """Class probabilities, float32 of shape (N, len(classes)), columns in ``classes`` order.

        Paths are read with :func:`autotransfer.data.images.load_image` (EXIF rotation
        applied, any mode made RGB; a JPEG much larger than the model's input decoded at a
        reduced scale, exactly as for training); PIL images are converted to RGB as they are (apply
        ``PIL.ImageOps.exif_transpose`` yourself if they come straight from a camera file);
        arrays are HWC (or HW) uint8, or float in [0, 1]; tensors are CHW or NCHW, uint8 or
        float in [0, 1] (not already normalised). Device ``None``: CUDA when present (bf16
        autocast there); the module stays on the device it last ran on.

        >>> clf.predict_proba(torch.rand(4, 3, 64, 64)).sum(axis=1)   # doctest: +SKIP
        array([1., 1., 1., 1.], dtype=float32)
        """
        items = flatten_inputs(inputs)
        dev = resolve_device(device)
        size = int(batch_size or default_batch_size(dev))
        if size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be at least 1.")
        if not items:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        cuda = dev.type == "cuda"
        module = self.module.eval().to(dev)
        if cuda:
            module = module.to(memory_format=torch.channels_last)
        transform = self._eval_transform()
        # files are decoded as training decoded them (large JPEGs at a reduced scale)
        draft = resize_side(self.preprocessing.timm_config())
        out = []
        for batch in input_batches(items, transform, draft, size, default_num_workers()):
            x = batch.to(dev, non_blocking=True)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=cuda):
                logits = module(x)
            out.append(torch.softmax(logits.float(), dim=1).cpu())
        return torch.cat(out).numpy().astype(np.float32)

    def evaluate(
        self,
        data: str | os.PathLike[str] | ImageDataset,
        *,
        split: str | None = None,
        batch_size: int | None = None,
        device: str | None = None,
    ) -> dict[str, float]:
        """Accuracy, balanced accuracy, macro-F1, log-loss and ``num_images`` on labelled data.

        ``data`` is a folder or CSV manifest (read with :func:`autotransfer.open_folder`)
        or an :class:`~autotransfer.data.types.ImageDataset`; ``split`` is ``train``,
        ``val``, ``test`` or ``all`` (every image); ``None`` scores the test split when the
        data has one and every image otherwise (a folder of held-out images). The data's
        classes are matched to ours by name.

        >>> clf.evaluate("holdout/", split="all")                 # doctest: +SKIP
        {'accuracy': 0.93, 'balanced_accuracy': 0.92, 'macro_f1': 0.92, 'log_loss': 0.21,
         'num_images': 120}
        """
        if split not in (None, "train", "val", "test", "all"):
            raise ConfigError(f"Unknown split {split!r}; use 'train', 'val', 'test' or 'all'.")
        ds = open_folder(data)
        if split is None:
            split = "test" if ds.test else "all"
        records = ds.records if split == "all" else ds.split(split)
        if not records:
            counts = ", ".join(f"{s}: {len(ds.split(s))}" for s in ("train", "val", "test"))
            raise DataError(
                f"The {split!r} split of {ds.root} has no images ({counts}). Pass "
                "split='all' to score every image of a folder of held-out images, or name a "
                "split that has images."
            )
        index = {name: i for i, name in enumerate(self.classes)}
        unknown = sorted({ds.classes[r.label] for r in records} - set(index))
        if unknown:
            raise DataError(
                f"{ds.root} has images of classes this model does not know: "
                f"{', '.join(unknown)}. The model knows: {', '.join(self.classes)}. Remove or "
                "rename those class folders."
            )
        y_true = [index[ds.classes[r.label]] for r in records]
        proba = self.predict_proba([r.path for r in records], batch_size=batch_size, device=device)
        metrics: dict[str, float] = classification_metrics(y_true, proba, len(self.classes))
        metrics["num_images"] = len(records)
        return metrics

    def _eval_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        if self._transform is None:
            self._transform = self.preprocessing.transform()
        return self._transform

    def save(
        self, directory: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None
    ) -> Path:
        """Write ``model.safetensors`` and ``autotransfer.json`` to ``directory``.

        The folder is built beside the target and swapped in, so a reader never sees half
        a model; an existing saved model there is replaced, any other non-empty folder is
        refused. ``metadata`` is merged over ``self.metadata``. Returns the folder.

        >>> clf.save("models/cats", metadata={"note": "first try"})   # doctest: +SKIP
        PosixPath('models/cats')
        """
        target = Path(directory).expanduser()
        check_replaceable(target)
        config = {
            "format_version": FORMAT_VERSION,
            "arch": self.arch,
            "model_kwargs": self.model_kwargs,
            "classes": list(self.classes),
            "preprocessing": self.preprocessing.to_dict(),
            "metadata": {**self.metadata, **(metadata or {})},
            "versions": library_versions(),
        }
        if self.cut is not None:  # whole networks keep the config they had
            config["cut"] = self.cut
        tensors = {
            k: v.detach().to("cpu", copy=True).contiguous()
            for k, v in self.module.state_dict().items()
        }
        write_folder(target, config, tensors)
        log.info("saved %s to %s", self, target)
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Classifier:
        """Read a folder written by :meth:`save`; the weights load strictly, nothing is
        unpickled (pickled checkpoints are refused).

        >>> clf = Classifier.load("models/cats")                   # doctest: +SKIP
        """
        import timm
        from safetensors.torch import load_file

        path = Path(directory).expanduser()
        config, weights = read_folder(path)
        try:
            classes = [str(c) for c in config["classes"]]
            kwargs = dict(config.get("model_kwargs") or {})
            cut = config.get("cut")
            if cut is None:
                module = timm.create_model(
                    config["arch"], pretrained=False, num_classes=len(classes), **kwargs
                )
            else:
                module = build_cut_model(config["arch"], int(cut), len(classes), **kwargs)
            module.load_state_dict(load_file(str(weights)), strict=True)
            return cls(
                module,
                classes=classes,
                preprocessing=Preprocessing.from_dict(config["preprocessing"]),
                arch=config["arch"],
                model_kwargs=kwargs,
                metadata=config.get("metadata") or {},
                cut=cut,
            )
        except Exception as exc:  # timm, safetensors and torch raise many kinds
            raise ModelFileError(
                f"Cannot rebuild the model saved in {path}: {type(exc).__name__}: {exc}. "
                f"Check that {CONFIG_FILE} and {WEIGHTS_FILE} belong together and that the "
                f"installed timm knows the architecture."
            ) from exc

    def export_torchscript(self, path: str | os.PathLike[str]) -> Path:
        """A traced TorchScript file: float NCHW RGB in [0, 1] at ``resolution`` in, logits out.

        Normalisation happens inside; resizing and cropping do not (see the sidecar
        ``<path>.json``). PyTorch deprecates TorchScript; prefer :meth:`export_onnx`.

        >>> clf.export_torchscript("cats.torchscript.pt")          # doctest: +SKIP
        """
        return write_torchscript(self, path)

    def export_onnx(self, path: str | os.PathLike[str]) -> Path:
        """An ONNX file with a dynamic batch axis: input ``images`` (float NCHW RGB in
        [0, 1] at ``resolution``), output ``logits``. Needs ``pip install 'autotransfer[onnx]'``.

        Normalisation happens inside; resizing and cropping do not (see the sidecar
        ``<path>.json``).

        >>> clf.export_onnx("cats.onnx")                            # doctest: +SKIP
        """
        return write_onnx(self, path)


def _check_arch(arch: str) -> None:
    import difflib

    import timm

    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ConfigError(
            f"Unknown timm architecture {arch!r}.{hint} arch must name the timm model the "
            "module was created with (timm.create_model(arch)), so that load can rebuild it."
        )
