"""The trained classifier: predict, evaluate, save and load without pickle, export.

A :class:`Classifier` is a timm model whose head outputs ``classes``, plus the
:class:`Preprocessing` that feeds it. Every kind of input (file paths, PIL images,
HWC arrays, CHW/NCHW tensors) becomes an 8-bit RGB PIL image and then goes through the
same timm evaluation transform, so the same picture gets the same answer whatever its
form. A saved model is a folder holding ``model.safetensors`` (the weights) and
``autotransfer.json`` (architecture, classes, preprocessing, metadata, versions):
loading it never unpickles anything.

>>> clf = Classifier.load("runs/best")                      # doctest: +SKIP
>>> clf.predict(["new/cat.jpg", "new/dog.png"])             # doctest: +SKIP
['cat', 'dog']
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from autotransfer.errors import AutoTransferError, ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.backbones.spec import BackboneSpec
    from autotransfer.data.types import ImageDataset

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE = "autotransfer.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")


class ModelFileError(AutoTransferError, OSError):
    """A saved model folder is missing, incomplete, unreadable or refused (pickle)."""


class MissingDependencyError(AutoTransferError, ImportError):
    """An optional dependency is not installed; the message says what to install."""


@dataclass(frozen=True)
class Preprocessing:
    """How images are fed to a model: resize the short side to ``resolution / crop_pct``
    with ``interpolation``, centre-crop ``resolution`` pixels, scale to [0, 1] and
    normalise with ``mean`` and ``std`` (RGB).

    >>> p = Preprocessing(resolution=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    >>> p.timm_config()["input_size"]
    (3, 224, 224)
    """

    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_pct: float = 0.875
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        mean, std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if len(mean) != 3 or len(std) != 3:
            raise ConfigError(
                f"mean {mean} and std {std} need one value per RGB channel (three each)."
            )
        if min(std) <= 0:
            raise ConfigError(f"std {std} must be positive in every channel.")
        if int(self.resolution) != self.resolution or not 8 <= self.resolution <= 4096:
            raise ConfigError(
                f"resolution={self.resolution!r} must be a whole number of pixels in 8..4096."
            )
        if not 0.0 < float(self.crop_pct) <= 1.0:
            raise ConfigError(f"crop_pct={self.crop_pct!r} must lie in (0, 1], e.g. 0.875.")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"Unknown interpolation {self.interpolation!r}; use one of "
                f"{', '.join(INTERPOLATIONS)}."
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "resolution", int(self.resolution))
        object.__setattr__(self, "crop_pct", float(self.crop_pct))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        return cls(**d)

    @classmethod
    def from_spec(cls, spec: BackboneSpec, resolution: int | None = None) -> Preprocessing:
        """The preprocessing of a backbone's weights, at ``resolution`` (default: its own).

        >>> Preprocessing.from_spec(lookup_backbone("random:test_resnet"), 64)  # doctest: +SKIP
        """
        return cls(
            resolution=int(resolution or spec.input_size),
            mean=tuple(spec.weights.mean),
            std=tuple(spec.weights.std),
            crop_pct=spec.crop_pct,
            interpolation=spec.interpolation,
        )

    def timm_config(self) -> dict[str, Any]:
        """timm's data config (the keyword arguments of ``timm.data.create_transform``)."""
        return {
            "input_size": (3, self.resolution, self.resolution),
            "mean": self.mean,
            "std": self.std,
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "crop_mode": "center",
        }

    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """timm's evaluation transform: PIL RGB image in, normalised CHW float tensor out."""
        from autotransfer.backbones.features import eval_transform

        return eval_transform(self.timm_config())


class Classifier:
    """A trained image classifier: a timm model whose classifier outputs ``classes``,
    plus how to feed it (:class:`Preprocessing`).

    ``arch`` and ``model_kwargs`` rebuild the module with ``timm.create_model`` when the
    saved folder is loaded; ``metadata`` is anything JSON-able worth keeping with it.

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
        applied, any mode made RGB); PIL images are converted to RGB as they are (apply
        ``PIL.ImageOps.exif_transpose`` yourself if they come straight from a camera file);
        arrays are HWC (or HW) uint8, or float in [0, 1]; tensors are CHW or NCHW, uint8 or
        float in [0, 1] (not already normalised). Device ``None``: CUDA when present (bf16
        autocast there); the module stays on the device it last ran on.

        >>> clf.predict_proba(torch.rand(4, 3, 64, 64)).sum(axis=1)   # doctest: +SKIP
        array([1., 1., 1., 1.], dtype=float32)
        """
        from autotransfer.backbones.features import default_batch_size, resolve_device

        items = _flatten(inputs)
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
        out = []
        workers = max(1, min(4, os.cpu_count() or 1, size))
        with ThreadPoolExecutor(workers) as pool:
            for start in range(0, len(items), size):
                batch = list(pool.map(lambda x: transform(_to_pil(x)), items[start : start + size]))
                x = torch.stack(batch).to(dev, non_blocking=True)
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
        from autotransfer.api import open_folder
        from autotransfer.metrics import classification_metrics

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
        from safetensors.torch import save_file

        target = Path(directory).expanduser()
        _check_replaceable(target)
        config = {
            "format_version": FORMAT_VERSION,
            "arch": self.arch,
            "model_kwargs": self.model_kwargs,
            "classes": list(self.classes),
            "preprocessing": self.preprocessing.to_dict(),
            "metadata": {**self.metadata, **(metadata or {})},
            "versions": _versions(),
        }
        text = json.dumps(config, indent=2, default=str)
        tensors = {
            k: v.detach().to("cpu", copy=True).contiguous()
            for k, v in self.module.state_dict().items()
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
        try:
            save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
            (tmp / CONFIG_FILE).write_text(text + "\n")
            _swap_in(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
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
        config = _read_config(path)
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise ModelFileError(
                f"{path} has {CONFIG_FILE} but no {WEIGHTS_FILE}; the save was incomplete or "
                "the file was moved. Save the model again."
            )
        try:
            classes = [str(c) for c in config["classes"]]
            kwargs = dict(config.get("model_kwargs") or {})
            module = timm.create_model(
                config["arch"], pretrained=False, num_classes=len(classes), **kwargs
            )
            module.load_state_dict(load_file(str(weights)), strict=True)
            return cls(
                module,
                classes=classes,
                preprocessing=Preprocessing.from_dict(config["preprocessing"]),
                arch=config["arch"],
                model_kwargs=kwargs,
                metadata=config.get("metadata") or {},
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
        path = Path(path).expanduser()
        wrapped = self._export_module()
        example = self._example(2)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
            traced = torch.jit.trace(wrapped, example)
            check = self._example(3)
            with torch.inference_mode():
                expected, got = wrapped(check), traced(check)
            if not torch.allclose(expected, got, rtol=1e-4, atol=1e-4):
                diff = float((expected - got).abs().max())
                raise AutoTransferError(
                    f"The traced {self.arch} disagrees with the model (max |diff| {diff:.3g}); "
                    "its forward pass depends on the input in ways tracing cannot record. "
                    "Use export_onnx instead."
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.jit.save(traced, str(path))
        self._write_sidecar(path, "torchscript")
        log.info("exported TorchScript to %s", path)
        return path

    def export_onnx(self, path: str | os.PathLike[str]) -> Path:
        """An ONNX file with a dynamic batch axis: input ``images`` (float NCHW RGB in
        [0, 1] at ``resolution``), output ``logits``. Needs ``pip install 'autotransfer[onnx]'``.

        Normalisation happens inside; resizing and cropping do not (see the sidecar
        ``<path>.json``).

        >>> clf.export_onnx("cats.onnx")                            # doctest: +SKIP
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
        wrapped = self._export_module()
        big = sum(p.numel() * p.element_size() for p in wrapped.parameters()) > 1.5e9
        batch = torch.export.Dim("batch", min=1)
        torch.onnx.export(
            wrapped,
            (self._example(2),),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes={"images": {0: batch}},
            external_data=big,  # protobuf cannot hold more than 2 GB in one file
            dynamo=True,
            verbose=False,
        )
        self._write_sidecar(path, "onnx")
        log.info("exported ONNX to %s", path)
        return path

    def _export_module(self) -> torch.nn.Module:
        module = copy.deepcopy(self.module).to("cpu", torch.float32).eval()
        return _Normalised(module, self.preprocessing.mean, self.preprocessing.std).eval()

    def _example(self, n: int) -> torch.Tensor:
        res = self.preprocessing.resolution
        return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(n))

    def _write_sidecar(self, path: Path, fmt: str) -> None:
        p = self.preprocessing
        sidecar = {
            "format": fmt,
            "arch": self.arch,
            "classes": list(self.classes),
            "input": {
                "name": "images",
                "shape": ["batch", 3, p.resolution, p.resolution],
                "dtype": "float32",
                "layout": "NCHW",
                "channels": "RGB",
                "range": [0.0, 1.0],
            },
            "output": {"name": "logits", "shape": ["batch", len(self.classes)]},
            "normalization_inside": {"mean": list(p.mean), "std": list(p.std)},
            "before_input": (
                f"resize the short side to {int(p.resolution / p.crop_pct)} px "
                f"({p.interpolation}), centre-crop {p.resolution} px, divide by 255"
            ),
            "preprocessing": p.to_dict(),
            "versions": _versions(),
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


def _flatten(inputs: Any) -> list[Any]:
    """One entry per image: lists are unpacked, NCHW tensors and NHWC arrays split."""
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    out: list[Any] = []
    for item in items:
        if isinstance(item, torch.Tensor) and item.ndim == 4:
            out.extend(item.unbind(0))
        elif isinstance(item, np.ndarray) and item.ndim == 4:
            out.extend(list(item))
        else:
            out.append(item)
    return out


def _to_pil(item: Any) -> Image.Image:
    """An 8-bit RGB PIL image from a path, PIL image, HWC array or CHW tensor."""
    from autotransfer.data.images import load_image, to_rgb

    if isinstance(item, (str, os.PathLike)):
        return load_image(item)
    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, torch.Tensor):
        if item.ndim != 3:
            raise DataError(f"Image tensors must be CHW or NCHW; got shape {tuple(item.shape)}.")
        return _array_to_pil(item.detach().cpu().permute(1, 2, 0).numpy(), "tensor")
    if isinstance(item, np.ndarray):
        return _array_to_pil(item, "array")
    raise DataError(
        f"Cannot classify an input of type {type(item).__name__}. Pass file paths, PIL "
        "images, HWC uint8 arrays or CHW/NCHW tensors (uint8, or float in [0, 1]), or a "
        "list of them."
    )


def _array_to_pil(a: np.ndarray, kind: str) -> Image.Image:
    from autotransfer.data.images import to_rgb

    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        want = "CHW with 1, 3 or 4 channels" if kind == "tensor" else "HWC with 1, 3 or 4 channels"
        shape = a.shape if kind == "array" else (a.shape[2], *a.shape[:2])
        raise DataError(f"Image {kind}s must be {want}; got shape {tuple(shape)}.")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating):
            raise DataError(
                f"Image {kind}s must be uint8 (0..255) or float in [0, 1]; got {a.dtype}."
            )
        lo, hi = float(a.min()), float(a.max())
        if lo < -0.01 or hi > 1.01:
            raise DataError(
                f"A float image {kind} has values from {lo:.3g} to {hi:.3g}; pass pixels in "
                "[0, 1] (not normalised: the classifier normalises them itself) or uint8."
            )
        a = np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    a = np.ascontiguousarray(a)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[a.shape[2]]
    return to_rgb(Image.fromarray(a[:, :, 0] if mode == "L" else a, mode=mode))


def _versions() -> dict[str, str]:
    import timm

    from autotransfer import __version__

    return {"torch": torch.__version__, "timm": timm.__version__, "autotransfer": __version__}


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


def _check_replaceable(target: Path) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise ModelFileError(f"Cannot save a model to {target}: it is a file, not a folder.")
    if any(target.iterdir()) and not (target / CONFIG_FILE).is_file():
        raise ModelFileError(
            f"Refusing to save a model over {target}: the folder is not empty and holds no "
            f"saved model ({CONFIG_FILE}), so replacing it would delete your files. Choose "
            "a new or empty folder."
        )


def _swap_in(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing an old one."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
    os.replace(target, old / "model")
    try:
        os.replace(tmp, target)
    except OSError:
        os.replace(old / "model", target)  # put the old model back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _pickles(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix.lower() in PICKLE_SUFFIXES else []
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    return []


def _read_config(path: Path) -> dict[str, Any]:
    pickles = _pickles(path)
    if pickles and not (path / CONFIG_FILE).is_file():
        names = ", ".join(p.name for p in pickles)
        where = path.parent if path.is_file() else path
        raise ModelFileError(
            f"Refusing to load the pickled checkpoint {names} in {where}: unpickling a file can "
            "execute arbitrary code. Convert it once, if you trust it: "
            "state = torch.load(file, weights_only=True); build the timm model, "
            "model.load_state_dict(state), then Classifier(model, classes=..., "
            "preprocessing=..., arch=...).save(folder) writes safetensors."
        )
    if not path.is_dir():
        raise ModelFileError(
            f"No saved model at {path}: not a folder. Pass the folder Classifier.save wrote."
        )
    file = path / CONFIG_FILE
    if not file.is_file():
        raise ModelFileError(
            f"{path} is not a saved autotransfer model: {CONFIG_FILE} is missing. Pass the "
            "folder Classifier.save (or FitResult.save) wrote."
        )
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"Cannot read {file}: {exc}. Save the model again.") from exc
    version = config.get("format_version") if isinstance(config, dict) else None
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{file} has format_version {version!r}; this autotransfer reads version "
            f"{FORMAT_VERSION}. Upgrade autotransfer (or re-save with this version)."
        )
    return config
