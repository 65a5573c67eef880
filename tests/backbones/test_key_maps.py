"""Key maps: strict loads into timm, bit-identical outputs, real package weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import timm
import torch

from autotransfer.backbones.key_maps import KEY_MAPS, apply_key_map, get_key_map
from autotransfer.backbones.zoo import package_backbones
from autotransfer.errors import ConfigError, UnknownNameError


def test_torchvision_mobilenet_v2_matches_torchvision_exactly(same_outputs):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    tv = torchvision.models.mobilenet_v2().eval()
    for m in tv.modules():  # non-trivial BN statistics so a wrong mapping shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model = timm.create_model("mobilenetv2_100")
    model.load_state_dict(apply_key_map("torchvision_mobilenet_v2", tv.state_dict()), strict=True)
    assert same_outputs(model, tv, size=96)


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match="'features.99.weird'"):
        apply_key_map("torchvision_mobilenet_v2", {"features.99.weird": torch.zeros(1)})


def test_registry():
    assert set(KEY_MAPS) >= {"efficientnet_pytorch", "torchvision_mobilenet_v2"}
    assert apply_key_map("", {"a": 1}) == {"a": 1}
    with pytest.raises(UnknownNameError, match="Did you mean 'efficientnet_pytorch'"):
        get_key_map("efficientnet_pytorh")


def _installed(spec) -> bool:
    return importlib.util.find_spec(spec.weights.location.split(":")[0]) is not None


@pytest.mark.parametrize(
    "spec", [s for s in package_backbones() if s.id != "package:efficientnet_lite1"], ids=str
)
def test_real_package_weights_load_strictly(spec):
    if not _installed(spec):
        pytest.skip(f"{spec.weights.location.split(':')[0]} is not installed")
    from autotransfer.backbones.weight_sources import PackageSource

    sd = PackageSource().load_state_dict(spec)
    model = timm.create_model(spec.arch)
    own = model.state_dict()
    assert sd.keys() == own.keys()
    assert all(sd[k].shape == own[k].shape for k in own)
    model.load_state_dict(sd, strict=True)


def test_lite_batchnorm_and_activation_match_the_original():
    # efficientnet-lite (TF): BatchNorm eps 1e-3, ReLU6, TF "same" padding
    model = timm.create_model("tf_efficientnet_lite0")
    assert model.bn1.eps == pytest.approx(1e-3)
    assert isinstance(model.bn1.act, torch.nn.ReLU6)
    assert type(model.conv_stem).__name__ == "Conv2dSame"


HYMENOPTERA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "hymenoptera" / "test"


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["package:efficientnet_lite0", "package:mobilenetv2_100"])
def test_real_weights_recognise_ants_and_bees(backbone):
    """ImageNet heads put 310 (ant) / 309 (bee) in the top-5 of most hymenoptera photos."""
    from PIL import Image

    from autotransfer.backbones.load import load_backbone, resolve_backbones

    (spec,) = resolve_backbones([backbone])
    if not _installed(spec):
        pytest.skip(f"{spec.weights.location.split(':')[0]} is not installed")
    if not HYMENOPTERA.is_dir():
        pytest.skip(f"{HYMENOPTERA} is not there")
    model = load_backbone(spec)
    cfg = timm.data.resolve_data_config(model=model)
    assert cfg["mean"] == spec.weights.mean
    transform = timm.data.create_transform(**cfg)
    hits = []
    for cls, target in (("ants", 310), ("bees", 309)):
        for path in sorted((HYMENOPTERA / cls).iterdir())[:10]:
            x = transform(Image.open(path).convert("RGB"))[None]
            with torch.no_grad():
                hits.append(target in model(x).topk(5).indices[0].tolist())
    assert sum(hits) / len(hits) >= 0.8
