"""The built-in candidate list and the shared-folder discovery."""

from __future__ import annotations

import json

import timm
from safetensors.torch import save_file

from autotransfer import plugins
from autotransfer.backbones.candidates import candidate_info
from autotransfer.backbones.load import load_backbone, resolve_backbones
from autotransfer.backbones.zoo import (
    INCEPTION_MEAN,
    builtin_backbones,
    package_backbones,
    shared_backbones,
)


def test_ids_are_unique_and_name_their_source():
    specs = builtin_backbones()
    assert len({s.id for s in specs}) == len(specs)
    for s in specs:
        source, _, rest = s.id.partition(":")
        assert source == s.weights.source and rest
        assert timm.is_model(s.arch), s.arch


def test_every_pretrained_candidate_cites_its_top1():
    for s in builtin_backbones():
        if "control" in s.tags:
            assert s.weights.imagenet_top1 is None and s.weights.source == "random"
        else:
            assert 60 < s.weights.imagenet_top1 < 90 and s.weights.citation, s.id


def test_package_backbones_as_measured():
    by_id = {s.id: s for s in package_backbones()}
    sizes = {k: s.input_size for k, s in by_id.items()}
    assert sizes == {
        "package:efficientnet_lite0": 224,
        "package:efficientnet_lite1": 240,
        "package:efficientnet_lite2": 260,
        "package:mobilenetv2_100": 224,
    }
    # benchmarks/results/normalisation_check.md: TF lite weights want [-1, 1] inputs
    assert by_id["package:efficientnet_lite0"].weights.mean == INCEPTION_MEAN
    assert by_id["package:mobilenetv2_100"].weights.mean == (0.485, 0.456, 0.406)
    assert by_id["package:mobilenetv2_100"].weights.imagenet_top1 == 71.878


def test_tiny_controls_are_tagged_test():
    tiny = [s for s in builtin_backbones() if s.arch.startswith("test_")]
    assert {s.id for s in tiny} == {
        "random:test_resnet",
        "random:test_efficientnet",
        "random:test_vit",
    }
    assert all(set(s.tags) == {"control", "test"} and s.input_size == 160 for s in tiny)


def test_no_shared_folder_registers_nothing():
    assert shared_backbones() == []


def test_shared_folder_files_become_candidates(tmp_path, monkeypatch, tiny_model, same_outputs):
    monkeypatch.setenv("AUTOTRANSFER_SHARED_WEIGHTS", str(tmp_path))
    reference = tiny_model("test_resnet", seed=3)
    save_file(reference.state_dict(), str(tmp_path / "test_resnet.team.safetensors"))
    sidecar = {"imagenet_top1": 42.0, "source_dataset": "in-house", "input_size": 96}
    (tmp_path / "test_resnet.team.json").write_text(json.dumps(sidecar))
    (tmp_path / "notes.txt").write_text("ignored")
    (spec,) = shared_backbones()
    assert (spec.id, spec.arch, spec.input_size) == ("shared:test_resnet.team", "test_resnet", 96)
    assert (spec.weights.imagenet_top1, spec.weights.source_dataset) == (42.0, "in-house")
    plugins.reset_plugin_manager()
    try:
        (resolved,) = resolve_backbones(["test_resnet.team"])
        assert candidate_info(resolved).available_offline
        assert same_outputs(load_backbone(resolved), reference)
    finally:
        plugins.reset_plugin_manager()
