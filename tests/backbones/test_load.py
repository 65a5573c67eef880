"""Resolving names, candidate facts, listing, and building models with their weights."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from autotransfer.backbones.candidates import CandidateInfo, candidate_info
from autotransfer.backbones.load import (
    list_candidates,
    load_backbone,
    parse_backbone_id,
    resolve_backbones,
)
from autotransfer.errors import ConfigError, UnknownNameError, WeightsUnavailableError


def ids(specs):
    return [s.id for s in specs]


def test_bare_names_resolve_to_the_pretrained_candidate():
    assert ids(resolve_backbones("efficientnet_lite0")) == ["package:efficientnet_lite0"]
    assert ids(resolve_backbones(["tf_efficientnet_lite0"])) == ["package:efficientnet_lite0"]
    # the random control has the same arch; the pretrained one wins
    assert ids(resolve_backbones(["mobilenetv2_100"])) == ["package:mobilenetv2_100"]
    assert ids(resolve_backbones(["resnet50.a1_in1k"])) == ["timm:resnet50.a1_in1k"]


def test_full_ids_lists_and_duplicates():
    got = resolve_backbones("random:test_vit, package:efficientnet_lite0,efficientnet_lite0")
    assert ids(got) == ["random:test_vit", "package:efficientnet_lite0"]


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError, match="Did you mean 'package:efficientnet_lite0'"):
        resolve_backbones(["efficientnet_lit0"])
    with pytest.raises(UnknownNameError, match="Did you mean 'file'"):
        resolve_backbones(["fiel:/x.safetensors#resnet18"])
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet18'"):
        resolve_backbones(["random:resnet1"])


def test_adhoc_ids():
    timm_spec = parse_backbone_id("timm:resnet34.a1_in1k")
    assert (timm_spec.arch, timm_spec.weights.source) == ("resnet34.a1_in1k", "timm")
    assert timm_spec.weights.source_dataset == "imagenet-1k"
    rnd = parse_backbone_id("random:resnet18#seed=3")
    assert (rnd.arch, rnd.weights.location, rnd.tags) == ("resnet18", "3", ("control",))
    f = parse_backbone_id(
        "file:/w/mnv2.pth#mobilenetv2_100,key_map=torchvision_mobilenet_v2,norm=inception"
    )
    assert (f.arch, f.weights.location, f.weights.key_map) == (
        "mobilenetv2_100",
        "/w/mnv2.pth",
        "torchvision_mobilenet_v2",
    )
    assert f.weights.mean == (0.5, 0.5, 0.5)
    with pytest.raises(ConfigError, match="architecture after '#'"):
        parse_backbone_id("file:/w/x.safetensors")
    with pytest.raises(UnknownNameError, match="Did you mean 'key_map'"):
        parse_backbone_id("file:/w/x.safetensors#resnet18,keymap=x")


def test_file_id_end_to_end(tmp_path, tiny_model, same_outputs):
    reference = tiny_model("test_efficientnet", seed=5)
    path = tmp_path / "weights.safetensors"
    save_file(reference.state_dict(), str(path))
    (spec,) = resolve_backbones([f"file:{path}#test_efficientnet"])
    assert candidate_info(spec).available_offline
    model = load_backbone(spec)
    assert not model.training
    assert same_outputs(model, reference)
    assert model.pretrained_cfg["mean"] == spec.weights.mean


def test_random_control_loads_deterministically(same_outputs):
    (spec,) = resolve_backbones(["random:test_vit"])
    assert same_outputs(load_backbone(spec), load_backbone(spec))
    assert spec.weights.imagenet_top1 is None and "control" in spec.tags


def test_missing_weights_raise_with_the_fix(tmp_path):
    (spec,) = resolve_backbones([f"file:{tmp_path}/gone.safetensors#test_resnet"])
    info = candidate_info(spec)
    assert not info.available_offline and "gone.safetensors" in info.hint
    with pytest.raises(WeightsUnavailableError, match="gone.safetensors"):
        load_backbone(spec)


def test_weights_that_do_not_fit_name_the_keys(tmp_path, tiny_model):
    path = tmp_path / "resnet.safetensors"
    save_file(tiny_model("test_resnet").state_dict(), str(path))
    (spec,) = resolve_backbones([f"file:{path}#test_efficientnet"])
    with pytest.raises(ConfigError, match="missing.*unexpected"):
        load_backbone(spec)


def test_candidate_info_fields():
    (spec,) = resolve_backbones(["package:efficientnet_lite0"])
    info = candidate_info(spec)
    assert info.id == "package:efficientnet_lite0"
    assert info.arch == "tf_efficientnet_lite0"
    assert info.params == 4_652_008
    assert (info.input_size, info.imagenet_top1, info.source_dataset) == (224, 75.1, "imagenet-1k")
    assert info.available_offline == (info.hint == "")
    assert CandidateInfo.from_dict(info.to_dict()) == info


def test_list_candidates_hides_test_models_by_default():
    default = ids(list_candidates())
    assert "random:test_resnet" not in default
    assert "package:efficientnet_lite0" in default and "random:mobilenetv2_100" in default
    with_tests = ids(list_candidates(include_tags=["test"]))
    assert {"random:test_resnet", "random:test_efficientnet", "random:test_vit"} <= set(with_tests)
    offline = list_candidates(include_unavailable=False, include_tags=["test"])
    assert "random:test_vit" in ids(offline)
    assert all(candidate_info(s).available_offline for s in offline)


def test_pretrained_false_skips_the_weights(tmp_path):
    (spec,) = resolve_backbones([f"file:{tmp_path}/absent.safetensors#test_resnet"])
    model = load_backbone(spec, pretrained=False)
    assert isinstance(model, torch.nn.Module) and not model.training
